/**
 * The memory estimate checked before training (lib/train/memory.ts): its
 * arithmetic on a small model, size parsing, and a run refused before its
 * first batch when the limit is too small.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import { train } from '../lib/train/trainer';
import { ACTIVATION_FACTOR, BASE_PROCESS_BYTES, checkMemory, estimatePhaseMemory, memoryLimit, parseByteSize } from '../lib/train/memory';

const DATA = process.env.FER_DATA ?? path.resolve('data/fer2013');

beforeAll(async () => {
  await initBackend('node');
});

/** input 8x8x3 -> conv 3x3 'same' with 4 filters (8x8x4 = 256) -> pool (4) -> dense 7 (head). */
function smallModel(): tf.LayersModel {
  const input = tf.input({ shape: [8, 8, 3], name: 'image' });
  const conv = tf.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', name: 'conv' }).apply(input) as tf.SymbolicTensor;
  const pool = tf.layers.globalAveragePooling2d({ name: 'head_pool' }).apply(conv) as tf.SymbolicTensor;
  const out = tf.layers.dense({ units: 7, activation: 'softmax', name: 'head_out' }).apply(pool) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: out });
}

describe('estimatePhaseMemory', () => {
  const model = smallModel();
  const params = 3 * 3 * 3 * 4 + 4 + 4 * 7 + 7; // 147
  const head = new Set(['head_pool', 'head_out']);

  it('counts weights, Adam state and every kept layer output while fine-tuning', () => {
    const estimate = estimatePhaseMemory(model, 2, 10, params, false, head, 1000);
    expect(estimate.weightBytes).toBe(params * 4);
    expect(estimate.optimizerBytes).toBe(params * 12);
    // Layer outputs per sample: input 192, conv 256, pool 4, dense 7.
    expect(estimate.activationBytes).toBe((192 + 256 + 4 + 7) * ACTIVATION_FACTOR * 10 * 4);
    expect(estimate.totalBytes).toBe(params * 16 + estimate.activationBytes + 1000 + BASE_PROCESS_BYTES);
  });

  it('keeps only head outputs, plus the largest live layer, with a frozen backbone', () => {
    const estimate = estimatePhaseMemory(model, 1, 10, 35, true, head, 0);
    expect(estimate.optimizerBytes).toBe(35 * 12);
    expect(estimate.activationBytes).toBe(((4 + 7) * ACTIVATION_FACTOR + 256 * 3) * 10 * 4);
  });

  it('grows with the batch', () => {
    const small = estimatePhaseMemory(model, 2, 8, params, false, head, 0);
    const large = estimatePhaseMemory(model, 2, 64, params, false, head, 0);
    expect(large.activationBytes).toBe(small.activationBytes * 8);
  });
});

describe('limits', () => {
  it('parses sizes with units', () => {
    expect(parseByteSize('512M', 'x')).toBe(512 * 1024 ** 2);
    expect(parseByteSize('1.5G', 'x')).toBe(1.5 * 1024 ** 3);
    expect(parseByteSize('2GiB', 'x')).toBe(2 * 1024 ** 3);
    expect(parseByteSize('1000', 'x')).toBe(1000);
    expect(() => parseByteSize('lots', 'FER_MEMORY_LIMIT')).toThrow(/Invalid FER_MEMORY_LIMIT "lots"/);
    expect(() => parseByteSize('0', 'FER_MEMORY_LIMIT')).toThrow(/positive size/);
  });

  it('reads the host memory on the CPU, and nothing on a GPU', () => {
    const cpu = memoryLimit({ name: 'tensorflow', gpu: false });
    expect(cpu?.bytes).toBeGreaterThan(100 * 1024 ** 2);
    expect(cpu?.bytes).toBeLessThanOrEqual(os.totalmem() + process.memoryUsage().rss);
    expect(memoryLimit({ name: 'tensorflow', gpu: true })).toBeUndefined();
    expect(memoryLimit({ name: 'wasm', gpu: false })?.bytes).toBeLessThanOrEqual(4 * 1024 ** 3);
  });

  it('names the configuration, the estimate and the options to change', () => {
    const estimate = estimatePhaseMemory(smallModel(), 2, 32, 147, false, new Set(), 0);
    expect(() => checkMemory('Tiny', 8, 32, estimate, { bytes: 1024, source: 'a test' })).toThrow(
      /Tiny at input 8x8 and batch 32 needs about .* in phase 2 .* more than the 0 MiB of a test\. Lower --batch-size, --input-size or --unfreeze/,
    );
    expect(() => checkMemory('Tiny', 8, 32, estimate, undefined)).not.toThrow();
  });
});

describe('train', () => {
  it('refuses a run that cannot fit before its first batch', async () => {
    if (!fs.existsSync(DATA)) {
      throw new Error(`FER-2013 not found at ${DATA}; run "npm run setup" or set FER_DATA (see data/README.md).`);
    }
    const runDir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'fer-memory-')), 'run');
    process.env.FER_MEMORY_LIMIT = '300M';
    try {
      await expect(
        train({
          model: 'MobileNet-0.25',
          dataDir: DATA,
          runDir,
          inputSize: 32,
          batchSize: 16,
          phase1Epochs: 1,
          phase2Epochs: 1,
          limits: { train: 70, validation: 35, test: 35 },
          checkDuplicates: false,
          silent: true,
        }),
      ).rejects.toThrow(/MobileNet-0\.25 at input 32x32 and batch 16 needs about .* more than the 300 MiB of FER_MEMORY_LIMIT/);
    } finally {
      delete process.env.FER_MEMORY_LIMIT;
    }
    // The folder that train() created for the run is removed, since nothing in it can be resumed.
    expect(fs.existsSync(runDir)).toBe(false);
  }, 120_000);
});
