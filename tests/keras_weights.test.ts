/**
 * Download, checksum and cache of Keras weight files, and createModel's use
 * of them. All traffic goes to an HTTP server on 127.0.0.1 that the test
 * starts, or to the closed port 127.0.0.1:9 for the offline case.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import { batchNorm, conv2d } from '../lib/models/backbones/common';
import { registerBuiltins } from '../lib/models/catalog';
import { createModel } from '../lib/models/factory';
import { fetchImagenetWeights, fetchKerasWeightFile, resolveKerasCacheDir } from '../lib/models/keras_weights';
import { registerBackbone } from '../lib/models/registry';
import type { BackboneSpec, ModelConfiguration } from '../lib/models/types';

const REPO_ROOT = path.resolve(__dirname, '..');

/** Bytes served as a weight file: large enough to arrive in several chunks. */
const PAYLOAD = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7919) % 251));
const PAYLOAD_SHA256 = createHash('sha256').update(PAYLOAD).digest('hex');
const PAYLOAD_MD5 = createHash('md5').update(PAYLOAD).digest('hex');

let server: http.Server;
let baseUrl = '';
let requests: string[] = [];
let tmp = '';
let cacheDir = '';
let tinyWeights: Buffer;

function handle(request: http.IncomingMessage, response: http.ServerResponse): void {
  const url = request.url ?? '';
  requests.push(url);
  if (url === '/files/moved.h5') {
    response.writeHead(302, { location: '/files/target.h5' });
    response.end();
    return;
  }
  const body = url.startsWith('/tiny/') ? tinyWeights : url.startsWith('/files/') && !url.includes('missing') ? PAYLOAD : undefined;
  if (body === undefined) {
    response.writeHead(404);
    response.end();
    return;
  }
  response.writeHead(200, { 'content-length': body.length, 'content-type': 'application/octet-stream' });
  response.end(body);
}

/** Writes the h5py test files and returns keras2.h5, which contains the weights of the TinyNet backbone below. */
function writeTinyWeights(out: string): Buffer {
  const configured = process.env.FER_PYTHON ?? '.venv/bin/python';
  const python = configured.includes('/') ? path.resolve(REPO_ROOT, configured) : configured;
  const result = spawnSync(python, [path.join(REPO_ROOT, 'tests', 'oracle', 'h5_layouts.py'), out], { cwd: REPO_ROOT, encoding: 'utf8' });
  if (result.error || result.status !== 0) {
    throw new Error(
      `Python for the HDF5 test files failed (${python}: ${result.error?.message ?? result.stderr}). ` +
        'Run `npm run setup` to create .venv with h5py, or set FER_PYTHON to a Python that has it.',
    );
  }
  return fs.readFileSync(path.join(out, 'keras2.h5'));
}

/** Backbone whose layers match keras2.h5 from tests/oracle/h5_layouts.py. */
function tinySpec(url: string, sha256: string): BackboneSpec {
  return {
    name: 'TinyNet',
    description: 'two convolutions with batch norm, for weight-loading tests',
    defaultInputSize: 8,
    minInputSize: 8,
    preprocessing: 'tf',
    lastConvLayer: 'old_bn',
    blocks: ['stem'],
    blockOf: () => 'stem',
    weights: { kerasNoTop: { url, sha256 } },
    build: (input) => {
      let x = conv2d(input, { name: 'conv', filters: 4, kernelSize: 3, padding: 'same' });
      x = batchNorm(x, 'bn');
      x = conv2d(x, { name: 'block1_conv1', filters: 2, kernelSize: 3, padding: 'same' });
      return { features: batchNorm(x, 'old_bn') };
    },
  };
}

const TINY_CONFIG: ModelConfiguration = {
  name: 'TinyNet test',
  description: 'TinyNet with a small head',
  backbone: 'TinyNet',
  dense: [4],
  dropout: 0,
  inputSize: 8,
  batchSize: 2,
  phase1: { learningRate: 1e-3, epochs: 1 },
  phase2: { learningRate: 1e-4, epochs: 1, unfreezeBlocks: 'all' },
};

beforeAll(async () => {
  await initBackend('node');
  tmp = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'fer-keras-weights-'));
  tinyWeights = writeTinyWeights(path.join(tmp, 'h5'));
  server = http.createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  registerBuiltins();
  registerBackbone(tinySpec(`${baseUrl}/tiny/tiny_notop.h5`, createHash('sha256').update(tinyWeights).digest('hex')));
});

afterAll(async () => {
  await new Promise((resolve) => server?.close(resolve));
  if (tmp !== '') {
    await fs.promises.rm(tmp, { recursive: true, force: true });
  }
});

beforeEach(async () => {
  requests = [];
  cacheDir = await fs.promises.mkdtemp(path.join(tmp, 'cache-'));
});

describe('fetchKerasWeightFile', () => {
  it('fails at once when offline', async () => {
    const url = 'http://127.0.0.1:9/keras-applications/vgg16_notop.h5';
    const start = Date.now();
    const error = await fetchKerasWeightFile({ url }, { cacheDir }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(Date.now() - start).toBeLessThan(3_000);
    expect(error?.message).toContain('vgg16_notop.h5');
    expect(error?.message).toContain(url);
    expect(error?.message).toContain(path.join(cacheDir, 'vgg16_notop.h5'));
    expect(error?.message).toContain('ECONNREFUSED');
    expect(fs.readdirSync(cacheDir)).toEqual([]);
  });

  it('downloads, verifies and caches a file', async () => {
    const progress: Array<[number, number | undefined]> = [];
    const file = { url: `${baseUrl}/files/good.h5`, sha256: PAYLOAD_SHA256 };
    const first = await fetchKerasWeightFile(file, { cacheDir, onProgress: (received, total) => progress.push([received, total]) });
    expect(first).toBe(path.join(cacheDir, 'good.h5'));
    expect(fs.readFileSync(first).equals(PAYLOAD)).toBe(true);
    expect(progress.at(-1)).toEqual([PAYLOAD.length, PAYLOAD.length]);

    const second = await fetchKerasWeightFile(file, { cacheDir });
    expect(second).toBe(first);
    expect(requests).toEqual(['/files/good.h5']);
  });

  it('verifies an MD5 checksum', async () => {
    const target = await fetchKerasWeightFile({ url: `${baseUrl}/files/md5.h5`, md5: PAYLOAD_MD5.toUpperCase() }, { cacheDir });
    expect(fs.readFileSync(target).equals(PAYLOAD)).toBe(true);
  });

  it('deletes a download with the wrong checksum', async () => {
    const wrong = '0'.repeat(64);
    await expect(fetchKerasWeightFile({ url: `${baseUrl}/files/bad.h5`, sha256: wrong }, { cacheDir })).rejects.toThrow(
      `Downloaded bad.h5 from ${baseUrl}/files/bad.h5 has sha256 ${PAYLOAD_SHA256}, but Keras publishes ${wrong}`,
    );
    expect(fs.readdirSync(cacheDir)).toEqual([]);
  });

  it('downloads a corrupted cached file again', async () => {
    fs.writeFileSync(path.join(cacheDir, 'good.h5'), 'truncated');
    const target = await fetchKerasWeightFile({ url: `${baseUrl}/files/good.h5`, sha256: PAYLOAD_SHA256 }, { cacheDir });
    expect(fs.readFileSync(target).equals(PAYLOAD)).toBe(true);
    expect(requests).toEqual(['/files/good.h5']);
  });

  it('uses a cached file without a published checksum', async () => {
    fs.writeFileSync(path.join(cacheDir, 'unchecked.h5'), 'local copy');
    const target = await fetchKerasWeightFile({ url: `${baseUrl}/files/unchecked.h5` }, { cacheDir });
    expect(fs.readFileSync(target, 'utf8')).toBe('local copy');
    expect(requests).toEqual([]);
  });

  it('follows a redirect', async () => {
    const target = await fetchKerasWeightFile({ url: `${baseUrl}/files/moved.h5`, sha256: PAYLOAD_SHA256 }, { cacheDir });
    expect(target).toBe(path.join(cacheDir, 'moved.h5'));
    expect(requests).toEqual(['/files/moved.h5', '/files/target.h5']);
  });

  it('reports an HTTP error status', async () => {
    await expect(fetchKerasWeightFile({ url: `${baseUrl}/files/missing.h5` }, { cacheDir })).rejects.toThrow(/missing\.h5 .* failed with HTTP 404/);
    expect(fs.readdirSync(cacheDir)).toEqual([]);
  });
});

describe('cache folder', () => {
  it('defaults to FER_WEIGHTS_CACHE, then the home cache', () => {
    const saved = process.env.FER_WEIGHTS_CACHE;
    try {
      process.env.FER_WEIGHTS_CACHE = '/tmp/fer-cache-test';
      expect(resolveKerasCacheDir()).toBe('/tmp/fer-cache-test');
      delete process.env.FER_WEIGHTS_CACHE;
      expect(resolveKerasCacheDir()).toBe(path.join(os.homedir(), '.cache', 'fer-toolkit', 'keras'));
      expect(resolveKerasCacheDir('relative')).toBe(path.resolve('relative'));
    } finally {
      if (saved === undefined) {
        delete process.env.FER_WEIGHTS_CACHE;
      } else {
        process.env.FER_WEIGHTS_CACHE = saved;
      }
    }
  });
});

describe('createModel with Keras weights', () => {
  function kernel(model: tf.LayersModel, layer: string): number[] {
    return Array.from(model.getLayer(layer).getWeights()[0]?.dataSync() ?? []);
  }

  it('downloads ImageNet weights once and loads them', async () => {
    const first = await createModel(TINY_CONFIG, { weights: 'imagenet', kerasCacheDir: cacheDir });
    expect(first.weightsReport?.missing).toEqual([]);
    expect(first.weightsReport?.assigned).toHaveLength(12);
    const fromFile = await createModel(TINY_CONFIG, { weights: { file: path.join(cacheDir, 'tiny_notop.h5') } });
    expect(kernel(first.model, 'conv')).toEqual(kernel(fromFile.model, 'conv'));
    expect(kernel(first.model, 'old_bn')).toEqual(kernel(fromFile.model, 'old_bn'));

    await createModel(TINY_CONFIG, { weights: 'imagenet', kerasCacheDir: cacheDir });
    expect(requests).toEqual(['/tiny/tiny_notop.h5']);
    for (const fer of [first, fromFile]) {
      fer.model.dispose();
    }
  });

  it('differs from random weights', async () => {
    const loaded = await createModel(TINY_CONFIG, { weights: { file: path.join(tmp, 'h5', 'keras2.h5') } });
    const random = await createModel(TINY_CONFIG, { weights: 'random' });
    expect(kernel(loaded.model, 'conv')).not.toEqual(kernel(random.model, 'conv'));
    loaded.model.dispose();
    random.model.dispose();
  });

  it('names the file and cache when offline', async () => {
    registerBackbone({ ...tinySpec('http://127.0.0.1:9/tiny/offline_notop.h5', '0'.repeat(64)), name: 'OfflineNet' });
    await expect(createModel({ ...TINY_CONFIG, backbone: 'OfflineNet' }, { weights: 'imagenet', kerasCacheDir: cacheDir })).rejects.toThrow(
      `Cannot download offline_notop.h5 from http://127.0.0.1:9/tiny/offline_notop.h5`,
    );
  });

  it('asks for weights a backbone lacks', async () => {
    await expect(fetchImagenetWeights({ ...tinySpec('', ''), weights: {} }, { includeTop: true })).rejects.toThrow(
      /Keras publishes no ImageNet weights with the top for TinyNet/,
    );
  });
});
