/**
 * Two-phase transfer learning: phase 1 trains the head on a frozen backbone,
 * phase 2 fine-tunes the top backbone blocks with a smaller learning rate.
 * Batch-norm layers stay in inference mode throughout. The epoch with the
 * best validation macro-F1 is kept; each phase stops early after `patience`
 * epochs without improvement.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import * as tf from '@tensorflow/tfjs';

import { activeBackend, initBackend, type BackendInfo } from '../backend';
import { CANONICAL_CLASSES, NUM_CLASSES } from '../classes';
import { augmentBatch, isAugmentationOff } from '../data/augment';
import { describePreprocessing, pixelsToTensor, preprocess } from '../data/preprocess';
import { defaultMemoryBudget, ImageStore, type PixelBatch } from '../data/store';
import { writeEvaluation } from '../eval/evaluate';
import { onnxDisabled, predictStoreFast } from '../eval/fast';
import { classificationReport } from '../eval/metrics';
import type { ClassificationReport } from '../eval/types';
import { findChromium, saveFiguresPng } from '../figures/export';
import { GraphTrainStep, GraphUnsupportedError, graphBackendUnusableReason } from '../graph/train_step';
import { trainingCurvesFigure } from '../figures/plots';
import { createModel, HEAD_LAYER_PREFIX, setTrainableBlocks, trainableVariables, type FerModel } from '../models/factory';
import { exportLayersModel, writeFileAtomic } from '../models/io';
import { FrozenBatchNormalization, nextDropoutMultiplier, SeededDropout, seedDropout } from '../models/layers';
import { exportOnnxGraph, type MaskInput } from '../onnx/export';
import { OnnxModel, onnxRuntime, onnxRuntimeError } from '../onnx/runtime';
import { resolveDataDir, resolveRunsDir } from '../paths';
import { GroupedAdamOptimizer } from '../perf/adam';
import { addLogListener, log } from '../util/log';
import { formatDuration, ProgressBar } from '../util/progress';
import { permutation, Rng } from '../util/rng';
import {
  bestWeightsBase,
  hasCheckpoint,
  initialState,
  loadModelWeights,
  loadOptimizerState,
  loadState,
  saveBestWeights,
  saveCheckpoint,
  type NamedTensor,
  type TrainState,
} from './checkpoint';
import { dataReport, prepareSplits, type PreparedSplits } from './data';
import type { EpochRecord } from './history';
import { checkMemory, describeEstimate, estimatePhaseMemory, memoryLimit } from './memory';
import { resolveTrainOptions, type ResolvedTrainOptions, type TrainOptions } from './options';

export interface TrainResult {
  runDir: string;
  history: EpochRecord[];
  best: TrainState['best'];
  testReport?: ClassificationReport;
  trainingSeconds: number;
  stopReasons: string[];
}

export class TrainingInterruptedError extends Error {
  constructor(readonly runDir: string) {
    super(`Training interrupted; the checkpoint in ${runDir} is up to date. Resume with: npx fer train --resume ${runDir}`);
    this.name = 'TrainingInterruptedError';
  }
}

/** Stops training at the next batch boundary: on SIGINT/SIGTERM, or after a set number of batches. */
interface InterruptControl {
  requested(): boolean;
  onStep(): void;
}

const EPSILON = 1e-7;

/** Formats a count with its noun: "1 epoch", "2 epochs". */
function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

/** Training batches loaded ahead of the one in use. */
const PREFETCH_BATCHES = 2;

/** Mean (optionally class-weighted) categorical cross-entropy of softmax outputs, clipped as Keras does. */
function crossEntropy(oneHot: tf.Tensor2D, probabilities: tf.Tensor2D, sampleWeights?: tf.Tensor1D): tf.Scalar {
  const perSample = tf.neg(tf.sum(tf.mul(oneHot, tf.log(tf.clipByValue(probabilities, EPSILON, 1 - EPSILON))), 1));
  if (sampleWeights === undefined) {
    return tf.mean(perSample);
  }
  return tf.div(tf.sum(tf.mul(perSample, sampleWeights)), perSample.shape[0] as number);
}

/** sklearn's compute_class_weight('balanced'): n / (k * n_c), for the classes present. */
export function balancedClassWeights(labels: Int32Array): number[] {
  const counts = new Array<number>(NUM_CLASSES).fill(0);
  labels.forEach((l) => (counts[l] = (counts[l] ?? 0) + 1));
  const present = counts.filter((c) => c > 0).length;
  return counts.map((c) => (c > 0 ? labels.length / (present * c) : 0));
}

function defaultRunDir(options: TrainOptions): string {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').replace(/-\d\dZ$/, 'Z');
  const name = options.model.toLowerCase().replace(/[^a-z0-9.]+/g, '-');
  return path.join(resolveRunsDir(options.runsDir), `${name}-${stamp}`);
}

interface RunContext {
  options: ResolvedTrainOptions;
  fer: FerModel;
  train: ImageStore;
  validation: ImageStore;
  prepared: PreparedSplits;
  classWeights: number[] | undefined;
}

async function writeRunFiles(ctx: RunContext): Promise<void> {
  const { options, fer } = ctx;
  const dir = options.runDir;
  const backend = activeBackend();
  await writeFileAtomic(
    path.join(dir, 'config.json'),
    JSON.stringify(
      {
        ...options,
        backbone: fer.backbone.name,
        parameters: fer.model.countParams(),
        backend: backend ?? null,
        versions: { tfjs: tf.version.tfjs, node: process.versions.node },
      },
      null,
      1,
    ),
  );
  await writeFileAtomic(path.join(dir, 'classes.json'), JSON.stringify(fer.classNames, null, 1));
  await writeFileAtomic(
    path.join(dir, 'preprocessing.json'),
    JSON.stringify(
      {
        inputSize: fer.inputSize,
        colorOrder: 'RGB',
        resize: options.resizeFit,
        mode: fer.backbone.preprocessing,
        description: describePreprocessing(fer.backbone.preprocessing),
        greyscale: 'replicated to three channels',
        alpha: 'flattened onto black',
      },
      null,
      1,
    ),
  );
}

async function writeHistory(dir: string, history: EpochRecord[]): Promise<void> {
  await writeFileAtomic(path.join(dir, 'history.json'), JSON.stringify(history, null, 1));
  const columns: Array<keyof EpochRecord> = [
    'phase',
    'epoch',
    'globalEpoch',
    'learningRate',
    'trainLoss',
    'trainAccuracy',
    'valLoss',
    'valAccuracy',
    'valMacroF1',
    'seconds',
    'trainImages',
    'imagesPerSecond',
  ];
  const lines = [columns.join(','), ...history.map((r) => columns.map((c) => String(r[c])).join(','))];
  await writeFileAtomic(path.join(dir, 'history.csv'), lines.join('\n') + '\n');
}

function validationMetrics(report: ClassificationReport): { loss: number; accuracy: number; macroF1: number } {
  return { loss: report.logLoss, accuracy: report.accuracy, macroF1: report.macro.f1 };
}

/** A training batch ready for a step: its labels, and the pixels or feature rows it holds. */
interface TrainBatch {
  labels: Int32Array;
  count: number;
  pixels?: PixelBatch;
  /** Store indices of the images, for cached features. */
  indices: readonly number[];
  /** Pooled backbone features [count, channels], row-major, when ONNX Runtime computed them (phase 1). */
  features?: Float32Array;
}

/**
 * Source of a phase's training batches and validation predictions: images
 * through the whole model, or (phase 1 without augmentation) pooled backbone
 * features computed once and fed to the head alone.
 */
interface PhaseInputs {
  /** Work done once per phase before its first batch (the feature cache); counted in that epoch's time. */
  prepare(): Promise<void>;
  /** Starts loading the batch of `indices`; decoding of uncached images runs in sharp's thread pool meanwhile. */
  load(indices: readonly number[]): Promise<TrainBatch>;
  /**
   * Asynchronous work on a loaded batch before its step, after the step's
   * augmentation and dropout seeds are set (the frozen backbone in ONNX Runtime).
   */
  precompute(batch: TrainBatch, rng: Rng): Promise<void>;
  /** The model input of a loaded batch, augmented and preprocessed; called inside tf.tidy. */
  input(batch: TrainBatch, rng: Rng): tf.Tensor;
  /** Class probabilities in training mode; called inside the optimizer's tape. */
  forward(x: tf.Tensor): tf.Tensor2D;
  /** Probabilities on the whole validation split in inference mode, in store order. */
  validate(): Promise<{ labels: Int32Array; probabilities: Float32Array }>;
  dispose(): void;
}

/**
 * The model cut at the head's global pooling: the backbone with the pooling
 * as one model, and the dense head after it applied layer by layer. Both
 * share the FER model's layers and weights.
 */
interface SplitAtPooling {
  backbone: tf.LayersModel;
  applyHead(x: tf.Tensor, training: boolean): tf.Tensor2D;
}

function splitAtPooling(fer: FerModel): SplitAtPooling {
  const poolLayer = fer.model.getLayer(`${HEAD_LAYER_PREFIX}pool`);
  const headSet = new Set(fer.headLayers);
  const headChain = fer.model.layers.filter((l) => headSet.has(l.name) && l !== poolLayer);
  return {
    backbone: tf.model({ inputs: fer.model.inputs, outputs: poolLayer.output as tf.SymbolicTensor }),
    applyHead: (x, training) => {
      let h = x;
      for (const layer of headChain) {
        h = layer.apply(h, { training }) as tf.Tensor;
      }
      return h as tf.Tensor2D;
    },
  };
}

/** Returns the name of the first batch-norm layer that uses batch statistics in training mode, if any. */
function batchStatisticsLayer(fer: FerModel): string | undefined {
  return fer.model.layers.find((l) => l.getClassName() === 'BatchNormalization' && !(l instanceof FrozenBatchNormalization))?.name;
}

/**
 * Returns why phase 1 cannot run the frozen backbone in ONNX Runtime, or
 * undefined when it can. The backbone's forward pass is then an inference
 * graph whose only randomness, dropout, is fed in as masks.
 */
function onnxBackboneUnusableReason(fer: FerModel): string | undefined {
  if (onnxDisabled()) {
    return `disabled by FER_ONNX=${process.env.FER_ONNX}`;
  }
  const batchStatistics = batchStatisticsLayer(fer);
  if (batchStatistics !== undefined) {
    return `batch-norm layer ${batchStatistics} uses batch statistics in training mode`;
  }
  if (onnxRuntime() === undefined) {
    return `onnxruntime-node cannot be loaded (${onnxRuntimeError() ?? 'unknown reason'})`;
  }
  return undefined;
}

/** The frozen backbone of phase 1 as an ONNX Runtime session, with its dropout layers as mask inputs. */
interface OnnxBackbone {
  session: OnnxModel;
  masks: MaskInput[];
}

async function createOnnxBackbone(backbone: tf.LayersModel): Promise<OnnxBackbone> {
  const start = performance.now();
  const { bytes, masks } = exportOnnxGraph(backbone, { dropoutMasks: true, graphName: 'frozen_backbone' });
  const session = await OnnxModel.create(bytes, { extraInputs: true });
  log.info(
    `phase 1: the frozen backbone runs in ONNX Runtime (exported in ${formatDuration((performance.now() - start) / 1000)}` +
      `${masks.length > 0 ? `, ${masks.length} dropout layers fed seeded masks` : ''}); the head trains on TensorFlow.js. ` +
      'FER_ONNX=off keeps the backbone on TensorFlow.js.',
  );
  return { session, masks };
}

/**
 * Batches whose pixels are converted, augmented and preprocessed, then run
 * through the whole model. In phase 1 the frozen backbone runs before the
 * optimizer's gradient tape starts, so the tape holds only the head: in
 * ONNX Runtime where it can (onnxBackboneUnusableReason), which computes
 * the same features several times faster than tfjs-node, otherwise on
 * TensorFlow.js in training mode. Either way the augmentation and dropout
 * draws are those of the whole model inside the tape, so the results agree
 * to float rounding.
 */
function imageInputs(ctx: RunContext, phase: 1 | 2): PhaseInputs {
  const { options, fer, train, validation } = ctx;
  const split = phase === 1 ? splitAtPooling(fer) : undefined;
  let onnx: OnnxBackbone | undefined;
  let onnxTried = false;
  const augmentAndPreprocess = (pixels: PixelBatch, rng: Rng): tf.Tensor =>
    preprocess(augmentBatch(pixelsToTensor(pixels.pixels, pixels.count, pixels.size), options.augmentation, rng), fer.backbone.preprocessing);
  return {
    prepare: async () => {
      if (split === undefined || onnxTried) {
        return;
      }
      onnxTried = true;
      const reason = onnxBackboneUnusableReason(fer);
      if (reason !== undefined) {
        log.info(`phase 1: the frozen backbone runs on TensorFlow.js, not ONNX Runtime: ${reason}.`);
        return;
      }
      try {
        onnx = await createOnnxBackbone(split.backbone);
      } catch (error) {
        log.warn(`phase 1: the frozen backbone runs on TensorFlow.js, because its ONNX export or session failed: ${(error as Error).message}`);
      }
    },
    load: async (indices) => {
      const pixels = await train.batch(indices);
      return { labels: pixels.labels, count: pixels.count, pixels, indices };
    },
    precompute: async (batch, rng) => {
      if (onnx === undefined) {
        return;
      }
      const pixels = batch.pixels as PixelBatch;
      const x = tf.tidy(() => augmentAndPreprocess(pixels, rng));
      const values = (await x.data()) as Float32Array;
      x.dispose();
      const extra: Record<string, { data: Float32Array; shape: number[] }> = {};
      for (const mask of onnx.masks) {
        const multiplier = nextDropoutMultiplier(mask.rate, [pixels.count, ...mask.shape.slice(1).map(Number)]);
        extra[mask.name] = { data: (await multiplier.data()) as Float32Array, shape: multiplier.shape };
        multiplier.dispose();
      }
      batch.features = await onnx.session.run(values, [pixels.count, pixels.size, pixels.size, 3], extra);
    },
    input: (batch, rng) => {
      if (batch.features !== undefined) {
        return tf.tensor2d(batch.features, [batch.count, batch.features.length / batch.count]);
      }
      const x = augmentAndPreprocess(batch.pixels as PixelBatch, rng);
      return split === undefined ? x : (split.backbone.apply(x, { training: true }) as tf.Tensor);
    },
    forward: (x) => (split === undefined ? (fer.model.apply(x, { training: true }) as tf.Tensor2D) : split.applyHead(x, true)),
    validate: () =>
      predictStoreFast(fer.model, validation, {
        batchSize: Math.max(options.batchSize, 64),
        preprocessing: fer.backbone.preprocessing,
        label: 'validation',
        silent: options.silent,
      }),
    dispose: () => {
      void onnx?.session.dispose();
    },
  };
}

/** FER_FEATURE_CACHE=off makes phase 1 run images through the whole model even where features could be cached. */
function featureCacheDisabled(): boolean {
  return ['off', '0', 'false', 'no'].includes((process.env.FER_FEATURE_CACHE ?? '').toLowerCase());
}

/**
 * Returns why phase 1 cannot train the head on cached backbone features, or
 * undefined when it can. Caching gives the same result only when every
 * batch's backbone output is a fixed function of the stored image: no
 * augmentation, and no backbone layer that behaves differently in training mode.
 */
function featureCacheUnusableReason(ctx: RunContext): string | undefined {
  const { options, fer, train, validation } = ctx;
  if (featureCacheDisabled()) {
    return `disabled by FER_FEATURE_CACHE=${process.env.FER_FEATURE_CACHE}`;
  }
  if (!isAugmentationOff(options.augmentation)) {
    return 'augmentation is on, so each batch holds newly transformed images whose backbone features must be computed again';
  }

  const backbone = new Set(fer.backboneLayers);
  const randomLayers = fer.model.layers.filter((l) => backbone.has(l.name) && l instanceof SeededDropout && l.rate > 0).map((l) => l.name);
  if (randomLayers.length > 0) {
    return (
      `the ${fer.backbone.name} backbone has dropout layers (${randomLayers.slice(0, 3).join(', ')}${randomLayers.length > 3 ? ', ...' : ''}) ` +
      'that draw new masks at every training step, so its features are not fixed'
    );
  }
  const batchStatistics = batchStatisticsLayer(fer);
  if (batchStatistics !== undefined) {
    return `batch-norm layer ${batchStatistics} uses batch statistics in training mode, so its features depend on the batch`;
  }

  const pool = fer.model.layers.find((l) => l.name === `${HEAD_LAYER_PREFIX}pool`);
  const channels = pool?.outputShape[1];
  if (pool === undefined || typeof channels !== 'number') {
    return 'the head does not start with the global pooling layer head_pool';
  }
  const bytes = (train.length + validation.length) * channels * 4;
  const budget = options.cacheMemoryBytes ?? defaultMemoryBudget();
  if (bytes > budget) {
    return `the features need ${(bytes / 2 ** 30).toFixed(2)} GiB, above the cache budget of ${(budget / 2 ** 30).toFixed(2)} GiB`;
  }
  return undefined;
}

/**
 * Phase 1 on cached features. The backbone runs once per split in inference
 * mode up to the head's global pooling. Each step then trains the dense
 * layers on the pooled rows of its batch, with the same batch order, dropout
 * seeds, loss and optimizer as the full model. The backbone is frozen and,
 * by featureCacheUnusableReason's checks, deterministic, so the result is the same
 * up to float rounding, because the convolutions run in other batch sizes.
 */
function featureInputs(ctx: RunContext): PhaseInputs {
  const { options, fer, train, validation } = ctx;
  const { backbone, applyHead } = splitAtPooling(fer);
  let trainFeatures: tf.Tensor2D | undefined;
  let validationFeatures: tf.Tensor2D | undefined;

  const extract = async (store: ImageStore, label: string): Promise<tf.Tensor2D> => {
    const result = await predictStoreFast(backbone, store, {
      batchSize: Math.max(options.batchSize, 64),
      preprocessing: fer.backbone.preprocessing,
      label: `${label} features`,
      silent: options.silent,
    });
    return tf.tensor2d(result.probabilities, [store.length, result.probabilities.length / Math.max(1, store.length)]);
  };
  const trainLabels = train.labels();

  return {
    prepare: async () => {
      if (trainFeatures !== undefined) {
        return;
      }
      const start = performance.now();
      trainFeatures = await extract(train, 'train');
      validationFeatures = await extract(validation, 'validation');
      log.info(
        `phase 1: backbone features cached for ${train.length} training and ${validation.length} validation images ` +
          `(${trainFeatures.shape[1]} channels, ${formatDuration((performance.now() - start) / 1000)}).`,
      );
    },
    load: async (indices) => ({ labels: Int32Array.from(indices, (i) => trainLabels[i] as number), count: indices.length, indices }),
    precompute: async () => {},
    input: (batch) => tf.gather(trainFeatures as tf.Tensor2D, tf.tensor1d(Array.from(batch.indices), 'int32')),
    forward: (x) => applyHead(x, true),
    validate: async () => {
      const features = validationFeatures as tf.Tensor2D;
      const probabilities = tf.tidy(() => applyHead(features, false));
      const values = (await probabilities.data()) as Float32Array;
      probabilities.dispose();
      return { labels: validation.labels(), probabilities: values };
    },
    dispose: () => {
      trainFeatures?.dispose();
      validationFeatures?.dispose();
    },
  };
}

/** Chooses the phase's inputs and logs, for phase 1, whether features are cached and why not. */
function phaseInputs(ctx: RunContext, phase: 1 | 2): PhaseInputs {
  if (phase !== 1) {
    return imageInputs(ctx, phase);
  }
  const reason = featureCacheUnusableReason(ctx);
  if (reason !== undefined) {
    log.info(`phase 1: backbone features are computed for every batch, not cached: ${reason}.`);
    return imageInputs(ctx, phase);
  }
  log.info('phase 1: augmentation is off and the backbone is frozen, so its pooled features are computed once and only the head trains on them.');
  return featureInputs(ctx);
}

/** FER_GRAPH=off runs training steps eagerly on tfjs-node even where they could run as one TensorFlow graph. */
function graphDisabled(): boolean {
  const value = (process.env.FER_GRAPH ?? '').trim().toLowerCase();
  if (['off', '0', 'false', 'no'].includes(value)) {
    return true;
  }
  if (['', 'on', '1', 'true', 'yes'].includes(value)) {
    return false;
  }
  throw new Error(`Invalid FER_GRAPH value "${process.env.FER_GRAPH}": set it to off to run training steps eagerly, or to on (or leave it unset) to run them as a TensorFlow graph where possible.`);
}

/**
 * Builds the head alone as a model from pooled features to probabilities, sharing
 * the FER model's layers and weights. Phase 1 feeds it the frozen
 * backbone's features, however they were computed.
 */
function headModel(fer: FerModel): tf.LayersModel {
  const pool = fer.model.getLayer(`${HEAD_LAYER_PREFIX}pool`);
  const headSet = new Set(fer.headLayers);
  const features = tf.input({ shape: [(pool.outputShape as number[])[1] as number], name: 'pooled_features' });
  let h: tf.SymbolicTensor = features;
  for (const layer of fer.model.layers.filter((l) => headSet.has(l.name) && l !== pool)) {
    h = layer.apply(h) as tf.SymbolicTensor;
  }
  return tf.model({ inputs: features, outputs: h, name: 'head' });
}

/**
 * Builds the phase's training step as one TensorFlow graph (lib/graph/train_step.ts):
 * the whole model in phase 2, the head on pooled features in phase 1. Returns
 * undefined, with the reason logged, where it cannot run: FER_GRAPH=off, a
 * backend other than tfjs-node, or a layer the graph does not cover.
 */
async function createGraphStep(ctx: RunContext, phase: 1 | 2, variables: tf.Variable[], learningRate: number, restored: NamedTensor[]): Promise<GraphTrainStep | undefined> {
  const stepLabel = phase === 1 ? "the head's training step" : 'the training step';
  const reason = graphDisabled() ? `disabled by FER_GRAPH=${process.env.FER_GRAPH}` : graphBackendUnusableReason();
  if (reason !== undefined) {
    log.info(`phase ${phase}: ${stepLabel} runs eagerly, not as a TensorFlow graph: ${reason}.`);
    return undefined;
  }
  const start = performance.now();
  try {
    const model = phase === 1 ? headModel(ctx.fer) : ctx.fer.model;
    const step = await GraphTrainStep.create(model, variables, learningRate, restored);
    log.info(
      `phase ${phase}: ${stepLabel} (forward, gradients, Adam) runs as one TensorFlow graph, built in ${formatDuration((performance.now() - start) / 1000)}` +
        `${step.masks.length > 0 ? `, with ${plural(step.masks.length, 'dropout layer')} fed seeded masks` : ''}. FER_GRAPH=off runs it eagerly.`,
    );
    return step;
  } catch (error) {
    const message = (error as Error).message;
    if (error instanceof GraphUnsupportedError) {
      log.info(`phase ${phase}: ${stepLabel} runs eagerly, not as a TensorFlow graph: ${message}.`);
    } else {
      log.warn(`phase ${phase}: ${stepLabel} runs eagerly, because building its TensorFlow graph failed: ${message}`);
    }
    return undefined;
  }
}

/** Trains one phase from `state` until its epochs run out, early stopping, the time budget, or an interrupt. */
async function runPhase(
  ctx: RunContext,
  state: TrainState,
  phase: 1 | 2,
  interrupt: InterruptControl,
  resuming: boolean,
): Promise<void> {
  const { options, fer, train } = ctx;
  const epochs = phase === 1 ? options.phase1Epochs : options.phase2Epochs;
  const learningRate = phase === 1 ? options.phase1LearningRate : options.phase2LearningRate;
  const blocks = phase === 1 ? 0 : options.unfreezeBlocks;
  const trainableLayers = setTrainableBlocks(fer, blocks);
  const variables = trainableVariables(fer);
  // tf.train.adam's arithmetic over all variables at once (lib/perf/adam.ts): a dozen kernels per step instead of about fourteen per variable.
  const optimizer = new GroupedAdamOptimizer(learningRate);
  let restored: NamedTensor[] = [];
  const capture = { setWeights: async (weights: NamedTensor[]) => void (restored = weights) };
  if (resuming && (await loadOptimizerState(options.runDir, capture, variables))) {
    log.info(`resume: optimizer state restored (${variables.length} variables).`);
  }
  log.info(
    `phase ${phase}: ${phase === 1 ? 'head only, backbone frozen' : `fine-tuning ${blocks === 'all' ? 'all' : blocks} backbone blocks (${trainableLayers} layers)`}, ` +
      `Adam ${learningRate}, up to ${plural(epochs, 'epoch')}, batch ${options.batchSize}, ${variables.length} trainable tensors.`,
  );
  const inputs = phaseInputs(ctx, phase);
  const graph = await createGraphStep(ctx, phase, variables, learningRate, restored);
  if (graph === undefined && restored.length > 0) {
    await optimizer.setWeights(restored);
  }
  /** The holder of the optimizer state: the graph's session, or the eager optimizer. */
  const optimizerState = graph ?? optimizer;

  const n = train.length;
  const batchSize = options.batchSize;
  const stepsPerEpoch = Math.ceil(n / batchSize);
  const budgetSeconds = options.maxMinutes === null ? Infinity : options.maxMinutes * 60;
  const classWeights = ctx.classWeights;
  const weightTensor = classWeights === undefined ? undefined : tf.tensor1d(classWeights);
  let lastCheckpoint = performance.now();

  try {
    while (state.epochInPhase <= epochs) {
      const epoch = state.epochInPhase;
      const lastSamePhase = [...state.history].reverse().find((r) => r.phase === phase);
      if (state.step === 0 && lastSamePhase !== undefined && state.trainingSeconds + lastSamePhase.seconds > budgetSeconds) {
        state.stopReasons.push(`phase ${phase}: time budget of ${options.maxMinutes} min would be exceeded by epoch ${epoch}`);
        log.info(`phase ${phase}: stopping before epoch ${epoch}; another epoch (~${formatDuration(lastSamePhase.seconds)}) would exceed the time budget.`);
        break;
      }
      const order = permutation(n, options.seed, phase, epoch);
      const progress = new ProgressBar(`phase ${phase} epoch ${epoch}/${epochs}`, n, { unit: 'img', silent: options.silent });
      if (state.step > 0) {
        progress.tick(Math.min(n, state.step * batchSize));
      }
      const epochStart = performance.now() - state.partial.seconds * 1000;
      let truncated = false;
      await inputs.prepare();

      const batchIndices = (step: number) => order.slice(step * batchSize, Math.min(n, (step + 1) * batchSize));
      // Batches load PREFETCH_BATCHES ahead, so uncached images decode in sharp's pool while the backend trains.
      const pending = new Map<number, Promise<TrainBatch>>();
      const requestBatches = (from: number) => {
        for (let s = from; s < Math.min(stepsPerEpoch, from + PREFETCH_BATCHES + 1); s++) {
          if (!pending.has(s)) {
            const batch = inputs.load(batchIndices(s));
            // A batch left unused when the epoch ends early must not crash the process. The step that awaits a batch still receives its error.
            batch.catch(() => undefined);
            pending.set(s, batch);
          }
        }
      };
      for (let step = state.step; step < stepsPerEpoch; step++) {
        requestBatches(step);
        const batch = await (pending.get(step) as Promise<TrainBatch>);
        pending.delete(step);
        requestBatches(step + 1);
        const rng = new Rng(options.seed, 0xa06, phase, epoch, step);
        seedDropout(options.seed, phase, epoch, step);
        await inputs.precompute(batch, rng);

        let predicted: tf.Tensor | undefined;
        const loss = tf.tidy(() => {
          const x = inputs.input(batch, rng);
          const labels = tf.tensor1d(batch.labels, 'int32');
          const oneHot = tf.oneHot(labels, fer.classNames.length).toFloat() as tf.Tensor2D;
          const sampleWeights = weightTensor === undefined ? undefined : (tf.gather(weightTensor, labels) as tf.Tensor1D);
          if (graph !== undefined) {
            // The graph's loss is sum(targets * -log p): targets carry each sample's weight and the division by the batch size.
            const perSample = sampleWeights === undefined ? tf.scalar(1 / batch.count) : tf.div(tf.reshape(sampleWeights, [-1, 1]), batch.count);
            const masks = graph.masks.map((mask) => nextDropoutMultiplier(mask.rate, [batch.count, ...mask.shape]));
            const out = graph.run(x, tf.mul(oneHot, perSample) as tf.Tensor2D, masks);
            predicted = tf.keep(out.predicted);
            return out.loss;
          }
          return optimizer.minimize(
            () => {
              const probabilities = inputs.forward(x);
              predicted = tf.keep(tf.argMax(probabilities, 1));
              return crossEntropy(oneHot, probabilities, sampleWeights);
            },
            true,
            variables,
          ) as tf.Scalar;
        });
        const lossValue = (await loss.data())[0] as number;
        const predictedLabels = (await (predicted as tf.Tensor).data()) as Int32Array;
        loss.dispose();
        predicted?.dispose();
        if (!Number.isFinite(lossValue)) {
          throw new Error(
            `Training loss became ${lossValue} at phase ${phase}, epoch ${epoch}, step ${step + 1}. ` +
              `Lower the learning rate (now ${learningRate}) or check the input data.`,
          );
        }
        state.partial.lossSum += lossValue * batch.count;
        state.partial.seen += batch.count;
        predictedLabels.forEach((p, i) => {
          if (p === batch.labels[i]) {
            state.partial.correct++;
          }
        });
        state.step = step + 1;
        state.partial.seconds = (performance.now() - epochStart) / 1000;
        progress.tick(
          batch.count,
          `loss ${(state.partial.lossSum / state.partial.seen).toFixed(4)} acc ${(state.partial.correct / state.partial.seen).toFixed(4)}`,
        );

        const sessionSeconds = state.trainingSeconds + state.partial.seconds;
        // A step awaits only promises that are already settled, so without this yield to the event loop a
        // Ctrl-C (SIGINT) would wait for the next real I/O, at the end of the epoch, before its handler ran.
        await new Promise((resolve) => setImmediate(resolve));
        interrupt.onStep();
        if (interrupt.requested()) {
          graph?.syncToModel();
          await saveCheckpoint(options.runDir, state, fer.model, optimizerState);
          throw new TrainingInterruptedError(options.runDir);
        }
        if (sessionSeconds > budgetSeconds && step + 1 < stepsPerEpoch) {
          truncated = true;
          state.stopReasons.push(`phase ${phase}: time budget of ${options.maxMinutes} min reached during epoch ${epoch} after ${step + 1}/${stepsPerEpoch} batches`);
          log.info(`phase ${phase}: time budget reached; ending epoch ${epoch} after ${step + 1} of ${stepsPerEpoch} batches.`);
          break;
        }
        if ((performance.now() - lastCheckpoint) / 60000 >= options.checkpointMinutes && step + 1 < stepsPerEpoch) {
          graph?.syncToModel();
          await saveCheckpoint(options.runDir, state, fer.model, optimizerState);
          lastCheckpoint = performance.now();
        }
      }
      progress.finish();
      graph?.syncToModel();

      const trainSeconds = (performance.now() - epochStart) / 1000;
      const predictions = await inputs.validate();
      const val = validationMetrics(classificationReport(predictions.labels, predictions.probabilities, fer.classNames));
      const seconds = (performance.now() - epochStart) / 1000;
      const record: EpochRecord = {
        phase,
        epoch,
        globalEpoch: state.history.length + 1,
        learningRate,
        trainLoss: state.partial.lossSum / Math.max(1, state.partial.seen),
        trainAccuracy: state.partial.correct / Math.max(1, state.partial.seen),
        valLoss: val.loss,
        valAccuracy: val.accuracy,
        valMacroF1: val.macroF1,
        seconds,
        trainImages: state.partial.seen,
        imagesPerSecond: state.partial.seen / Math.max(1e-9, trainSeconds),
      };
      state.history.push(record);
      state.trainingSeconds += seconds;
      state.partial = { lossSum: 0, correct: 0, seen: 0, seconds: 0 };
      state.step = 0;
      state.epochInPhase = epoch + 1;

      const improved = state.best === null || record.valMacroF1 > state.best.valMacroF1;
      if (improved) {
        state.best = { valMacroF1: record.valMacroF1, globalEpoch: record.globalEpoch, phase };
        state.epochsWithoutImprovement = 0;
        await saveBestWeights(options.runDir, fer.model);
      } else {
        state.epochsWithoutImprovement++;
      }
      log.info(
        `phase ${phase} epoch ${epoch}/${epochs}: train loss ${record.trainLoss.toFixed(4)} acc ${record.trainAccuracy.toFixed(4)} | ` +
          `val loss ${record.valLoss.toFixed(4)} acc ${record.valAccuracy.toFixed(4)} macro-F1 ${record.valMacroF1.toFixed(4)} | ` +
          `${formatDuration(seconds)} with validation, training ${record.imagesPerSecond.toFixed(1)} img/s${improved ? ' | best so far' : ''}`,
      );
      await writeHistory(options.runDir, state.history);
      await saveCheckpoint(options.runDir, state, fer.model, optimizerState);
      lastCheckpoint = performance.now();

      if (truncated) {
        break;
      }
      if (state.epochsWithoutImprovement >= options.patience) {
        state.stopReasons.push(`phase ${phase}: early stop after ${plural(options.patience, 'epoch')} without a better validation macro-F1`);
        log.info(`phase ${phase}: early stop; no better validation macro-F1 for ${plural(options.patience, 'epoch')}.`);
        break;
      }
      if (interrupt.requested()) {
        throw new TrainingInterruptedError(options.runDir);
      }
    }
  } finally {
    optimizer.dispose();
    await graph?.dispose();
    weightTensor?.dispose();
    inputs.dispose();
  }
}

async function writeTrainingFigure(runDir: string, history: EpochRecord[], title: string): Promise<void> {
  if (history.length === 0 || findChromium() === undefined) {
    return;
  }
  await saveFiguresPng([
    { figure: trainingCurvesFigure(history, { title: `${title}: training curves` }), path: path.join(runDir, 'figures', 'training_curves.png'), width: 1100, height: 500 },
  ]);
}

/**
 * Trains a configuration on a dataset folder and writes the run folder:
 * config.json, classes.json, preprocessing.json, data-report.json, history
 * (CSV and JSON), checkpoints, best weights, the final model in TensorFlow.js
 * format, and the test evaluation with figures.
 */
/**
 * Estimates both phases' memory, logs it, and throws before any training
 * when the costlier phase cannot fit (lib/train/memory.ts).
 */
function checkTrainingMemory(
  run: { options: ResolvedTrainOptions; fer: FerModel; imageBytes: number },
  backend: BackendInfo,
): void {
  const { options, fer, imageBytes } = run;
  const limit = memoryLimit(backend);
  const headSet = new Set(fer.headLayers);
  const phases: Array<{ phase: 1 | 2; blocks: number | 'all' }> = [];
  if (options.phase1Epochs > 0) {
    phases.push({ phase: 1, blocks: 0 });
  }
  if (options.phase2Epochs > 0) {
    phases.push({ phase: 2, blocks: options.unfreezeBlocks });
  }
  for (const { phase, blocks } of phases) {
    const openLayers = setTrainableBlocks(fer, blocks);
    const trainableParams = fer.model.trainableWeights.reduce((n, w) => n + w.shape.reduce<number>((m, d) => m * (d ?? 1), 1), 0);
    const estimate = estimatePhaseMemory(fer.model, phase, options.batchSize, trainableParams, openLayers === 0, headSet, imageBytes);
    log.info(describeEstimate(estimate, limit));
    checkMemory(options.configuration.name, fer.inputSize, options.batchSize, estimate, limit);
  }
  setTrainableBlocks(fer, 0);
}

export async function train(input: TrainOptions & { resume?: string }): Promise<TrainResult> {
  // An invalid FER_ONNX or FER_GRAPH fails here, before any data is read, instead of at the first batch.
  onnxDisabled();
  graphDisabled();
  let runDir: string;
  let requested: TrainOptions = input;
  let resuming = false;
  if (input.resume !== undefined) {
    runDir = path.resolve(input.resume);
    const configFile = path.join(runDir, 'config.json');
    if (!fs.existsSync(configFile)) {
      throw new Error(`Cannot resume: ${configFile} not found. Pass the folder of an earlier run.`);
    }
    const saved = JSON.parse(fs.readFileSync(configFile, 'utf8')) as ResolvedTrainOptions;
    requested = { ...saved, model: saved.model, silent: input.silent ?? saved.silent, maxMinutes: input.maxMinutes ?? saved.maxMinutes ?? undefined } as TrainOptions;
    resuming = hasCheckpoint(runDir);
  } else {
    runDir = path.resolve(input.runDir ?? defaultRunDir(input));
    if (hasCheckpoint(runDir)) {
      throw new Error(`Run folder ${runDir} already holds a checkpoint. Resume it with --resume ${runDir}, or choose another folder.`);
    }
  }
  const options = resolveTrainOptions(requested, resolveDataDir(requested.dataDir), runDir);
  const createdRunDir = !fs.existsSync(runDir);
  await fs.promises.mkdir(runDir, { recursive: true });
  const logFile = fs.createWriteStream(path.join(runDir, 'train.log'), { flags: 'a' });
  const removeListener = addLogListener((level, message) => logFile.write(`${new Date().toISOString()} ${level} ${message}\n`));

  let interruptRequested = false;
  // Test hook: simulates Ctrl-C after this many training batches of this process.
  const stepLimit = process.env.FER_INTERRUPT_AFTER_STEPS === undefined ? undefined : Number(process.env.FER_INTERRUPT_AFTER_STEPS);
  let stepsThisSession = 0;
  const interrupt: InterruptControl = {
    requested: () => interruptRequested || (stepLimit !== undefined && stepsThisSession >= stepLimit),
    onStep: () => {
      stepsThisSession++;
    },
  };
  const onSignal = () => {
    if (interruptRequested) {
      log.error('second interrupt: exiting without a checkpoint.');
      process.exit(130);
    }
    interruptRequested = true;
    log.warn('interrupt received: finishing the current batch and writing a checkpoint (press Ctrl-C again to exit at once).');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    const backend = await initBackend(input.backend);
    log.info(`run: ${runDir}${resuming ? ' (resuming)' : ''}`);
    const prepared = await prepareSplits({
      dataDir: options.dataDir,
      seed: options.seed,
      validationFraction: options.validationFraction,
      limits: options.limits,
      classAliases: options.classAliases,
      checkDuplicates: options.checkDuplicates && !resuming,
      silent: options.silent,
    });
    const storeOptions = {
      size: options.inputSize,
      fit: options.resizeFit,
      silent: options.silent,
      ...(options.cacheMemoryBytes !== null ? { memoryBudgetBytes: options.cacheMemoryBytes } : {}),
    };
    const trainStore = await ImageStore.load(prepared.train, { ...storeOptions, label: 'train' });
    const validationStore = await ImageStore.load(prepared.validation, { ...storeOptions, label: 'validation' });
    if (trainStore.length === 0 || validationStore.length === 0) {
      throw new Error(`No decodable images left in the ${trainStore.length === 0 ? 'training' : 'validation'} split of ${options.dataDir}.`);
    }
    if (!resuming) {
      await writeFileAtomic(
        path.join(runDir, 'data-report.json'),
        JSON.stringify(dataReport(prepared, { train: trainStore.skipped, validation: validationStore.skipped }), null, 1),
      );
    }

    const fer = await createModel(options.configuration, {
      inputSize: options.inputSize,
      dense: options.dense,
      dropout: options.dropout,
      weights: options.weights,
      ...(options.weightsDir !== null ? { weightsDir: options.weightsDir } : {}),
      seed: options.seed,
      classNames: CANONICAL_CLASSES,
    });
    log.info(
      `model: ${options.configuration.name} (${fer.backbone.name} backbone, ${fer.model.countParams().toLocaleString('en-US')} parameters, ` +
        `input ${fer.inputSize}x${fer.inputSize}, head dense [${options.dense.join(', ')}], dropout ${options.dropout})`,
    );
    if (options.weights === 'random') {
      log.info(`weights: ${fer.backbone.name} backbone initialised at random from seed ${options.seed} (--weights random), no pretrained weights.`);
    }
    if (!backend.supportsFineTuning && options.phase2Epochs > 0) {
      throw new Error(
        `The ${backend.name} backend cannot fine-tune backbones; run with --epochs2 0 (head only) or install @tensorflow/tfjs-node (npm run setup).`,
      );
    }
    checkTrainingMemory({ options, fer, imageBytes: trainStore.memoryBytes() + validationStore.memoryBytes() }, backend);
    const classWeights = options.classWeight === 'balanced' ? balancedClassWeights(trainStore.labels()) : undefined;
    if (classWeights !== undefined) {
      log.info(`loss: class weights ${classWeights.map((w, i) => `${CANONICAL_CLASSES[i]} ${w.toFixed(3)}`).join(', ')}`);
    }
    const ctx: RunContext = { options, fer, train: trainStore, validation: validationStore, prepared, classWeights };

    let state: TrainState;
    if (resuming) {
      state = await loadState(runDir);
      await loadModelWeights(fer.model, path.join(runDir, 'checkpoint', 'model'));
      log.info(
        `resume: phase ${state.phase}, epoch ${state.epochInPhase}, after batch ${state.step}; ` +
          `${plural(state.history.length, 'epoch')} finished before over both phases, ${formatDuration(state.trainingSeconds)} trained so far.`,
      );
    } else {
      await writeRunFiles(ctx);
      state = initialState(options.phase1Epochs > 0 ? 1 : 2);
    }

    let resumePhase = resuming;
    while (!state.finished) {
      const phase = state.phase;
      const phaseStoppedEarly = state.stopReasons.some((r) => r.startsWith(`phase ${phase}:`));
      if (!phaseStoppedEarly) {
        await runPhase(ctx, state, phase, interrupt, resumePhase);
      }
      resumePhase = false;
      if (phase === 1 && options.phase2Epochs > 0 && !state.stopReasons.some((r) => r.includes('time budget'))) {
        if (state.best !== null) {
          await loadModelWeights(fer.model, bestWeightsBase(runDir));
          log.info(`phase 1 done; continuing from its best epoch (${state.best.globalEpoch}, validation macro-F1 ${state.best.valMacroF1.toFixed(4)}).`);
        }
        state.phase = 2;
        state.epochInPhase = 1;
        state.step = 0;
        state.epochsWithoutImprovement = 0;
      } else {
        state.finished = true;
      }
      await saveCheckpoint(runDir, state, fer.model, undefined);
    }

    if (state.best !== null) {
      await loadModelWeights(fer.model, bestWeightsBase(runDir));
    }
    await exportLayersModel(fer.model, path.join(runDir, 'model'), {
      configuration: options.configuration.name,
      backbone: fer.backbone.name,
      classNames: fer.classNames,
      inputSize: fer.inputSize,
      preprocessing: fer.backbone.preprocessing,
      bestEpoch: state.best,
    });
    const best = state.best;
    const bestRecord = best === null ? undefined : state.history.find((r) => r.globalEpoch === best.globalEpoch);
    const bestLabel =
      best === null
        ? 'none'
        : `${bestRecord === undefined ? `epoch ${best.globalEpoch}` : `phase ${bestRecord.phase} epoch ${bestRecord.epoch}`}, validation macro-F1 ${best.valMacroF1.toFixed(4)}`;
    log.info(
      `training done: ${formatDuration(state.trainingSeconds)} of training in all, ${plural(state.history.length, 'epoch')} over both phases; ` +
        `best ${bestLabel}. Model: ${path.join(runDir, 'model')}`,
    );
    if (options.figures) {
      await writeTrainingFigure(runDir, state.history, options.configuration.name);
    }

    const result: TrainResult = {
      runDir,
      history: state.history,
      best: state.best,
      trainingSeconds: state.trainingSeconds,
      stopReasons: state.stopReasons,
    };
    if (options.evaluateTest && prepared.test !== undefined) {
      const testStore = await ImageStore.load(prepared.test, { ...storeOptions, label: 'test' });
      const predictions = await predictStoreFast(fer.model, testStore, {
        batchSize: Math.max(options.batchSize, 64),
        preprocessing: fer.backbone.preprocessing,
        label: 'test',
        silent: options.silent,
      });
      result.testReport = await writeEvaluation(predictions, fer.classNames, {
        dir: path.join(runDir, 'evaluation', 'test'),
        title: `${options.configuration.name} on ${path.basename(options.dataDir)} test`,
        figures: options.figures,
        extra: { split: 'test', dataDir: options.dataDir, skipped: testStore.skipped, runDir, trainingSeconds: state.trainingSeconds },
      });
      log.info(
        `test: accuracy ${result.testReport.accuracy.toFixed(4)}, macro-F1 ${result.testReport.macro.f1.toFixed(4)}, ` +
          `macro AUC ${result.testReport.macroAuc.toFixed(4)}, log loss ${result.testReport.logLoss.toFixed(4)} ` +
          `(${result.testReport.numSamples} images; report in ${path.join(runDir, 'evaluation', 'test')})`,
      );
    }
    return result;
  } catch (error) {
    // A run that fails before writing config.json (missing data, no memory) has nothing to resume or
    // evaluate, and its error is on the console, so a folder this call created is removed again.
    if (createdRunDir && !fs.existsSync(path.join(runDir, 'config.json'))) {
      removeListener();
      await new Promise<void>((resolve) => logFile.end(resolve));
      await fs.promises.rm(runDir, { recursive: true, force: true });
    }
    throw error;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    removeListener();
    logFile.end();
  }
}
