/**
 * `fer bench` end to end at the smallest size: one repeat of the toolkit and
 * of the Keras program (scripts/bench_keras.py in .venv) on MobileNet-0.25 at
 * 32x32, reading the same FER-2013 files. Checks the report's shape and that
 * every number is a measured, positive value; speed itself is a benchmark,
 * not a test.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { describe, expect, it } from 'vitest';

import { parseBenchModels, type BenchReport } from '../lib/perf/bench';

const ROOT = path.resolve(__dirname, '..');
const DATA = process.env.FER_DATA ?? path.join(ROOT, 'data', 'fer2013');

describe('fer bench', () => {
  it('measures ours and Keras side by side', () => {
    if (!fs.existsSync(DATA)) {
      throw new Error(`FER-2013 not found at ${DATA}; run "npm run setup" or set FER_DATA (see data/README.md).`);
    }
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'fer-bench-'));
    const args = [
      path.join(ROOT, 'dist', 'cli', 'main.js'),
      'bench',
      '--models',
      'MobileNet-0.25@32',
      '--batch-size',
      '8',
      '--repeats',
      '1',
      '--epochs',
      '2',
      '--train-images',
      '32',
      '--validation-images',
      '16',
      '--inference-runs',
      '3',
      '--data',
      DATA,
      '--out',
      out,
    ];
    const result = spawnSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8', timeout: 600_000 });
    expect(result.stderr).not.toMatch(/error:/i);
    expect(result.status).toBe(0);

    const report = JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8')) as BenchReport;
    expect(report.runs.map((r) => r.framework).sort()).toEqual(['keras', 'ours']);
    for (const run of report.runs) {
      expect(run.error, `${run.framework} failed`).toBeUndefined();
      expect(run.result?.phase1.imagesPerSecond, run.framework).toBeGreaterThan(0);
      expect(run.result?.phase2.imagesPerSecond, run.framework).toBeGreaterThan(0);
      expect(run.result?.peakRssBytes, run.framework).toBeGreaterThan(0);
      const inference = Object.values(run.result?.inference ?? {});
      expect(inference.length, run.framework).toBeGreaterThan(0);
      for (const timing of inference) {
        expect(timing.batch1Ms).toBeGreaterThan(0);
        expect(timing.batch32ImagesPerSecond).toBeGreaterThan(0);
      }
    }
    expect(report.costs).toHaveLength(1);
    expect(report.costs[0]?.forwardFlops).toBeGreaterThan(0);
    expect(report.peakGflops).toBeGreaterThan(0);
    expect(report.matMulGflops).toBeGreaterThan(0);

    const markdown = fs.readFileSync(path.join(out, 'results.md'), 'utf8');
    expect(markdown).toContain('MobileNet-0.25');
    expect(markdown).toMatch(/Keras/);
  }, 600_000);
});

describe('fer bench --models', () => {
  it('takes backbones with optional input sizes', () => {
    expect(parseBenchModels('MobileNetV2@48, ResNet50V2', 64)).toEqual([
      { backbone: 'MobileNetV2', inputSize: 48 },
      { backbone: 'ResNet50V2', inputSize: 64 },
    ]);
  });

  it('names the backbone of a configuration given instead of a backbone', () => {
    expect(() => parseBenchModels('FER2013-MobileNet', 64)).toThrow('"FER2013-MobileNet" is a configuration; benchmark its backbone as MobileNet-0.25@96.');
  });

  it('lists the backbones for an unknown name', () => {
    expect(() => parseBenchModels('MobileNetV5', 64)).toThrow(/Unknown backbone "MobileNetV5" in --models\. Backbones: .*ResNet50V2/);
  });
});
