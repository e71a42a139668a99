/** Shapes of the benchmark's run configurations and results, shared by `fer bench`, its worker and scripts/bench_keras.py. */

/** One benchmark run of one framework on one backbone, as JSON for the child process. */
export interface RunConfig {
  backbone: string;
  inputSize: number;
  batchSize: number;
  /** Head dense layer sizes and dropout rate, as the toolkit's configuration defines them. */
  dense: number[];
  dropout: number;
  preprocessing: string;
  /** Epochs per phase; the first one of each phase warms up and is reported apart. */
  epochs: number;
  augment: boolean;
  seed: number;
  dataDir: string;
  trainImages: number;
  validationImages: number;
  /** Training files and labels (class indices in canonical order) that both frameworks read. */
  trainFiles: Array<{ path: string; label: number }>;
  /** Layer names that train in phase 2 (the toolkit's choice for --unfreeze), for Keras. */
  phase2TrainableLayers: string[];
  unfreeze: number | 'all';
  inferenceRuns: number;
  /** Folder for the run's files; the child removes nothing in it. */
  workDir: string;
}

/** Throughput of one training phase. */
export interface PhaseResult {
  /** Images per second over the epochs after the first, data loading included. */
  imagesPerSecond: number;
  /** Images per second of the first epoch (kernel start-up, graph tracing, cache fills). */
  firstEpochImagesPerSecond: number;
  epochSeconds: number[];
}

export interface InferenceResult {
  /** Median milliseconds of one batch-1 call, the result read back to the host. */
  batch1Ms: number;
  /** Images per second of batch-32 calls (median call time). */
  batch32ImagesPerSecond: number;
}

export interface RunResult {
  framework: 'ours' | 'keras';
  backbone: string;
  inputSize: number;
  phase1: PhaseResult;
  phase2: PhaseResult;
  /** Ours without augmentation: phase 1 trained on cached features (first epoch includes extracting them). */
  phase1Cached?: boolean;
  inference: Record<string, InferenceResult>;
  /** Peak resident memory of the whole process, in bytes. */
  peakRssBytes: number;
  versions: Record<string, string>;
  notes: string[];
}
