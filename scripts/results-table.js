#!/usr/bin/env node
/**
 * Prints the Markdown table of docs/results.md. It has one row per study
 * configuration: parameters (ours, and Keras's published backbone count
 * without top plus the same head), and the test accuracy, macro-F1 and
 * training time of the run that its notebook trained at a scale.
 *
 *   npm run build && node scripts/results-table.js [smoke|reduced|full]
 *
 * Reads runs/notebooks/<scale>/<configuration>/ (written by
 * `npm run notebooks -- --scale <scale>`); a configuration without a finished
 * run gets the text "no run" in its row.
 */
'use strict';

const { STUDY_CONFIGURATIONS } = require('./make-notebooks.js');

async function main() {
  const fer = require('../dist/index.js');
  const scale = fer.parseScale(process.argv[2] ?? 'reduced');
  await fer.initBackend();
  const { runs } = fer.loadNotebookRuns(scale, STUDY_CONFIGURATIONS);
  const byName = new Map(runs.map((run) => [run.configuration, run]));

  const rows = [
    '| Configuration | Parameters (ours) | Parameters (Keras) | Input | Weights | Epochs | Test accuracy | Test macro-F1 | Training time |',
    '|---|---:|---:|---:|---|---:|---:|---:|---:|',
  ];
  for (const name of STUDY_CONFIGURATIONS) {
    // The parameter count does not depend on the input size, so a small random model gives it quickly.
    const model = await fer.createModel(name, { inputSize: 32, weights: 'random' });
    const ours = model.model.countParams();
    const headSet = new Set(model.headLayers);
    const head = model.model.layers.filter((l) => headSet.has(l.name)).reduce((n, l) => n + l.countParams(), 0);
    const kerasBackbone = model.backbone.kerasParamsNoTop;
    const keras = kerasBackbone === undefined ? 'unknown' : (kerasBackbone + head).toLocaleString('en-US');
    model.model.dispose();

    const run = byName.get(name);
    const cells =
      run === undefined
        ? ['', '', 'no run', '', '', '']
        : [
            `${run.inputSize}`,
            run.weights,
            `${run.epochs}`,
            run.accuracy.toFixed(4),
            run.macroF1.toFixed(4),
            `${(run.trainingSeconds / 60).toFixed(1)} min`,
          ];
    rows.push(`| ${name} | ${ours.toLocaleString('en-US')} | ${keras} | ${cells.join(' | ')} |`);
  }
  console.log(rows.join('\n'));
}

main().catch((error) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
