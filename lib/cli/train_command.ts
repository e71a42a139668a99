/** `fer train`: two-phase transfer learning on a dataset folder. */
import { Command, InvalidArgumentError, Option } from 'commander';

import type { BackendPreference } from '../backend';
import { STUDY_AUGMENTATION } from '../data/augment';
import type { ResizeFit } from '../data/decode';
import type { BackboneWeights } from '../models/factory';
import type { TrainOptions } from '../train/options';
import { DEFAULT_MODEL } from '../models/catalog';
import { applyScale, parseScale, TRAINING_SCALES, type TrainingScale } from '../train/scale';
import { TrainingInterruptedError, train } from '../train/trainer';
import { log } from '../util/log';
import { collect, parseAliases, parseInteger, parseIntegerList, parseNumber } from './parse';

interface TrainCliOptions {
  model: string;
  data?: string;
  runDir?: string;
  runsDir?: string;
  resume?: string;
  seed?: number;
  inputSize?: number;
  batchSize?: number;
  dense?: number[];
  dropout?: number;
  epochs1?: number;
  epochs2?: number;
  lr1?: number;
  lr2?: number;
  unfreeze?: number | 'all';
  patience?: number;
  augment: boolean;
  rotation: number;
  shift: number;
  flip: boolean;
  valFraction?: number;
  limitTrain?: number;
  limitVal?: number;
  limitTest?: number;
  weights: string;
  weightsDir?: string;
  classAlias?: string[];
  checkpointMinutes?: number;
  cacheMemory?: number;
  resize?: ResizeFit;
  evaluate: boolean;
  figures: boolean;
  maxMinutes?: number;
  classWeight?: 'none' | 'balanced';
  backend?: BackendPreference;
  duplicates: boolean;
  quiet?: boolean;
  scale?: TrainingScale;
}

function parseUnfreeze(value: string): number | 'all' {
  if (value === 'all') {
    return 'all';
  }
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) {
    throw new InvalidArgumentError(`"${value}" is neither "all" nor an integer >= 0.`);
  }
  return n;
}

function parseWeights(value: string): BackboneWeights {
  if (value === 'imagenet' || value === 'random') {
    return value;
  }
  if (/\.(h5|hdf5|keras)$/i.test(value)) {
    return { file: value };
  }
  return { folder: value };
}

export function registerTrainCommand(program: Command): void {
  program
    .command('train')
    .description(
      'Train a model: phase 1 fits the head on a frozen pretrained backbone, phase 2 fine-tunes the top backbone blocks. ' +
        'Writes a run folder with checkpoints, the best model (TensorFlow.js format), metric history and the test evaluation.',
    )
    .addHelpText(
      'after',
      [
        '',
        'Environment:',
        '  FER_GRAPH=off          run training steps eagerly on tfjs-node instead of as one TensorFlow graph per step',
        '  FER_ONNX=off           keep the frozen backbone, validation and evaluation on TensorFlow.js instead of ONNX Runtime',
        '  FER_FEATURE_CACHE=off  compute phase 1 backbone features for every batch even when they could be cached',
        '  FER_MEMORY_LIMIT=16G   memory limit for the estimate made before training (default: what the system reports)',
        'Ctrl-C finishes the current batch, writes a checkpoint and exits; "fer train --resume RUN" continues.',
      ].join('\n'),
    )
    .option('-m, --model <name>', 'configuration or backbone name (see "fer models")', DEFAULT_MODEL)
    .option('-d, --data <dir>', 'dataset folder (default: $FER_DATA or data/fer2013)')
    .addOption(
      new Option('--scale <scale>', 'preset for input size, subsets and epochs: smoke (seconds), reduced (minutes on a CPU), full (the configuration itself)')
        .choices([...TRAINING_SCALES])
        .argParser(parseScale),
    )
    .option('--run-dir <dir>', 'run folder to create (default: <runs-dir>/<model>-<time>)')
    .option('--runs-dir <dir>', 'parent folder of run folders (default: $FER_RUNS_DIR or runs)')
    .option('--resume <run-dir>', 'continue an interrupted run from its last checkpoint, with its saved settings')
    .option('--seed <n>', 'seed for splits, initialisation, shuffling, augmentation and dropout (default 42)', parseInteger)
    .option('--input-size <pixels>', "square input size fed to the backbone (default: the configuration's)", parseInteger)
    .option('--batch-size <n>', "images per training step (default: the configuration's)", parseInteger)
    .option('--dense <units>', 'comma-separated sizes of the dense ReLU layers of the head, e.g. 1024,512', parseIntegerList)
    .option('--dropout <rate>', 'dropout rate after the last dense layer (default 0.5)', parseNumber)
    .option('--epochs1 <n>', 'maximum epochs of phase 1 (head only)', parseInteger)
    .option('--epochs2 <n>', 'maximum epochs of phase 2 (fine-tuning); 0 skips it', parseInteger)
    .option('--lr1 <rate>', 'Adam learning rate of phase 1 (default 1e-3)', parseNumber)
    .option('--lr2 <rate>', 'Adam learning rate of phase 2 (default 1e-4)', parseNumber)
    .option('--unfreeze <blocks>', 'backbone blocks trained in phase 2, counted from the top, or "all"', parseUnfreeze)
    .option('--patience <epochs>', 'epochs without a better validation macro-F1 before a phase stops (default 5)', parseInteger)
    .option('--no-augment', 'turn augmentation off (it only ever applies to training images)')
    .option('--rotation <degrees>', 'maximum random rotation of training images', parseNumber, STUDY_AUGMENTATION.rotationDegrees)
    .option('--shift <fraction>', 'maximum random shift of training images, as a fraction of width and height', parseNumber, STUDY_AUGMENTATION.widthShift)
    .option('--no-flip', 'turn random horizontal flips off')
    .option('--val-fraction <fraction>', 'share of training held out for validation when there is no validation folder (default 0.1)', parseNumber)
    .option('--limit-train <n>', 'use at most n training images, drawn per class in proportion (seeded)', parseInteger)
    .option('--limit-val <n>', 'use at most n validation images (seeded, stratified)', parseInteger)
    .option('--limit-test <n>', 'use at most n test images (seeded, stratified)', parseInteger)
    .option('--weights <source>', '"imagenet" (registered pretrained weights), "random", a Keras weight file (.h5, .weights.h5, .keras) or a TensorFlow.js layers-model folder', 'imagenet')
    .option('--weights-dir <dir>', 'folder holding the registered weight folders (default: $FER_WEIGHTS_DIR or data/weights)')
    .option('--class-alias <folder=class>', 'map a folder name to a class, e.g. contempt=disgust (repeatable)', collect)
    .option('--checkpoint-minutes <min>', 'minutes between checkpoints inside an epoch (default 10)', parseNumber)
    .option('--cache-memory <GiB>', 'largest decoded dataset kept in memory (default: 40% of RAM)', parseNumber)
    .addOption(new Option('--resize <fit>', 'how images are fitted to the input size (default fill)').choices(['fill', 'cover', 'contain']))
    .option('--no-evaluate', 'skip the test-split evaluation after training')
    .option('--no-figures', 'skip PNG figures (they need Chromium)')
    .option('--max-minutes <min>', 'training time budget; no epoch starts that would end after it', parseNumber)
    .addOption(new Option('--class-weight <mode>', 'loss weighting of classes (default none)').choices(['none', 'balanced']))
    .addOption(new Option('--backend <name>', 'TensorFlow.js backend (default: auto)').choices(['auto', 'node-gpu', 'node', 'wasm', 'cpu']))
    .option('--no-duplicates', 'skip hashing files to find images shared between splits')
    .option('-q, --quiet', 'no progress bars')
    .action(async (opts: TrainCliOptions) => {
      const augmentation = opts.augment
        ? { rotationDegrees: opts.rotation, widthShift: opts.shift, heightShift: opts.shift, horizontalFlip: opts.flip }
        : { rotationDegrees: 0, widthShift: 0, heightShift: 0, horizontalFlip: false };
      const limits = {
        ...(opts.limitTrain !== undefined ? { train: opts.limitTrain } : {}),
        ...(opts.limitVal !== undefined ? { validation: opts.limitVal } : {}),
        ...(opts.limitTest !== undefined ? { test: opts.limitTest } : {}),
      };
      try {
        const requested: TrainOptions = {
          model: opts.model,
          ...(opts.data !== undefined ? { dataDir: opts.data } : {}),
          ...(opts.runDir !== undefined ? { runDir: opts.runDir } : {}),
          ...(opts.runsDir !== undefined ? { runsDir: opts.runsDir } : {}),
          ...(opts.seed !== undefined ? { seed: opts.seed } : {}),
          ...(opts.inputSize !== undefined ? { inputSize: opts.inputSize } : {}),
          ...(opts.batchSize !== undefined ? { batchSize: opts.batchSize } : {}),
          ...(opts.dense !== undefined ? { dense: opts.dense } : {}),
          ...(opts.dropout !== undefined ? { dropout: opts.dropout } : {}),
          ...(opts.epochs1 !== undefined ? { phase1Epochs: opts.epochs1 } : {}),
          ...(opts.epochs2 !== undefined ? { phase2Epochs: opts.epochs2 } : {}),
          ...(opts.lr1 !== undefined ? { phase1LearningRate: opts.lr1 } : {}),
          ...(opts.lr2 !== undefined ? { phase2LearningRate: opts.lr2 } : {}),
          ...(opts.unfreeze !== undefined ? { unfreezeBlocks: opts.unfreeze } : {}),
          ...(opts.patience !== undefined ? { patience: opts.patience } : {}),
          augmentation,
          ...(opts.valFraction !== undefined ? { validationFraction: opts.valFraction } : {}),
          limits,
          weights: parseWeights(opts.weights),
          ...(opts.weightsDir !== undefined ? { weightsDir: opts.weightsDir } : {}),
          classAliases: parseAliases(opts.classAlias),
          ...(opts.checkpointMinutes !== undefined ? { checkpointMinutes: opts.checkpointMinutes } : {}),
          ...(opts.cacheMemory !== undefined ? { cacheMemoryBytes: Math.round(opts.cacheMemory * 2 ** 30) } : {}),
          ...(opts.resize !== undefined ? { resizeFit: opts.resize } : {}),
          evaluateTest: opts.evaluate,
          figures: opts.figures,
          ...(opts.maxMinutes !== undefined ? { maxMinutes: opts.maxMinutes } : {}),
          ...(opts.classWeight !== undefined ? { classWeight: opts.classWeight } : {}),
          ...(opts.backend !== undefined ? { backend: opts.backend } : {}),
          checkDuplicates: opts.duplicates,
          silent: opts.quiet ?? false,
        };
        const scaled = opts.scale === undefined ? requested : applyScale(requested, opts.scale);
        await train({ ...scaled, ...(opts.resume !== undefined ? { resume: opts.resume } : {}) });
      } catch (error) {
        if (error instanceof TrainingInterruptedError) {
          log.warn(error.message);
          process.exitCode = 130;
          return;
        }
        throw error;
      }
    });
}
