#!/usr/bin/env node
/**
 * Writes the notebooks in notebooks/ from the templates below, so that the
 * twelve model notebooks cannot drift apart: edit this file, then run
 * `npm run notebooks:make`. Cells whose source is unchanged keep their
 * outputs; changed cells lose them until the notebook is executed again.
 *
 *   node scripts/make-notebooks.js          write notebooks/*.ipynb
 *   node scripts/make-notebooks.js --check  exit 1 when a notebook's code differs from the templates
 *
 * Every step in a notebook is a call into the fer-toolkit library, imported
 * by its package name (see docs/notebooks.md). The cells only choose
 * parameters and show results.
 *
 * NOTE: tslab 1.0.22 fails with "ReferenceError: x is not defined" on a
 * shorthand property ({ x }) that names a variable of an earlier cell, so the
 * templates write { x: x } there.
 */
'use strict';

const fs = require('node:fs');
const path = require('node:path');

const NOTEBOOK_DIR = path.join(__dirname, '..', 'notebooks');

/** The study's twelve configurations, in the order of the registry (lib/models/catalog.ts). */
const STUDY_CONFIGURATIONS = [
  'EfficientNetB2',
  'EfficientNetB3',
  'EfficientNetB4',
  'EfficientNetB5',
  'EfficientNetB2 Modified',
  'EfficientNetB3 Modified',
  'VGG16',
  'VGG19',
  'ResNet50V2',
  'ResNet101V2',
  'ResNet152V2',
  'ConvNeXtBase',
];

const KERNELSPEC = { name: 'fer-tslab', display_name: 'TypeScript (fer-toolkit)', language: 'typescript' };

/** Same rule as configurationSlug in lib/notebook/runs.ts. */
function slug(name) {
  return name.toLowerCase().replace(/[^a-z0-9.]+/g, '-').replace(/^-+|-+$/g, '');
}

function md(text) {
  return { cell_type: 'markdown', source: text.trim() };
}

function code(text) {
  return { cell_type: 'code', source: text.trim() };
}

/** The parameter lines every notebook starts with; FER_SCALE and FER_DATA override them. */
const PARAMETER_HELP = `// Parameters: edit them here, or set FER_DATA, FER_SCALE (smoke, reduced, full) and FER_WEIGHTS
// (auto, imagenet, random) before starting JupyterLab; \`npm run notebooks\` sets them from its options.
// smoke: seconds, every step once (CI); reduced: minutes per model on a 2-core CPU (the committed
// outputs); full: the configuration's own protocol (224 px, every image, up to 30 + 30 epochs).`;

function modelNotebook(configuration) {
  return [
    code(`
// ${configuration} on FER-2013: two-phase transfer learning, evaluation, figures and Grad-CAM,
// each step a call into the fer-toolkit library. The output of this cell records the run.
${PARAMETER_HELP}
import * as path from 'node:path';
import * as fer from 'fer-toolkit';

const configuration = ${JSON.stringify(configuration)};
const dataDir = process.env.FER_DATA ?? fer.projectPath('data', 'fer2013');
const scale = fer.parseScale(process.env.FER_SCALE ?? 'reduced');
// auto: ImageNet weights when they are on this machine (data/weights or the Keras cache), random otherwise.
const weightsRequest = fer.parseNotebookWeights(process.env.FER_WEIGHTS ?? 'auto');
// Test images explained for the Grad-CAM galleries (undefined: all).
const gradcamImages = { smoke: 21, reduced: 350, full: undefined }[scale];

await fer.initBackend();
const weights = fer.chooseWeights(configuration, weightsRequest);
// figures: false because the Figures section draws them from the same run, into the figures folder.
const options = fer.applyScale({ model: configuration, dataDir, weights: weights.weights, figures: false }, scale);
const base = fer.resolveConfiguration(configuration);
const runDir = fer.notebookRunDir(scale, configuration);
const imagesDir = fer.notebookImagesDir(scale, fer.configurationSlug(configuration));
const inputSize = options.inputSize ?? base.inputSize;
fer.showMarkdown(
  fer.provenanceMarkdown(\`\${configuration} (\${base.backbone} backbone)\`, {
    scale,
    dataset: dataDir,
    'input size': \`\${inputSize} x \${inputSize} px\`,
    epochs: \`up to \${options.phase1Epochs ?? base.phase1.epochs} (phase 1) + \${options.phase2Epochs ?? base.phase2.epochs} (phase 2)\`,
    weights: \`\${weights.weights} (\${weights.reason})\`,
    'run folder': runDir,
    figures: imagesDir,
  }),
);`),
    md(`
## Configuration

The registered configuration (the study's protocol) beside this run's settings. The scale fills the settings that the parameters leave open.`),
    code(`fer.showTable(fer.settingsRows(options));`),
    md(`
## Data

Images per class in each split of the dataset folder. Training and validation use at most the image limits above, drawn per class in proportion with the run's seed; the test split is used whole. The run folder's \`data-report.json\` lists the images used, skipped files, and identical files shared between splits.`),
    code(`
const dataset = fer.discoverDataset(dataDir);
fer.showTable(fer.classCountRows(dataset), { caption: 'Images per class and split' });`),
    md(`
## Model summary

Parameters per backbone block and in the head. Phase 1 trains the head only; phase 2 also trains the blocks marked below, while batch-norm layers stay frozen. This copy of the model has random weights and only serves the count.`),
    code(`
const sketch = await fer.createModel(configuration, { inputSize: inputSize, weights: 'random', dense: options.dense });
const summary = fer.summarizeModel(sketch, options.unfreezeBlocks ?? base.phase2.unfreezeBlocks);
sketch.model.dispose();
fer.showTable(summary.rows);
fer.showMarkdown(
  \`**\${summary.parameters.toLocaleString('en-US')} parameters.** Phase 1 trains \${summary.trainablePhase1.toLocaleString('en-US')} of them, \` +
    \`phase 2 trains \${summary.trainablePhase2.toLocaleString('en-US')}.\`,
);`),
    md(`
## Phase 1: the head on a frozen backbone

\`trainOrResume\` runs both phases in one call and writes the run folder; this section lists phase 1's epochs and the next one phase 2's. When the run folder already holds this run, the call resumes it instead of training again: a finished run is only evaluated again, and an interrupted one (interrupting the kernel writes a checkpoint at the next batch) continues from its checkpoint. Delete the run folder to train from scratch.`),
    code(`
const result = await fer.trainOrResume(options, runDir);
fer.showTable(fer.historyRows(result.history, 1), { caption: 'Phase 1: head only, backbone frozen' });`),
    md(`
## Phase 2: fine-tuning

Phase 2 starts from phase 1's best epoch and trains the top backbone blocks with the smaller learning rate. The epoch with the best validation macro-F1 of both phases is kept.`),
    code(`
fer.showTable(fer.historyRows(result.history, 2), { caption: 'Phase 2: fine-tuning' });
const best = result.best;
fer.showMarkdown(
  [
    best === null ? 'No epoch finished.' : \`Best epoch: \${best.globalEpoch} (phase \${best.phase}), validation macro-F1 \${best.valMacroF1.toFixed(4)}.\`,
    \`Training time: \${(result.trainingSeconds / 60).toFixed(1)} min.\`,
    ...result.stopReasons.map((reason) => \`- \${reason}\`),
  ].join('\\n\\n'),
);`),
    md(`
## Evaluation

The kept model on the test split, with scikit-learn's definitions from argmax predictions.`),
    code(`
const run = fer.loadRunSummary(runDir);
const report = run.report;
fer.showTable(fer.reportRows(report), { caption: \`\${configuration}, test split: \${report.numSamples} images\` });
fer.showMarkdown(
  \`Accuracy **\${run.accuracy.toFixed(4)}**, macro-F1 \${run.macroF1.toFixed(4)}, macro AUC \${run.macroAuc.toFixed(4)}, \` +
    \`log loss \${run.logLoss.toFixed(4)}.\`,
);`),
    md(`
## Figures

Each figure is interactive here and saved as PNG under the figures folder of the first cell (\`images/<configuration>/\` at the committed scale), both from the same figure object.`),
    code(`
await fer.showFigure(fer.trainingCurvesFigure(result.history, { title: \`\${configuration}: training curves\` }), {
  png: path.join(imagesDir, 'training_curves.png'),
  width: 1100,
  height: 500,
});
await fer.showFigure(fer.confusionMatrixFigure(report.confusionMatrix, report.classNames, { title: \`\${configuration}: confusion matrix (counts)\` }), {
  png: path.join(imagesDir, 'confusion_matrix.png'),
  width: 800,
  height: 700,
});
await fer.showFigure(
  fer.confusionMatrixFigure(report.confusionMatrix, report.classNames, { normalize: true, title: \`\${configuration}: confusion matrix (row-normalised)\` }),
  { png: path.join(imagesDir, 'confusion_matrix_normalized.png'), width: 800, height: 700 },
);
await fer.showFigure(fer.rocFigure(report.roc, report.macroAuc, { title: \`\${configuration}: ROC (one-vs-rest)\` }), {
  png: path.join(imagesDir, 'roc.png'),
  width: 750,
  height: 650,
});`),
    md(`
## Grad-CAM examples

Grad-CAM maps of the predicted class at the backbone's last convolutional feature map, on test images drawn per class in proportion. Each image's attention share is the share of the heatmap's mass inside a central ellipse that stands for the face; the galleries show correct predictions with attention on the face, correct ones with attention elsewhere, and misclassified images, highest confidence first. At small input sizes the feature map has few cells and the maps are coarse.`),
    code(`
const gradcam = await fer.explainRunGalleries(runDir, { outDir: path.join(imagesDir, 'gradcam'), limit: gradcamImages, tiles: 8, tileSize: 96, silent: true });
fer.showMarkdown(
  \`\${gradcam.methodTitle} at layer \\\`\${gradcam.layerName}\\\` (\${gradcam.layerShape.join(' x ')}) on \${gradcam.images} test images: \` +
    \`\${gradcam.counts.correct_focused} correct with attention on the face, \${gradcam.counts.correct_misplaced} correct with attention elsewhere, \` +
    \`\${gradcam.counts.misclassified} misclassified; mean attention share \${gradcam.meanAttentionShare.toFixed(3)}.\`,
);
for (const [category, file] of Object.entries(gradcam.galleries)) {
  fer.showImage(file, category.replace('_', ', '));
}`),
  ];
}

function datasetNotebook() {
  return [
    code(`
// The dataset: class distribution, a sample grid per class, image sizes, and identical files shared
// between splits. The output of this cell records where the outputs come from.
${PARAMETER_HELP}
import * as path from 'node:path';
import * as dfd from 'danfojs-node';
import * as fer from 'fer-toolkit';

const dataDir = process.env.FER_DATA ?? fer.projectPath('data', 'fer2013');
const scale = fer.parseScale(process.env.FER_SCALE ?? 'reduced');
// Images per split whose headers and hashes are read (undefined: all); smoke reads a sample to stay fast.
const imagesPerSplit = { smoke: 300, reduced: undefined, full: undefined }[scale];

const imagesDir = fer.notebookImagesDir(scale, 'dataset');
const dataset = fer.discoverDataset(dataDir);
const splitNames = fer.splitNames(dataset);
fer.showMarkdown(
  fer.provenanceMarkdown('Dataset', {
    scale,
    dataset: dataDir,
    layout: dataset.layout === 'splits' ? \`split folders (\${splitNames.join(', ')})\` : 'one folder of classes',
    'images read per split': imagesPerSplit ?? 'all',
    figures: imagesDir,
  }),
);`),
    md(`
## Class distribution

Images per class in each split, and each class's share of its split. FER-2013 is imbalanced: disgust has about a tenth of the images of most classes, and happiness the most.`),
    code(`
const counts = new dfd.DataFrame(fer.classCountRows(dataset));
for (const split of splitNames) {
  const column = counts.column(split);
  counts.addColumn(\`\${split} %\`, column.div(column.sum()).mul(100), { inplace: true });
}
fer.showTable(counts, { digits: 1 });
const perSplit = Object.fromEntries(splitNames.map((split) => [split, fer.classCountRows(dataset).map((row) => Number(row[split]))]));
await fer.showFigure(fer.classDistributionFigure(perSplit, fer.CANONICAL_CLASSES, 'Images per class and split'), {
  png: path.join(imagesDir, 'class_distribution.png'),
  width: 1000,
  height: 550,
});`),
    md(`
## Sample grid per class

Eight training images per class, drawn with a fixed seed.`),
    code(`
const grid = path.join(imagesDir, 'samples_per_class.png');
await fer.writeSampleGrid(dataset.splits.train ?? [], grid, { perClass: 8, title: 'Training images per class (seeded sample)' });
fer.showImage(grid, 'Training images per class');`),
    md(`
## Image sizes

Width, height, channel count and format from each file's header, counted per split.`),
    code(`
const sizes = new dfd.DataFrame(await fer.imageSizeTable(dataset.splits, { limit: imagesPerSplit }));
fer.showTable(sizes.sortValues('images', { ascending: false }) as dfd.DataFrame);`),
    md(`
## Duplicates between splits

Files with identical content (SHA-256) in more than one split. A test image that also sits in the training split inflates test scores; groups with conflicting labels are label noise.`),
    code(`
const duplicates = await fer.findDuplicates(fer.sampleSplits(dataset.splits, imagesPerSplit), { silent: true });
const pairs = fer.countCrossSplitPairs(duplicates);
fer.showMarkdown(
  duplicates.crossSplit.length === 0
    ? \`No identical files shared between splits among \${duplicates.filesHashed} files.\`
    : \`\${duplicates.crossSplit.length} groups of identical files span splits among \${duplicates.filesHashed} files \` +
        \`(\${Object.entries(pairs).map(([pair, n]) => \`\${pair}: \${n}\`).join(', ')}); \${duplicates.conflictingLabels} of them with conflicting labels. The first 20:\`,
);
if (duplicates.crossSplit.length > 0) {
  fer.showTable(fer.duplicateRows(duplicates, dataDir, 20));
}`),
  ];
}

function comparisonNotebook() {
  return [
    code(`
// All study configurations side by side, from the runs that their notebooks trained at this scale.
// The output of this cell records where the outputs come from.
${PARAMETER_HELP}
import * as path from 'node:path';
import * as dfd from 'danfojs-node';
import * as fer from 'fer-toolkit';

const scale = fer.parseScale(process.env.FER_SCALE ?? 'reduced');
const configurations = ${JSON.stringify(STUDY_CONFIGURATIONS, null, 2)};

const imagesDir = fer.notebookImagesDir(scale, 'comparison');
const { runs, missing } = fer.loadNotebookRuns(scale, configurations);
if (runs.length === 0) {
  throw new Error(\`No finished runs at scale \${scale} in \${fer.notebookRunDir(scale, '')}. Execute the model notebooks first (npm run notebooks).\`);
}
fer.showMarkdown(
  fer.provenanceMarkdown('Comparison of the study configurations', {
    scale,
    runs: \`\${runs.length} of \${configurations.length}\${missing.length > 0 ? \` (missing: \${missing.join(', ')})\` : ''}\`,
    dataset: [...new Set(runs.map((run) => run.dataDir))].join(', '),
    'test images': runs.map((run) => run.testImages).join(', '),
    'input sizes': [...new Set(runs.map((run) => run.inputSize))].join(', ') + ' px',
    figures: imagesDir,
  }),
);`),
    md(`
## All runs

Test-split metrics of every run, best accuracy first: accuracy, macro-averaged precision, recall and F1, log loss, macro AUC (one-vs-rest), parameters, and training time of both phases.`),
    code(`
const table = new dfd.DataFrame(
  runs.map((run) => ({
    configuration: run.configuration,
    accuracy: run.accuracy,
    'macro precision': run.macroPrecision,
    'macro recall': run.macroRecall,
    'macro F1': run.macroF1,
    'log loss': run.logLoss,
    'macro AUC': run.macroAuc,
    parameters: run.parameters,
    'training time (min)': run.trainingSeconds / 60,
    epochs: run.epochs,
    weights: run.weights,
  })),
);
fer.showTable(table.sortValues('accuracy', { ascending: false }) as dfd.DataFrame);`),
    md(`
## ROC curves and confusion matrices

One subplot per run: one-vs-rest ROC curves per class, and row-normalised confusion matrices (hover a cell for its count).`),
    code(`
const named = runs.map((run) => ({ name: run.configuration, report: run.report }));
const rows = Math.ceil(named.length / 4);
await fer.showFigure(fer.rocGridFigure(named, 4), { png: path.join(imagesDir, 'roc_grid.png'), width: 1400, height: 120 + 330 * rows });
await fer.showFigure(fer.confusionGridFigure(named, 4), { png: path.join(imagesDir, 'confusion_grid.png'), width: 1400, height: 140 + 340 * rows });`),
    md(`
## Accuracy against size and time

Test accuracy against the number of parameters (log scale) and against the training time of both phases.`),
    code(`
await fer.showFigure(
  fer.labelledScatterFigure(
    runs.map((run) => ({ label: run.configuration, x: run.parameters, y: run.accuracy })),
    { title: 'Test accuracy against parameters', xTitle: 'Parameters', yTitle: 'Test accuracy', logX: true },
  ),
  { png: path.join(imagesDir, 'accuracy_vs_parameters.png'), width: 1000, height: 600 },
);
await fer.showFigure(
  fer.labelledScatterFigure(
    runs.map((run) => ({ label: run.configuration, x: run.trainingSeconds / 60, y: run.accuracy })),
    { title: 'Test accuracy against training time', xTitle: 'Training time (min)', yTitle: 'Test accuracy' },
  ),
  { png: path.join(imagesDir, 'accuracy_vs_training_time.png'), width: 1000, height: 600 },
);`),
  ];
}

function explainabilityNotebook() {
  return [
    code(`
// Grad-CAM galleries of every study configuration, from the model notebooks' runs at this scale, and
// Grad-CAM, Grad-CAM++ and Eigen-CAM compared on the most accurate run. The output of this cell
// records where the outputs come from.
${PARAMETER_HELP}
import * as path from 'node:path';
import * as fer from 'fer-toolkit';

const scale = fer.parseScale(process.env.FER_SCALE ?? 'reduced');
const configurations = ${JSON.stringify(STUDY_CONFIGURATIONS, null, 2)};
// Test images explained per method in the method comparison (undefined: all).
const comparisonImages = { smoke: 21, reduced: 350, full: undefined }[scale];

await fer.initBackend();
const imagesDir = fer.notebookImagesDir(scale, 'explainability');
const { runs, missing } = fer.loadNotebookRuns(scale, configurations);
if (runs.length === 0) {
  throw new Error(\`No finished runs at scale \${scale} in \${fer.notebookRunDir(scale, '')}. Execute the model notebooks first (npm run notebooks).\`);
}
fer.showMarkdown(
  fer.provenanceMarkdown('Explainability: Grad-CAM galleries', {
    scale,
    runs: \`\${runs.length} of \${configurations.length}\${missing.length > 0 ? \` (missing: \${missing.join(', ')})\` : ''}\`,
    'input sizes': [...new Set(runs.map((run) => run.inputSize))].join(', ') + ' px',
    'method comparison images': comparisonImages ?? 'all',
    figures: imagesDir,
  }),
);`),
    md(`
## Attention per configuration

For each run, the images its notebook explained with Grad-CAM: how many fall in each gallery, and the mean attention share (the share of heatmap mass inside the central face ellipse, which covers 44% of the image; a uniform map scores 0.44).`),
    code(`
const galleries = runs.map((run) => ({ run, summary: fer.loadGallerySummary(path.join(fer.notebookImagesDir(scale, fer.configurationSlug(run.configuration)), 'gradcam')) }));
const withoutGalleries = galleries.filter((entry) => entry.summary === undefined).map((entry) => entry.run.configuration);
if (withoutGalleries.length > 0) {
  fer.showMarkdown(\`No Grad-CAM galleries yet for \${withoutGalleries.join(', ')}: execute their notebooks.\`);
}
fer.showTable(
  galleries.flatMap(({ run, summary }) =>
    summary === undefined
      ? []
      : [
          {
            configuration: run.configuration,
            'test accuracy': run.accuracy,
            layer: summary.layerName,
            images: summary.images,
            'correct, on the face': summary.counts.correct_focused,
            'correct, elsewhere': summary.counts.correct_misplaced,
            misclassified: summary.counts.misclassified,
            'mean attention share': summary.meanAttentionShare,
          },
        ],
  ),
);`),
    md(`
## Galleries

The three Grad-CAM galleries of each configuration, as its notebook wrote them.`),
    code(`
for (const { run, summary } of galleries) {
  if (summary === undefined) {
    continue;
  }
  fer.showMarkdown(\`### \${run.configuration}\`);
  for (const [category, file] of Object.entries(summary.galleries)) {
    fer.showImage(file, \`\${run.configuration}: \${category.replace('_', ', ')}\`);
  }
}`),
    md(`
## Methods compared on the most accurate run

Grad-CAM, Grad-CAM++ and Eigen-CAM of the same run on the same test images. Eigen-CAM does not depend on the class, so its galleries show where the features are strongest whatever the prediction.`),
    code(`
const bestRun = [...runs].sort((a, b) => b.accuracy - a.accuracy)[0];
const methodRows = [];
for (const method of ['gradcam', 'gradcam++', 'eigencam'] as const) {
  const result = await fer.explainRunGalleries(bestRun.runDir, {
    method,
    outDir: path.join(imagesDir, fer.configurationSlug(bestRun.configuration), method.replace('++', '_plus_plus')),
    limit: comparisonImages,
    tiles: 8,
    tileSize: 96,
    silent: true,
  });
  methodRows.push({
    method: result.methodTitle,
    layer: result.layerName,
    images: result.images,
    'correct, on the face': result.counts.correct_focused,
    'correct, elsewhere': result.counts.correct_misplaced,
    misclassified: result.counts.misclassified,
    'mean attention share': result.meanAttentionShare,
  });
  fer.showImage(result.galleries.correct_focused, \`\${bestRun.configuration}, \${result.methodTitle}: correct, attention on the face\`);
}
fer.showTable(methodRows, { caption: \`\${bestRun.configuration}: class activation map methods\` });`),
  ];
}

/** Returns every notebook in execution order, because the comparison and explainability notebooks read the model notebooks' runs. */
function notebooks() {
  const list = [{ file: '00-dataset.ipynb', cells: datasetNotebook() }];
  STUDY_CONFIGURATIONS.forEach((name, i) => {
    list.push({ file: `${String(i + 1).padStart(2, '0')}-${slug(name)}.ipynb`, cells: modelNotebook(name) });
  });
  list.push({ file: '13-comparison.ipynb', cells: comparisonNotebook() });
  list.push({ file: '14-explainability.ipynb', cells: explainabilityNotebook() });
  return list;
}

/** Splits text into nbformat's list of lines, each but the last ending in a newline. */
function sourceLines(text) {
  const lines = text.split('\n');
  return lines.map((line, i) => (i < lines.length - 1 ? `${line}\n` : line)).filter((line) => line !== '');
}

function joinSource(source) {
  return Array.isArray(source) ? source.join('') : source;
}

/** Builds an nbformat 4.5 notebook; cells keep the outputs of `previous` where id and source match. */
function buildNotebook(cells, previous) {
  const previousCells = new Map((previous?.cells ?? []).map((cell) => [cell.id, cell]));
  const built = cells.map((cell, i) => {
    const id = `cell-${String(i).padStart(2, '0')}`;
    const base = { cell_type: cell.cell_type, id, metadata: {}, source: sourceLines(cell.source) };
    if (cell.cell_type !== 'code') {
      return base;
    }
    const old = previousCells.get(id);
    const keep = old !== undefined && old.cell_type === 'code' && joinSource(old.source) === cell.source;
    return { ...base, execution_count: keep ? old.execution_count : null, outputs: keep ? old.outputs : [] };
  });
  const metadata = { ...(previous?.metadata ?? {}), kernelspec: KERNELSPEC };
  metadata.language_info ??= { name: 'typescript', file_extension: '.ts', mimetype: 'text/typescript' };
  return { cells: built, metadata, nbformat: 4, nbformat_minor: 5 };
}

/** Serialises like nbformat.write: sorted keys, one-space indent, UTF-8 as is, final newline. */
function serialise(value) {
  const sorted = (v) => {
    if (Array.isArray(v)) return v.map(sorted);
    if (v !== null && typeof v === 'object') {
      return Object.fromEntries(Object.keys(v).sort().map((key) => [key, sorted(v[key])]));
    }
    return v;
  };
  return `${JSON.stringify(sorted(value), null, 1)}\n`;
}

/** Returns what differs between a notebook on disk and its template: kernel, cell types or sources. */
function differences(onDisk, cells) {
  if (onDisk === undefined) {
    return ['missing'];
  }
  const found = [];
  if (onDisk.metadata?.kernelspec?.name !== KERNELSPEC.name) {
    found.push(`kernel ${onDisk.metadata?.kernelspec?.name} instead of ${KERNELSPEC.name}`);
  }
  if (onDisk.cells.length !== cells.length) {
    found.push(`${onDisk.cells.length} cells instead of ${cells.length}`);
  }
  cells.forEach((cell, i) => {
    const other = onDisk.cells[i];
    if (other !== undefined && (other.cell_type !== cell.cell_type || joinSource(other.source) !== cell.source)) {
      found.push(`cell ${i} differs`);
    }
  });
  return found;
}

function readNotebook(file) {
  return fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')) : undefined;
}

function main() {
  const check = process.argv.includes('--check');
  const unknown = process.argv.slice(2).filter((arg) => arg !== '--check');
  if (unknown.length > 0) {
    console.error(`make-notebooks: unknown argument(s) ${unknown.join(' ')}. Usage: node scripts/make-notebooks.js [--check]`);
    process.exit(2);
  }
  const expected = notebooks();
  const names = new Set(expected.map((notebook) => notebook.file));
  const stale = fs.existsSync(NOTEBOOK_DIR)
    ? fs.readdirSync(NOTEBOOK_DIR).filter((name) => name.endsWith('.ipynb') && !names.has(name))
    : [];
  let failed = false;
  for (const { file, cells } of expected) {
    const target = path.join(NOTEBOOK_DIR, file);
    const onDisk = readNotebook(target);
    const found = differences(onDisk, cells.map((cell) => ({ ...cell, source: sourceLines(cell.source).join('') })));
    if (check) {
      if (found.length > 0) {
        console.error(`notebooks/${file}: ${found.join(', ')}; regenerate with npm run notebooks:make.`);
        failed = true;
      }
      continue;
    }
    if (found.length === 0) {
      continue;
    }
    fs.mkdirSync(NOTEBOOK_DIR, { recursive: true });
    const normalised = cells.map((cell) => ({ ...cell, source: sourceLines(cell.source).join('') }));
    fs.writeFileSync(target, serialise(buildNotebook(normalised, onDisk)));
    console.log(`wrote notebooks/${file}`);
  }
  if (stale.length > 0) {
    console.error(`notebooks/ contains notebooks without a template: ${stale.join(', ')}. Delete them or add a template.`);
    failed = failed || check;
  }
  process.exit(failed ? 1 : 0);
}

if (require.main === module) {
  main();
}

module.exports = { STUDY_CONFIGURATIONS, notebooks, slug };
