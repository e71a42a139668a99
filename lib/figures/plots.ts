/**
 * Plotly figures of evaluation and training results.
 *
 * Every function returns a plain plotly figure object ({data, layout}) and
 * draws nothing itself, so the same object can be shown interactively in a
 * notebook, inlined into a standalone HTML file or exported to PNG (see
 * ./export.ts). Layouts set no width or height, and the renderer decides them.
 */

import type { RocCurve } from '../eval/types';
import type { EpochRecord } from '../train/history';

/** A plotly figure: traces plus layout, as accepted by Plotly.newPlot and Plotly.toImage. */
export interface Figure {
  data: Record<string, unknown>[];
  layout: Record<string, unknown>;
}

export interface ConfusionMatrixOptions {
  /** Show each row as fractions of the true class's support instead of counts. Default false. */
  normalize?: boolean;
  title?: string;
}

export interface RocOptions {
  /** Title before the macro AUC. Default "ROC curves (one-vs-rest)". */
  title?: string;
}

export interface TrainingCurvesOptions {
  title?: string;
}

const FONT = { family: 'DejaVu Sans, Liberation Sans, Arial, sans-serif', size: 13 };

/** Plotly's default colorway, so traces of one kind keep one colour across subplots. */
const COLOR_TRAIN = '#1f77b4';
const COLOR_VALIDATION = '#ff7f0e';
const COLOR_F1 = '#2ca02c';
const COLOR_GUIDE = '#7f7f7f';

/**
 * Matplotlib's "Blues" (ColorBrewer), light for low and dark for high values.
 * Plotly's built-in 'Blues' runs the other way, from dark blue to light grey.
 */
const BLUES: [number, string][] = [
  [0, '#f7fbff'],
  [0.125, '#deebf7'],
  [0.25, '#c6dbef'],
  [0.375, '#9ecae1'],
  [0.5, '#6baed6'],
  [0.625, '#4292c6'],
  [0.75, '#2171b5'],
  [0.875, '#08519c'],
  [1, '#08306b'],
];

/** Formats a metric with fixed decimals, or "n/a" when it is NaN or infinite. */
function formatMetric(value: number, decimals: number): string {
  return Number.isFinite(value) ? value.toFixed(decimals) : 'n/a';
}

/** Maps NaN and infinities to null, which plotly draws as a gap in both PNG and HTML output. */
function finiteOrNull(value: number): number | null {
  return Number.isFinite(value) ? value : null;
}

function validateConfusionMatrix(matrix: number[][], classNames: readonly string[]): void {
  const n = classNames.length;
  if (n === 0) {
    throw new Error('confusionMatrixFigure: classNames is empty. Pass the model classes in output order.');
  }
  if (new Set(classNames).size !== n) {
    throw new Error(
      `confusionMatrixFigure: classNames contains duplicates (${classNames.join(', ')}). ` +
        'Each class needs a unique name because names label the heatmap axes.',
    );
  }
  if (matrix.length !== n) {
    throw new Error(
      `confusionMatrixFigure: matrix has ${matrix.length} rows but there are ${n} classes. ` +
        'Pass counts[trueIndex][predictedIndex] over all model classes.',
    );
  }
  matrix.forEach((row, i) => {
    if (row.length !== n) {
      throw new Error(
        `confusionMatrixFigure: row ${i} (${classNames[i]}) has ${row.length} columns, expected ${n}.`,
      );
    }
    row.forEach((count, j) => {
      if (!Number.isFinite(count) || count < 0) {
        throw new Error(
          `confusionMatrixFigure: invalid count ${count} at row ${i} (${classNames[i]}), ` +
            `column ${j} (${classNames[j]}). Counts must be finite and non-negative.`,
        );
      }
    });
  });
}

/**
 * Builds a confusion-matrix heatmap: rows are true classes from top to bottom
 * in class order, columns are predicted classes from left to right.
 *
 * Each cell carries a text annotation with its count, or with the fraction of
 * its row's support (2 decimals) when `normalize` is set. In normalised mode a
 * row without support has no fraction, so its cells stay empty (null z, empty
 * text) and its axis label shows n=0.
 */
export function confusionMatrixFigure(
  matrix: number[][],
  classNames: readonly string[],
  options: ConfusionMatrixOptions = {},
): Figure {
  validateConfusionMatrix(matrix, classNames);
  const normalize = options.normalize ?? false;
  const names = [...classNames];
  const supports = matrix.map((row) => row.reduce((sum, count) => sum + count, 0));

  const z: (number | null)[][] = matrix.map((row, i) =>
    row.map((count) => {
      if (!normalize) return count;
      return supports[i] > 0 ? count / supports[i] : null;
    }),
  );
  const maxValue = normalize ? 1 : Math.max(1, ...matrix.flat());

  // Cell labels as layout annotations (rather than the heatmap's texttemplate)
  // so that callers and tests can read the exact strings from the figure.
  const annotations: Record<string, unknown>[] = [];
  z.forEach((row, i) => {
    row.forEach((value, j) => {
      let text = '';
      if (value !== null) {
        text = normalize ? value.toFixed(2) : String(value);
      }
      annotations.push({
        x: names[j],
        y: names[i],
        xref: 'x',
        yref: 'y',
        text,
        showarrow: false,
        // Cells in the dark upper half of BLUES need white text to stay readable.
        font: { color: value !== null && value > maxValue / 2 ? 'white' : 'black', size: 13 },
      });
    });
  });

  const heatmap: Record<string, unknown> = {
    type: 'heatmap',
    z,
    x: names,
    y: names,
    colorscale: BLUES,
    zmin: 0,
    zmax: maxValue,
    xgap: 1,
    ygap: 1,
    colorbar: { title: { text: normalize ? 'fraction of true class' : 'count', side: 'right' } },
    hovertemplate: normalize
      ? 'true %{y}<br>predicted %{x}<br>fraction %{z:.3f}<extra></extra>'
      : 'true %{y}<br>predicted %{x}<br>count %{z}<extra></extra>',
  };

  const yaxis: Record<string, unknown> = {
    title: { text: 'True class' },
    // Categories run bottom to top by default, so reverse them to list the
    // true classes top to bottom in class order.
    autorange: 'reversed',
    type: 'category',
    automargin: true,
    showgrid: false,
  };
  if (normalize) {
    // A normalised row hides its size, so the axis label shows the support.
    yaxis.tickmode = 'array';
    yaxis.tickvals = names;
    yaxis.ticktext = names.map((name, i) => `${name} (n=${supports[i]})`);
  }

  const defaultTitle = normalize ? 'Confusion matrix (row-normalised)' : 'Confusion matrix';
  return {
    data: [heatmap],
    layout: {
      title: { text: options.title ?? defaultTitle },
      font: FONT,
      xaxis: { title: { text: 'Predicted class' }, type: 'category', automargin: true, showgrid: false },
      yaxis,
      annotations,
      plot_bgcolor: 'white',
      margin: { l: 90, r: 30, t: 70, b: 80 },
    },
  };
}

/**
 * Builds one-vs-rest ROC curves, one line per class named "class (AUC 0.873)",
 * with the chance diagonal dashed and the macro AUC in the title.
 */
export function rocFigure(curves: RocCurve[], macroAuc: number, options: RocOptions = {}): Figure {
  for (const curve of curves) {
    if (curve.fpr.length !== curve.tpr.length) {
      throw new Error(
        `rocFigure: curve of class "${curve.className}" has ${curve.fpr.length} fpr values ` +
          `but ${curve.tpr.length} tpr values. Both must have one value per threshold.`,
      );
    }
  }

  const classTraces = curves.map((curve) => ({
    type: 'scatter',
    mode: 'lines',
    x: curve.fpr,
    y: curve.tpr,
    name: `${curve.className} (AUC ${formatMetric(curve.auc, 3)})`,
    line: { width: 2 },
    hovertemplate: `${curve.className}<br>FPR %{x:.3f}<br>TPR %{y:.3f}<extra></extra>`,
  }));
  const chance = {
    type: 'scatter',
    mode: 'lines',
    x: [0, 1],
    y: [0, 1],
    name: 'chance (AUC 0.500)',
    line: { dash: 'dash', color: COLOR_GUIDE, width: 1.5 },
    hoverinfo: 'skip',
  };

  const baseTitle = options.title ?? 'ROC curves (one-vs-rest)';
  // A small pad beyond 0-1 keeps lines that run along an edge from being clipped to half width.
  const range = [-0.01, 1.01];
  return {
    data: [...classTraces, chance],
    layout: {
      title: { text: `${baseTitle}, macro AUC ${formatMetric(macroAuc, 3)}` },
      font: FONT,
      xaxis: {
        title: { text: 'False positive rate' },
        range,
        constrain: 'domain',
        dtick: 0.2,
        tickformat: '.1f',
        zeroline: false,
      },
      yaxis: {
        title: { text: 'True positive rate' },
        range,
        dtick: 0.2,
        tickformat: '.1f',
        zeroline: false,
        scaleanchor: 'x',
        scaleratio: 1,
      },
      // Inside the lower right, where ROC curves above the diagonal rarely run.
      legend: {
        x: 0.98,
        y: 0.02,
        xanchor: 'right',
        yanchor: 'bottom',
        bgcolor: 'rgba(255,255,255,0.85)',
        bordercolor: '#cccccc',
        borderwidth: 1,
      },
      margin: { l: 70, r: 30, t: 70, b: 70 },
    },
  };
}

/** Returns the x position between the last phase-1 epoch and the first phase-2 epoch, if both phases are present. */
function phaseBoundary(history: readonly EpochRecord[]): number | undefined {
  const firstPhase2 = history.find((record) => record.phase === 2);
  const phase1 = history.filter((record) => record.phase === 1);
  if (firstPhase2 === undefined || phase1.length === 0) return undefined;
  const lastPhase1 = phase1[phase1.length - 1];
  return (lastPhase1.globalEpoch + firstPhase2.globalEpoch) / 2;
}

/**
 * Builds the training curves as two subplots side by side: loss on the left,
 * accuracy and validation macro-F1 on the right, both over globalEpoch.
 *
 * Records are sorted by globalEpoch. A dashed vertical line marks the start
 * of phase 2 (fine-tuning) when the history has both phases. NaN or infinite
 * metrics appear as gaps.
 */
export function trainingCurvesFigure(history: EpochRecord[], options: TrainingCurvesOptions = {}): Figure {
  if (history.length === 0) {
    throw new Error('trainingCurvesFigure: history is empty. Plot it after at least one epoch has been recorded.');
  }
  const records = [...history].sort((a, b) => a.globalEpoch - b.globalEpoch);
  const epochs = records.map((record) => record.globalEpoch);

  const line = (
    name: string,
    values: number[],
    color: string,
    axes: { xaxis: string; yaxis: string },
    dash: 'solid' | 'dot' = 'solid',
  ): Record<string, unknown> => ({
    type: 'scatter',
    mode: 'lines+markers',
    name,
    x: epochs,
    y: values.map(finiteOrNull),
    ...axes,
    line: { color, dash, width: 2 },
    marker: { color, size: 6 },
    hovertemplate: `${name}<br>epoch %{x}<br>%{y:.4f}<extra></extra>`,
  });
  const left = { xaxis: 'x', yaxis: 'y' };
  const right = { xaxis: 'x2', yaxis: 'y2' };

  const data = [
    line('train loss', records.map((r) => r.trainLoss), COLOR_TRAIN, left),
    line('validation loss', records.map((r) => r.valLoss), COLOR_VALIDATION, left),
    line('train accuracy', records.map((r) => r.trainAccuracy), COLOR_TRAIN, right),
    line('validation accuracy', records.map((r) => r.valAccuracy), COLOR_VALIDATION, right),
    line('validation macro-F1', records.map((r) => r.valMacroF1), COLOR_F1, right, 'dot'),
  ];

  // Whole-epoch ticks, at most about ten per axis.
  const first = epochs[0];
  const last = epochs[epochs.length - 1];
  const dtick = Math.max(1, Math.ceil((last - first + 1) / 10));
  const epochAxis = (domain: [number, number], anchor: string): Record<string, unknown> => ({
    domain,
    anchor,
    title: { text: 'Epoch' },
    tickmode: 'linear',
    tick0: first,
    dtick,
    range: [first - 0.5, last + 0.5],
    zeroline: false,
  });

  const shapes: Record<string, unknown>[] = [];
  const annotations: Record<string, unknown>[] = [
    subplotTitle('Loss', 0.225),
    subplotTitle('Accuracy and macro-F1', 0.775),
  ];
  const boundary = phaseBoundary(records);
  if (boundary !== undefined) {
    for (const [xref, yref] of [
      ['x', 'y domain'],
      ['x2', 'y2 domain'],
    ]) {
      shapes.push({
        type: 'line',
        xref,
        yref,
        x0: boundary,
        x1: boundary,
        y0: 0,
        y1: 1,
        line: { dash: 'dash', color: COLOR_GUIDE, width: 1.5 },
      });
      annotations.push({
        x: boundary,
        y: 1,
        xref,
        yref,
        text: 'phase 2',
        showarrow: false,
        xanchor: 'left',
        yanchor: 'top',
        font: { color: COLOR_GUIDE, size: 11 },
      });
    }
  }

  return {
    data,
    layout: {
      title: { text: options.title ?? 'Training curves' },
      font: FONT,
      xaxis: epochAxis([0, 0.45], 'y'),
      yaxis: { domain: [0, 1], anchor: 'x', title: { text: 'Cross-entropy loss' }, rangemode: 'tozero' },
      xaxis2: epochAxis([0.55, 1], 'y2'),
      yaxis2: { domain: [0, 1], anchor: 'x2', title: { text: 'Accuracy / macro-F1' }, range: [0, 1.02] },
      shapes,
      annotations,
      legend: { orientation: 'h', x: 0.5, xanchor: 'center', y: -0.2, yanchor: 'top' },
      margin: { l: 70, r: 30, t: 90, b: 110 },
    },
  };
}

/** Returns a subplot heading centred above the subplot at `x` (paper coordinates). */
function subplotTitle(text: string, x: number): Record<string, unknown> {
  return {
    text: `<b>${text}</b>`,
    x,
    y: 1,
    xref: 'paper',
    yref: 'paper',
    xanchor: 'center',
    yanchor: 'bottom',
    yshift: 8,
    showarrow: false,
    font: { size: 14 },
  };
}
