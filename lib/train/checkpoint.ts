/**
 * Checkpoints that hold everything needed to resume a run exactly: model
 * weights, optimizer moments and step count, the position inside the epoch,
 * early-stopping counters and the metric history. Shuffle orders, augmentation
 * and dropout draw from seeds derived from (run seed, phase, epoch, step), so
 * a resumed run repeats the batches the interrupted one would have seen.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import * as tf from '@tensorflow/tfjs';

import { assignWeights } from '../models/weights';
import { loadNamedTensors, modelWeights, saveNamedTensors, writeFileAtomic } from '../models/io';
import type { EpochRecord } from './history';

export interface EpochAccumulator {
  lossSum: number;
  correct: number;
  seen: number;
  seconds: number;
}

export interface BestEpoch {
  valMacroF1: number;
  globalEpoch: number;
  phase: 1 | 2;
}

export interface TrainState {
  version: 1;
  phase: 1 | 2;
  /** Epoch in progress or next to start, from 1, within the phase. */
  epochInPhase: number;
  /** Batches of that epoch already trained (0: the epoch has not started). */
  step: number;
  partial: EpochAccumulator;
  best: BestEpoch | null;
  epochsWithoutImprovement: number;
  history: EpochRecord[];
  /** Seconds spent in training and validation so far, over all sessions. */
  trainingSeconds: number;
  finished: boolean;
  stopReasons: string[];
}

export function initialState(phase: 1 | 2): TrainState {
  return {
    version: 1,
    phase,
    epochInPhase: 1,
    step: 0,
    partial: { lossSum: 0, correct: 0, seen: 0, seconds: 0 },
    best: null,
    epochsWithoutImprovement: 0,
    history: [],
    trainingSeconds: 0,
    finished: false,
    stopReasons: [],
  };
}

export const CHECKPOINT_DIR = 'checkpoint';
export const BEST_DIR = 'best';

export function hasCheckpoint(runDir: string): boolean {
  return fs.existsSync(path.join(runDir, CHECKPOINT_DIR, 'state.json'));
}

/**
 * Writes the checkpoint into a fresh folder and swaps it in with renames,
 * so a crash mid-write leaves the previous checkpoint intact.
 */
/** Optimizer state as tf.Optimizer's getWeights and setWeights exchange it. */
export type NamedTensor = { name: string; tensor: tf.Tensor };

export async function saveCheckpoint(
  runDir: string,
  state: TrainState,
  model: tf.LayersModel,
  optimizer: { getWeights(): Promise<NamedTensor[]> } | undefined,
): Promise<void> {
  const final = path.join(runDir, CHECKPOINT_DIR);
  const tmp = `${final}.tmp`;
  const old = `${final}.old`;
  await fs.promises.rm(tmp, { recursive: true, force: true });
  await fs.promises.mkdir(tmp, { recursive: true });
  await saveNamedTensors(path.join(tmp, 'model'), modelWeights(model));
  if (optimizer !== undefined) {
    const weights = await optimizer.getWeights();
    await saveNamedTensors(
      path.join(tmp, 'optimizer'),
      weights.map((w, i) => ({ name: `${i}:${w.name}`, tensor: w.tensor })),
    );
  }
  await writeFileAtomic(path.join(tmp, 'state.json'), JSON.stringify(state, null, 1));
  await fs.promises.rm(old, { recursive: true, force: true });
  if (fs.existsSync(final)) {
    await fs.promises.rename(final, old);
  }
  await fs.promises.rename(tmp, final);
  await fs.promises.rm(old, { recursive: true, force: true });
}

export async function loadState(runDir: string): Promise<TrainState> {
  const file = path.join(runDir, CHECKPOINT_DIR, 'state.json');
  const state = JSON.parse(await fs.promises.readFile(file, 'utf8')) as TrainState;
  if (state.version !== 1) {
    throw new Error(`Unsupported checkpoint version ${String(state.version)} in ${file}.`);
  }
  return state;
}

/** Loads model weights saved by saveCheckpoint or saveBestWeights into `model`. */
export async function loadModelWeights(model: tf.LayersModel, base: string): Promise<void> {
  const weights = await loadNamedTensors(base);
  try {
    assignWeights(model, weights, { requireAll: true, sourceLabel: base });
  } finally {
    weights.forEach((t) => t.dispose());
  }
}

/**
 * Restores optimizer state saved for the same trainable variables, in the same
 * order. Returns false when the checkpoint holds no optimizer state (it was
 * written before the first step of a phase).
 */
export async function loadOptimizerState(
  runDir: string,
  optimizer: { setWeights(weights: NamedTensor[]): Promise<void> },
  variables: readonly tf.Variable[],
): Promise<boolean> {
  const base = path.join(runDir, CHECKPOINT_DIR, 'optimizer');
  if (!fs.existsSync(`${base}.json`)) {
    return false;
  }
  const saved = await loadNamedTensors(base);
  const entries = [...saved.entries()].map(([name, tensor]) => ({ name: name.slice(name.indexOf(':') + 1), tensor }));
  // Adam stores [iterations, first moments..., second moments...], one moment per variable.
  const moments = entries.length - 1;
  if (moments === 0) {
    entries.forEach((e) => e.tensor.dispose());
    return false;
  }
  if (moments !== variables.length * 2) {
    throw new Error(
      `The checkpoint in ${runDir} holds optimizer state for ${moments / 2} variables, but the model trains ${variables.length}. ` +
        'It was written by a different model or unfreeze setting; start a new run instead of resuming.',
    );
  }
  variables.forEach((variable, i) => {
    const first = entries[1 + i]?.tensor;
    if (first === undefined || !tf.util.arraysEqual(first.shape, variable.shape)) {
      throw new Error(`Optimizer state ${i} in ${runDir} does not match variable ${variable.name}; start a new run instead of resuming.`);
    }
  });
  // The moments take the names of this process's variables, which may carry other unique suffixes than the saving process's.
  const renamed = entries.map((entry, i) => {
    if (i === 0) {
      return entry;
    }
    const variable = variables[(i - 1) % variables.length] as tf.Variable;
    return { name: `${variable.name}/${i <= variables.length ? 'm' : 'v'}`, tensor: entry.tensor };
  });
  await optimizer.setWeights(renamed);
  return true;
}

export async function saveBestWeights(runDir: string, model: tf.LayersModel): Promise<void> {
  await saveNamedTensors(path.join(runDir, BEST_DIR, 'model'), modelWeights(model));
}

export function bestWeightsBase(runDir: string): string {
  return path.join(runDir, BEST_DIR, 'model');
}
