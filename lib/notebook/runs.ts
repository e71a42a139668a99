/**
 * Run handling shared by the notebooks: where their files go, which weights a
 * configuration can start from, training that resumes an existing run folder,
 * and the summary of a finished run that the comparison notebook tabulates.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { activeBackend } from '../backend';
import { STUDY_AUGMENTATION } from '../data/augment';
import type { ClassificationReport } from '../eval/types';
import { findTfjsWeights, resolveConfiguration } from '../models/factory';
import { kerasFileName, resolveKerasCacheDir } from '../models/keras_weights';
import { getBackbone } from '../models/registry';
import { resolveDataDir } from '../paths';
import type { EpochRecord } from '../train/history';
import { resolveTrainOptions, type ResolvedTrainOptions, type TrainOptions } from '../train/options';
import type { TrainingScale } from '../train/scale';
import type { TableRow } from './display';
import { train, type TrainResult } from '../train/trainer';

/** Scale whose outputs and images/ are committed; runs at other scales write their PNGs elsewhere by default. */
export const COMMITTED_SCALE: TrainingScale = 'reduced';

/** Returns the folder of the fer-toolkit package (the repository root in a checkout). */
export function projectRoot(): string {
  // This file is dist/notebook/runs.js once built.
  return path.resolve(__dirname, '..', '..');
}

/** Returns a path inside the project folder (see projectRoot). */
export function projectPath(...parts: string[]): string {
  return path.join(projectRoot(), ...parts);
}

/** Returns the folder-safe name of a configuration, as run folders use it: "EfficientNetB2 Modified" -> "efficientnetb2-modified". */
export function configurationSlug(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9.]+/g, '-').replace(/^-+|-+$/g, '');
}

/** Run folder of a notebook's training run: runs/notebooks/<scale>/<slug>, under FER_NOTEBOOK_RUNS when set. */
export function notebookRunDir(scale: TrainingScale, configuration: string): string {
  const base = process.env.FER_NOTEBOOK_RUNS ?? projectPath('runs', 'notebooks');
  return path.resolve(base, scale, configurationSlug(configuration));
}

/**
 * Folder for a notebook's PNG figures: `<FER_IMAGES_DIR>/<name>` when that
 * variable is set; otherwise images/<name> at the committed scale, and
 * runs/notebooks/<scale>/images/<name> at other scales, so that a smoke run
 * never replaces the committed images.
 */
export function notebookImagesDir(scale: TrainingScale, name: string): string {
  const fromEnv = process.env.FER_IMAGES_DIR;
  if (fromEnv !== undefined && fromEnv !== '') {
    return path.resolve(fromEnv, name);
  }
  return scale === COMMITTED_SCALE ? projectPath('images', name) : projectPath('runs', 'notebooks', scale, 'images', name);
}

/** Weight choice of a notebook: 'auto' takes ImageNet weights when they are on this machine and random ones otherwise. */
export type NotebookWeights = 'auto' | 'imagenet' | 'random';

export function parseNotebookWeights(value: string): NotebookWeights {
  if (value !== 'auto' && value !== 'imagenet' && value !== 'random') {
    throw new Error(`Invalid weights "${value}": expected auto, imagenet or random (set FER_WEIGHTS or the notebook's parameters cell).`);
  }
  return value;
}

export interface WeightsChoice {
  weights: 'imagenet' | 'random';
  /** Why: where the ImageNet weights are, or why they are missing. */
  reason: string;
}

/**
 * Decides a configuration's initial backbone weights without downloading:
 * ImageNet weights when the registered TensorFlow.js folder (data/weights or
 * FER_WEIGHTS_DIR) or Keras's file in the weight cache exists, else random.
 * 'imagenet' and 'random' are returned as given; a missing ImageNet file then
 * fails later in train() with its own message.
 */
export function chooseWeights(configuration: string, requested: NotebookWeights): WeightsChoice {
  if (requested !== 'auto') {
    return { weights: requested, reason: 'set by the parameters' };
  }
  const backbone = getBackbone(resolveConfiguration(configuration).backbone);
  if (backbone.weights.tfjsFolder !== undefined) {
    try {
      return { weights: 'imagenet', reason: `TensorFlow.js weights in ${findTfjsWeights(backbone)}` };
    } catch (error) {
      return { weights: 'random', reason: (error as Error).message };
    }
  }
  const keras = backbone.weights.kerasNoTop;
  if (keras === undefined) {
    return { weights: 'random', reason: `no ImageNet weights are registered for ${backbone.name}` };
  }
  const cached = path.join(resolveKerasCacheDir(), kerasFileName(keras.url));
  if (fs.existsSync(cached)) {
    return { weights: 'imagenet', reason: `Keras weights in ${cached}` };
  }
  return {
    weights: 'random',
    reason: `Keras's ImageNet file for ${backbone.name} is not in ${path.dirname(cached)}; download ${keras.url} there (or set FER_WEIGHTS_CACHE) to start from ImageNet weights`,
  };
}

/** Describes the machine in one line: CPU model and cores, memory, OS, Node.js, and the tfjs backend once initialised. */
export function describeMachine(): string {
  const cpus = os.cpus();
  const cpu = cpus.length > 0 ? `${cpus[0]?.model.trim()} (${cpus.length} cores)` : 'unknown CPU';
  const memory = `${Math.round(os.totalmem() / 2 ** 30)} GiB RAM`;
  const backend = activeBackend();
  const tfjs = backend === undefined ? '' : `, tfjs backend ${backend.name} (${backend.packageName}${backend.gpu ? ', GPU' : ''})`;
  return `${cpu}, ${memory}, ${os.type()} ${os.release()}, Node.js ${process.versions.node}${tfjs}`;
}

/**
 * Returns a Markdown table of where outputs come from: the given entries
 * (scale, dataset, input size, epochs, ...), then the machine and the date.
 * Paths inside the project are shown relative to it.
 */
export function provenanceMarkdown(title: string, entries: Record<string, string | number>): string {
  const root = projectRoot();
  const show = (value: string | number): string => {
    const text = String(value);
    const relative = path.isAbsolute(text) ? path.relative(root, text) : text;
    const shown = path.isAbsolute(text) && !relative.startsWith('..') ? relative : text;
    return shown.replace(/\|/g, '\\|');
  };
  const rows = Object.entries({ ...entries, machine: describeMachine(), date: new Date().toISOString().replace(/\.\d+Z$/, 'Z') }).map(
    ([key, value]) => `| ${key} | ${show(value)} |`,
  );
  return [`# ${title}`, '', '| | |', '|---|---|', ...rows].join('\n');
}

/**
 * Compares a run's settings with its registered configuration (the study's
 * protocol): one row per setting, with the value the scale or the caller
 * chose and the configuration's own.
 */
export function settingsRows(options: TrainOptions): TableRow[] {
  const base = resolveConfiguration(options.model);
  const limit = (value: number | undefined) => (value === undefined ? 'all' : value);
  const augmentation = options.augmentation ?? STUDY_AUGMENTATION;
  const augmentationText = `rotation ${augmentation.rotationDegrees} deg, shift ${augmentation.widthShift}, flip ${augmentation.horizontalFlip ? 'yes' : 'no'}`;
  const rows: Array<[string, unknown, unknown]> = [
    ['backbone', base.backbone, base.backbone],
    ['input size (px)', options.inputSize ?? base.inputSize, base.inputSize],
    ['batch size', options.batchSize ?? base.batchSize, base.batchSize],
    ['head dense layers', (options.dense ?? base.dense).join(', '), base.dense.join(', ')],
    ['dropout', options.dropout ?? base.dropout, base.dropout],
    ['phase 1 epochs (max)', options.phase1Epochs ?? base.phase1.epochs, base.phase1.epochs],
    ['phase 1 learning rate', options.phase1LearningRate ?? base.phase1.learningRate, base.phase1.learningRate],
    ['phase 2 epochs (max)', options.phase2Epochs ?? base.phase2.epochs, base.phase2.epochs],
    ['phase 2 learning rate', options.phase2LearningRate ?? base.phase2.learningRate, base.phase2.learningRate],
    ['phase 2 unfrozen blocks', options.unfreezeBlocks ?? base.phase2.unfreezeBlocks, base.phase2.unfreezeBlocks],
    ['early-stopping patience (epochs)', options.patience ?? 5, 5],
    ['training images (max)', limit(options.limits?.train), 'all'],
    ['validation images (max)', limit(options.limits?.validation), 'all'],
    ['test images (max)', limit(options.limits?.test), 'all'],
    ['augmentation', augmentationText, `rotation ${STUDY_AUGMENTATION.rotationDegrees} deg, shift ${STUDY_AUGMENTATION.widthShift}, flip yes`],
    ['initial backbone weights', typeof options.weights === 'object' ? JSON.stringify(options.weights) : (options.weights ?? 'imagenet'), 'imagenet'],
  ];
  return rows.map(([setting, run, configuration]) => ({ setting, 'this run': String(run), configuration: String(configuration) }));
}

/** Option fields whose change makes an existing run folder a different experiment. */
const RUN_IDENTITY: ReadonlyArray<keyof ResolvedTrainOptions> = [
  'model',
  'dataDir',
  'seed',
  'inputSize',
  'batchSize',
  'phase1Epochs',
  'phase2Epochs',
  'unfreezeBlocks',
  'patience',
  'limits',
  'weights',
];

/**
 * Trains into `runDir`, or resumes it when it already contains a run: an
 * interrupted run continues from its checkpoint, and a finished one is only
 * evaluated again, so re-running a notebook does not retrain from scratch.
 *
 * @throws Error when the folder contains a run with other settings (named in the
 * message); delete the folder or pick another to train anew.
 */
export async function trainOrResume(options: TrainOptions, runDir: string): Promise<TrainResult> {
  const dir = path.resolve(runDir);
  const configFile = path.join(dir, 'config.json');
  if (!fs.existsSync(configFile)) {
    return train({ ...options, runDir: dir });
  }
  const saved = JSON.parse(await fs.promises.readFile(configFile, 'utf8')) as ResolvedTrainOptions;
  const requested = resolveTrainOptions(options, resolveDataDir(options.dataDir), dir);
  const changed = RUN_IDENTITY.filter((key) => JSON.stringify(saved[key]) !== JSON.stringify(requested[key]));
  if (changed.length > 0) {
    const details = changed.map((key) => `${key} ${JSON.stringify(saved[key])} -> ${JSON.stringify(requested[key])}`).join(', ');
    throw new Error(`Run folder ${dir} already contains a run with other settings (${details}). Delete the folder to train anew, or choose another run folder.`);
  }
  return train({ model: saved.model, resume: dir, ...(options.silent !== undefined ? { silent: options.silent } : {}) });
}

/** Returns one row per epoch of a phase: losses, accuracies, validation macro-F1 and time. */
export function historyRows(history: readonly EpochRecord[], phase: 1 | 2): TableRow[] {
  return history
    .filter((record) => record.phase === phase)
    .map((record) => ({
      epoch: record.epoch,
      'train loss': record.trainLoss,
      'train accuracy': record.trainAccuracy,
      'validation loss': record.valLoss,
      'validation accuracy': record.valAccuracy,
      'validation macro-F1': record.valMacroF1,
      'images/s': record.imagesPerSecond,
      seconds: record.seconds,
    }));
}

/** Returns one row per class (precision, recall, F1, support), then the macro and weighted averages. */
export function reportRows(report: ClassificationReport): TableRow[] {
  const rows: TableRow[] = report.perClass.map((metrics) => ({
    class: metrics.className,
    precision: metrics.precision,
    recall: metrics.recall,
    'F1': metrics.f1,
    support: metrics.support,
  }));
  const present = report.perClass.reduce((sum, metrics) => sum + metrics.support, 0);
  rows.push({ class: 'macro average', precision: report.macro.precision, recall: report.macro.recall, 'F1': report.macro.f1, support: present });
  rows.push({ class: 'weighted average', precision: report.weighted.precision, recall: report.weighted.recall, 'F1': report.weighted.f1, support: present });
  return rows;
}

/** A finished run as the comparison notebook shows it. */
export interface RunSummary {
  runDir: string;
  dataDir: string;
  configuration: string;
  backbone: string;
  parameters: number;
  inputSize: number;
  weights: string;
  epochs: number;
  trainingSeconds: number;
  accuracy: number;
  macroPrecision: number;
  macroRecall: number;
  macroF1: number;
  logLoss: number;
  macroAuc: number;
  testImages: number;
  report: ClassificationReport;
  history: EpochRecord[];
}

function readJson<T>(file: string): T {
  if (!fs.existsSync(file)) {
    throw new Error(`${file} not found: the run has not finished training and test evaluation. Run its notebook first.`);
  }
  return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
}

/** Reads a finished run's config.json, history.json and evaluation/test/metrics.json. */
export function loadRunSummary(runDir: string): RunSummary {
  const dir = path.resolve(runDir);
  const config = readJson<ResolvedTrainOptions & { backbone: string; parameters: number }>(path.join(dir, 'config.json'));
  const history = readJson<EpochRecord[]>(path.join(dir, 'history.json'));
  // metrics.json writes non-finite numbers as strings ("NaN"); Number() turns them back.
  const metrics = readJson<ClassificationReport & { trainingSeconds?: number }>(path.join(dir, 'evaluation', 'test', 'metrics.json'));
  const weights = typeof config.weights === 'string' ? config.weights : JSON.stringify(config.weights);
  return {
    runDir: dir,
    dataDir: config.dataDir,
    configuration: config.configuration.name,
    backbone: config.backbone,
    parameters: config.parameters,
    inputSize: config.inputSize,
    weights,
    epochs: history.length,
    trainingSeconds: metrics.trainingSeconds ?? history.reduce((sum, record) => sum + record.seconds, 0),
    accuracy: Number(metrics.accuracy),
    macroPrecision: Number(metrics.macro.precision),
    macroRecall: Number(metrics.macro.recall),
    macroF1: Number(metrics.macro.f1),
    logLoss: Number(metrics.logLoss),
    macroAuc: Number(metrics.macroAuc),
    testImages: metrics.numSamples,
    report: metrics,
    history,
  };
}

/**
 * Summaries of the notebooks' finished runs at a scale, in the order of
 * `configurations`, plus the configurations without a finished run.
 */
export function loadNotebookRuns(scale: TrainingScale, configurations: readonly string[]): { runs: RunSummary[]; missing: string[] } {
  const runs: RunSummary[] = [];
  const missing: string[] = [];
  for (const name of configurations) {
    const dir = notebookRunDir(scale, name);
    if (fs.existsSync(path.join(dir, 'evaluation', 'test', 'metrics.json'))) {
      runs.push(loadRunSummary(dir));
    } else {
      missing.push(name);
    }
  }
  return { runs, missing };
}
