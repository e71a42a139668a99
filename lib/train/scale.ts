/**
 * Training scales: the same configuration and code path at three sizes.
 *
 * - full: the configuration's own protocol (the study's: 224x224 input, every
 *   image, up to 30 + 30 epochs). Meant for a GPU and ImageNet weights.
 * - reduced: small input, a stratified training subset and a few epochs, so
 *   every configuration ends in minutes on a 2-core CPU; the test split stays
 *   whole so test scores are comparable across configurations.
 * - smoke: the smallest run that exercises every step (CI, notebooks).
 * A scale only fills options the caller left unset.
 */
import type { TrainOptions } from './options';

export type TrainingScale = 'smoke' | 'reduced' | 'full';

export const TRAINING_SCALES: readonly TrainingScale[] = ['smoke', 'reduced', 'full'];

export const SCALE_PRESETS: Readonly<Record<TrainingScale, Partial<TrainOptions>>> = {
  smoke: {
    inputSize: 32,
    batchSize: 16,
    phase1Epochs: 1,
    phase2Epochs: 1,
    unfreezeBlocks: 1,
    patience: 1,
    limits: { train: 140, validation: 70, test: 70 },
  },
  reduced: {
    inputSize: 64,
    batchSize: 32,
    phase1Epochs: 1,
    phase2Epochs: 2,
    unfreezeBlocks: 2,
    patience: 2,
    limits: { train: 1400, validation: 350 },
  },
  full: {},
};

export function parseScale(value: string): TrainingScale {
  if (!(TRAINING_SCALES as readonly string[]).includes(value)) {
    throw new Error(`Invalid scale "${value}": expected one of ${TRAINING_SCALES.join(', ')}.`);
  }
  return value as TrainingScale;
}

/** Returns `options` with the scale's values filled in where the caller set none. */
export function applyScale(options: TrainOptions, scale: TrainingScale): TrainOptions {
  const preset = SCALE_PRESETS[scale];
  const merged: TrainOptions = { ...preset, ...stripUndefined(options) } as TrainOptions;
  merged.limits = { ...preset.limits, ...stripUndefined(options.limits ?? {}) };
  return merged;
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
