/**
 * Keras weight files for backbones: the download and cache of the ImageNet
 * files that Keras Applications publishes, checked against Keras's published
 * checksums, and their import into models by layer and weight name.
 */
import { createHash, type Hash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';

import type * as tf from '@tensorflow/tfjs';

import { log } from '../util/log';
import { readKerasWeights } from './h5';
import type { BackboneSpec, KerasWeightFile } from './types';
import { assignWeights, disposeWeights, type AssignOptions, type AssignReport, type WeightMap } from './weights';

/** Connection timeout of a download, short so that an offline machine fails at once. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
/** A download that receives no data for this long is aborted. */
const IDLE_TIMEOUT_MS = 60_000;
const MAX_REDIRECTS = 5;

/** Network error codes that mean "offline or unreachable", as opposed to an HTTP error status. */
const UNREACHABLE_CODES = new Set([
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNREFUSED',
  'ECONNRESET',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'ENETDOWN',
  'ETIMEDOUT',
  'ECONNABORTED',
]);

/** Cache folder of Keras weight files: the option, then FER_WEIGHTS_CACHE, then ~/.cache/fer-toolkit/keras. */
export function resolveKerasCacheDir(option?: string): string {
  return path.resolve(option ?? process.env.FER_WEIGHTS_CACHE ?? path.join(os.homedir(), '.cache', 'fer-toolkit', 'keras'));
}

export interface FetchOptions {
  /** Cache folder (see resolveKerasCacheDir). */
  cacheDir?: string;
  connectTimeoutMs?: number;
  /** Called as data arrives; `total` is undefined when the server sends no length. */
  onProgress?: (received: number, total: number | undefined) => void;
}

/** File name of a weight URL, which is also its name in the cache folder. */
export function kerasFileName(url: string): string {
  const name = path.posix.basename(new URL(url).pathname);
  if (name === '' || name === '.' || name === '..') {
    throw new Error(`Invalid weight URL ${url}: it does not end in a file name.`);
  }
  return name;
}

function checksumOf(file: KerasWeightFile): { algorithm: 'sha256' | 'md5'; expected: string } | undefined {
  if (file.sha256 !== undefined) {
    return { algorithm: 'sha256', expected: file.sha256.toLowerCase() };
  }
  if (file.md5 !== undefined) {
    return { algorithm: 'md5', expected: file.md5.toLowerCase() };
  }
  return undefined;
}

async function hashFile(file: string, algorithm: 'sha256' | 'md5'): Promise<string> {
  const hash = createHash(algorithm);
  for await (const chunk of fs.createReadStream(file)) {
    hash.update(chunk as Buffer);
  }
  return hash.digest('hex');
}

function offlineMessage(name: string, url: string, target: string, reason: string): string {
  return (
    `Cannot download ${name} from ${url}: ${reason}. ` +
    `Without network access, download that URL on another machine and place the file at ${target} ` +
    `(set the cache folder with FER_WEIGHTS_CACHE).`
  );
}

interface DownloadState {
  name: string;
  target: string;
  options: FetchOptions;
}

function httpClient(url: URL): typeof http | typeof https {
  if (url.protocol === 'https:') {
    return https;
  }
  if (url.protocol === 'http:') {
    return http;
  }
  throw new Error(`Unsupported protocol in weight URL ${url.toString()}; expected https: or http:.`);
}

/** Writes a 200 response body to `partPath`, feeding it to `hash`; rejects on a short or failed transfer. */
function receiveBody(response: http.IncomingMessage, url: string, partPath: string, hash: Hash | undefined, state: DownloadState): Promise<void> {
  return new Promise((resolve, reject) => {
    const lengthHeader = response.headers['content-length'];
    const total = lengthHeader !== undefined ? Number(lengthHeader) : undefined;
    let received = 0;
    const out = fs.createWriteStream(partPath);

    response.setTimeout(IDLE_TIMEOUT_MS, () => response.destroy(new Error(`no data for ${IDLE_TIMEOUT_MS / 1000} s`)));
    response.on('data', (chunk: Buffer) => {
      received += chunk.length;
      hash?.update(chunk);
      state.options.onProgress?.(received, total);
    });
    response.on('error', (error) => {
      out.destroy();
      reject(new Error(`Download of ${state.name} from ${url} failed after ${received} bytes: ${error.message}.`));
    });

    out.on('error', (error) => reject(new Error(`Cannot write ${partPath}: ${error.message}.`)));
    out.on('finish', () => {
      if (total !== undefined && received !== total) {
        reject(new Error(`Download of ${state.name} from ${url} ended after ${received} of ${total} bytes.`));
        return;
      }
      resolve();
    });
    response.pipe(out);
  });
}

/** Streams `url` into `partPath`, following redirects, and feeds the received bytes to `hash`. */
function download(url: string, partPath: string, hash: Hash | undefined, state: DownloadState, redirects = 0): Promise<void> {
  return new Promise((resolve, reject) => {
    const client = httpClient(new URL(url));
    const connectTimeout = state.options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;

    // A fresh agent, so that the socket always connects and the connect timer below always ends.
    const request = client.get(url, { agent: false, headers: { 'user-agent': 'fer-toolkit' } }, (response) => {
      const status = response.statusCode ?? 0;
      const location = response.headers.location;
      if (status >= 300 && status < 400 && location !== undefined) {
        response.resume();
        if (redirects >= MAX_REDIRECTS) {
          reject(new Error(`Download of ${state.name} from ${url} was redirected more than ${MAX_REDIRECTS} times.`));
          return;
        }
        download(new URL(location, url).toString(), partPath, hash, state, redirects + 1).then(resolve, reject);
        return;
      }
      if (status !== 200) {
        response.resume();
        reject(new Error(`Download of ${state.name} from ${url} failed with HTTP ${status}. Place the file at ${state.target} by hand if it is available elsewhere.`));
        return;
      }
      receiveBody(response, url, partPath, hash, state).then(resolve, reject);
    });

    request.on('socket', (socket) => {
      if (!socket.connecting) {
        return;
      }
      const timeoutError = Object.assign(new Error('connect timed out'), { code: 'ETIMEDOUT' });
      const timer = setTimeout(() => request.destroy(timeoutError), connectTimeout);
      socket.once('connect', () => clearTimeout(timer));
      socket.once('close', () => clearTimeout(timer));
    });
    request.on('error', (error: NodeJS.ErrnoException) => {
      let reason = error.message;
      if (error.code === 'ETIMEDOUT') {
        reason = `no connection within ${connectTimeout / 1000} s (offline or unreachable)`;
      } else if (error.code !== undefined && UNREACHABLE_CODES.has(error.code)) {
        reason = `${error.code} (offline or unreachable)`;
      }
      reject(new Error(offlineMessage(state.name, url, state.target, reason)));
    });
  });
}

function progressLogger(name: string): (received: number, total: number | undefined) => void {
  let nextPercent = 10;
  let lastLog = Date.now();
  return (received, total) => {
    const mb = (received / 2 ** 20).toFixed(1);
    if (total !== undefined && total > 0) {
      const percent = Math.floor((100 * received) / total);
      if (percent >= nextPercent) {
        log.info(`weights: ${name} ${percent}% (${mb} of ${(total / 2 ** 20).toFixed(1)} MiB)`);
        nextPercent = Math.floor(percent / 10) * 10 + 10;
      }
    } else if (Date.now() - lastLog > 5_000) {
      log.info(`weights: ${name} ${mb} MiB`);
      lastLog = Date.now();
    }
  };
}

/**
 * Returns the path of a Keras weight file in the cache, downloading it first
 * when missing. A cached or downloaded file must match the checksum Keras
 * publishes (SHA-256 or MD5): a cached mismatch is downloaded again, a
 * downloaded mismatch is deleted and raised. Files without a published
 * checksum are used unchecked, as Keras does.
 */
export async function fetchKerasWeightFile(file: KerasWeightFile, options: FetchOptions = {}): Promise<string> {
  const name = kerasFileName(file.url);
  const cacheDir = resolveKerasCacheDir(options.cacheDir);
  const target = path.join(cacheDir, name);
  const checksum = checksumOf(file);

  if (fs.existsSync(target)) {
    if (checksum === undefined) {
      return target;
    }
    const actual = await hashFile(target, checksum.algorithm);
    if (actual === checksum.expected) {
      return target;
    }
    log.warn(`weights: cached ${target} has ${checksum.algorithm} ${actual}, expected ${checksum.expected}; downloading it again.`);
    await fs.promises.rm(target, { force: true });
  }

  await fs.promises.mkdir(cacheDir, { recursive: true });
  const partPath = `${target}.${process.pid}.part`;
  const hash = checksum !== undefined ? createHash(checksum.algorithm) : undefined;
  log.info(`weights: downloading ${name} from ${file.url} to ${cacheDir}`);
  try {
    await download(file.url, partPath, hash, { name, target, options: { ...options, onProgress: options.onProgress ?? progressLogger(name) } });
  } catch (error) {
    await fs.promises.rm(partPath, { force: true });
    throw error;
  }
  if (hash !== undefined && checksum !== undefined) {
    const actual = hash.digest('hex');
    if (actual !== checksum.expected) {
      await fs.promises.rm(partPath, { force: true });
      throw new Error(
        `Downloaded ${name} from ${file.url} has ${checksum.algorithm} ${actual}, but Keras publishes ${checksum.expected}. ` +
          `The file was deleted; try again, or place a verified copy at ${target}.`,
      );
    }
  } else {
    log.warn(`weights: Keras publishes no checksum for ${name}; it is used unverified.`);
  }
  await fs.promises.rename(partPath, target);
  return target;
}

export interface ImagenetFileOptions extends FetchOptions {
  /** The file with Keras's ImageNet classification top instead of the one without. */
  includeTop?: boolean;
}

/** Resolves a backbone's ImageNet weight file from Keras (cache first, then download). */
export async function fetchImagenetWeights(backbone: BackboneSpec, options: ImagenetFileOptions = {}): Promise<string> {
  const source = options.includeTop ? backbone.weights.kerasWithTop : backbone.weights.kerasNoTop;
  if (source === undefined) {
    throw new Error(
      `Keras publishes no ImageNet weights ${options.includeTop ? 'with' : 'without'} the top for ${backbone.name}. ` +
        `Use --weights random to train from scratch, or pass a weight file or folder.`,
    );
  }
  return fetchKerasWeightFile(source, options);
}

/**
 * Weight names that differ between Keras versions and TensorFlow.js, by
 * TensorFlow.js layer class: the TensorFlow.js name and the stored names it
 * accepts. Keras 3 calls a DepthwiseConv2D kernel "kernel".
 */
const WEIGHT_ALIASES: Record<string, Record<string, readonly string[]>> = {
  DepthwiseConv2D: { depthwise_kernel: ['kernel'] },
  // Keras 3.15's ConvNeXt LayerScale creates its one variable without a name
  // ("variable"), and TF-Keras named such a tf.Variable "Variable".
  LayerScale: { gamma: ['variable', 'Variable'] },
};

/** Renames map entries to the model's weight names where only an alias is present (see WEIGHT_ALIASES). */
function applyAliases(model: tf.LayersModel, weights: WeightMap, layerFilter?: (name: string) => boolean): void {
  for (const layer of model.layers) {
    const aliases = WEIGHT_ALIASES[layer.getClassName()];
    if (aliases === undefined || (layerFilter !== undefined && !layerFilter(layer.name))) {
      continue;
    }
    for (const [name, stored] of Object.entries(aliases)) {
      const key = `${layer.name}/${name}`;
      if (weights.has(key)) {
        continue;
      }
      for (const alias of stored) {
        // Keras 3's legacy .h5 writer numbers repeated unnamed variables: variable, variable_1, variable_2, ...
        const stem = `${layer.name}/${alias}`;
        const found = weights.has(stem) ? stem : [...weights.keys()].find((k) => k.startsWith(`${stem}_`) && /^\d+$/.test(k.slice(stem.length + 1)));
        const value = found === undefined ? undefined : weights.get(found);
        if (found !== undefined && value !== undefined) {
          weights.delete(found);
          weights.set(key, value);
          break;
        }
      }
    }
  }
}

/** assignWeights for maps read from Keras files, accepting Keras's names where TensorFlow.js differs. */
export function assignKerasWeights(model: tf.LayersModel, weights: WeightMap, options: AssignOptions = {}): AssignReport {
  applyAliases(model, weights, options.layerFilter);
  return assignWeights(model, weights, options);
}

/** Reads a Keras weight file (.h5, .weights.h5 or .keras) and assigns its weights to the model. */
export async function loadKerasWeightsFile(model: tf.LayersModel, file: string, options: AssignOptions = {}): Promise<AssignReport> {
  const weights = await readKerasWeights(file);
  try {
    return assignKerasWeights(model, weights, { sourceLabel: file, ...options });
  } finally {
    disposeWeights(weights);
  }
}
