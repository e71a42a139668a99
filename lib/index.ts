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

export {
  ClassActivationMap,
  GradCam,
  GradCamPlusPlus,
  EigenCam,
  ScoreCam,
  createCam,
  CAM_METHODS,
  type CamMethod,
  type CamOptions,
  type ScoreCamOptions,
  type ExplainOptions,
  type Explanation,
  type CamContext,
} from './explain/cam';
export { splitModel, featureMapLayers, type SplitModel, type ScoreKind } from './explain/graph';
export {
  attentionShare,
  categorise,
  CentralFaceRegion,
  DEFAULT_FOCUS_THRESHOLD,
  type FaceRegion,
  type RegionImage,
  type RegionMask,
  type AttentionCategory,
} from './explain/attention';
export { renderOverlay, writeRgbPng, applyColormap, resizeBilinear, COLORMAPS, type ColormapName, type OverlayOptions, type RgbImage } from './explain/overlay';
export { writeGallery, type GalleryTile } from './explain/gallery';
export {
  explainStore,
  selectTiles,
  writeGalleries,
  writeOverlays,
  writeExplanationRecords,
  type ExplainedImage,
  type ExplainContext,
} from './explain/run';

export { Predictor, FALLBACK_MODES, type FallbackMode, type PredictorOptions, type Prediction, type ImageResult, type FaceResult } from './predict/predictor';
export { predictFiles, type PredictFilesOptions, type PredictSummary } from './predict/batch';
export { FaceDetector, DETECTORS, DETECTOR_INPUT_SIZE, type DetectorName, type FaceDetectorOptions } from './predict/detect';
export {
  FaceClassifier,
  ClassListMismatchError,
  canonicalOrder,
  checkRunClasses,
  preprocessPixels,
  COLOUR_MODES,
  CLASSIFIER_ENGINES,
  RUN_ONNX_FILE,
  type ColourMode,
  type ClassifierEngine,
} from './predict/classify';
export { walkInputs, countInputs, type InputEntry } from './predict/inputs';
export { writeAnnotatedImage, annotationSvg, type Annotation } from './predict/annotate';
export { CsvWriter, OutputPlanner, csvRows, CSV_COLUMNS, RECORD_SCHEMA_VERSION, type PredictionRecord } from './predict/output';
export { faceApi, loadFaceApiNet, defaultFaceApiModelDir, FACEAPI_EXPRESSION_LABELS, type Box } from './predict/faceapi';
export { predictStoreFaceApi, comparisonTable, FACEAPI_TO_CANONICAL, FACEAPI_EXPRESSION_MODEL } from './predict/faceapi_expressions';
export { mergeDetections, tileGrid, cropRegion, iou, type Detection, type Region } from './predict/geometry';
export { applyScale, parseScale, SCALE_PRESETS, TRAINING_SCALES, type TrainingScale } from './train/scale';

// Notebook helpers (display in the tslab kernel, run folders, comparison figures).
export * from './notebook';

export { exportOnnx, supportedLayerClasses, UnsupportedLayerError, ONNX_OPSET, type OnnxExportOptions } from './onnx/export';
export { OnnxModel, ensureOnnxFile, onnxRuntime, onnxRuntimeError, onnxRuntimeVersion, type OnnxSessionOptions } from './onnx/runtime';
export { modelFlops, layerForwardFlops, type ModelFlops } from './perf/flops';
export { machineInfo, measureMatMulGflops, type MachineInfo } from './perf/machine';
export { runBench, formatReport, parseBenchModels, type BenchOptions, type BenchReport, type BenchModel, type ModelCost } from './perf/bench';
export type { RunConfig, RunResult, PhaseResult, InferenceResult } from './perf/types';
