/**
 * Fidelity of the backbones against Keras. scripts/keras_fixtures.py builds
 * each backbone with Keras 3.15 and seeded random weights (batch-norm
 * statistics included). It saves the weights in the legacy and the Keras 3
 * layout, with Keras's outputs for fixed inputs. Our build, loaded from each
 * layout and fed through our own preprocessing, must reproduce those outputs.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import { preprocess } from '../lib/data/preprocess';
import { registerBuiltins } from '../lib/models/catalog';
import { loadKerasWeightsFile } from '../lib/models/keras_weights';
import { getBackbone } from '../lib/models/registry';

const PYTHON = process.env.FER_PYTHON ?? '.venv/bin/python';
const FIXTURE_SCRIPT = path.resolve('scripts', 'keras_fixtures.py');
const INPUT_SIZE = 64;
/** Maximum absolute difference allowed between our outputs and Keras's. */
const TOLERANCE = 1e-4;

/**
 * Backbones checked against Keras. Each name must also be a key of BACKBONES
 * in scripts/keras_fixtures.py. FER_FIDELITY_BACKBONES (comma-separated)
 * selects a subset.
 */
const FIDELITY_BACKBONES = [
  'MobileNet-0.25',
  'MobileNetV2-0.35',
  'VGG16',
  'VGG19',
  'ResNet50V2',
  'ResNet101V2',
  'ResNet152V2',
  ...['B0', 'B1', 'B2', 'B3', 'B4', 'B5', 'B6', 'B7'].map((variant) => `EfficientNet${variant}`),
  'ConvNeXtTiny',
  'ConvNeXtSmall',
  'ConvNeXtBase',
];

/** Backbones also checked through a .keras archive, which adds a third copy of the weights to the fixtures. */
const ARCHIVE_BACKBONES = ['MobileNetV2-0.35'];

const selected = process.env.FER_FIDELITY_BACKBONES?.split(',').map((name) => name.trim()) ?? FIDELITY_BACKBONES;

/** A folder of fixtures written before by the script, which the test then reuses and keeps. */
const reusedFixtures = process.env.FER_FIDELITY_FIXTURES;

interface FixtureMeta {
  name: string;
  input_shape: number[];
  output_shape: number[];
  output_max_abs: number;
  params: number;
  layer_names: string[];
  weights: Array<{ name: string; shape: number[] }>;
  files: string[];
}

function layouts(name: string): Array<[label: string, file: string]> {
  const files: Array<[string, string]> = [
    ['legacy .h5', 'weights.h5'],
    ['Keras 3 .weights.h5', 'model.weights.h5'],
  ];
  if (ARCHIVE_BACKBONES.includes(name)) {
    files.push(['.keras archive', 'model.keras']);
  }
  return files;
}

let fixtureDir = '';
const summary: string[] = [];

function readFloat32(file: string): Float32Array {
  const bytes = fs.readFileSync(file);
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

function maxAbsDifference(a: Float32Array, b: Float32Array): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    max = Math.max(max, Math.abs((a[i] as number) - (b[i] as number)));
  }
  return max;
}

function assertPython(): void {
  const isPath = PYTHON.includes('/');
  if (isPath && !fs.existsSync(PYTHON)) {
    throw new Error(
      `Python interpreter ${PYTHON} not found; the fidelity test needs Keras to write its fixtures. ` +
        `Run "npm run setup" to create .venv, or set FER_PYTHON to a Python with keras 3.15, tensorflow and h5py.`,
    );
  }
}

function runFixtureScript(outDir: string): Promise<void> {
  const args = [FIXTURE_SCRIPT, '--out', outDir, '--size', String(INPUT_SIZE)];
  for (const name of ARCHIVE_BACKBONES.filter((n) => selected.includes(n))) {
    args.push('--keras', name);
  }
  args.push(...selected);
  return new Promise((resolve, reject) => {
    execFile(PYTHON, args, { maxBuffer: 64 * 2 ** 20 }, (error, _stdout, stderr) => {
      if (error !== null) {
        const hint = (error as NodeJS.ErrnoException).code === 'ENOENT' ? ` Run "npm run setup", or set FER_PYTHON.` : '';
        reject(new Error(`${PYTHON} ${path.basename(FIXTURE_SCRIPT)} failed: ${error.message}${hint}\n${stderr.slice(-4000)}`));
        return;
      }
      summary.push(stderr.split('\n').filter((line) => /parameters, output/.test(line)).join('\n'));
      resolve();
    });
  });
}

beforeAll(async () => {
  await initBackend('node');
  registerBuiltins();
  if (reusedFixtures !== undefined) {
    fixtureDir = path.resolve(reusedFixtures);
    return;
  }
  assertPython();
  fixtureDir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'fer-fidelity-'));
  const start = Date.now();
  await runFixtureScript(fixtureDir);
  summary.push(`fixtures: ${selected.length} backbones in ${((Date.now() - start) / 1000).toFixed(1)} s`);
}, 1_200_000);

afterAll(async () => {
  if (fixtureDir !== '' && reusedFixtures === undefined) {
    await fs.promises.rm(fixtureDir, { recursive: true, force: true });
  }
  console.log(summary.join('\n'));
});

describe.each(selected)('%s against Keras', (name) => {
  let meta: FixtureMeta;
  let model: tf.LayersModel;
  let input: tf.Tensor4D;
  let expected: Float32Array;

  beforeAll(() => {
    const folder = path.join(fixtureDir, name);
    meta = JSON.parse(fs.readFileSync(path.join(folder, 'meta.json'), 'utf8')) as FixtureMeta;
    const spec = getBackbone(name);
    const symbolic = tf.input({ shape: [INPUT_SIZE, INPUT_SIZE, 3] });
    model = tf.model({ inputs: symbolic, outputs: spec.build(symbolic).features });
    const raw = tf.tensor4d(readFloat32(path.join(folder, 'inputs.bin')), meta.input_shape as [number, number, number, number]);
    input = preprocess(raw, spec.preprocessing);
    raw.dispose();
    expected = readFloat32(path.join(folder, 'outputs.bin'));
  });

  afterAll(() => {
    model?.dispose();
    input?.dispose();
  });

  it('has the Keras parameter count', () => {
    expect(model.countParams()).toBe(meta.params);
  });

  it('has the Keras layer names', () => {
    // Keras's first layer is its InputLayer, whose name differs from ours.
    const ours = model.layers.filter((l) => l.getClassName() !== 'InputLayer').map((l) => l.name);
    expect([...ours].sort()).toEqual(meta.layer_names.slice(1).sort());
  });

  it('has the Keras output shape', () => {
    expect(model.outputs[0]?.shape.slice(1)).toEqual(meta.output_shape.slice(1));
  });

  it.each(layouts(name))('reproduces outputs from the %s', async (label, file) => {
    const weightsFile = path.join(fixtureDir, name, file);
    const start = Date.now();
    const report = await loadKerasWeightsFile(model, weightsFile, { requireAll: true });
    expect(report.unused, `unused weights in ${label}`).toEqual([]);
    expect(report.assigned).toHaveLength(meta.weights.length);

    const output = model.predict(input) as tf.Tensor;
    const actual = output.dataSync() as Float32Array;
    output.dispose();
    expect(actual.length).toBe(expected.length);
    const difference = maxAbsDifference(actual, expected);
    summary.push(
      `${name} ${label}: max |ours - Keras| ${difference.toExponential(2)} (max |y| ${meta.output_max_abs.toFixed(2)}), ` +
        `${((Date.now() - start) / 1000).toFixed(1)} s`,
    );
    expect(difference).toBeLessThanOrEqual(TOLERANCE);
  });
});
