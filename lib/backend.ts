/**
 * TensorFlow.js backend selection.
 *
 * Order: @tensorflow/tfjs-node-gpu when installed and it finds a GPU, then
 * @tensorflow/tfjs-node (TensorFlow's C library on the CPU), then the wasm
 * backend, then the pure-JavaScript CPU backend. The choice is logged once.
 */
import * as tf from '@tensorflow/tfjs';
import * as path from 'node:path';

import { log } from './util/log';

export type BackendPreference = 'auto' | 'node-gpu' | 'node' | 'wasm' | 'cpu';

export interface BackendInfo {
  /** tfjs backend name: tensorflow, wasm or cpu. */
  name: string;
  /** npm package that provides it. */
  packageName: string;
  gpu: boolean;
  /**
   * Whether the backend has the gradients that fine-tuning a convolutional
   * backbone needs. The wasm backend lacks several (depthwise convolution
   * backprop among them), so it is limited to inference and training the head
   * on a frozen backbone.
   */
  supportsFineTuning: boolean;
}

/**
 * Head-only training throughput relative to tfjs-node, measured with
 * `node scripts/bench-backends.js 5` (MobileNet v1 0.25 at 96x96, batch 32) on
 * a 2-core AMD EPYC on 2026-12-05: tfjs-node 260, wasm 216 and pure
 * JavaScript 13.2 images/s.
 */
const SLOWDOWN_VS_NODE: Record<string, string> = {
  wasm: 'about 1.2x',
  cpu: 'about 20x',
};

let active: BackendInfo | undefined;

function tryRequire(name: string): boolean {
  try {
    require(name);
    return true;
  } catch (error) {
    log.debug(`backend: ${name} not usable: ${(error as Error).message.split('\n')[0]}`);
    return false;
  }
}

function nodeBackendUsesGpu(): boolean {
  const backend = tf.backend() as unknown as { isUsingGpuDevice?: boolean };
  return backend.isUsingGpuDevice === true;
}

async function useNodeGpu(): Promise<BackendInfo | undefined> {
  if (!tryRequire('@tensorflow/tfjs-node-gpu')) {
    return undefined;
  }
  await tf.setBackend('tensorflow');
  await tf.ready();
  if (!nodeBackendUsesGpu()) {
    log.debug('backend: @tensorflow/tfjs-node-gpu loaded but found no GPU device.');
    return { name: 'tensorflow', packageName: '@tensorflow/tfjs-node-gpu', gpu: false, supportsFineTuning: true };
  }
  return { name: 'tensorflow', packageName: '@tensorflow/tfjs-node-gpu', gpu: true, supportsFineTuning: true };
}

async function useNode(): Promise<BackendInfo | undefined> {
  if (!tryRequire('@tensorflow/tfjs-node')) {
    return undefined;
  }
  await tf.setBackend('tensorflow');
  await tf.ready();
  return { name: 'tensorflow', packageName: '@tensorflow/tfjs-node', gpu: false, supportsFineTuning: true };
}

async function useWasm(): Promise<BackendInfo | undefined> {
  try {
    const wasm = require('@tensorflow/tfjs-backend-wasm') as typeof import('@tensorflow/tfjs-backend-wasm');
    const distDir = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm'));
    wasm.setWasmPaths(distDir + path.sep);
    const threads = Math.max(1, Math.min(8, require('node:os').availableParallelism?.() ?? 1));
    wasm.setThreadsCount(threads);
    if (!(await tf.setBackend('wasm'))) {
      return undefined;
    }
    await tf.ready();
    return { name: 'wasm', packageName: '@tensorflow/tfjs-backend-wasm', gpu: false, supportsFineTuning: false };
  } catch (error) {
    log.debug(`backend: wasm not usable: ${(error as Error).message.split('\n')[0]}`);
    return undefined;
  }
}

async function useCpu(): Promise<BackendInfo> {
  await tf.setBackend('cpu');
  await tf.ready();
  return { name: 'cpu', packageName: '@tensorflow/tfjs (pure JavaScript)', gpu: false, supportsFineTuning: true };
}

function describe(info: BackendInfo): string {
  const device = info.gpu ? 'GPU' : 'CPU';
  let line = `backend: ${info.name} (${info.packageName}, ${device})`;
  const slowdown = SLOWDOWN_VS_NODE[info.name];
  if (slowdown !== undefined) {
    const limitation = info.supportsFineTuning ? '' : ', and it cannot fine-tune backbones';
    line += `; head-only training is ${slowdown} slower than with @tensorflow/tfjs-node${limitation}. Run "npm run setup" to build it.`;
  }
  return line;
}

/**
 * Selects and initialises a backend once per process and logs the choice in
 * one line. The preference comes from the argument, then FER_BACKEND, then
 * 'auto'. A named backend that cannot load is an error, not a silent fallback.
 */
export async function initBackend(preference?: BackendPreference): Promise<BackendInfo> {
  if (active !== undefined) {
    return active;
  }
  // TensorFlow's C++ start-up messages (CPU feature notes) would interleave with progress output.
  process.env.TF_CPP_MIN_LOG_LEVEL ??= '2';
  const wanted = preference ?? (process.env.FER_BACKEND as BackendPreference | undefined) ?? 'auto';
  const valid: BackendPreference[] = ['auto', 'node-gpu', 'node', 'wasm', 'cpu'];
  if (!valid.includes(wanted)) {
    throw new Error(`Invalid backend "${wanted}": expected one of ${valid.join(', ')}.`);
  }

  let info: BackendInfo | undefined;
  if (wanted === 'auto') {
    const gpu = await useNodeGpu();
    info = gpu?.gpu === true ? gpu : (gpu ?? (await useNode()) ?? (await useWasm()) ?? (await useCpu()));
  } else if (wanted === 'node-gpu') {
    info = await useNodeGpu();
  } else if (wanted === 'node') {
    info = await useNode();
  } else if (wanted === 'wasm') {
    info = await useWasm();
  } else {
    info = await useCpu();
  }
  if (info === undefined) {
    throw new Error(
      `Backend "${wanted}" could not be loaded. Run "npm run setup" to install @tensorflow/tfjs-node, ` +
        `or choose another with --backend / FER_BACKEND (auto, node-gpu, node, wasm, cpu).`,
    );
  }
  active = info;
  if (info.name === 'tensorflow') {
    log.info(describe(info));
  } else {
    log.warn(describe(info));
  }
  return info;
}

/** The backend chosen by initBackend, or undefined before it ran. */
export function activeBackend(): BackendInfo | undefined {
  return active;
}
