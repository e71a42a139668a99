/**
 * Offline rendering of plotly figures: PNG through a headless Chromium, and
 * standalone HTML with plotly.js inlined.
 *
 * Neither path touches the network. The browser loads plotly.js from
 * node_modules into a blank page and aborts every request the page makes.
 */

import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';

import type { Figure } from './plots';

/** Chromium and Chrome locations of Debian/Ubuntu packages and Google's package, searched in this order. */
export const SYSTEM_CHROMIUM_PATHS: readonly string[] = [
  '/usr/bin/chromium',
  '/usr/bin/chromium-browser',
  '/usr/bin/google-chrome',
];

const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const DEFAULT_WIDTH = 900;
const DEFAULT_HEIGHT = 650;
const LAUNCH_TIMEOUT_MS = 60_000;

export class ChromiumNotFoundError extends Error {
  constructor(readonly searched: readonly string[]) {
    super(
      `No Chromium or Chrome executable found (searched: ${searched.join(', ')}). ` +
        'Install one with `apt-get install chromium`, or set FER_CHROMIUM to the path of a Chromium or Chrome binary.',
    );
    this.name = 'ChromiumNotFoundError';
  }
}

/** Returns the Chromium build that this playwright-core version downloads, if it is in playwright's cache. */
function playwrightCachedChromium(): string | undefined {
  try {
    const path = chromium.executablePath();
    return existsSync(path) ? path : undefined;
  } catch {
    // executablePath() throws when playwright has no Chromium build for this platform.
    return undefined;
  }
}

/**
 * Finds a Chromium or Chrome executable for headless rendering.
 *
 * FER_CHROMIUM, when set and non-empty, is the only candidate, and a missing
 * file is an error instead of a fallback, so a typo never silently renders
 * with another browser. Otherwise `searchPaths` are tried in order, and then
 * the Chromium build that playwright-core would download into its cache
 * (`npx playwright-core install chromium`). Returns undefined when none exists.
 *
 * @throws Error when FER_CHROMIUM names a file that does not exist.
 */
export function findChromium(searchPaths: readonly string[] = SYSTEM_CHROMIUM_PATHS): string | undefined {
  const fromEnv = process.env.FER_CHROMIUM;
  if (fromEnv !== undefined && fromEnv !== '') {
    if (!existsSync(fromEnv)) {
      throw new Error(
        `FER_CHROMIUM is set to "${fromEnv}", but that file does not exist. ` +
          'Point FER_CHROMIUM at a Chromium or Chrome binary (for example /usr/bin/chromium after ' +
          '`apt-get install chromium`), or unset it to search the usual locations.',
      );
    }
    return fromEnv;
  }
  for (const path of searchPaths) {
    if (existsSync(path)) return path;
  }
  return playwrightCachedChromium();
}

/**
 * Returns findChromium's result, or throws ChromiumNotFoundError listing the
 * searched paths and how to install one.
 */
export function requireChromium(searchPaths: readonly string[] = SYSTEM_CHROMIUM_PATHS): string {
  const path = findChromium(searchPaths);
  if (path === undefined) {
    throw new ChromiumNotFoundError([...searchPaths, 'playwright-core browser cache']);
  }
  return path;
}

/** Returns the path of the self-contained plotly.js bundle in node_modules. */
export function plotlyBundlePath(): string {
  return require.resolve('plotly.js-dist/plotly.js');
}

export interface PngOptions {
  /** Image width in CSS pixels. Default 900. */
  width?: number;
  /** Image height in CSS pixels. Default 650. */
  height?: number;
  /** Device pixel ratio, so the PNG is width*scale by height*scale pixels. Default 1. */
  scale?: number;
}

function validateSize(name: string, value: number, path: string, integer: boolean): void {
  const valid = Number.isFinite(value) && value > 0 && (!integer || Number.isInteger(value));
  if (!valid) {
    const kind = integer ? 'a positive integer' : 'a positive number';
    throw new Error(`Invalid ${name} ${value} for ${path}: it must be ${kind}.`);
  }
}

/** Minimal view of the plotly.js global that the page evaluation uses. */
interface PlotlyGlobal {
  toImage(
    figure: Figure,
    options: { format: 'png'; width: number; height: number; scale: number },
  ): Promise<string>;
}

/**
 * A headless Chromium with plotly.js loaded, reused for many PNG exports.
 * Call close() when done, or the browser process outlives the export.
 */
export class FigureExporter {
  private closed = false;

  private constructor(
    private readonly browser: Browser,
    private readonly page: Page,
  ) {}

  /**
   * Launches Chromium (see findChromium) and loads plotly.js into a blank page.
   *
   * @throws ChromiumNotFoundError when no browser is found, or Error when FER_CHROMIUM is invalid or the launch fails.
   */
  static async launch(): Promise<FigureExporter> {
    const executablePath = requireChromium();
    let browser: Browser;
    try {
      browser = await chromium.launch({
        executablePath,
        headless: true,
        args: CHROMIUM_ARGS,
        timeout: LAUNCH_TIMEOUT_MS,
      });
    } catch (error) {
      throw new Error(
        `Failed to launch Chromium at ${executablePath}: ${errorMessage(error)}. ` +
          'Set FER_CHROMIUM to a working Chromium or Chrome binary.',
        { cause: error },
      );
    }

    try {
      const page = await browser.newPage();
      // Rendering needs nothing from outside the page, so any request is a bug or a leak.
      await page.route('**/*', (route) => route.abort());
      await page.setContent('<!DOCTYPE html><html><head><meta charset="utf-8"></head><body></body></html>');
      await page.addScriptTag({ path: plotlyBundlePath() });
      return new FigureExporter(browser, page);
    } catch (error) {
      await browser.close();
      throw new Error(`Failed to load plotly.js into Chromium (${executablePath}): ${errorMessage(error)}`, {
        cause: error,
      });
    }
  }

  /** Renders `fig` with Plotly.toImage and writes the PNG to `path`, creating parent folders. */
  async savePng(fig: Figure, path: string, options: PngOptions = {}): Promise<void> {
    if (this.closed) {
      throw new Error(`FigureExporter is closed, so ${path} cannot be rendered. Launch a new exporter.`);
    }
    const width = options.width ?? DEFAULT_WIDTH;
    const height = options.height ?? DEFAULT_HEIGHT;
    const scale = options.scale ?? 1;
    validateSize('width', width, path, true);
    validateSize('height', height, path, true);
    validateSize('scale', scale, path, false);

    let dataUrl: string;
    try {
      dataUrl = await this.page.evaluate(
        async ({ figure, imageOptions }) => {
          const plotly = (globalThis as unknown as { Plotly: PlotlyGlobal }).Plotly;
          return plotly.toImage(figure, imageOptions);
        },
        { figure: fig, imageOptions: { format: 'png' as const, width, height, scale } },
      );
    } catch (error) {
      throw new Error(`Plotly failed to render the figure for ${path}: ${errorMessage(error)}`, { cause: error });
    }

    const prefix = 'data:image/png;base64,';
    if (!dataUrl.startsWith(prefix)) {
      throw new Error(
        `Plotly returned no PNG for ${path} (output starts with "${dataUrl.slice(0, 40)}").`,
      );
    }
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, Buffer.from(dataUrl.slice(prefix.length), 'base64'));
  }

  /** Closes the browser. Calling it again does nothing. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.browser.close();
  }
}

export interface PngItem extends Omit<PngOptions, 'scale'> {
  figure: Figure;
  path: string;
}

/** Launches one browser, saves every item as PNG in order, and closes the browser even on failure. */
export async function saveFiguresPng(items: PngItem[]): Promise<void> {
  if (items.length === 0) return;
  const exporter = await FigureExporter.launch();
  try {
    for (const item of items) {
      await exporter.savePng(item.figure, item.path, { width: item.width, height: item.height });
    }
  } finally {
    await exporter.close();
  }
}

let plotlySource: string | undefined;

/** Returns plotly.js made safe to inline in a <script> element. The file (10 MB in plotly.js-dist 4.1.1) is read once and cached. */
function inlinePlotlySource(): string {
  if (plotlySource === undefined) {
    // A literal "</script" would end the inline element early. The bundle
    // contains none as of plotly.js-dist 4.1.1, and "<\/" means the same in JS strings and regexes.
    plotlySource = readFileSync(plotlyBundlePath(), 'utf8').replace(/<\/script/gi, '<\\/script');
  }
  return plotlySource;
}

function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Serialises a value as a JS literal that cannot close the <script> element it sits in. */
function scriptJson(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

/**
 * Returns a standalone HTML document that shows `fig` interactively, with
 * plotly.js inlined so that it works offline. The page title defaults to the
 * figure's layout title, then to "Figure".
 */
export function figureHtml(fig: Figure, title?: string): string {
  // Plotly accepts layout.title as a string or as { text }.
  const rawTitle = fig.layout.title;
  const layoutTitle = typeof rawTitle === 'string' ? rawTitle : (rawTitle as { text?: unknown } | undefined)?.text;
  const pageTitle = title ?? (typeof layoutTitle === 'string' ? layoutTitle : 'Figure');
  return [
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    `<title>${escapeHtml(pageTitle)}</title>`,
    `<script>${inlinePlotlySource()}</script>`,
    '<style>html, body { margin: 0; height: 100%; } #figure { width: 100%; height: 100vh; }</style>',
    '</head>',
    '<body>',
    '<div id="figure"></div>',
    '<script>',
    `Plotly.newPlot("figure", ${scriptJson(fig.data)}, ${scriptJson(fig.layout)}, { responsive: true });`,
    '</script>',
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
