/**
 * fer-toolkit: facial emotion recognition with transfer learning on
 * TensorFlow.js. The command line (`fer`) is a thin layer over these exports.
 */
export { initBackend, activeBackend, type BackendInfo, type BackendPreference } from './backend';
export { CANONICAL_CLASSES, NUM_CLASSES, ClassAliases, toCanonicalClass, type EmotionClass } from './classes';
export { resolveDataDir, resolveRunsDir, resolveWeightsDir } from './paths';

export { discoverDataset, classCounts, type DiscoveredDataset, type ImageRecord, type SplitName } from './data/dataset';
export { decodeImage, readImageRgb, ImageDecodeError, IMAGE_EXTENSIONS, type DecodedImage, type ResizeFit } from './data/decode';
export { findDuplicates, countCrossSplitPairs, type DuplicateReport } from './data/duplicates';
export { stratifiedHoldOut } from './data/split';
export { ImageStore, type PixelBatch } from './data/store';
export { augmentBatch, randomTransforms, STUDY_AUGMENTATION, type AugmentationSettings } from './data/augment';
export { preprocess, pixelsToTensor, describePreprocessing } from './data/preprocess';

export { registerBuiltins, DEFAULT_MODEL } from './models/catalog';
export { getBackbone, getConfiguration, listBackbones, listConfigurations, registerBackbone, registerConfiguration } from './models/registry';
export { createModel, setTrainableBlocks, resolveConfiguration, type FerModel, type CreateModelOptions } from './models/factory';
export { readTfjsWeights, assignWeights, type WeightMap } from './models/weights';
export { exportLayersModel } from './models/io';
export type { BackboneSpec, ModelConfiguration, PreprocessingMode } from './models/types';

export { train, TrainingInterruptedError, type TrainResult } from './train/trainer';
export type { TrainOptions } from './train/options';
export { loadRun, type LoadedRun } from './train/load_run';
export type { EpochRecord } from './train/history';

export { classificationReport, reportToText, reportToCsv, confusionMatrix, macroF1 } from './eval/metrics';
export { predictStore, writeEvaluation } from './eval/evaluate';
export type { ClassificationReport, RocCurve, ClassMetrics } from './eval/types';

export { confusionMatrixFigure, rocFigure, trainingCurvesFigure, type Figure } from './figures/plots';
export { FigureExporter, saveFiguresPng, figureHtml, findChromium } from './figures/export';

export { Rng } from './util/rng';
export { log, setLogLevel } from './util/log';
