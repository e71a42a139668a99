/** Helpers that the notebooks in notebooks/ share; see docs/notebooks.md. */
export {
  display,
  setDisplayHandler,
  figureBundle,
  figureTitle,
  tableBundle,
  showFigure,
  showTable,
  showMarkdown,
  showImage,
  closeFigureExporter,
  PLOTLY_MIME_TYPE,
  type MimeBundle,
  type TableRow,
  type TableValue,
  type DataFrameLike,
  type ShowFigureOptions,
  type ShowTableOptions,
} from './display';
export { classDistributionFigure, labelledScatterFigure, rocGridFigure, confusionGridFigure, thinCurve, type NamedReport, type ScatterPoint } from './figures';
export { writeSampleGrid, imageSizeTable, duplicateRows, classCountRows, sampleSplits, splitNames, type ImageSizeRow, type SampleGridOptions } from './dataset';
export { explainRunGalleries, loadGallerySummary, type GallerySummary, type RunGalleries, type RunGalleryOptions } from './explain';
export { summarizeModel, type ModelSummary } from './model';
export {
  COMMITTED_SCALE,
  projectRoot,
  projectPath,
  configurationSlug,
  notebookRunDir,
  notebookImagesDir,
  parseNotebookWeights,
  chooseWeights,
  describeMachine,
  provenanceMarkdown,
  settingsRows,
  historyRows,
  reportRows,
  trainOrResume,
  loadRunSummary,
  loadNotebookRuns,
  type NotebookWeights,
  type WeightsChoice,
  type RunSummary,
} from './runs';
