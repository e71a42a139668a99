/** Options of a training run, their defaults, and validation. */
import type { BackendPreference } from '../backend';
import type { AugmentationSettings } from '../data/augment';
import { STUDY_AUGMENTATION } from '../data/augment';
import type { ResizeFit } from '../data/decode';
import { resolveConfiguration, type BackboneWeights } from '../models/factory';
import type { ModelConfiguration } from '../models/types';

export interface SplitLimits {
  /** Largest number of images used from each split, drawn per class in proportion (seeded). */
  train?: number;
  validation?: number;
  test?: number;
}

export interface TrainOptions {
  /** Registered configuration or backbone name, e.g. "MobileNet-0.25" or "EfficientNetB2 Modified". */
  model: string;
  dataDir?: string;
  /** Explicit run folder; by default runs/<model>-<timestamp>. */
  runDir?: string;
  runsDir?: string;
  seed?: number;
  inputSize?: number;
  batchSize?: number;
  dense?: number[];
  dropout?: number;
  phase1Epochs?: number;
  phase2Epochs?: number;
  phase1LearningRate?: number;
  phase2LearningRate?: number;
  /** Backbone blocks unfrozen in phase 2, counted from the top, or 'all'. */
  unfreezeBlocks?: number | 'all';
  /** Epochs without a better validation macro-F1 before a phase stops. */
  patience?: number;
  augmentation?: AugmentationSettings;
  /** Share of the training split held out for validation when the dataset has no validation split. */
  validationFraction?: number;
  limits?: SplitLimits;
  weights?: BackboneWeights;
  weightsDir?: string;
  classAliases?: Record<string, string>;
  /** Minutes between checkpoints inside an epoch (one is always written at the end of each epoch). */
  checkpointMinutes?: number;
  cacheMemoryBytes?: number;
  resizeFit?: ResizeFit;
  /** Evaluates the best model on the test split after training. */
  evaluateTest?: boolean;
  /** Writes PNG figures (needs Chromium). */
  figures?: boolean;
  /** Training time budget in minutes: no epoch starts that would be expected to end after it. */
  maxMinutes?: number;
  /** 'balanced' weighs each class's loss by n / (k * n_class), as sklearn's compute_class_weight. */
  classWeight?: 'none' | 'balanced';
  backend?: BackendPreference;
  /** Hashes every file to report identical images shared between splits. */
  checkDuplicates?: boolean;
  silent?: boolean;
}

/** Options with every default filled in, as stored in a run's config.json. */
export interface ResolvedTrainOptions extends Required<Omit<TrainOptions, 'runDir' | 'runsDir' | 'maxMinutes' | 'backend' | 'cacheMemoryBytes' | 'weightsDir' | 'dataDir'>> {
  dataDir: string;
  runDir: string;
  maxMinutes: number | null;
  weightsDir: string | null;
  cacheMemoryBytes: number | null;
  configuration: ModelConfiguration;
}

export const DEFAULT_SEED = 42;

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value <= 0) {
    throw new Error(`Invalid ${name}: ${value}. Expected a positive integer.`);
  }
  return value;
}

function nonNegativeInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0) {
    throw new Error(`Invalid ${name}: ${value}. Expected an integer >= 0.`);
  }
  return value;
}

function positiveNumber(name: string, value: number): number {
  if (!(Number.isFinite(value) && value > 0)) {
    throw new Error(`Invalid ${name}: ${value}. Expected a positive number.`);
  }
  return value;
}

/** Fills defaults from the registered configuration and validates every value. */
export function resolveTrainOptions(options: TrainOptions, dataDir: string, runDir: string): ResolvedTrainOptions {
  const base = resolveConfiguration(options.model);
  const configuration: ModelConfiguration = {
    ...base,
    inputSize: positiveInteger('input size', options.inputSize ?? base.inputSize),
    batchSize: positiveInteger('batch size', options.batchSize ?? base.batchSize),
    dense: (options.dense ?? base.dense).map((units) => positiveInteger('dense layer size', units)),
    dropout: options.dropout ?? base.dropout,
    phase1: {
      epochs: nonNegativeInteger('phase 1 epochs', options.phase1Epochs ?? base.phase1.epochs),
      learningRate: positiveNumber('phase 1 learning rate', options.phase1LearningRate ?? base.phase1.learningRate),
    },
    phase2: {
      epochs: nonNegativeInteger('phase 2 epochs', options.phase2Epochs ?? base.phase2.epochs),
      learningRate: positiveNumber('phase 2 learning rate', options.phase2LearningRate ?? base.phase2.learningRate),
      unfreezeBlocks: options.unfreezeBlocks ?? base.phase2.unfreezeBlocks,
    },
  };
  if (!(configuration.dropout >= 0 && configuration.dropout < 1)) {
    throw new Error(`Invalid dropout ${configuration.dropout}: expected 0 <= dropout < 1.`);
  }
  const unfreeze = configuration.phase2.unfreezeBlocks;
  if (unfreeze !== 'all') {
    nonNegativeInteger('number of blocks to unfreeze', unfreeze);
  }
  if (configuration.phase1.epochs + configuration.phase2.epochs === 0) {
    throw new Error('Both phases have 0 epochs; set --epochs1 or --epochs2 to at least 1.');
  }
  const validationFraction = options.validationFraction ?? 0.1;
  if (!(validationFraction > 0 && validationFraction < 1)) {
    throw new Error(`Invalid validation fraction ${validationFraction}: expected a number between 0 and 1.`);
  }
  const limits = options.limits ?? {};
  for (const [split, limit] of Object.entries(limits)) {
    if (limit !== undefined) {
      positiveInteger(`${split} limit`, limit);
    }
  }
  if (options.maxMinutes !== undefined) {
    positiveNumber('time budget (minutes)', options.maxMinutes);
  }
  return {
    model: options.model,
    configuration,
    dataDir,
    runDir,
    seed: nonNegativeInteger('seed', options.seed ?? DEFAULT_SEED),
    inputSize: configuration.inputSize,
    batchSize: configuration.batchSize,
    dense: configuration.dense,
    dropout: configuration.dropout,
    phase1Epochs: configuration.phase1.epochs,
    phase2Epochs: configuration.phase2.epochs,
    phase1LearningRate: configuration.phase1.learningRate,
    phase2LearningRate: configuration.phase2.learningRate,
    unfreezeBlocks: unfreeze,
    patience: positiveInteger('patience', options.patience ?? 5),
    augmentation: options.augmentation ?? STUDY_AUGMENTATION,
    validationFraction,
    limits,
    weights: options.weights ?? 'imagenet',
    weightsDir: options.weightsDir ?? null,
    classAliases: options.classAliases ?? {},
    checkpointMinutes: positiveNumber('checkpoint interval (minutes)', options.checkpointMinutes ?? 10),
    cacheMemoryBytes: options.cacheMemoryBytes ?? null,
    resizeFit: options.resizeFit ?? 'fill',
    evaluateTest: options.evaluateTest ?? true,
    figures: options.figures ?? true,
    maxMinutes: options.maxMinutes ?? null,
    classWeight: options.classWeight ?? 'none',
    checkDuplicates: options.checkDuplicates ?? true,
    silent: options.silent ?? false,
  };
}
