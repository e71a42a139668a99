/**
 * `fer explain` as a user runs it, on a MobileNet-0.25 run trained here on
 * a small seeded subset of FER-2013 at 96x96 pixels (a 3x3 last feature
 * map), and the weight randomisation check on that trained model.
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import { discoverDataset } from '../lib/data/dataset';
import { pixelsToTensor, preprocess } from '../lib/data/preprocess';
import { ImageStore } from '../lib/data/store';
import { GradCam } from '../lib/explain/cam';
import { createModel } from '../lib/models/factory';
import { stratifiedSubset } from '../lib/train/data';
import { loadRun } from '../lib/train/load_run';
import { train } from '../lib/train/trainer';

const CLI = path.resolve('dist/cli/main.js');
const DATA = process.env.FER_DATA ?? path.resolve('data/fer2013');
const WORK = fs.mkdtempSync(path.join(os.tmpdir(), 'fer-cam-cli-'));
const RUN = path.join(WORK, 'run96');
const EXPLAINED = 21;

function fer(args: string[], cwd = process.cwd()): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [CLI, ...args], {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, FER_PROGRESS: '0' },
    timeout: 600_000,
  });
}

function lastJsonLine(stdout: string): Record<string, unknown> {
  return JSON.parse(stdout.trim().split('\n').pop() as string) as Record<string, unknown>;
}

interface Record_ {
  path: string;
  true: string;
  predicted: string;
  confidence: number;
  target: string;
  attentionShare: number | null;
  category: string;
  method: string;
  layer: string;
}

beforeAll(async () => {
  if (!fs.existsSync(CLI)) {
    throw new Error(`${CLI} not found; run "npm run build" (npm test runs it first).`);
  }
  if (!fs.existsSync(DATA)) {
    throw new Error(`FER-2013 not found at ${DATA}; run "npm run setup" or set FER_DATA (see data/README.md).`);
  }
  await initBackend('node');
  await train({
    model: 'MobileNet-0.25',
    dataDir: DATA,
    runDir: RUN,
    seed: 5,
    inputSize: 96,
    batchSize: 16,
    phase1Epochs: 2,
    phase2Epochs: 1,
    unfreezeBlocks: 2,
    limits: { train: 280, validation: 70, test: 70 },
    figures: false,
    silent: true,
  });
}, 600_000);

afterAll(() => {
  fs.rmSync(WORK, { recursive: true, force: true });
});

describe('fer explain', () => {
  const out = path.join(WORK, 'explain-gradcam');
  let result: SpawnSyncReturns<string>;
  let report: Record<string, unknown> & { images: Record_[] };

  beforeAll(() => {
    result = fer(['explain', RUN, '--limit', String(EXPLAINED), '--tiles', '4', '--overlays', '--out', out, '-q']);
    if (result.status === 0) {
      report = JSON.parse(fs.readFileSync(path.join(out, 'explanations.json'), 'utf8'));
    }
  });

  it('lists its options in help', () => {
    const help = fer(['explain', '--help']);
    expect(help.status).toBe(0);
    for (const option of ['--method', '--layer', '--class', '--split', '--focus-threshold', '--tiles', '--overlays', '--colormap', '--opacity']) {
      expect(help.stdout).toContain(option);
    }
    expect(fer(['--help']).stdout).toContain('explain');
  });

  it('prints a JSON summary', () => {
    expect(result.status, result.stderr).toBe(0);
    const summary = lastJsonLine(result.stdout);
    expect(summary['images']).toBe(EXPLAINED);
    expect(summary['method']).toBe('gradcam');
    expect(summary['layer']).toBe('conv_pw_13_relu');
    const counts = summary['counts'] as Record<string, number>;
    expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBe(EXPLAINED);
  });

  it('writes three galleries that name the layer', async () => {
    for (const name of ['correct_focused', 'correct_misplaced', 'misclassified']) {
      const file = path.join(out, `${name}.png`);
      const metadata = await sharp(file).metadata();
      expect(metadata.format).toBe('png');
      expect(metadata.exif?.toString('latin1')).toContain('layer conv_pw_13_relu');
    }
  });

  it('records every image with layer and method', () => {
    expect(report.images).toHaveLength(EXPLAINED);
    expect(report['layerName']).toBe('conv_pw_13_relu');
    expect(report['layerShape']).toEqual([3, 3, 256]);
    for (const image of report.images) {
      expect(image.layer).toBe('conv_pw_13_relu');
      expect(image.method).toBe('gradcam');
      expect(image.target).toBe(image.predicted);
    }
  });

  it('sorts images by correctness and attention share', () => {
    const threshold = report['focusThreshold'] as number;
    for (const image of report.images) {
      const share = image.attentionShare ?? Number.NaN;
      const expected = image.true !== image.predicted ? 'misclassified' : share >= threshold ? 'correct_focused' : 'correct_misplaced';
      expect(image.category).toBe(expected);
    }
  });

  it('writes one CSV row per image', () => {
    const rows = fs.readFileSync(path.join(out, 'explanations.csv'), 'utf8').trim().split('\n');
    expect(rows[0]).toBe('path,true,predicted,confidence,target,target_probability,attention_share,region_area_fraction,category,method,layer');
    expect(rows).toHaveLength(EXPLAINED + 1);
    expect(rows.slice(1).every((row) => row.endsWith(',gradcam,conv_pw_13_relu'))).toBe(true);
  });

  it('writes overlays at the original resolution', async () => {
    const files = fs.readdirSync(path.join(out, 'overlays'));
    expect(files).toHaveLength(EXPLAINED);
    const metadata = await sharp(path.join(out, 'overlays', files[0] as string)).metadata();
    expect([metadata.width, metadata.height]).toEqual([48, 48]);
  });

  it('explains a named layer and class', () => {
    const other = path.join(WORK, 'explain-named');
    const named = fer(['explain', RUN, '--limit', '7', '--method', 'gradcam++', '--layer', 'conv_pw_12_relu', '--class', 'happy', '--out', other, '-q']);
    expect(named.status, named.stderr).toBe(0);
    const records = JSON.parse(fs.readFileSync(path.join(other, 'explanations.json'), 'utf8'));
    expect(records.layerName).toBe('conv_pw_12_relu');
    expect(records.targetClass).toBe('happiness');
    expect(records.images.every((image: Record_) => image.target === 'happiness' && image.layer === 'conv_pw_12_relu')).toBe(true);
  });

  it('writes under images/<run>/<method>/<split> by default', () => {
    const cwd = path.join(WORK, 'project');
    fs.mkdirSync(cwd);
    const plain = fer(['explain', RUN, '--limit', '7', '--method', 'eigencam', '-q'], cwd);
    expect(plain.status, plain.stderr).toBe(0);
    expect(fs.existsSync(path.join(cwd, 'images', 'run96', 'eigencam', 'test', 'misclassified.png'))).toBe(true);
  });

  it('names an unknown layer and the candidates', () => {
    const bad = fer(['explain', RUN, '--layer', 'conv_pw_99', '--limit', '7']);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain('Layer "conv_pw_99" not found');
    expect(bad.stderr).toContain('conv_pw_13_relu');
  });

  it('rejects an unknown class', () => {
    const bad = fer(['explain', RUN, '--class', 'boredom', '--limit', '7']);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain('Invalid class "boredom"');
  });

  it('rejects an opacity above 1', () => {
    const bad = fer(['explain', RUN, '--opacity', '2']);
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toContain('"2" is not between 0 and 1');
  });
});

/** Spearman rank correlation with average ranks for ties. */
function spearman(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const rank = (values: ArrayLike<number>): Float64Array => {
    const order = Array.from({ length: values.length }, (_, i) => i).sort((i, j) => (values[i] as number) - (values[j] as number));
    const ranks = new Float64Array(values.length);
    for (let start = 0; start < order.length; ) {
      let end = start;
      while (end + 1 < order.length && values[order[end + 1] as number] === values[order[start] as number]) {
        end++;
      }
      for (let k = start; k <= end; k++) {
        ranks[order[k] as number] = (start + end) / 2;
      }
      start = end + 1;
    }
    return ranks;
  };
  const ra = rank(a);
  const rb = rank(b);
  const mean = (ra.length - 1) / 2;
  let cov = 0;
  let va = 0;
  let vb = 0;
  for (let i = 0; i < ra.length; i++) {
    cov += ((ra[i] as number) - mean) * ((rb[i] as number) - mean);
    va += ((ra[i] as number) - mean) ** 2;
    vb += ((rb[i] as number) - mean) ** 2;
  }
  return cov / Math.sqrt(va * vb);
}

describe('weight randomisation on the trained FER model', () => {
  it('Grad-CAM maps of re-initialised weights differ', async () => {
    const run = await loadRun(RUN);
    // The same configuration, input size and head, with every weight re-initialised and never trained.
    const randomised = await createModel(run.options.configuration, {
      inputSize: run.options.inputSize,
      dense: run.options.dense,
      dropout: run.options.dropout,
      weights: 'random',
      seed: 1234,
    });
    const records = stratifiedSubset(discoverDataset(DATA).splits.test ?? [], EXPLAINED, 9, 3);
    const store = await ImageStore.load(records, { size: run.fer.inputSize, silent: true });
    const batch = await store.batch(Array.from({ length: store.length }, (_, i) => i));
    const input = tf.tidy(() => preprocess(pixelsToTensor(batch.pixels, batch.count, batch.size), run.fer.backbone.preprocessing));
    const labels = Array.from(batch.labels);
    const trainedMaps = await new GradCam(run.fer).explain(input, { targetClasses: labels });
    const randomMaps = await new GradCam(randomised).explain(input, { targetClasses: labels });
    input.dispose();

    const pairs = trainedMaps.map((e, i) => [e, randomMaps[i]] as const).filter(([a, b]) => a.rawMax > 0 && b !== undefined && b.rawMax > 0);
    expect(pairs.length).toBeGreaterThanOrEqual(EXPLAINED / 2);
    const correlations = pairs.map(([a, b]) => spearman(a.heatmap, b?.heatmap ?? []));
    const mean = correlations.reduce((x, y) => x + y, 0) / correlations.length;
    console.log(`MobileNet-0.25 on FER-2013: mean Spearman correlation trained vs randomised ${mean.toFixed(3)} over ${pairs.length} images`);
    expect(mean).toBeLessThan(0.5);
    run.fer.model.dispose();
    randomised.model.dispose();
  });
});
