/**
 * Plotly figures that only the notebooks draw: class distribution, run
 * comparisons, and ROC curves and confusion matrices of many runs side by
 * side. Like ../figures/plots.ts, each function returns a plain figure object
 * that showFigure both displays and exports to PNG.
 */
import type { ClassificationReport } from '../eval/types';
import type { Figure } from '../figures/plots';

const FONT = { family: 'DejaVu Sans, Liberation Sans, Arial, sans-serif', size: 13 };

/** Plotly's default colorway: one colour per class, the same in every subplot. */
const COLORWAY = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

/** Matplotlib's "Blues", as in the single confusion matrix of ../figures/plots.ts. */
const BLUES: [number, string][] = [
  [0, '#f7fbff'],
  [0.25, '#c6dbef'],
  [0.5, '#6baed6'],
  [0.75, '#2171b5'],
  [1, '#08306b'],
];

/** Builds grouped bars of images per class, one bar group per class and one colour per split. */
export function classDistributionFigure(counts: Record<string, readonly number[]>, classNames: readonly string[], title = 'Images per class'): Figure {
  const data = Object.entries(counts).map(([split, values], i) => ({
    type: 'bar',
    name: split,
    x: [...classNames],
    y: [...values],
    text: values.map(String),
    textposition: 'outside',
    marker: { color: COLORWAY[i % COLORWAY.length] },
    hovertemplate: `${split}<br>%{x}: %{y} images<extra></extra>`,
  }));
  return {
    data,
    layout: {
      title: { text: title },
      font: FONT,
      barmode: 'group',
      xaxis: { title: { text: 'Class' } },
      yaxis: { title: { text: 'Images' }, rangemode: 'tozero' },
      legend: { orientation: 'h', x: 0.5, xanchor: 'center', y: -0.2 },
      margin: { l: 70, r: 30, t: 70, b: 100 },
    },
  };
}

export interface ScatterPoint {
  label: string;
  x: number;
  y: number;
}

export interface ScatterOptions {
  title: string;
  xTitle: string;
  yTitle: string;
  /** Logarithmic x axis (parameter counts span orders of magnitude). */
  logX?: boolean;
}

/** Builds a labelled scatter plot, one marker per point with its label beside it. */
export function labelledScatterFigure(points: readonly ScatterPoint[], options: ScatterOptions): Figure {
  return {
    data: [
      {
        type: 'scatter',
        mode: 'markers+text',
        x: points.map((p) => p.x),
        y: points.map((p) => p.y),
        text: points.map((p) => p.label),
        textposition: 'top center',
        marker: { size: 10, color: COLORWAY[0] },
        hovertemplate: `%{text}<br>${options.xTitle} %{x}<br>${options.yTitle} %{y:.4f}<extra></extra>`,
      },
    ],
    layout: {
      title: { text: options.title },
      font: FONT,
      xaxis: { title: { text: options.xTitle }, type: options.logX === true ? 'log' : 'linear' },
      yaxis: { title: { text: options.yTitle } },
      showlegend: false,
      margin: { l: 70, r: 30, t: 70, b: 70 },
    },
  };
}

export interface NamedReport {
  name: string;
  report: ClassificationReport;
}

interface Cell {
  xaxis: string;
  yaxis: string;
  xKey: string;
  yKey: string;
  x: [number, number];
  y: [number, number];
}

/** Lays out `count` subplots in rows of `columns`, top left first, with gaps between them (paper coordinates). */
function gridCells(count: number, columns: number, gap = 0.06, topGap = 0.1): Cell[] {
  const rows = Math.max(1, Math.ceil(count / columns));
  const width = (1 - gap * (columns - 1)) / columns;
  const height = (1 - topGap * (rows - 1)) / rows;
  return Array.from({ length: count }, (_, i) => {
    const row = Math.floor(i / columns);
    const column = i % columns;
    const x0 = column * (width + gap);
    const y1 = 1 - row * (height + topGap);
    const n = i === 0 ? '' : String(i + 1);
    return {
      xaxis: `x${n}`,
      yaxis: `y${n}`,
      xKey: `xaxis${n}`,
      yKey: `yaxis${n}`,
      x: [x0, x0 + width],
      y: [Math.max(0, y1 - height), y1],
    };
  });
}

function subplotTitle(text: string, cell: Cell): Record<string, unknown> {
  return {
    text: `<b>${text}</b>`,
    x: (cell.x[0] + cell.x[1]) / 2,
    y: cell.y[1],
    xref: 'paper',
    yref: 'paper',
    xanchor: 'center',
    yanchor: 'bottom',
    yshift: 4,
    showarrow: false,
    font: { size: 13 },
  };
}

/** Returns the number of grid columns actually used, after checking the inputs. */
function gridColumns(reports: readonly NamedReport[], columns: number, caller: string): number {
  if (reports.length === 0) {
    throw new Error(`${caller}: no runs given. Pass at least one finished run's test report.`);
  }
  if (!Number.isInteger(columns) || columns < 1) {
    throw new Error(`${caller}: invalid column count ${columns}; expected an integer >= 1.`);
  }
  return Math.min(columns, reports.length);
}

/**
 * Drops ROC points closer than `step` (in both FPR and TPR) to the last kept
 * point, keeping the first and last. Twelve subplots of full curves would make
 * the figure megabytes large; at a step of 0.002 the drawn curve moves by at
 * most that much.
 */
export function thinCurve(fpr: readonly number[], tpr: readonly number[], step = 0.002): { fpr: number[]; tpr: number[] } {
  const keptFpr: number[] = [];
  const keptTpr: number[] = [];
  fpr.forEach((x, i) => {
    const y = tpr[i] as number;
    const last = keptFpr.length - 1;
    const isEnd = i === 0 || i === fpr.length - 1;
    if (isEnd || Math.abs(x - (keptFpr[last] as number)) >= step || Math.abs(y - (keptTpr[last] as number)) >= step) {
      keptFpr.push(x);
      keptTpr.push(y);
    }
  });
  return { fpr: keptFpr, tpr: keptTpr };
}

/**
 * Builds one ROC subplot per run (one-vs-rest curves of every class, chance
 * diagonal dashed), with the macro AUC in each subplot title. Classes keep
 * one colour across subplots and share one legend. Curves are thinned (see
 * thinCurve).
 */
export function rocGridFigure(reports: readonly NamedReport[], columns = 4, title = 'ROC curves (one-vs-rest), test split'): Figure {
  const cols = gridColumns(reports, columns, 'rocGridFigure');
  const cells = gridCells(reports.length, cols);
  const data: Record<string, unknown>[] = [];
  const layout: Record<string, unknown> = { title: { text: title }, font: FONT, margin: { l: 60, r: 30, t: 90, b: 60 } };
  const annotations: Record<string, unknown>[] = [];
  reports.forEach(({ name, report }, i) => {
    const cell = cells[i] as Cell;
    for (const curve of report.roc) {
      const thinned = thinCurve(curve.fpr, curve.tpr);
      data.push({
        type: 'scatter',
        mode: 'lines',
        x: thinned.fpr,
        y: thinned.tpr,
        name: curve.className,
        legendgroup: curve.className,
        showlegend: i === 0,
        line: { width: 1.5, color: COLORWAY[curve.index % COLORWAY.length] },
        xaxis: cell.xaxis,
        yaxis: cell.yaxis,
        hovertemplate: `${name}: ${curve.className} (AUC ${curve.auc.toFixed(3)})<br>FPR %{x:.3f}<br>TPR %{y:.3f}<extra></extra>`,
      });
    }
    data.push({
      type: 'scatter',
      mode: 'lines',
      x: [0, 1],
      y: [0, 1],
      showlegend: false,
      line: { dash: 'dash', color: '#7f7f7f', width: 1 },
      xaxis: cell.xaxis,
      yaxis: cell.yaxis,
      hoverinfo: 'skip',
    });
    const auc = Number.isFinite(report.macroAuc) ? report.macroAuc.toFixed(3) : 'n/a';
    annotations.push(subplotTitle(`${name} (macro AUC ${auc})`, cell));
    layout[cell.xKey] = { domain: cell.x, anchor: cell.yaxis, range: [-0.01, 1.01], dtick: 0.5, title: { text: i >= reports.length - cols ? 'FPR' : '' } };
    layout[cell.yKey] = { domain: cell.y, anchor: cell.xaxis, range: [-0.01, 1.01], dtick: 0.5, title: { text: i % cols === 0 ? 'TPR' : '' } };
  });
  layout.annotations = annotations;
  layout.legend = { orientation: 'h', x: 0.5, xanchor: 'center', y: -0.08, yanchor: 'top' };
  return { data, layout };
}

/**
 * Builds one row-normalised confusion matrix per run, side by side, with one
 * shared colour scale from 0 to 1. Rows are true classes top to bottom, and
 * hovering a cell shows its fraction and count.
 */
export function confusionGridFigure(reports: readonly NamedReport[], columns = 4, title = 'Confusion matrices (row-normalised), test split'): Figure {
  const cols = gridColumns(reports, columns, 'confusionGridFigure');
  const cells = gridCells(reports.length, cols, 0.08, 0.12);
  const data: Record<string, unknown>[] = [];
  const layout: Record<string, unknown> = { title: { text: title }, font: FONT, margin: { l: 90, r: 30, t: 90, b: 80 } };
  const annotations: Record<string, unknown>[] = [];
  reports.forEach(({ name, report }, i) => {
    const cell = cells[i] as Cell;
    const matrix = report.confusionMatrix;
    const fractions = matrix.map((row) => {
      const support = row.reduce((sum, count) => sum + count, 0);
      return row.map((count) => (support > 0 ? count / support : null));
    });
    data.push({
      type: 'heatmap',
      z: fractions,
      customdata: matrix,
      x: report.classNames,
      y: report.classNames,
      colorscale: BLUES,
      zmin: 0,
      zmax: 1,
      showscale: i === 0,
      colorbar: { title: { text: 'fraction of true class', side: 'right' }, len: 0.6 },
      xaxis: cell.xaxis,
      yaxis: cell.yaxis,
      hovertemplate: `${name}<br>true %{y}<br>predicted %{x}<br>fraction %{z:.3f} (count %{customdata})<extra></extra>`,
    });
    const accuracy = Number.isFinite(report.accuracy) ? report.accuracy.toFixed(3) : 'n/a';
    annotations.push(subplotTitle(`${name} (accuracy ${accuracy})`, cell));
    layout[cell.xKey] = { domain: cell.x, anchor: cell.yaxis, type: 'category', tickangle: -45, showticklabels: i >= reports.length - cols };
    layout[cell.yKey] = { domain: cell.y, anchor: cell.xaxis, type: 'category', autorange: 'reversed', showticklabels: i % cols === 0 };
  });
  layout.annotations = annotations;
  return { data, layout };
}
