/**
 * Weight import by Keras layer and weight name ("conv1/kernel",
 * "conv1_bn/moving_mean"), independent of the file format the names came from.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import * as tf from '@tensorflow/tfjs';

import { log } from '../util/log';

/** Weight tensors keyed by "layer/weight" (no ":0" suffix, no model prefix). */
export type WeightMap = Map<string, tf.Tensor>;

interface TfjsModelJson {
  modelTopology?: unknown;
  weightsManifest?: Array<{ paths: string[]; weights: tf.io.WeightsManifestEntry[] }>;
}

/** Normalises a stored weight name to "layer/weight". */
export function canonicalWeightName(name: string): string {
  return name.replace(/:\d+$/, '');
}

/**
 * Reads every weight of a TensorFlow.js layers-model folder (model.json plus
 * binary shards), without building its topology.
 */
export async function readTfjsWeights(folder: string): Promise<WeightMap> {
  const modelJsonPath = path.join(folder, 'model.json');
  if (!fs.existsSync(modelJsonPath)) {
    throw new Error(`No model.json in ${folder}: expected a TensorFlow.js layers-model folder.`);
  }
  let json: TfjsModelJson;
  try {
    json = JSON.parse(await fs.promises.readFile(modelJsonPath, 'utf8')) as TfjsModelJson;
  } catch (error) {
    throw new Error(`Invalid JSON in ${modelJsonPath}: ${(error as Error).message}`);
  }
  if (!Array.isArray(json.weightsManifest)) {
    throw new Error(`${modelJsonPath} has no weightsManifest; it is not a layers-model export with weights.`);
  }
  const result: WeightMap = new Map();
  for (const group of json.weightsManifest) {
    const buffers: Buffer[] = [];
    for (const shard of group.paths) {
      const shardPath = path.join(folder, shard);
      if (!fs.existsSync(shardPath)) {
        throw new Error(`Weight shard ${shardPath} listed in ${modelJsonPath} is missing.`);
      }
      buffers.push(await fs.promises.readFile(shardPath));
    }
    const joined = Buffer.concat(buffers);
    const arrayBuffer = joined.buffer.slice(joined.byteOffset, joined.byteOffset + joined.byteLength) as ArrayBuffer;
    const tensors = tf.io.decodeWeights(arrayBuffer, group.weights);
    for (const [name, tensor] of Object.entries(tensors)) {
      result.set(canonicalWeightName(name), tensor);
    }
  }
  return result;
}

export interface AssignReport {
  /** Model weights that received a value. */
  assigned: string[];
  /** Model weights without a value in the source (kept at their initial values). */
  missing: string[];
  /** Source weights that matched no model weight. */
  unused: string[];
}

export interface AssignOptions {
  /** Only model weights whose layer passes this filter are considered (e.g. the backbone's). */
  layerFilter?: (layerName: string) => boolean;
  /** Throws when a considered model weight has no value in the source. */
  requireAll?: boolean;
  /** Describes the source in messages, e.g. a folder or file path. */
  sourceLabel?: string;
}

/**
 * Copies weights into a model by "layer/weight" name. Source names may carry
 * a prefix of enclosing models ("model2/Conv1/kernel"), which is matched by
 * suffix. A shape mismatch is always an error, naming the weight and both shapes.
 */
export function assignWeights(model: tf.LayersModel, source: WeightMap, options: AssignOptions = {}): AssignReport {
  const label = options.sourceLabel ?? 'the weight source';
  const bySuffix = new Map<string, string>();
  for (const name of source.keys()) {
    const parts = name.split('/');
    if (parts.length >= 2) {
      bySuffix.set(parts.slice(-2).join('/'), name);
    }
  }
  const used = new Set<string>();
  const report: AssignReport = { assigned: [], missing: [], unused: [] };
  const pending: Array<{ variable: tf.LayerVariable; value: tf.Tensor }> = [];

  for (const layer of model.layers) {
    if (options.layerFilter !== undefined && !options.layerFilter(layer.name)) {
      continue;
    }
    for (const variable of layer.weights) {
      const key = `${layer.name}/${variable.originalName.split('/').pop() as string}`;
      const sourceName = source.has(key) ? key : bySuffix.get(key);
      const value = sourceName === undefined ? undefined : source.get(sourceName);
      if (value === undefined || sourceName === undefined) {
        report.missing.push(key);
        continue;
      }
      if (!tf.util.arraysEqual(value.shape, variable.shape as number[])) {
        throw new Error(
          `Weight ${key} has shape [${variable.shape.join(', ')}] in the model but ` +
            `[${value.shape.join(', ')}] in ${label}. The architecture or width multiplier does not match these weights.`,
        );
      }
      pending.push({ variable, value });
      used.add(sourceName);
      report.assigned.push(key);
    }
  }
  if (options.requireAll && report.missing.length > 0) {
    const shown = report.missing.slice(0, 10).join(', ');
    throw new Error(
      `${report.missing.length} model weights have no value in ${label}: ${shown}` +
        `${report.missing.length > 10 ? ', ...' : ''}. Check that the weights belong to this backbone.`,
    );
  }
  for (const { variable, value } of pending) {
    variable.write(value);
  }
  report.unused = [...source.keys()].filter((name) => !used.has(name));
  log.debug(`weights: assigned ${report.assigned.length} from ${label}; ${report.missing.length} missing, ${report.unused.length} unused.`);
  return report;
}

export function disposeWeights(weights: WeightMap): void {
  for (const tensor of weights.values()) {
    tensor.dispose();
  }
  weights.clear();
}
