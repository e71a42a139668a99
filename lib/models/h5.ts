/**
 * Reads Keras weight files into a WeightMap keyed "layer/weight", through
 * h5wasm (the HDF5 C library compiled to WebAssembly) and adm-zip:
 *
 * - legacy HDF5, as Keras Applications publishes it and Keras 3 still writes
 *   it for `save_weights('x.h5')`: a root attribute `layer_names`, one group
 *   per layer with a `weight_names` attribute, or the same inside the
 *   `model_weights` group of a full-model .h5 file;
 * - Keras 3 `.weights.h5`: `layers/<class path>/vars/0..n`, where the `vars`
 *   group's `name` attribute is the layer name and the variables are numbered
 *   in the order the layer class creates them (see KERAS3_WEIGHT_NAMES);
 * - `.keras` archives: a zip file whose model.weights.h5 has the Keras 3 layout.
 *
 * Weight names follow TensorFlow.js layers where they differ from Keras 3
 * (a DepthwiseConv2D kernel is "depthwise_kernel"), so that the map loads
 * into the backbones with assignWeights.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import * as tf from '@tensorflow/tfjs';
import AdmZip from 'adm-zip';

import { disposeWeights, type WeightMap } from './weights';

export type KerasWeightsLayout = 'legacy-h5' | 'keras3-h5' | 'keras-archive';

/**
 * Variable names of Keras 3 layer classes in the order the class creates its
 * variables, keyed by the snake-case class name that Keras 3 uses for the
 * layer's group ("conv2d", "batch_normalization"). Each entry lists the
 * variants a class can have, such as a convolution with or without bias. The
 * reader uses the variant whose length equals the number of stored variables
 * and raises an error when none matches. Add a line here for every layer class
 * with weights that a backbone uses.
 */
export const KERAS3_WEIGHT_NAMES: Record<string, ReadonlyArray<readonly string[]>> = {
  conv1d: [['kernel', 'bias'], ['kernel']],
  conv2d: [['kernel', 'bias'], ['kernel']],
  conv3d: [['kernel', 'bias'], ['kernel']],
  conv1d_transpose: [['kernel', 'bias'], ['kernel']],
  conv2d_transpose: [['kernel', 'bias'], ['kernel']],
  conv3d_transpose: [['kernel', 'bias'], ['kernel']],
  dense: [['kernel', 'bias'], ['kernel']],
  // Keras 3 names the depthwise kernel "kernel"; TensorFlow.js names it "depthwise_kernel".
  depthwise_conv1d: [['depthwise_kernel', 'bias'], ['depthwise_kernel']],
  depthwise_conv2d: [['depthwise_kernel', 'bias'], ['depthwise_kernel']],
  separable_conv1d: [['depthwise_kernel', 'pointwise_kernel', 'bias'], ['depthwise_kernel', 'pointwise_kernel']],
  separable_conv2d: [['depthwise_kernel', 'pointwise_kernel', 'bias'], ['depthwise_kernel', 'pointwise_kernel']],
  // NOTE: a BatchNormalization with only one of center and scale stores 3
  // variables whose names depend on the layer config, so the reader rejects it.
  batch_normalization: [['gamma', 'beta', 'moving_mean', 'moving_variance'], ['moving_mean', 'moving_variance']],
  layer_normalization: [['gamma', 'beta']],
  group_normalization: [['gamma', 'beta']],
  normalization: [['mean', 'variance', 'count']],
  embedding: [['embeddings']],
  prelu: [['alpha']],
  // ConvNeXt's per-channel residual scale (keras/src/applications/convnext.py).
  layer_scale: [['gamma']],
};

/** Keras 3 objects whose variables are not model weights: the random state of Dropout and augmentation layers. */
const KERAS3_SKIPPED_CLASSES = new Set(['seed_generator']);

/** Keras 1 weight suffixes, as in the published VGG16 file ("block1_conv1_W_1:0"), and their current names. */
const KERAS1_SUFFIXES: Record<string, string> = {
  W: 'kernel',
  b: 'bias',
  gamma: 'gamma',
  beta: 'beta',
  running_mean: 'moving_mean',
  // Keras 1 called the moving variance "running_std" but stored the variance.
  running_std: 'moving_variance',
  depthwise_kernel: 'depthwise_kernel',
  pointwise_kernel: 'pointwise_kernel',
};

const KNOWN_WEIGHT_NAMES = new Set([
  ...Object.values(KERAS3_WEIGHT_NAMES).flatMap((variants) => variants.flat()),
  'moving_mean',
  'moving_variance',
  'recurrent_kernel',
]);

const HDF5_SIGNATURE = Buffer.from([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]);
const ZIP_SIGNATURE = Buffer.from([0x50, 0x4b, 0x03, 0x04]);

/** Names of the weight files a user can pass, for messages. */
const EXPECTED_FILES = 'Keras weights: a .h5 file (Keras Applications, save_weights or model.save), a .weights.h5 file or a .keras archive';

// h5wasm is an ES module; a dynamic import loads it from this CommonJS module.
const loadH5wasm = () => import('h5wasm/node');
type H5Module = Awaited<ReturnType<typeof loadH5wasm>>;
type H5Group = InstanceType<H5Module['Group']>;
type H5Dataset = InstanceType<H5Module['Dataset']>;

let h5wasmModule: Promise<H5Module> | undefined;

async function h5wasm(): Promise<H5Module> {
  h5wasmModule ??= loadH5wasm().then(async (module) => {
    await module.ready;
    return module;
  });
  return h5wasmModule;
}

function readHeader(file: string, length: number, position: number): Buffer {
  const buffer = Buffer.alloc(length);
  const fd = fs.openSync(file, 'r');
  try {
    const read = fs.readSync(fd, buffer, 0, length, position);
    return buffer.subarray(0, read);
  } finally {
    fs.closeSync(fd);
  }
}

/** HDF5 puts its signature at byte 0, or after a user block at 512, 1024, 2048, ... bytes. */
function hasHdf5Signature(file: string): boolean {
  const size = fs.statSync(file).size;
  for (let offset = 0; offset + HDF5_SIGNATURE.length <= size; offset = offset === 0 ? 512 : offset * 2) {
    if (readHeader(file, HDF5_SIGNATURE.length, offset).equals(HDF5_SIGNATURE)) {
      return true;
    }
  }
  return false;
}

function assertFile(file: string): void {
  if (!fs.existsSync(file)) {
    throw new Error(`Keras weight file not found: ${file}. Expected ${EXPECTED_FILES}.`);
  }
  if (!fs.statSync(file).isFile()) {
    throw new Error(`Keras weight file ${file} is not a file. Expected ${EXPECTED_FILES}.`);
  }
}

function notKerasFileError(file: string): Error {
  return new Error(`${file} is neither an HDF5 file nor a zip archive. Expected ${EXPECTED_FILES}.`);
}

/** Detects the layout of a Keras weight file from its content, not its name. */
export async function detectKerasWeightsLayout(file: string): Promise<KerasWeightsLayout> {
  assertFile(file);
  if (readHeader(file, ZIP_SIGNATURE.length, 0).equals(ZIP_SIGNATURE)) {
    return 'keras-archive';
  }
  if (!hasHdf5Signature(file)) {
    throw notKerasFileError(file);
  }
  const h5 = await h5wasm();
  const h5file = new h5.File(file, 'r');
  try {
    return hdf5Layout(h5, h5file, file).layout;
  } finally {
    h5file.close();
  }
}

/**
 * Reads every weight of a Keras weight file (layout detected from the
 * content) as tensors keyed "layer/weight". The caller owns the tensors (see disposeWeights).
 */
export async function readKerasWeights(file: string): Promise<WeightMap> {
  assertFile(file);
  if (readHeader(file, ZIP_SIGNATURE.length, 0).equals(ZIP_SIGNATURE)) {
    return readKerasArchive(file);
  }
  if (!hasHdf5Signature(file)) {
    throw notKerasFileError(file);
  }
  const h5 = await h5wasm();
  const h5file = new h5.File(file, 'r');
  try {
    const { layout, root } = hdf5Layout(h5, h5file, file);
    return layout === 'legacy-h5' ? readLegacyGroup(h5, root, file) : readKeras3Group(h5, root, file);
  } finally {
    h5file.close();
  }
}

function hdf5Layout(h5: H5Module, h5file: H5Group, file: string): { layout: 'legacy-h5' | 'keras3-h5'; root: H5Group } {
  if (stringListAttribute(h5file, 'layer_names') !== undefined) {
    return { layout: 'legacy-h5', root: h5file };
  }
  const modelWeights = h5file.get('model_weights');
  if (modelWeights instanceof h5.Group && stringListAttribute(modelWeights, 'layer_names') !== undefined) {
    return { layout: 'legacy-h5', root: modelWeights };
  }
  if (h5file.get('layers') instanceof h5.Group) {
    return { layout: 'keras3-h5', root: h5file };
  }
  const groups = h5file.keys().join(', ') || 'none';
  const attributes = Object.keys(h5file.attrs).join(', ') || 'none';
  throw new Error(
    `${file} is an HDF5 file in an unknown layout: expected a root attribute layer_names (legacy Keras .h5), ` +
      `a model_weights group (full-model .h5) or a layers group (Keras 3 .weights.h5), ` +
      `but found the groups [${groups}] and attributes [${attributes}].`,
  );
}

/**
 * Reads a string-list attribute. Keras splits attributes above HDF5's 64 kB
 * header limit into name0, name1, ..., which are joined here.
 */
function stringListAttribute(group: H5Group, name: string): string[] | undefined {
  const attrs = group.attrs;
  const whole = attrs[name];
  if (whole !== undefined) {
    return toStrings(whole.value);
  }
  const chunks: string[] = [];
  for (let i = 0; attrs[`${name}${i}`] !== undefined; i++) {
    chunks.push(...toStrings((attrs[`${name}${i}`] as { value: unknown }).value));
  }
  return chunks.length > 0 ? chunks : undefined;
}

function toStrings(value: unknown): string[] {
  if (value === null || value === undefined) {
    return [];
  }
  // Keras writes an empty weight_names list as an empty float array.
  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) {
    return Array.from(value as unknown as ArrayLike<number>, String);
  }
  const items = Array.isArray(value) ? value : [value];
  return items.map((item) => (item instanceof Uint8Array ? Buffer.from(item).toString('utf8') : String(item)));
}

function datasetToTensor(dataset: H5Dataset, where: string): tf.Tensor {
  const metadata = dataset.metadata;
  const shape = dataset.shape ?? [];
  const isFloat = metadata.type === 1;
  const isInteger = metadata.type === 0;
  if (isFloat && metadata.size === 2) {
    throw new Error(`${where} is float16, which h5wasm cannot read on this Node.js version. Save the weights as float32.`);
  }
  if (!isFloat && !isInteger) {
    const stored = dataset.attrs['dtype']?.value;
    throw new Error(`${where} has HDF5 type ${dataset.dtype}${stored !== undefined ? ` (${String(stored)})` : ''}; expected float32, float64 or integer weights.`);
  }
  const value = dataset.value;
  let values: Float32Array | Int32Array;
  if (value instanceof Float32Array) {
    values = value;
  } else if (isFloat) {
    values = Float32Array.from(toNumbers(value, where));
  } else {
    // TensorFlow.js has no int64, so integer variables (Normalization's count) become int32.
    values = Int32Array.from(toNumbers(value, where));
  }
  return tf.tensor(values, shape, isFloat ? 'float32' : 'int32');
}

function toNumbers(value: unknown, where: string): number[] {
  if (typeof value === 'number' || typeof value === 'bigint') {
    return [Number(value)];
  }
  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) {
    return Array.from(value as unknown as ArrayLike<number | bigint>, Number);
  }
  throw new Error(`${where}: unexpected dataset value of type ${typeof value}.`);
}

/**
 * Maps a stored legacy weight name to "layer/weight". Current names carry the
 * layer ("conv1/kernel:0", possibly prefixed by an enclosing model, which is
 * dropped). Keras 1 names glue the layer and a short weight name together
 * ("block1_conv1_W_1:0"). A name in neither form is kept under the layer group's name.
 */
export function legacyWeightKey(layerName: string, storedName: string): string {
  const parts = storedName.replace(/:\d+$/, '').split('/');
  const last = parts.pop() as string;
  const owner = parts.length > 0 ? (parts[parts.length - 1] as string) : layerName;
  if (KNOWN_WEIGHT_NAMES.has(last)) {
    return `${owner}/${last}`;
  }
  // TensorFlow suffixes a repeated variable name: "kernel_1".
  const unsuffixed = last.replace(/_\d+$/, '');
  if (KNOWN_WEIGHT_NAMES.has(unsuffixed)) {
    return `${owner}/${unsuffixed}`;
  }
  const keras1 = /^(.+)_(W|b|gamma|beta|running_mean|running_std|depthwise_kernel|pointwise_kernel)(?:_\d+)?$/.exec(last);
  if (keras1) {
    return `${keras1[1] as string}/${KERAS1_SUFFIXES[keras1[2] as string] as string}`;
  }
  return `${owner}/${last}`;
}

function readLegacyGroup(h5: H5Module, root: H5Group, file: string): WeightMap {
  const result: WeightMap = new Map();
  try {
    for (const layerName of stringListAttribute(root, 'layer_names') ?? []) {
      const layerGroup = root.get(layerName);
      if (!(layerGroup instanceof h5.Group)) {
        throw new Error(`${file}: layer_names lists "${layerName}", but the file has no group of that name.`);
      }
      for (const weightName of stringListAttribute(layerGroup, 'weight_names') ?? []) {
        const where = `${file}: ${layerName}/${weightName}`;
        const dataset = layerGroup.get(weightName);
        if (!(dataset instanceof h5.Dataset)) {
          throw new Error(`${where} is listed in weight_names but is not a dataset in the file.`);
        }
        const key = legacyWeightKey(layerName, weightName);
        if (result.has(key)) {
          throw new Error(`${where}: two weights map to the name ${key}.`);
        }
        result.set(key, datasetToTensor(dataset, where));
      }
    }
  } catch (error) {
    disposeWeights(result);
    throw error;
  }
  return result;
}

interface Keras3Entry {
  /** Path of the object's group in the file, e.g. "layers/conv2d_1". */
  groupPath: string;
  /** Snake-case class name from the group name, e.g. "conv2d". */
  className: string;
  vars: H5Group;
}

/** Finds every saved object with a `vars` group below `group`, nested layers included. */
function collectKeras3Entries(h5: H5Module, group: H5Group, groupPath: string, out: Keras3Entry[]): void {
  for (const key of group.keys()) {
    if (key === 'vars') {
      continue;
    }
    const child = group.get(key);
    if (!(child instanceof h5.Group)) {
      continue;
    }
    const childPath = `${groupPath}/${key}`;
    const vars = child.get('vars');
    if (vars instanceof h5.Group) {
      out.push({ groupPath: childPath, className: key.replace(/_\d+$/, ''), vars });
    }
    collectKeras3Entries(h5, child, childPath, out);
  }
}

function variableNames(entry: Keras3Entry, count: number, where: string): readonly string[] {
  const variants = KERAS3_WEIGHT_NAMES[entry.className];
  if (variants === undefined) {
    throw new Error(
      `${where} has ${count} variables of the unknown Keras class "${entry.className}". ` +
        `Add the class's variable names, in creation order, to KERAS3_WEIGHT_NAMES in lib/models/h5.ts.`,
    );
  }
  const names = variants.find((variant) => variant.length === count);
  if (names === undefined) {
    const expected = variants.map((v) => v.length).join(' or ');
    throw new Error(`${where} (Keras class "${entry.className}") has ${count} variables; expected ${expected}.`);
  }
  return names;
}

function readKeras3Group(h5: H5Module, root: H5Group, file: string, layerNamesByPath?: Map<string, string>): WeightMap {
  const entries: Keras3Entry[] = [];
  collectKeras3Entries(h5, root.get('layers') as H5Group, 'layers', entries);
  const result: WeightMap = new Map();
  try {
    for (const entry of entries) {
      const indices = entry.vars
        .keys()
        .filter((k) => /^\d+$/.test(k))
        .sort((a, b) => Number(a) - Number(b));
      if (indices.length === 0 || KERAS3_SKIPPED_CLASSES.has(entry.className)) {
        continue;
      }
      const storedName = entry.vars.attrs['name']?.value;
      const layerName = typeof storedName === 'string' ? storedName : layerNamesByPath?.get(entry.groupPath);
      const where = `${file}: ${entry.groupPath}`;
      if (layerName === undefined) {
        throw new Error(
          `${where}/vars has no "name" attribute, so its layer name is unknown. ` +
            `Older Keras 3 releases do not write it: load the .keras archive instead, or save the weights again with Keras 3.15.`,
        );
      }
      const names = variableNames(entry, indices.length, where);
      indices.forEach((index, i) => {
        const dataset = entry.vars.get(index);
        if (!(dataset instanceof h5.Dataset)) {
          throw new Error(`${where}/vars/${index} is not a dataset.`);
        }
        const key = `${layerName}/${names[i] as string}`;
        if (result.has(key)) {
          throw new Error(`${where}: two variables map to the name ${key}.`);
        }
        result.set(key, datasetToTensor(dataset, `${where}/vars/${index} (${key})`));
      });
    }
  } catch (error) {
    disposeWeights(result);
    throw error;
  }
  return result;
}

/** Keras's naming.to_snake_case, which names the groups of a Keras 3 weight file. */
export function toSnakeCase(className: string): string {
  return className
    .replace(/\W+/g, '')
    .replace(/(.)([A-Z][a-z]+)/g, '$1_$2')
    .replace(/([a-z])([A-Z])/g, '$1_$2')
    .toLowerCase();
}

interface KerasLayerConfig {
  class_name?: string;
  config?: { name?: string };
}

/**
 * Layer names by group path ("layers/conv2d_1" to "block1_conv2") from a
 * .keras archive's config.json, for weight files without name attributes.
 * Keras names the groups after the classes of model.layers in order, which
 * for a Sequential model leaves out the InputLayer.
 */
function layerNamesFromConfig(configJson: string): Map<string, string> {
  const names = new Map<string, string>();
  let config: { class_name?: string; config?: { layers?: KerasLayerConfig[] } };
  try {
    config = JSON.parse(configJson) as typeof config;
  } catch {
    return names;
  }
  const used = new Map<string, number>();
  for (const layer of config.config?.layers ?? []) {
    if (layer.class_name === undefined || layer.config?.name === undefined) {
      continue;
    }
    if (config.class_name === 'Sequential' && layer.class_name === 'InputLayer') {
      continue;
    }
    const base = toSnakeCase(layer.class_name);
    const seen = used.get(base);
    used.set(base, seen === undefined ? 0 : seen + 1);
    names.set(`layers/${seen === undefined ? base : `${base}_${seen + 1}`}`, layer.config.name);
  }
  return names;
}

/** Reads the weights of a .keras archive (model.weights.h5, Keras 3 layout). */
async function readKerasArchive(file: string): Promise<WeightMap> {
  let zip: AdmZip;
  try {
    zip = new AdmZip(file);
  } catch (error) {
    throw new Error(`${file} is not a readable zip archive: ${(error as Error).message}. Expected ${EXPECTED_FILES}.`);
  }
  const weightsEntry = zip.getEntry('model.weights.h5');
  if (weightsEntry === null) {
    const entries = zip.getEntries().map((e) => e.entryName).join(', ');
    throw new Error(`${file} is a zip archive without model.weights.h5 (entries: ${entries}); expected a .keras archive saved by Keras 3.`);
  }
  const configEntry = zip.getEntry('config.json');
  const layerNames = configEntry === null ? new Map<string, string>() : layerNamesFromConfig(configEntry.getData().toString('utf8'));

  // h5wasm opens files by path, so the HDF5 member is extracted to a temporary folder.
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'fer-keras-'));
  const extracted = path.join(dir, 'model.weights.h5');
  try {
    await fs.promises.writeFile(extracted, weightsEntry.getData());
    const h5 = await h5wasm();
    const h5file = new h5.File(extracted, 'r');
    try {
      if (!(h5file.get('layers') instanceof h5.Group)) {
        throw new Error(`${file}: model.weights.h5 has no layers group; expected the Keras 3 weight layout.`);
      }
      return readKeras3Group(h5, h5file, `${file} (model.weights.h5)`, layerNames);
    } finally {
      h5file.close();
    }
  } finally {
    await fs.promises.rm(dir, { recursive: true, force: true });
  }
}
