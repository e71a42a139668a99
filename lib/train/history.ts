/** One row of a run's metric history, written after every epoch. */
export interface EpochRecord {
  /** 1: head only with the backbone frozen; 2: fine-tuning. */
  phase: 1 | 2;
  /** Epoch number within the phase, from 1. */
  epoch: number;
  /** Epoch number over the whole run, from 1. */
  globalEpoch: number;
  learningRate: number;
  trainLoss: number;
  trainAccuracy: number;
  valLoss: number;
  valAccuracy: number;
  valMacroF1: number;
  /** Wall time of the epoch including validation, in seconds. */
  seconds: number;
  /** Training images seen in the epoch: the whole training split unless the time budget cut it short. */
  trainImages: number;
  /** Training images per second over the epoch. */
  imagesPerSecond: number;
}
