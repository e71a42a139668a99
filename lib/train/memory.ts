/**
 * Memory estimate for a training run, checked before the first batch.
 *
 * A configuration that cannot fit (ConvNeXtBase at 224 px with a large batch
 * on a small machine, say) must be rejected before training starts, not fail in
 * the middle of an epoch. The estimate adds, for the costlier of the two phases:
 *
 * - weights: every parameter, 4 bytes;
 * - optimizer: Adam's two moments plus one gradient per trainable parameter;
 * - activations: while fine-tuning, the gradient tape keeps every layer's
 *   output of the batch for the backward pass, and the kernels inside a layer
 *   keep about as much again (ACTIVATION_FACTOR). With a frozen backbone
 *   (phase 1) only the largest layer outputs are alive at once;
 * - the decoded images held in memory, and a fixed allowance for Node.js and
 *   TensorFlow themselves.
 *
 * It is an estimate. For the main job (MobileNet-0.25 at 96 px, batch 64, top 8
 * blocks fine-tuned) it gives 1.72 GiB against a measured peak RSS of 1.48 GiB.
 * Its purpose is to catch configurations that are off by several times, not to
 * predict the peak to the megabyte.
 */
import * as tf from '@tensorflow/tfjs';
import * as fs from 'node:fs';
import * as os from 'node:os';

import type { BackendInfo } from '../backend';

/** Tensors the kernels of a layer keep for the backward pass, relative to the layer's output. */
export const ACTIVATION_FACTOR = 2;
/** Node.js, the TensorFlow runtime and the process's fixed buffers. */
export const BASE_PROCESS_BYTES = 512 * 1024 ** 2;
/** The wasm backend addresses at most 4 GiB (32-bit memory). */
const WASM_LIMIT_BYTES = 4 * 1024 ** 3;

export interface PhaseMemory {
  phase: 1 | 2;
  trainableParams: number;
  weightBytes: number;
  optimizerBytes: number;
  activationBytes: number;
  /** Everything above plus the decoded images and the fixed process allowance. */
  totalBytes: number;
}

export interface MemoryLimit {
  bytes: number;
  /** Origin of the limit, for the log and the error message. */
  source: string;
}

/** Elements of one sample's output of a layer (summed over its outputs). */
function outputElements(layer: tf.layers.Layer): number {
  const shapes = (Array.isArray(layer.outputShape[0]) ? layer.outputShape : [layer.outputShape]) as Array<Array<number | null>>;
  let total = 0;
  for (const shape of shapes) {
    total += shape.slice(1).reduce<number>((n, d) => n * (d ?? 1), 1);
  }
  return total;
}

/**
 * Estimates a phase's peak memory for a batch.
 *
 * @param model the whole FER model (backbone and head)
 * @param trainableParams parameters that train in this phase
 * @param frozenBackbone true when no backbone layer trains (phase 1), so no backbone activation is kept
 * @param headLayers names of the head's layers (their outputs are kept in both phases)
 * @param imageBytes decoded images held in memory by the run
 */
export function estimatePhaseMemory(
  model: tf.LayersModel,
  phase: 1 | 2,
  batchSize: number,
  trainableParams: number,
  frozenBackbone: boolean,
  headLayers: ReadonlySet<string>,
  imageBytes: number,
): PhaseMemory {
  const weightBytes = model.countParams() * 4;
  const optimizerBytes = trainableParams * 4 * 3;
  let keptElements = 0;
  let largest = 0;
  for (const layer of model.layers) {
    const elements = outputElements(layer);
    largest = Math.max(largest, elements);
    if (!frozenBackbone || headLayers.has(layer.name)) {
      keptElements += elements;
    }
  }
  // A frozen backbone runs outside the tape: at most a layer's input and output, and a kernel's scratch, are alive.
  const perSample = frozenBackbone ? keptElements * ACTIVATION_FACTOR + largest * 3 : keptElements * ACTIVATION_FACTOR;
  const activationBytes = perSample * batchSize * 4;
  return {
    phase,
    trainableParams,
    weightBytes,
    optimizerBytes,
    activationBytes,
    totalBytes: weightBytes + optimizerBytes + activationBytes + imageBytes + BASE_PROCESS_BYTES,
  };
}

/**
 * Parses a size such as 512M, 8G or 1500000000 (bytes).
 *
 * @throws Error naming the value when it is not a positive size
 */
export function parseByteSize(value: string, name: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$/i.exec(value);
  if (match === null || Number(match[1]) <= 0) {
    throw new Error(`Invalid ${name} "${value}": expected a positive size such as 800M, 8G or a number of bytes.`);
  }
  const unit = (match[2] ?? '').toLowerCase();
  const scale = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[unit] ?? 1;
  return Math.round(Number(match[1]) * scale);
}

/** MemAvailable from /proc/meminfo (Linux), else the free memory Node.js reports. */
function availableHostBytes(): { bytes: number; source: string } {
  try {
    const line = /^MemAvailable:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
    if (line !== null) {
      return { bytes: Number(line[1]) * 1024, source: 'available host memory (/proc/meminfo)' };
    }
  } catch {
    // Not Linux: fall through.
  }
  return { bytes: os.freemem(), source: 'free host memory' };
}

/** Reads the cgroup (container) memory limit, when one is set. */
function cgroupLimitBytes(): number | undefined {
  for (const file of ['/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes']) {
    try {
      const text = fs.readFileSync(file, 'utf8').trim();
      const bytes = Number(text);
      if (Number.isFinite(bytes) && bytes > 0 && bytes < 2 ** 60) {
        return bytes;
      }
    } catch {
      // No such controller.
    }
  }
  return undefined;
}

/**
 * Returns the memory a run may use on this backend: FER_MEMORY_LIMIT when set, else
 * the host's available memory plus this process's resident memory (capped
 * by a cgroup limit, and by 4 GiB on wasm). Undefined on a GPU, whose memory
 * tfjs does not report before allocating.
 */
export function memoryLimit(backend: Pick<BackendInfo, 'name' | 'gpu'>): MemoryLimit | undefined {
  const override = process.env.FER_MEMORY_LIMIT;
  if (override !== undefined && override !== '') {
    return { bytes: parseByteSize(override, 'FER_MEMORY_LIMIT'), source: 'FER_MEMORY_LIMIT' };
  }
  if (backend.gpu) {
    return undefined;
  }
  const host = availableHostBytes();
  // The estimate includes the memory this process already uses (images, weights), so count it as usable.
  let limit = { bytes: host.bytes + process.memoryUsage().rss, source: host.source };
  const cgroup = cgroupLimitBytes();
  if (cgroup !== undefined && cgroup < limit.bytes) {
    limit = { bytes: cgroup, source: 'the cgroup memory limit' };
  }
  if (backend.name === 'wasm' && WASM_LIMIT_BYTES < limit.bytes) {
    limit = { bytes: WASM_LIMIT_BYTES, source: 'the wasm backend (4 GiB address space)' };
  }
  return limit;
}

export function formatBytes(bytes: number): string {
  return bytes >= 1024 ** 3 ? `${(bytes / 1024 ** 3).toFixed(2)} GiB` : `${(bytes / 1024 ** 2).toFixed(0)} MiB`;
}

/** Formats one log line with a phase's estimate and the limit. */
export function describeEstimate(estimate: PhaseMemory, limit: MemoryLimit | undefined): string {
  const rest = estimate.totalBytes - estimate.weightBytes - estimate.optimizerBytes - estimate.activationBytes;
  const parts =
    `weights ${formatBytes(estimate.weightBytes)}, optimizer ${formatBytes(estimate.optimizerBytes)}, ` +
    `activations ${formatBytes(estimate.activationBytes)}, decoded images and runtime ${formatBytes(rest)}`;
  const against = limit === undefined ? 'not checked on a GPU' : `limit ${formatBytes(limit.bytes)} from ${limit.source}`;
  return `memory: phase ${estimate.phase} needs about ${formatBytes(estimate.totalBytes)} (${parts}); ${against}.`;
}

/**
 * Throws when the estimate exceeds the limit, with what to change.
 *
 * @throws Error naming the configuration, the estimate, the limit and the options that lower it
 */
export function checkMemory(configuration: string, inputSize: number, batchSize: number, estimate: PhaseMemory, limit: MemoryLimit | undefined): void {
  if (limit === undefined || estimate.totalBytes <= limit.bytes) {
    return;
  }
  throw new Error(
    `${configuration} at input ${inputSize}x${inputSize} and batch ${batchSize} needs about ${formatBytes(estimate.totalBytes)} ` +
      `in phase ${estimate.phase} (activations ${formatBytes(estimate.activationBytes)}), more than the ${formatBytes(limit.bytes)} ` +
      `of ${limit.source}. Lower --batch-size, --input-size or --unfreeze, or set FER_MEMORY_LIMIT (for example 16G) if this machine has more to give.`,
  );
}
