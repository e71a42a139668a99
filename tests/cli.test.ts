/**
 * The `fer` command as a user runs it: help texts, error messages for bad
 * input, and a tiny train-then-evaluate round trip on a folder that holds a
 * corrupt image.
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const CLI = path.resolve('dist/cli/main.js');
const DATA = process.env.FER_DATA ?? path.resolve('data/fer2013');
const WORK = fs.mkdtempSync(path.join(os.tmpdir(), 'fer-cli-test-'));

function fer(args: string[], env: Record<string, string> = {}): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [CLI, ...args], {
    encoding: 'utf8',
    env: { ...process.env, FER_PROGRESS: '0', ...env },
    timeout: 600_000,
  });
}

/** Copies `perClass` real images of each FER-2013 class of `split` into `target/<folder>/`. */
function copySample(split: string, target: string, perClass: number, rename: Record<string, string> = {}): void {
  for (const folder of fs.readdirSync(path.join(DATA, split)).sort()) {
    const files = fs.readdirSync(path.join(DATA, split, folder)).sort().slice(0, perClass);
    const destination = path.join(target, rename[folder] ?? folder);
    fs.mkdirSync(destination, { recursive: true });
    for (const file of files) {
      fs.copyFileSync(path.join(DATA, split, folder, file), path.join(destination, file));
    }
  }
}

beforeAll(() => {
  if (!fs.existsSync(CLI)) {
    throw new Error(`${CLI} not found; run "npm run build" (npm test runs it first).`);
  }
  if (!fs.existsSync(DATA)) {
    throw new Error(`FER-2013 not found at ${DATA}; run "npm run setup" or set FER_DATA (see data/README.md).`);
  }
});

afterAll(() => {
  fs.rmSync(WORK, { recursive: true, force: true });
});

describe('help', () => {
  it('lists the commands', () => {
    const result = fer(['--help']);
    expect(result.status).toBe(0);
    for (const command of ['train', 'evaluate', 'models', 'data']) {
      expect(result.stdout).toContain(command);
    }
  });

  it.each([
    ['train', ['--model', '--data', '--resume', '--epochs1', '--unfreeze', '--max-minutes']],
    ['evaluate', ['--split', '--figures-dir', '--limit']],
    ['models', ['--json']],
    ['data', ['--class-alias', '--no-duplicates']],
  ])('explains %s options', (command, options) => {
    const result = fer([command, '--help']);
    expect(result.status).toBe(0);
    for (const option of options) {
      expect(result.stdout).toContain(option);
    }
  });
});

describe('bad input', () => {
  it('names registered models for an unknown one', () => {
    const result = fer(['train', '--model', 'NoSuchNet', '--data', DATA]);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('Unknown model "NoSuchNet"');
    expect(result.stderr).toContain('MobileNet-0.25');
  });

  it('points to the data README', () => {
    const missing = path.join(WORK, 'no-such-dataset');
    const result = fer(['train', '--data', missing]);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(missing);
    expect(result.stderr).toContain('data/README.md');
  });

  it('rejects a non-integer limit', () => {
    const result = fer(['train', '--limit-train', 'many']);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('"many" is not an integer');
  });

  it('exits with 2 on an unknown option', () => {
    const result = fer(['evaluate', '--no-such-option']);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain("unknown option '--no-such-option'");
  });

  it('prints the package version', () => {
    const result = fer(['--version']);
    expect(result.status).toBe(0);
    const version = (JSON.parse(fs.readFileSync(path.resolve('package.json'), 'utf8')) as { version: string }).version;
    expect(result.stdout.trim()).toBe(version);
  });

  it('rejects a folder that is no run', () => {
    const result = fer(['evaluate', WORK]);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('is not a run folder');
  });

  it('names an unknown class folder', () => {
    const root = path.join(WORK, 'unknown-class');
    copySample('test', root, 1, { happy: 'contempt' });
    const result = fer(['data', '--data', root, '--no-duplicates']);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('Unknown class folder "contempt"');
    expect(result.stderr).toContain('--class-alias contempt=<class>');
  });

  it('accepts that folder with an alias', () => {
    const root = path.join(WORK, 'unknown-class');
    const result = fer(['data', '--data', root, '--no-duplicates', '--class-alias', 'contempt=happiness', '--json']);
    expect(result.status).toBe(0);
    const summary = JSON.parse(result.stdout);
    expect(summary.classFolders.contempt).toBe('happiness');
    expect(summary.layout).toBe('single');
  });
});

describe('models', () => {
  it('lists configurations as JSON', () => {
    const result = fer(['models', '--json']);
    expect(result.status).toBe(0);
    const listing = JSON.parse(result.stdout);
    const names = listing.configurations.map((c: { name: string }) => c.name);
    expect(names).toContain('MobileNet-0.25');
    expect(names).toContain('MobileNetV2-0.35');
  });
});

describe('train and evaluate round trip', () => {
  const dataset = path.join(WORK, 'study-layout');
  const runDir = path.join(WORK, 'run');
  let trainResult: SpawnSyncReturns<string>;

  beforeAll(() => {
    // The study's layout: Train/<Class> and Test/<Class>, no validation folder, one corrupt file.
    const names = { angry: 'Anger', disgust: 'Disgust', fear: 'Fear', happy: 'Happiness', neutral: 'Neutral', sad: 'Sadness', surprise: 'Surprise' };
    copySample('train', path.join(dataset, 'Train'), 12, names);
    copySample('test', path.join(dataset, 'Test'), 4, names);
    fs.writeFileSync(path.join(dataset, 'Train', 'Anger', 'broken.jpg'), Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10]));
    trainResult = fer([
      'train',
      '--data',
      dataset,
      '--run-dir',
      runDir,
      '--input-size',
      '32',
      '--batch-size',
      '16',
      '--epochs1',
      '1',
      '--epochs2',
      '1',
      '--unfreeze',
      '1',
      '--no-figures',
    ]);
  });

  it('finishes training', () => {
    expect(trainResult.status, trainResult.stderr).toBe(0);
    expect(fs.existsSync(path.join(runDir, 'model', 'model.json'))).toBe(true);
  });

  it('holds out validation from Train', () => {
    expect(trainResult.stderr).toContain('no validation folder; held out 10%');
  });

  it('reports the corrupt file and goes on', () => {
    const broken = path.join(dataset, 'Train', 'Anger', 'broken.jpg');
    expect(trainResult.stderr).toContain(`skipped ${broken}`);
    const report = JSON.parse(fs.readFileSync(path.join(runDir, 'data-report.json'), 'utf8'));
    const skipped = [...report.skippedAtDecode.train, ...report.skippedAtDecode.validation].map((s: { path: string }) => s.path);
    expect(skipped).toContain(broken);
  });

  it('evaluates the run as JSON', () => {
    const result = fer(['evaluate', runDir, '--no-figures', '--out', path.join(WORK, 'eval')]);
    expect(result.status, result.stderr).toBe(0);
    const summary = JSON.parse(result.stdout.trim().split('\n').pop() as string);
    expect(summary.images).toBe(28);
    expect(summary.accuracy).toBeGreaterThanOrEqual(0);
    expect(summary.accuracy).toBeLessThanOrEqual(1);
    expect(fs.existsSync(path.join(WORK, 'eval', 'metrics.json'))).toBe(true);
  });

  it('reproduces the test metrics of training', () => {
    const fromTraining = JSON.parse(fs.readFileSync(path.join(runDir, 'evaluation', 'test', 'metrics.json'), 'utf8'));
    const fromEvaluate = JSON.parse(fs.readFileSync(path.join(WORK, 'eval', 'metrics.json'), 'utf8'));
    expect(fromEvaluate.accuracy).toBe(fromTraining.accuracy);
    expect(fromEvaluate.logLoss).toBeCloseTo(fromTraining.logLoss, 10);
  });

  it('warns before replacing the run evaluation', () => {
    const result = fer(['evaluate', runDir, '--no-figures', '--no-duplicates']);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stderr).toContain(`${path.join(runDir, 'evaluation', 'test')} already contains an evaluation, which this one replaces`);
  });
});
