/**
 * The notebook helpers in lib/notebook: MIME bundles for figures and tables,
 * run folders and weights choice, the comparison figures, and the dataset
 * views on real FER-2013 images (FER_DATA or data/fer2013).
 */
import * as fs from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

import * as dfd from 'danfojs-node';
import sharp from 'sharp';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';

import { CANONICAL_CLASSES } from '../lib/classes';
import { discoverDataset } from '../lib/data/dataset';
import type { ClassificationReport } from '../lib/eval/types';
import { findChromium } from '../lib/figures/export';
import { confusionMatrixFigure } from '../lib/figures/plots';
import { registerBuiltins } from '../lib/models/catalog';
import { createModel } from '../lib/models/factory';
import { classCountRows, imageSizeTable, writeSampleGrid } from '../lib/notebook/dataset';
import {
  closeFigureExporter,
  display,
  figureBundle,
  PLOTLY_MIME_TYPE,
  setDisplayHandler,
  showFigure,
  tableBundle,
  type MimeBundle,
} from '../lib/notebook/display';
import { confusionGridFigure, rocGridFigure, thinCurve } from '../lib/notebook/figures';
import { summarizeModel } from '../lib/notebook/model';
import {
  chooseWeights,
  configurationSlug,
  loadRunSummary,
  notebookImagesDir,
  projectPath,
  projectRoot,
  provenanceMarkdown,
  settingsRows,
  trainOrResume,
} from '../lib/notebook/runs';
import { applyScale } from '../lib/train/scale';

const DATA_DIR = path.resolve(process.env.FER_DATA ?? path.join(projectRoot(), 'data', 'fer2013'));

registerBuiltins();

/** Builds a small but complete report: three classes, one ROC curve each. */
function report(accuracy: number): ClassificationReport {
  const fpr = Array.from({ length: 501 }, (_, i) => i / 500);
  const curve = (className: string, index: number) => ({ className, index, fpr, tpr: fpr.map((x) => Math.sqrt(x)), thresholds: fpr.map((x) => 1 - x), auc: 0.8 });
  return {
    classNames: ['anger', 'disgust', 'fear'],
    presentClasses: ['anger', 'disgust', 'fear'],
    absentClasses: [],
    numSamples: 30,
    accuracy,
    perClass: [],
    macro: { precision: 0.5, recall: 0.5, f1: 0.5 },
    weighted: { precision: 0.5, recall: 0.5, f1: 0.5 },
    logLoss: 1.1,
    confusionMatrix: [
      [8, 1, 1],
      [2, 6, 2],
      [0, 0, 10],
    ],
    roc: [curve('anger', 0), curve('disgust', 1), curve('fear', 2)],
    macroAuc: 0.8,
  };
}

let tempDir: string | undefined;
afterEach(async () => {
  setDisplayHandler();
  delete process.env.FER_IMAGES_DIR;
  if (tempDir !== undefined) {
    await rm(tempDir, { recursive: true, force: true });
    tempDir = undefined;
  }
});

async function makeTempDir(): Promise<string> {
  tempDir = await mkdtemp(path.join(tmpdir(), 'fer-notebook-'));
  return tempDir;
}

describe('figure and table bundles', () => {
  it('figure bundle carries plotly JSON and PNG link', () => {
    const figure = confusionMatrixFigure(report(0.8).confusionMatrix, ['anger', 'disgust', 'fear'], { title: 'CM <b>test</b>' });
    const png = path.join(process.cwd(), 'images', 'x', 'cm.png');
    const bundle = figureBundle(figure, { png, height: 420 });

    const plotly = bundle[PLOTLY_MIME_TYPE] as { data: unknown[]; layout: Record<string, unknown> };
    expect(plotly.data).toHaveLength(1);
    expect(plotly.layout.height).toBe(420);
    expect(figure.layout.height).toBeUndefined();
    expect(bundle['text/markdown']).toBe('![CM test](images/x/cm.png)');
    expect(bundle['text/plain']).toBe('Figure: CM test (PNG: images/x/cm.png)');
  });

  it('figure bundle rounds curve points', () => {
    const figure = { data: [{ x: [1 / 3, 2], y: [Math.PI, Number.NaN] }], layout: {} };
    const data = (figureBundle(figure)[PLOTLY_MIME_TYPE] as { data: Array<{ x: number[]; y: number[] }> }).data;
    expect(data[0]?.x).toEqual([0.333333, 2]);
    expect(data[0]?.y[0]).toBe(3.14159);
    expect(data[0]?.y[1]).toBeNaN();
    expect(figure.data[0]?.x[0]).toBe(1 / 3);
  });

  it('table bundle escapes and formats', () => {
    const bundle = tableBundle(
      [
        { name: '<b>a</b>', value: 0.123456, count: 12345 },
        { name: 'b', value: Number.NaN, count: 7 },
      ],
      { digits: 3, caption: 'Caption & more' },
    );
    const html = bundle['text/html'] as string;
    expect(html).toContain('&lt;b&gt;a&lt;/b&gt;');
    expect(html).toContain('<td style="text-align: right">0.123</td>');
    expect(html).toContain('12,345');
    expect(html).toContain('n/a');
    expect(html).toContain('<caption>Caption &amp; more</caption>');
    const text = (bundle['text/plain'] as string).split('\n');
    expect(text[0]).toBe('Caption & more');
    expect(text[1]).toMatch(/^name\s+value\s+count$/);
  });

  it('table bundle reads danfojs DataFrame', () => {
    const frame = new dfd.DataFrame([
      { class: 'anger', train: 10 },
      { class: 'fear', train: 30 },
    ]).sortValues('train', { ascending: false }) as dfd.DataFrame;
    const html = tableBundle(frame, { index: true })['text/html'] as string;
    const rows = html.split('\n').filter((line) => line.startsWith('<tr><td'));
    expect(rows[0]).toContain('fear');
    expect(rows[0]).toContain('>1</td>');
    expect(rows[1]).toContain('anger');
  });

  it('display prints plain text outside a kernel', () => {
    const shown: MimeBundle[] = [];
    setDisplayHandler((bundle) => shown.push(bundle));
    display({ 'text/plain': 'hello' });
    expect(shown).toEqual([{ 'text/plain': 'hello' }]);
  });
});

describe('figures for many runs', () => {
  it('thinCurve keeps ends and bounds gaps', () => {
    const fpr = Array.from({ length: 1001 }, (_, i) => i / 1000);
    const tpr = fpr.map((x) => x);
    const thinned = thinCurve(fpr, tpr, 0.01);
    expect(thinned.fpr[0]).toBe(0);
    expect(thinned.fpr[thinned.fpr.length - 1]).toBe(1);
    expect(thinned.fpr.length).toBeLessThan(110);
    expect(thinned.fpr.length).toBeGreaterThan(95);
  });

  it('grid figures give each run its axes', () => {
    const runs = [1, 2, 3, 4, 5].map((i) => ({ name: `run ${i}`, report: report(0.5 + i / 20) }));
    const roc = rocGridFigure(runs, 4);
    // Three class curves and the diagonal per run.
    expect(roc.data).toHaveLength(20);
    expect(roc.layout.xaxis5).toBeDefined();
    expect(roc.layout.xaxis6).toBeUndefined();
    expect(roc.data.filter((trace) => trace.showlegend === true)).toHaveLength(3);
    const grid = confusionGridFigure(runs, 2);
    expect(grid.data).toHaveLength(5);
    expect(grid.data.filter((trace) => trace.showscale === true)).toHaveLength(1);
    expect((grid.data[0]?.z as number[][])[1]).toEqual([0.2, 0.6, 0.2]);
    expect(() => rocGridFigure([], 4)).toThrow(/no runs/);
  });
});

describe('run folders and parameters', () => {
  it('configuration slugs match run folders', () => {
    expect(configurationSlug('EfficientNetB2 Modified')).toBe('efficientnetb2-modified');
    expect(configurationSlug('MobileNet-0.25')).toBe('mobilenet-0.25');
  });

  it('images dir keeps smoke away from images/', () => {
    expect(notebookImagesDir('reduced', 'vgg16')).toBe(projectPath('images', 'vgg16'));
    expect(notebookImagesDir('smoke', 'vgg16')).toBe(projectPath('runs', 'notebooks', 'smoke', 'images', 'vgg16'));
    process.env.FER_IMAGES_DIR = '/tmp/somewhere';
    expect(notebookImagesDir('reduced', 'vgg16')).toBe(path.resolve('/tmp/somewhere', 'vgg16'));
  });

  it('auto weights fall back with a reason', async () => {
    const cache = await makeTempDir();
    const previous = process.env.FER_WEIGHTS_CACHE;
    process.env.FER_WEIGHTS_CACHE = cache;
    try {
      const vgg = chooseWeights('VGG16', 'auto');
      expect(vgg.weights).toBe('random');
      expect(vgg.reason).toContain(cache);
      expect(chooseWeights('VGG16', 'imagenet').weights).toBe('imagenet');
    } finally {
      if (previous === undefined) delete process.env.FER_WEIGHTS_CACHE;
      else process.env.FER_WEIGHTS_CACHE = previous;
    }
  });

  it('auto weights find the MobileNet folder', () => {
    const choice = chooseWeights('MobileNet-0.25', 'auto');
    if (!fs.existsSync(projectPath('data', 'weights', 'mobilenet_v1_0.25_224', 'model.json')) && process.env.FER_WEIGHTS_DIR === undefined) {
      expect(choice.weights).toBe('random');
      return;
    }
    expect(choice.weights).toBe('imagenet');
    expect(choice.reason).toContain('mobilenet_v1_0.25_224');
  });

  it('settings rows show scale and protocol', () => {
    const rows = settingsRows(applyScale({ model: 'VGG16' }, 'reduced'));
    const input = rows.find((row) => row.setting === 'input size (px)');
    expect(input).toEqual({ setting: 'input size (px)', 'this run': '64', configuration: '224' });
    expect(rows.find((row) => row.setting === 'training images (max)')?.['this run']).toBe('1400');
  });

  it('provenance shows paths inside the project relative', () => {
    const markdown = provenanceMarkdown('VGG16', { dataset: projectPath('data', 'fer2013'), scale: 'smoke' });
    expect(markdown).toContain('| dataset | data/fer2013 |');
    expect(markdown).toMatch(/\| machine \| .+ cores\)/);
    expect(markdown).toMatch(/\| date \| \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \|/);
  });

  it('resume rejects a run with other settings', async () => {
    const dir = await makeTempDir();
    const options = applyScale({ model: 'MobileNet-0.25', dataDir: DATA_DIR }, 'smoke');
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ model: 'MobileNet-0.25', dataDir: DATA_DIR, inputSize: 48, seed: 42 }));
    await expect(trainOrResume(options, dir)).rejects.toThrow(/already contains a run with other settings \(.*inputSize 48 -> 32/);
  });

  it('run summary names the missing file', () => {
    expect(() => loadRunSummary(path.join(tmpdir(), 'no-such-run'))).toThrow(/config\.json not found.*Run its notebook first/);
  });
});

describe('model summary', () => {
  it('counts blocks and trainable parameters', async () => {
    const fer = await createModel('MobileNet-0.25', { inputSize: 32, weights: 'random' });
    try {
      const summary = summarizeModel(fer, 2);
      expect(summary.rows[summary.rows.length - 1]?.part).toBe('head');
      const total = summary.rows.reduce((sum, row) => sum + Number(row.parameters), 0);
      expect(total).toBe(summary.parameters);
      expect(summary.trainablePhase1).toBeLessThan(summary.trainablePhase2);
      expect(summary.trainablePhase2).toBeLessThan(summary.parameters);
      expect(summary.rows.filter((row) => row['phase 2 trains it'] === 'yes')).toHaveLength(2);
    } finally {
      fer.model.dispose();
    }
  });
});

describe('dataset views on FER-2013', () => {
  beforeAll(() => {
    if (!fs.existsSync(path.join(DATA_DIR, 'train'))) {
      throw new Error(`FER-2013 not found at ${DATA_DIR}; run "npm run setup" or set FER_DATA (see data/README.md).`);
    }
  });

  it('class counts cover every class and split', () => {
    const dataset = discoverDataset(DATA_DIR);
    const rows = classCountRows(dataset);
    expect(rows.map((row) => row.class)).toEqual([...CANONICAL_CLASSES]);
    const total = rows.reduce((sum, row) => sum + Number(row.train), 0);
    expect(total).toBe(dataset.splits.train?.length);
  });

  it('sample grid has one row per class', async () => {
    const dir = await makeTempDir();
    const dataset = discoverDataset(DATA_DIR);
    const file = path.join(dir, 'grid.png');
    const shown = await writeSampleGrid(dataset.splits.train ?? [], file, { perClass: 3, tileSize: 40 });
    expect(shown).toBe(21);
    const meta = await sharp(file).metadata();
    expect(meta.height).toBe(8 + 7 * 44 + 4);
    expect(meta.width).toBe(150 + 3 * 44 + 4);
  });

  it('image sizes are read from headers', async () => {
    const dataset = discoverDataset(DATA_DIR);
    const rows = await imageSizeTable({ test: dataset.splits.test ?? [] }, { limit: 50 });
    expect(rows.reduce((sum, row) => sum + row.images, 0)).toBe(50);
    expect(rows[0]).toMatchObject({ split: 'test', width: 48, height: 48 });
  });
});

describe('PNG export of shown figures', () => {
  it('showFigure writes the PNG it links', async () => {
    if (findChromium() === undefined) {
      throw new Error('No Chromium found for the PNG export; install it (apt-get install chromium) or set FER_CHROMIUM.');
    }
    const dir = await makeTempDir();
    const shown: MimeBundle[] = [];
    setDisplayHandler((bundle) => shown.push(bundle));
    const file = path.join(dir, 'cm.png');
    try {
      await showFigure(confusionMatrixFigure(report(0.8).confusionMatrix, ['anger', 'disgust', 'fear']), { png: file, width: 400, height: 300 });
    } finally {
      await closeFigureExporter();
    }
    const meta = await sharp(file).metadata();
    expect([meta.width, meta.height]).toEqual([400, 300]);
    expect(shown).toHaveLength(1);
    expect(shown[0]?.[PLOTLY_MIME_TYPE]).toBeDefined();
  });
});
