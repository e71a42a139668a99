/**
 * Rich output for notebooks that run on the tslab kernel: plotly figures,
 * tables, Markdown and images, each sent as one Jupyter MIME bundle.
 *
 * A figure is sent as `application/vnd.plotly.v1+json`, which JupyterLab (with
 * the jupyterlab-plotly extension from requirements-notebooks.txt), VS Code
 * and the project's nbconvert template draw interactively without storing
 * plotly.js in the notebook. The same figure object is exported to PNG through
 * headless Chromium (../figures/export.ts), and the bundle's Markdown
 * alternative shows that PNG where plotly cannot be drawn.
 *
 * Outside a tslab kernel, display() prints the bundle's text/plain form to
 * stdout, as IPython's display() does in a terminal.
 */
import * as path from 'node:path';

import { FigureExporter } from '../figures/export';
import type { Figure } from '../figures/plots';

/** Jupyter MIME bundle: MIME type to content (a string, or JSON for JSON types). */
export type MimeBundle = Record<string, unknown>;

export const PLOTLY_MIME_TYPE = 'application/vnd.plotly.v1+json';

interface DisplayMessage {
  data: MimeBundle;
  metadata: Record<string, unknown>;
  transient: Record<string, unknown>;
}

type DisplayWriter = (message: DisplayMessage, update: boolean) => void;

let handlerOverride: ((bundle: MimeBundle) => void) | undefined;

/**
 * Finds the display_data writer of the running tslab kernel. tslab's public
 * display API sends one MIME type per message, so the writer it keeps in
 * dist/jupyter.js (`lastWriteDisplayData`, tslab 1.0.22) is used to send a
 * whole bundle. The module is looked up in require.cache, so whichever tslab
 * copy started the kernel is found.
 */
function tslabWriter(): DisplayWriter | undefined {
  for (const [file, loaded] of Object.entries(require.cache)) {
    if (!/[\\/]tslab[\\/]dist[\\/]jupyter\.js$/.test(file)) {
      continue;
    }
    const writer = (loaded?.exports as { lastWriteDisplayData?: unknown } | undefined)?.lastWriteDisplayData;
    if (typeof writer === 'function') {
      return writer as DisplayWriter;
    }
  }
  return undefined;
}

/** Sends bundles to `handler` instead of the kernel (tests, other kernels); no argument restores the default. */
export function setDisplayHandler(handler?: (bundle: MimeBundle) => void): void {
  handlerOverride = handler;
}

/** Shows a MIME bundle as the output of the running notebook cell. */
export function display(bundle: MimeBundle): void {
  if (handlerOverride !== undefined) {
    handlerOverride(bundle);
    return;
  }
  const writer = tslabWriter();
  if (writer === undefined) {
    process.stdout.write(`${String(bundle['text/plain'] ?? '')}\n`);
    return;
  }
  writer({ data: bundle, metadata: {}, transient: {} }, false);
}

function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Returns a path relative to the kernel's working folder (the notebook's folder), with forward slashes, for links in outputs. */
function outputLink(file: string): string {
  return path.relative(process.cwd(), path.resolve(file)).split(path.sep).join('/');
}

/** Returns a Markdown image that shows `file`, linked relative to the notebook's folder. */
function markdownImage(file: string, alt: string): string {
  return `![${alt.replace(/[[\]\\]/g, '')}](${encodeURI(outputLink(file))})`;
}

export function figureTitle(fig: Figure): string {
  const title = fig.layout.title;
  const text = typeof title === 'string' ? title : (title as { text?: unknown } | undefined)?.text;
  return typeof text === 'string' ? text.replace(/<[^>]*>/g, '') : 'Figure';
}

export interface FigureBundleOptions {
  /** PNG of the same figure, shown where plotly cannot be drawn. */
  png?: string;
  /** Height of the interactive chart in CSS pixels; the width follows the output area. */
  height?: number;
}

/**
 * Returns `value` with every non-integer number rounded to 6 significant
 * digits. Curves such as ROC carry thousands of points, so rounding the
 * notebook's copy about halves its size without a visible change. The PNG is
 * drawn from the unrounded figure.
 */
function roundForDisplay(value: unknown): unknown {
  if (typeof value === 'number') {
    return Number.isInteger(value) || !Number.isFinite(value) ? value : Number(value.toPrecision(6));
  }
  if (Array.isArray(value)) {
    return value.map(roundForDisplay);
  }
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, roundForDisplay(item)]));
  }
  return value;
}

/** Builds the MIME bundle of a plotly figure: the figure itself, a Markdown link to its PNG, and a text line. */
export function figureBundle(fig: Figure, options: FigureBundleOptions = {}): MimeBundle {
  const title = figureTitle(fig);
  const layout = options.height === undefined ? fig.layout : { ...fig.layout, height: options.height };
  const bundle: MimeBundle = {
    [PLOTLY_MIME_TYPE]: { data: roundForDisplay(fig.data), layout, config: { responsive: true, displaylogo: false } },
    'text/plain': options.png === undefined ? `Figure: ${title}` : `Figure: ${title} (PNG: ${outputLink(options.png)})`,
  };
  if (options.png !== undefined) {
    bundle['text/markdown'] = markdownImage(options.png, title);
  }
  return bundle;
}

let sharedExporter: Promise<FigureExporter> | undefined;
let idleTimer: NodeJS.Timeout | undefined;
/** An idle Chromium is closed after this long, so a kernel left open does not keep it running. */
const EXPORTER_IDLE_MS = 60_000;

async function exporter(): Promise<FigureExporter> {
  if (idleTimer !== undefined) {
    clearTimeout(idleTimer);
    idleTimer = undefined;
  }
  sharedExporter ??= FigureExporter.launch();
  try {
    return await sharedExporter;
  } catch (error) {
    sharedExporter = undefined;
    throw error;
  }
}

/** Closes the Chromium that showFigure keeps between calls; the next call launches a new one. */
export async function closeFigureExporter(): Promise<void> {
  if (idleTimer !== undefined) {
    clearTimeout(idleTimer);
    idleTimer = undefined;
  }
  const pending = sharedExporter;
  sharedExporter = undefined;
  if (pending !== undefined) {
    await (await pending).close();
  }
}

export interface ShowFigureOptions {
  /** Writes the figure to this PNG file as well (needs Chromium, see findChromium). */
  png?: string;
  /** Width of the PNG in pixels; default 900. The interactive chart takes the output area's width. */
  width?: number;
  /** Height of the PNG and of the interactive chart in pixels; default 600. */
  height?: number;
}

/**
 * Shows a plotly figure in the notebook and, with `png`, saves the same
 * figure object as a PNG file first. One Chromium serves all PNG exports of
 * the kernel; it closes after a minute without exports.
 */
export async function showFigure(fig: Figure, options: ShowFigureOptions = {}): Promise<void> {
  const width = options.width ?? 900;
  const height = options.height ?? 600;
  if (options.png !== undefined) {
    const browser = await exporter();
    try {
      await browser.savePng(fig, options.png, { width, height });
    } finally {
      idleTimer = setTimeout(() => void closeFigureExporter(), EXPORTER_IDLE_MS);
      idleTimer.unref();
    }
  }
  display(figureBundle(fig, { height, ...(options.png !== undefined ? { png: options.png } : {}) }));
}

/** Shows Markdown text. */
export function showMarkdown(markdown: string): void {
  display({ 'text/markdown': markdown, 'text/plain': markdown });
}

/**
 * Shows an image file by reference (a Markdown image relative to the
 * notebook's folder), so the notebook stores a link rather than the pixels.
 */
export function showImage(file: string, caption?: string): void {
  const alt = caption ?? path.basename(file);
  const markdown = caption === undefined ? markdownImage(file, alt) : `${markdownImage(file, alt)}\n\n*${caption}*`;
  display({ 'text/markdown': markdown, 'text/plain': `Image: ${outputLink(file)}${caption === undefined ? '' : ` (${caption})`}` });
}

/** A table cell value. */
export type TableValue = string | number | boolean | null | undefined;

/** A table row: column name to value. Columns follow the first row's keys, then new keys of later rows. */
export type TableRow = Record<string, TableValue>;

/** The part of a danfojs DataFrame that showTable reads. */
export interface DataFrameLike {
  columns: string[];
  values: unknown[];
  index?: unknown[];
}

export interface ShowTableOptions {
  /** Decimals of non-integer numbers; default 4. */
  digits?: number;
  caption?: string;
  /** Shows a DataFrame's index as the first column; default false. */
  index?: boolean;
}

function formatCell(value: unknown, digits: number): string {
  if (value === null || value === undefined) {
    return '';
  }
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) {
      return 'n/a';
    }
    return Number.isInteger(value) ? value.toLocaleString('en-US') : value.toFixed(digits);
  }
  return String(value);
}

interface Grid {
  columns: string[];
  rows: unknown[][];
}

function toGrid(table: readonly TableRow[] | DataFrameLike, withIndex: boolean): Grid {
  if (Array.isArray(table)) {
    const columns: string[] = [];
    for (const row of table as readonly TableRow[]) {
      for (const key of Object.keys(row)) {
        if (!columns.includes(key)) {
          columns.push(key);
        }
      }
    }
    return { columns, rows: (table as readonly TableRow[]).map((row) => columns.map((c) => row[c])) };
  }
  const frame = table as DataFrameLike;
  // A one-column frame (and a danfojs Series) may hold a flat array of values.
  const rows = frame.values.map((row) => (Array.isArray(row) ? row : [row]));
  if (!withIndex || frame.index === undefined) {
    return { columns: frame.columns, rows };
  }
  const index = frame.index;
  return { columns: ['', ...frame.columns], rows: rows.map((row, i) => [index[i], ...row]) };
}

/** Builds the MIME bundle of a table: HTML, and aligned plain text. */
export function tableBundle(table: readonly TableRow[] | DataFrameLike, options: ShowTableOptions = {}): MimeBundle {
  const digits = options.digits ?? 4;
  const grid = toGrid(table, options.index ?? false);
  const cells = grid.rows.map((row) => row.map((value) => formatCell(value, digits)));
  const numeric = grid.columns.map((_, j) => grid.rows.length > 0 && grid.rows.every((row) => row[j] === null || row[j] === undefined || typeof row[j] === 'number'));

  const align = (j: number) => (numeric[j] ? ' style="text-align: right"' : '');
  const html = [
    '<table>',
    options.caption === undefined ? '' : `<caption>${escapeHtml(options.caption)}</caption>`,
    `<thead><tr>${grid.columns.map((c, j) => `<th${align(j)}>${escapeHtml(c)}</th>`).join('')}</tr></thead>`,
    '<tbody>',
    ...cells.map((row) => `<tr>${row.map((cell, j) => `<td${align(j)}>${escapeHtml(cell)}</td>`).join('')}</tr>`),
    '</tbody>',
    '</table>',
  ].join('\n');

  const widths = grid.columns.map((c, j) => Math.max(c.length, ...cells.map((row) => (row[j] ?? '').length)));
  const pad = (text: string, j: number) => (numeric[j] ? text.padStart(widths[j] ?? 0) : text.padEnd(widths[j] ?? 0));
  const lines = [grid.columns.map(pad).join('  '), ...cells.map((row) => row.map(pad).join('  '))].map((line) => line.trimEnd());
  if (options.caption !== undefined) {
    lines.unshift(options.caption);
  }
  return { 'text/html': html, 'text/plain': lines.join('\n') };
}

/** Shows rows of records, or a danfojs DataFrame, as a table. */
export function showTable(table: readonly TableRow[] | DataFrameLike, options: ShowTableOptions = {}): void {
  display(tableBundle(table, options));
}
