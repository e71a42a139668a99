import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import type { RocCurve } from '../lib/eval/types';
import {
  ChromiumNotFoundError,
  FigureExporter,
  figureHtml,
  findChromium,
  requireChromium,
  saveFiguresPng,
} from '../lib/figures/export';
import { confusionMatrixFigure, rocFigure, trainingCurvesFigure, type Figure } from '../lib/figures/plots';
import type { EpochRecord } from '../lib/train/history';

const CLASSES = ['anger', 'disgust', 'fear', 'happiness', 'neutral', 'sadness', 'surprise'];

/** Counts with a strong diagonal. Row 1 (disgust) has no true samples. */
const MATRIX = [
  [40, 0, 3, 1, 4, 2, 0],
  [0, 0, 0, 0, 0, 0, 0],
  [5, 0, 30, 2, 3, 6, 4],
  [1, 0, 1, 80, 5, 1, 2],
  [3, 0, 2, 4, 60, 7, 1],
  [4, 0, 5, 1, 8, 35, 0],
  [0, 0, 3, 2, 1, 0, 44],
];

function rocCurve(className: string, index: number, bend: number, auc: number): RocCurve {
  const fpr = [0, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1];
  const tpr = fpr.map((x) => Math.min(1, x ** bend));
  return { className, index, fpr, tpr, thresholds: fpr.map((_, i) => (i === 0 ? Infinity : 1 - i / 8)), auc };
}

const ROC_CURVES: RocCurve[] = [
  rocCurve('anger', 0, 0.3, 0.8734),
  rocCurve('happiness', 3, 0.15, 0.9512),
  rocCurve('sadness', 5, 0.5, 0.7021),
];

function epochRecord(phase: 1 | 2, epoch: number, globalEpoch: number): EpochRecord {
  const t = globalEpoch / 10;
  return {
    phase,
    epoch,
    globalEpoch,
    learningRate: phase === 1 ? 1e-3 : 1e-5,
    trainLoss: 1.9 * Math.exp(-1.5 * t) + 0.3,
    trainAccuracy: 0.3 + 0.6 * (1 - Math.exp(-2 * t)),
    valLoss: 1.8 * Math.exp(-1.2 * t) + 0.5,
    valAccuracy: 0.3 + 0.45 * (1 - Math.exp(-2 * t)),
    valMacroF1: 0.2 + 0.45 * (1 - Math.exp(-2 * t)),
    seconds: 30,
    trainImages: 6000,
    imagesPerSecond: 200,
  };
}

const HISTORY: EpochRecord[] = [
  ...[1, 2, 3, 4].map((e) => epochRecord(1, e, e)),
  ...[1, 2, 3, 4, 5, 6].map((e) => epochRecord(2, e, e + 4)),
];

function annotationTexts(fig: Figure): string[] {
  return (fig.layout.annotations as { text: string }[]).map((a) => a.text);
}

/** Returns the PNG's size and the largest per-channel standard deviation, which is near 0 for a blank image. */
async function pngStats(path: string): Promise<{ width: number; height: number; maxStdev: number }> {
  const meta = await sharp(path).metadata();
  const stats = await sharp(path).stats();
  return {
    width: meta.width ?? 0,
    height: meta.height ?? 0,
    maxStdev: Math.max(...stats.channels.slice(0, 3).map((c) => c.stdev)),
  };
}

/** Mean absolute difference of two same-sized images' RGB bytes, from 0 to 255. */
async function meanPixelDifference(pathA: string, pathB: string): Promise<number> {
  const a = await sharp(pathA).removeAlpha().raw().toBuffer();
  const b = await sharp(pathB).removeAlpha().raw().toBuffer();
  expect(a.length).toBe(b.length);
  let total = 0;
  for (let i = 0; i < a.length; i++) total += Math.abs(a[i] - b[i]);
  return total / a.length;
}

describe('confusionMatrixFigure', () => {
  it('annotates counts in row order', () => {
    const fig = confusionMatrixFigure(MATRIX, CLASSES);
    expect(annotationTexts(fig)).toEqual(MATRIX.flat().map(String));
    const heatmap = fig.data[0];
    expect(heatmap.type).toBe('heatmap');
    expect(heatmap.z).toEqual(MATRIX);
    expect(heatmap.x).toEqual(CLASSES);
    expect(heatmap.y).toEqual(CLASSES);
  });

  it('lists true classes top to bottom', () => {
    const fig = confusionMatrixFigure(MATRIX, CLASSES);
    const yaxis = fig.layout.yaxis as Record<string, unknown>;
    expect(yaxis.autorange).toBe('reversed');
    const first = (fig.layout.annotations as { x: string; y: string }[])[1];
    expect(first).toMatchObject({ x: 'disgust', y: 'anger' });
  });

  it('normalises rows to two decimals', () => {
    const fig = confusionMatrixFigure(MATRIX, CLASSES, { normalize: true });
    const texts = annotationTexts(fig);
    const n = CLASSES.length;
    const expected = MATRIX.flatMap((row) => {
      const support = row.reduce((a, b) => a + b, 0);
      return row.map((count) => (support === 0 ? '' : (count / support).toFixed(2)));
    });
    expect(texts).toEqual(expected);
    // Row 0: 40 of 50 anger samples predicted as anger.
    expect(texts[0]).toBe('0.80');
    // Row 1 (disgust) has no support: empty cells, null z, no NaN anywhere.
    expect(texts.slice(n, 2 * n)).toEqual(Array(n).fill(''));
    expect((fig.data[0].z as unknown[][])[1]).toEqual(Array(n).fill(null));
    expect(JSON.stringify(fig)).not.toContain('NaN');
    expect(texts.some((t) => t.includes('NaN'))).toBe(false);
  });

  it('shows support in normalised row labels', () => {
    const fig = confusionMatrixFigure(MATRIX, CLASSES, { normalize: true });
    const ticktext = (fig.layout.yaxis as { ticktext: string[] }).ticktext;
    expect(ticktext[0]).toBe('anger (n=50)');
    expect(ticktext[1]).toBe('disgust (n=0)');
  });

  it('rejects a matrix of the wrong size', () => {
    expect(() => confusionMatrixFigure([[1, 2]], CLASSES)).toThrow(/1 rows but there are 7 classes/);
    expect(() => confusionMatrixFigure([[1, 2], [3]], ['a', 'b'])).toThrow(/row 1 \(b\) has 1 columns/);
  });

  it('rejects negative counts', () => {
    expect(() => confusionMatrixFigure([[1, -1], [0, 1]], ['a', 'b'])).toThrow(/invalid count -1/);
  });

  it('rejects duplicate class names', () => {
    expect(() => confusionMatrixFigure([[1, 0], [0, 1]], ['a', 'a'])).toThrow(/duplicates/);
  });
});

describe('rocFigure', () => {
  it('names each curve with its AUC', () => {
    const fig = rocFigure(ROC_CURVES, 0.8422);
    const names = fig.data.map((trace) => trace.name);
    expect(names).toEqual([
      'anger (AUC 0.873)',
      'happiness (AUC 0.951)',
      'sadness (AUC 0.702)',
      'chance (AUC 0.500)',
    ]);
  });

  it('draws the chance diagonal dashed', () => {
    const fig = rocFigure(ROC_CURVES, 0.8422);
    const chance = fig.data[fig.data.length - 1];
    expect(chance.x).toEqual([0, 1]);
    expect(chance.y).toEqual([0, 1]);
    expect((chance.line as { dash: string }).dash).toBe('dash');
  });

  it('puts macro AUC in the title', () => {
    const fig = rocFigure(ROC_CURVES, 0.8422, { title: 'Test split' });
    expect((fig.layout.title as { text: string }).text).toBe('Test split, macro AUC 0.842');
  });

  it('limits both axes to 0-1', () => {
    const fig = rocFigure(ROC_CURVES, 0.8422);
    for (const axis of ['xaxis', 'yaxis']) {
      const range = (fig.layout[axis] as { range: number[] }).range;
      expect(range[0]).toBeLessThanOrEqual(0);
      expect(range[0]).toBeGreaterThan(-0.05);
      expect(range[1]).toBeGreaterThanOrEqual(1);
      expect(range[1]).toBeLessThan(1.05);
    }
  });

  it('writes n/a for an undefined AUC', () => {
    const fig = rocFigure([{ ...ROC_CURVES[0], auc: NaN }], NaN);
    expect(fig.data[0].name).toBe('anger (AUC n/a)');
    expect((fig.layout.title as { text: string }).text).toContain('macro AUC n/a');
  });
});

describe('trainingCurvesFigure', () => {
  it('plots train and validation series', () => {
    const fig = trainingCurvesFigure(HISTORY);
    expect(fig.data.map((trace) => trace.name)).toEqual([
      'train loss',
      'validation loss',
      'train accuracy',
      'validation accuracy',
      'validation macro-F1',
    ]);
    for (const trace of fig.data) {
      expect(trace.x).toEqual(HISTORY.map((r) => r.globalEpoch));
      expect(trace.mode).toBe('lines+markers');
    }
    expect(fig.data[0].yaxis).toBe('y');
    expect(fig.data[2].yaxis).toBe('y2');
    expect(fig.data[1].y).toEqual(HISTORY.map((r) => r.valLoss));
  });

  it('places subplots side by side', () => {
    const fig = trainingCurvesFigure(HISTORY);
    const left = (fig.layout.xaxis as { domain: number[] }).domain;
    const right = (fig.layout.xaxis2 as { domain: number[] }).domain;
    expect(left[1]).toBeLessThan(right[0]);
  });

  it('marks the start of phase 2', () => {
    const fig = trainingCurvesFigure(HISTORY);
    const shapes = fig.layout.shapes as { x0: number; xref: string; line: { dash: string } }[];
    expect(shapes.map((s) => s.xref)).toEqual(['x', 'x2']);
    for (const shape of shapes) {
      expect(shape.x0).toBe(4.5);
      expect(shape.line.dash).toBe('dash');
    }
  });

  it('omits the phase line without phase 2', () => {
    const fig = trainingCurvesFigure(HISTORY.filter((r) => r.phase === 1));
    expect(fig.layout.shapes).toEqual([]);
  });

  it('sorts records by global epoch', () => {
    const fig = trainingCurvesFigure([...HISTORY].reverse());
    expect(fig.data[0].x).toEqual(HISTORY.map((r) => r.globalEpoch));
  });

  it('turns NaN metrics into gaps', () => {
    const history = HISTORY.map((r, i) => (i === 2 ? { ...r, valLoss: NaN } : r));
    const fig = trainingCurvesFigure(history);
    expect((fig.data[1].y as unknown[])[2]).toBeNull();
  });

  it('rejects an empty history', () => {
    expect(() => trainingCurvesFigure([])).toThrow(/history is empty/);
  });
});

describe('figureHtml', () => {
  it('inlines plotly and the figure data', () => {
    const fig = rocFigure(ROC_CURVES, 0.8422);
    const html = figureHtml(fig);
    expect(html.startsWith('<!DOCTYPE html>')).toBe(true);
    // The plotly.js bundle's header comment and size show it is inlined, not linked.
    expect(html).toMatch(/plotly\.js v\d+\.\d+\.\d+/);
    expect(html.length).toBeGreaterThan(1_000_000);
    expect(html).not.toMatch(/<script[^>]+src=/);
    expect(html).toContain(JSON.stringify(fig.data).replace(/</g, '\\u003c'));
    expect(html).toContain('anger (AUC 0.873)');
    expect(html).toContain('<title>ROC curves (one-vs-rest), macro AUC 0.842</title>');
  });

  it('escapes markup in the title and data', () => {
    const fig = confusionMatrixFigure([[1]], ['</script><b>x']);
    const html = figureHtml(fig, 'a <b> & c');
    expect(html).toContain('<title>a &lt;b&gt; &amp; c</title>');
    expect(html).not.toContain('</script><b>x');
  });
});

describe('findChromium', () => {
  const saved = process.env.FER_CHROMIUM;
  afterEach(() => {
    if (saved === undefined) delete process.env.FER_CHROMIUM;
    else process.env.FER_CHROMIUM = saved;
  });

  it('rejects a missing FER_CHROMIUM', async () => {
    process.env.FER_CHROMIUM = '/nonexistent/fer-test/chromium';
    expect(() => findChromium()).toThrow(/FER_CHROMIUM is set to "\/nonexistent\/fer-test\/chromium"/);
    await expect(FigureExporter.launch()).rejects.toThrow(/FER_CHROMIUM.*does not exist.*apt-get install chromium/);
  });

  // requireChromium also searches playwright's cache, which cannot be hidden from the test.
  const playwrightHasChromium = existsSync(chromium.executablePath());

  it.skipIf(playwrightHasChromium)('names the fix when nothing is found', () => {
    delete process.env.FER_CHROMIUM;
    expect(() => requireChromium(['/nonexistent/fer-test/chromium'])).toThrow(ChromiumNotFoundError);
    expect(() => requireChromium(['/nonexistent/fer-test/chromium'])).toThrow(/FER_CHROMIUM/);
    expect(() => requireChromium(['/nonexistent/fer-test/chromium'])).toThrow(/apt-get install chromium/);
    expect(() => requireChromium(['/nonexistent/fer-test/chromium'])).toThrow(/\/nonexistent\/fer-test\/chromium/);
  });

  it('finds a system Chromium', () => {
    delete process.env.FER_CHROMIUM;
    const path = findChromium();
    expect(path).toBeDefined();
    expect(existsSync(path as string)).toBe(true);
  });

  it('prefers FER_CHROMIUM when it exists', () => {
    const path = requireChromium();
    process.env.FER_CHROMIUM = path;
    expect(findChromium(['/nonexistent/fer-test/chromium'])).toBe(path);
  });
});

describe('PNG export', () => {
  let dir: string;
  let exporter: FigureExporter;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fer-figures-'));
    exporter = await FigureExporter.launch();
  });

  afterAll(async () => {
    await exporter?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const cases: { name: string; figure: () => Figure; width: number; height: number }[] = [
    { name: 'confusion', figure: () => confusionMatrixFigure(MATRIX, CLASSES), width: 800, height: 700 },
    {
      name: 'confusion-normalised',
      figure: () => confusionMatrixFigure(MATRIX, CLASSES, { normalize: true }),
      width: 800,
      height: 700,
    },
    { name: 'roc', figure: () => rocFigure(ROC_CURVES, 0.8422), width: 750, height: 650 },
    { name: 'training', figure: () => trainingCurvesFigure(HISTORY), width: 1100, height: 500 },
  ];

  for (const { name, figure, width, height } of cases) {
    it(`renders ${name} at the requested size`, async () => {
      const path = join(dir, 'nested', name, `${name}.png`);
      await exporter.savePng(figure(), path, { width, height });
      const stats = await pngStats(path);
      expect(stats.width).toBe(width);
      expect(stats.height).toBe(height);
      expect(stats.maxStdev).toBeGreaterThan(10);
    });
  }

  it('multiplies the size by scale', async () => {
    const path = join(dir, 'scaled.png');
    await exporter.savePng(rocFigure(ROC_CURVES, 0.8422), path, { width: 300, height: 200, scale: 2 });
    const stats = await pngStats(path);
    expect(stats.width).toBe(600);
    expect(stats.height).toBe(400);
  });

  it('distinguishes dominant and uniform matrices', async () => {
    const n = CLASSES.length;
    const uniform = Array.from({ length: n }, () => Array(n).fill(10));
    const dominant = uniform.map((row, i) => row.map((v: number, j: number) => (i === 2 && j === 2 ? 500 : v)));
    const uniformPath = join(dir, 'uniform.png');
    const dominantPath = join(dir, 'dominant.png');
    await exporter.savePng(confusionMatrixFigure(uniform, CLASSES), uniformPath, { width: 600, height: 500 });
    await exporter.savePng(confusionMatrixFigure(dominant, CLASSES), dominantPath, { width: 600, height: 500 });
    expect(await meanPixelDifference(uniformPath, dominantPath)).toBeGreaterThan(5);
  });

  it('rejects a non-integer width', async () => {
    const path = join(dir, 'bad.png');
    await expect(exporter.savePng(rocFigure(ROC_CURVES, 0.5), path, { width: 10.5 })).rejects.toThrow(
      /Invalid width 10.5 for .*bad\.png/,
    );
  });

  it('names the path when plotly fails', async () => {
    const path = join(dir, 'broken.png');
    // Plotly.toImage rejects a null figure because it finds no graph div.
    const broken = null as unknown as Figure;
    await expect(exporter.savePng(broken, path)).rejects.toThrow(/Plotly failed to render the figure for .*broken\.png/);
  });

  it('names the path when no PNG comes back', async () => {
    const path = join(dir, 'too-wide.png');
    // Chromium cannot allocate a canvas this wide, so Plotly returns an empty "data:," URL.
    await expect(exporter.savePng({ data: [], layout: {} }, path, { width: 100_000, height: 100 })).rejects.toThrow(
      /Plotly returned no PNG for .*too-wide\.png/,
    );
  });

  it('shows the HTML figure offline', async () => {
    const fig = rocFigure(ROC_CURVES, 0.8422);
    const browser = await chromium.launch({ executablePath: requireChromium(), headless: true, args: ['--no-sandbox'] });
    try {
      const page = await browser.newPage();
      const requests: string[] = [];
      await page.route('**/*', (route) => {
        requests.push(route.request().url());
        return route.abort();
      });
      await page.setContent(figureHtml(fig));
      await page.waitForSelector('#figure .main-svg');
      const legend = await page.locator('#figure .legendtext').allTextContents();
      expect(legend).toEqual(fig.data.map((trace) => trace.name));
      expect(requests).toEqual([]);
    } finally {
      await browser.close();
    }
  });

  it('saves a batch with one browser', async () => {
    const items = [
      { figure: rocFigure(ROC_CURVES, 0.8422), path: join(dir, 'batch', 'roc.png'), width: 400, height: 300 },
      { figure: trainingCurvesFigure(HISTORY), path: join(dir, 'batch', 'training.png'), width: 500, height: 300 },
    ];
    await saveFiguresPng(items);
    for (const item of items) {
      const stats = await pngStats(item.path);
      expect(stats.width).toBe(item.width);
      expect(stats.height).toBe(item.height);
    }
  });
});
