/**
 * Files of trained models: named weight files for checkpoints, and
 * TensorFlow.js layers-model folders (model.json + weights.bin) that load in a
 * browser with tf.loadLayersModel. Writes go to a temporary name first and are
 * renamed into place, so an interrupted write never leaves a broken file.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import * as tf from '@tensorflow/tfjs';

import { canonicalWeightName, type WeightMap } from './weights';

export interface NamedTensor {
  name: string;
  tensor: tf.Tensor;
}

/** Writes `data` to `file` through a temporary file in the same folder. */
export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  await fs.promises.mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  await fs.promises.writeFile(tmp, data);
  await fs.promises.rename(tmp, file);
}

/** Saves tensors as `<base>.bin` (raw little-endian data) and `<base>.json` (tfjs weight specs). */
export async function saveNamedTensors(base: string, tensors: readonly NamedTensor[]): Promise<void> {
  const { data, specs } = await tf.io.encodeWeights(tensors.map(({ name, tensor }) => ({ name, tensor })));
  await writeFileAtomic(`${base}.bin`, new Uint8Array(data));
  await writeFileAtomic(`${base}.json`, JSON.stringify({ format: 'fer-named-tensors', version: 1, specs }, null, 1));
}

/** Reads tensors written by saveNamedTensors, keyed by name, in file order. */
export async function loadNamedTensors(base: string): Promise<WeightMap> {
  const specFile = `${base}.json`;
  const binFile = `${base}.bin`;
  for (const file of [specFile, binFile]) {
    if (!fs.existsSync(file)) {
      throw new Error(`Missing ${file}; the checkpoint or model folder is incomplete.`);
    }
  }
  const { specs } = JSON.parse(await fs.promises.readFile(specFile, 'utf8')) as { specs: tf.io.WeightsManifestEntry[] };
  const bytes = await fs.promises.readFile(binFile);
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  const decoded = tf.io.decodeWeights(buffer, specs);
  const result: WeightMap = new Map();
  for (const spec of specs) {
    result.set(spec.name, decoded[spec.name] as tf.Tensor);
  }
  return result;
}

/** Every weight of a model keyed "layer/weight". */
export function modelWeights(model: tf.LayersModel): NamedTensor[] {
  const named: NamedTensor[] = [];
  for (const layer of model.layers) {
    for (const variable of layer.weights) {
      named.push({ name: `${layer.name}/${canonicalWeightName(variable.originalName.split('/').pop() as string)}`, tensor: variable.read() });
    }
  }
  return named;
}

/**
 * Writes a TensorFlow.js layers-model folder: model.json (topology, weight
 * manifest and `userDefinedMetadata`) and weights.bin.
 */
export async function exportLayersModel(model: tf.LayersModel, dir: string, metadata: Record<string, unknown>): Promise<void> {
  await fs.promises.mkdir(dir, { recursive: true });
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      if (artifacts.weightData === undefined || artifacts.weightSpecs === undefined) {
        throw new Error(`Model ${model.name} produced no weights to save in ${dir}.`);
      }
      const weightData = Array.isArray(artifacts.weightData)
        ? Buffer.concat(artifacts.weightData.map((b) => Buffer.from(b)))
        : Buffer.from(artifacts.weightData);
      const modelJson = {
        format: 'layers-model',
        generatedBy: `TensorFlow.js tfjs-layers v${tf.version.tfjs}`,
        convertedBy: null,
        modelTopology: artifacts.modelTopology,
        weightsManifest: [{ paths: ['weights.bin'], weights: artifacts.weightSpecs }],
        userDefinedMetadata: metadata,
      };
      await writeFileAtomic(path.join(dir, 'weights.bin'), weightData);
      await writeFileAtomic(path.join(dir, 'model.json'), JSON.stringify(modelJson));
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
}
