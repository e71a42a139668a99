/**
 * Builds full FER models: a registered backbone, pretrained weights, and the
 * classification head (global average pooling, dense ReLU layers, dropout,
 * softmax).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import * as tf from '@tensorflow/tfjs';

import { CANONICAL_CLASSES } from '../classes';
import { resolveWeightsDir } from '../paths';
import { log } from '../util/log';
import { mixSeed, Rng } from '../util/rng';
import { apply } from './backbones/common';
import { registerBuiltins, studyConfiguration } from './catalog';
import { foldFrozenBatchNorm } from './fold';
import { SeededDropout } from './layers';
import { fetchImagenetWeights, loadKerasWeightsFile } from './keras_weights';
import { getBackbone, getConfiguration, hasBackbone, hasConfiguration } from './registry';
import type { BackboneSpec, ModelConfiguration } from './types';
import { assignWeights, disposeWeights, readTfjsWeights, type AssignReport } from './weights';

export const INPUT_LAYER_NAME = 'input_image';
export const HEAD_LAYER_PREFIX = 'head_';
export const OUTPUT_LAYER_NAME = 'emotion_probabilities';

/**
 * Source of the backbone's initial weights: ImageNet weights (the registered
 * tfjs folder, or else Keras's published file), random weights, a tfjs
 * layers-model folder, or a Keras weight file (.h5, .weights.h5 or .keras).
 */
export type BackboneWeights = 'imagenet' | 'random' | { folder: string } | { file: string };

export interface CreateModelOptions {
  /** Overrides the configuration's input size (square, pixels). */
  inputSize?: number;
  /** Overrides the configuration's dense layer sizes. */
  dense?: number[];
  /** Overrides the configuration's dropout rate. */
  dropout?: number;
  weights?: BackboneWeights;
  /** Folder that holds the registered weight folders (see resolveWeightsDir). */
  weightsDir?: string;
  /** Cache folder of downloaded Keras weight files (see resolveKerasCacheDir). */
  kerasCacheDir?: string;
  /** Seed of the head's initial weights, and of the backbone's when `weights` is 'random'. */
  seed?: number;
  classNames?: readonly string[];
  /**
   * Fold frozen batch-norm layers into the convolutions before them in
   * training-mode calls (lib/models/fold.ts); default true. Inference is the same either way.
   */
  foldBatchNorm?: boolean;
}

export interface FerModel {
  model: tf.LayersModel;
  configuration: ModelConfiguration;
  backbone: BackboneSpec;
  inputSize: number;
  classNames: string[];
  /** Names of the backbone's layers (everything between the input and the head). */
  backboneLayers: string[];
  headLayers: string[];
  /** Outcome of the pretrained weight import, when weights were loaded. */
  weightsReport?: AssignReport;
}

/** Resolves a configuration by name; a bare backbone name gets the default head and protocol. */
export function resolveConfiguration(nameOrConfig: string | ModelConfiguration): ModelConfiguration {
  registerBuiltins();
  if (typeof nameOrConfig !== 'string') {
    getBackbone(nameOrConfig.backbone);
    return nameOrConfig;
  }
  if (hasConfiguration(nameOrConfig) || !hasBackbone(nameOrConfig)) {
    return getConfiguration(nameOrConfig);
  }
  const backbone = getBackbone(nameOrConfig);
  return studyConfiguration(backbone.name, backbone.name);
}

function buildHead(features: tf.SymbolicTensor, dense: number[], dropout: number, numClasses: number, seed: number): tf.SymbolicTensor {
  let x = apply(tf.layers.globalAveragePooling2d({ name: `${HEAD_LAYER_PREFIX}pool` }), features);
  dense.forEach((units, i) => {
    x = apply(
      tf.layers.dense({
        name: `${HEAD_LAYER_PREFIX}dense_${i + 1}`,
        units,
        activation: 'relu',
        kernelInitializer: tf.initializers.glorotUniform({ seed: mixSeed(seed, 101, i) }),
      }),
      x,
    );
  });
  if (dropout > 0) {
    x = apply(new SeededDropout({ name: `${HEAD_LAYER_PREFIX}dropout`, rate: dropout }), x);
  }
  return apply(
    tf.layers.dense({
      name: OUTPUT_LAYER_NAME,
      units: numClasses,
      activation: 'softmax',
      kernelInitializer: tf.initializers.glorotUniform({ seed: mixSeed(seed, 102) }),
    }),
    x,
  );
}

/** Locates a backbone's tfjs weight folder in the weights directory, or explains what is missing. */
export function findTfjsWeights(backbone: BackboneSpec, weightsDir?: string): string {
  const dir = resolveWeightsDir(weightsDir);
  const folderName = backbone.weights.tfjsFolder;
  if (folderName === undefined) {
    const keras = backbone.weights.kerasNoTop?.url;
    throw new Error(
      `No TensorFlow.js weights are registered for ${backbone.name}. ` +
        (keras !== undefined ? `Keras publishes them at ${keras}. ` : '') +
        `Use --weights random to train from scratch, or --weights-folder DIR with a layers-model folder that uses Keras layer names.`,
    );
  }
  const folder = path.join(dir, folderName);
  if (!fs.existsSync(path.join(folder, 'model.json'))) {
    throw new Error(
      `ImageNet weights for ${backbone.name} not found: ${folder}/model.json. ` +
        `Place the "${folderName}" folder in ${dir} (set the folder with --weights-dir or FER_WEIGHTS_DIR).`,
    );
  }
  return folder;
}

/** Loads backbone weights from a tfjs layers-model folder; head weights are left as initialised. */
export async function loadBackboneWeights(fer: FerModel, folder: string): Promise<AssignReport> {
  const weights = await readTfjsWeights(folder);
  try {
    const backboneLayers = new Set(fer.backboneLayers);
    const report = assignWeights(fer.model, weights, {
      layerFilter: (name) => backboneLayers.has(name),
      requireAll: true,
      sourceLabel: folder,
    });
    log.info(`weights: ${fer.backbone.name} backbone loaded from ${folder} (${report.assigned.length} tensors).`);
    return report;
  } finally {
    disposeWeights(weights);
  }
}

/** Loads backbone weights from a Keras weight file; head weights are left as initialised. */
export async function loadBackboneKerasWeights(fer: FerModel, file: string): Promise<AssignReport> {
  const backboneLayers = new Set(fer.backboneLayers);
  const report = await loadKerasWeightsFile(fer.model, file, {
    layerFilter: (name) => backboneLayers.has(name),
    requireAll: true,
    sourceLabel: file,
  });
  log.info(`weights: ${fer.backbone.name} backbone loaded from ${file} (${report.assigned.length} tensors).`);
  return report;
}

/**
 * Creates a FER model by configuration or backbone name. The model maps a
 * preprocessed image batch [n, size, size, 3] to class probabilities in
 * `classNames` order.
 */
/**
 * Runs `body` with Math.random replaced by a seeded generator. tfjs's
 * initializers draw their seed from Math.random when a layer gives none, as
 * the backbone builders do, so this makes their random weights repeatable.
 */
function withSeededMathRandom<T>(seed: number, body: () => T): T {
  const original = Math.random;
  const rng = new Rng(seed, 0x1417);
  Math.random = () => rng.next();
  try {
    return body();
  } finally {
    Math.random = original;
  }
}

export async function createModel(nameOrConfig: string | ModelConfiguration, options: CreateModelOptions = {}): Promise<FerModel> {
  const configuration = resolveConfiguration(nameOrConfig);
  const backbone = getBackbone(configuration.backbone);
  const inputSize = options.inputSize ?? configuration.inputSize;
  if (!Number.isInteger(inputSize) || inputSize < backbone.minInputSize) {
    throw new Error(`Invalid input size ${inputSize} for ${backbone.name}: expected an integer of at least ${backbone.minInputSize}.`);
  }
  const classNames = [...(options.classNames ?? CANONICAL_CLASSES)];
  const dense = options.dense ?? configuration.dense;
  const dropout = options.dropout ?? configuration.dropout;
  const seed = options.seed ?? 0;

  const input = tf.input({ shape: [inputSize, inputSize, 3], name: INPUT_LAYER_NAME });
  // Random backbone weights come from the seed, so that runs without pretrained weights repeat.
  const { features } = options.weights === 'random' ? withSeededMathRandom(mixSeed(seed, 100), () => backbone.build(input)) : backbone.build(input);
  const output = buildHead(features, dense, dropout, classNames.length, seed);
  const model = tf.model({ inputs: input, outputs: output, name: configuration.name.replace(/[^A-Za-z0-9_]+/g, '_') });
  if (options.foldBatchNorm ?? true) {
    foldFrozenBatchNorm(model);
  }

  const headLayers = model.layers.filter((l) => l.name.startsWith(HEAD_LAYER_PREFIX) || l.name === OUTPUT_LAYER_NAME).map((l) => l.name);
  const headSet = new Set(headLayers);
  const backboneLayers = model.layers.filter((l) => l.name !== INPUT_LAYER_NAME && !headSet.has(l.name)).map((l) => l.name);
  const fer: FerModel = {
    model,
    configuration: { ...configuration, inputSize, dense, dropout },
    backbone,
    inputSize,
    classNames,
    backboneLayers,
    headLayers,
  };

  const weights = options.weights ?? 'imagenet';
  if (weights === 'imagenet') {
    // A registered tfjs folder is the only source for its backbone, so a
    // missing folder is reported rather than replaced by a download.
    if (backbone.weights.tfjsFolder === undefined && backbone.weights.kerasNoTop !== undefined) {
      const file = await fetchImagenetWeights(backbone, { cacheDir: options.kerasCacheDir });
      fer.weightsReport = await loadBackboneKerasWeights(fer, file);
    } else {
      fer.weightsReport = await loadBackboneWeights(fer, findTfjsWeights(backbone, options.weightsDir));
    }
  } else if (weights === 'random') {
    return fer;
  } else if ('file' in weights) {
    fer.weightsReport = await loadBackboneKerasWeights(fer, weights.file);
  } else {
    fer.weightsReport = await loadBackboneWeights(fer, weights.folder);
  }
  return fer;
}

/**
 * Sets which layers train: the head always, plus the backbone's top `blocks`
 * blocks ('all' for every block, 0 for none). Batch-norm layers never train.
 * Returns the number of trainable backbone layers with weights.
 */
export function setTrainableBlocks(fer: FerModel, blocks: number | 'all'): number {
  const allBlocks = fer.backbone.blocks;
  const count = blocks === 'all' ? allBlocks.length : blocks;
  if (!Number.isInteger(count) || count < 0) {
    throw new Error(`Invalid number of blocks to unfreeze: ${String(blocks)}; expected 'all' or an integer >= 0.`);
  }
  const open = new Set(allBlocks.slice(Math.max(0, allBlocks.length - count)));
  const backboneSet = new Set(fer.backboneLayers);
  let trainable = 0;
  for (const layer of fer.model.layers) {
    if (layer.getClassName() === 'BatchNormalization') {
      layer.trainable = false;
      continue;
    }
    if (!backboneSet.has(layer.name)) {
      layer.trainable = true;
      continue;
    }
    const block = fer.backbone.blockOf(layer.name);
    layer.trainable = block !== undefined && open.has(block);
    if (layer.trainable && layer.weights.length > 0) {
      trainable++;
    }
  }
  return trainable;
}

/** The model's trainable variables, in a stable order. */
export function trainableVariables(fer: FerModel): tf.Variable[] {
  return fer.model.trainableWeights.map((w) => w.read() as tf.Variable);
}
