/**
 * `fer predict` and its library: face detection, classification and outputs
 * on the input kinds people have, streaming over folders, and the command's
 * exit status. The input kinds are JPEG, PNG, WebP, EXIF-rotated, greyscale,
 * RGBA, 16-bit, face crops, photos without faces, odd file names, and broken
 * and unsupported files.
 *
 * Faces come from the group photo demo/sample1.jpg that ships in
 * @vladmandic/face-api (MIT licence). The model is a MobileNet-0.25 run with
 * random weights: these tests check detection, the record layout and the
 * plumbing, not the accuracy of the labels.
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import { CANONICAL_CLASSES } from '../lib/classes';
import { ImageStore } from '../lib/data/store';
import { discoverDataset } from '../lib/data/dataset';
import { createModel } from '../lib/models/factory';
import { exportLayersModel } from '../lib/models/io';
import { predictFiles, type PredictSummary } from '../lib/predict/batch';
import { canonicalOrder, checkRunClasses, ClassListMismatchError } from '../lib/predict/classify';
import { FaceDetector, type RgbImage } from '../lib/predict/detect';
import { FACEAPI_TO_CANONICAL, predictStoreFaceApi } from '../lib/predict/faceapi_expressions';
import { cropRegion, mergeDetections, tileGrid, tileStarts } from '../lib/predict/geometry';
import { walkInputs } from '../lib/predict/inputs';
import { CSV_COLUMNS, csvRows, OutputPlanner, type PredictionRecord } from '../lib/predict/output';
import { Predictor } from '../lib/predict/predictor';
import { loadRun, type LoadedRun } from '../lib/train/load_run';
import { getLogLevel, setLogLevel } from '../lib/util/log';

const CLI = path.resolve('dist/cli/main.js');
const DATA = process.env.FER_DATA ?? path.resolve('data/fer2013');
const DEMO = path.join(path.dirname(require.resolve('@vladmandic/face-api/package.json')), 'demo');
const WORK = fs.mkdtempSync(path.join(os.tmpdir(), 'fer-predict-test-'));
const INPUTS = path.join(WORK, 'inputs');
const RUN = path.join(WORK, 'run');

/** The three faces of demo/sample1.jpg (1920x1280), as SSD MobileNet v1 boxes them: [left, top, width, height]. */
const SAMPLE1_FACES: ReadonlyArray<readonly [number, number, number, number]> = [
  [412, 353, 179, 238],
  [837, 417, 190, 226],
  [1472, 197, 205, 239],
];

/** demo/sample1.jpg scaled to 640x427: three faces of about 60 pixels. */
const GROUP_WIDTH = 640;
const GROUP_HEIGHT = 427;

function fer(args: string[]): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [CLI, ...args], {
    encoding: 'utf8',
    env: { ...process.env, FER_PROGRESS: '0' },
    timeout: 300_000,
  });
}

/** Writes a run folder with a randomly initialised MobileNet-0.25 at 48x48, as loadRun reads it. */
async function writeRandomRun(dir: string, classNames: readonly string[] = CANONICAL_CLASSES): Promise<void> {
  const model = await createModel('MobileNet-0.25', { inputSize: 48, weights: 'random', seed: 3, classNames: CANONICAL_CLASSES });
  await exportLayersModel(model.model, path.join(dir, 'model'), {});
  const config = {
    model: 'MobileNet-0.25',
    configuration: model.configuration,
    inputSize: 48,
    dense: model.configuration.dense,
    dropout: model.configuration.dropout,
    seed: 3,
    resizeFit: 'fill',
    dataDir: DATA,
    classAliases: {},
  };
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  fs.writeFileSync(path.join(dir, 'classes.json'), JSON.stringify(classNames));
  model.model.dispose();
}

async function rawRgb(image: sharp.Sharp): Promise<RgbImage> {
  const { data, info } = await image.removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
}

/** Cuts demo/sample1.jpg to one face box, scales it by `scale` and encodes it as JPEG. */
async function faceCrop(face: number, scale: number): Promise<Buffer> {
  const [left, top, width, height] = SAMPLE1_FACES[face] as readonly [number, number, number, number];
  return sharp(path.join(DEMO, 'sample1.jpg'))
    .extract({ left, top, width, height })
    .resize(Math.round(width * scale))
    .jpeg({ quality: 92 })
    .toBuffer();
}

/** Writes one file per input kind into INPUTS; returns the path of an SVG kept outside the folder. */
async function writeInputs(): Promise<string> {
  fs.mkdirSync(INPUTS, { recursive: true });
  const group = sharp(path.join(DEMO, 'sample1.jpg')).resize(GROUP_WIDTH, GROUP_HEIGHT);
  const groupJpeg = await group.clone().jpeg({ quality: 90 }).toBuffer();
  fs.writeFileSync(path.join(INPUTS, 'group.jpg'), groupJpeg);
  await group.clone().png().toFile(path.join(INPUTS, 'group.png'));
  await group.clone().webp({ quality: 90 }).toFile(path.join(INPUTS, 'group.webp'));
  // Stored rotated 90 degrees anticlockwise with EXIF orientation 6 ("rotate 90 clockwise to display"), as phones write portrait shots.
  await sharp(groupJpeg).rotate(270).jpeg({ quality: 90 }).withMetadata({ orientation: 6 }).toFile(path.join(INPUTS, 'rotated.jpg'));
  await group.clone().greyscale().png().toFile(path.join(INPUTS, 'grey.png'));
  // RGBA with a transparent band along the bottom edge, below the faces.
  const alpha = Buffer.alloc(GROUP_WIDTH * GROUP_HEIGHT, 255);
  alpha.fill(0, GROUP_WIDTH * (GROUP_HEIGHT - 40));
  await group
    .clone()
    .removeAlpha()
    .joinChannel(alpha, { raw: { width: GROUP_WIDTH, height: GROUP_HEIGHT, channels: 1 } })
    .png()
    .toFile(path.join(INPUTS, 'rgba.png'));
  await group.clone().toColourspace('rgb16').png().toFile(path.join(INPUTS, 'deep16.png'));
  // The first face cut to its box at half size: SSD finds nothing in it without surroundings.
  fs.writeFileSync(path.join(INPUTS, 'face crop.jpg'), await faceCrop(0, 0.5));
  await sharp({ create: { width: 640, height: 427, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 40 } } })
    .png()
    .toFile(path.join(INPUTS, 'no face.png'));
  fs.writeFileSync(path.join(INPUTS, 'café 顔 photo.jpg'), groupJpeg);
  fs.writeFileSync(path.join(INPUTS, 'broken.jpg'), groupJpeg.subarray(0, 2000));
  fs.writeFileSync(path.join(INPUTS, 'notes.txt'), 'not an image\n');

  const svg = path.join(WORK, 'drawing.svg');
  fs.writeFileSync(svg, '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>');
  return svg;
}

let run: LoadedRun;
let predictor: Predictor;
let svgFile: string;
const records = new Map<string, PredictionRecord>();
let summary: PredictSummary;
const OUT = path.join(WORK, 'out');
const CSV = path.join(WORK, 'faces.csv');

beforeAll(async () => {
  if (!fs.existsSync(CLI)) {
    throw new Error(`${CLI} not found; run "npm run build" (npm test runs it first).`);
  }
  await initBackend('node');
  await writeRandomRun(RUN);
  svgFile = await writeInputs();
  run = await loadRun(RUN);
  predictor = await Predictor.create(run, {});
  // The broken and unsupported inputs log errors by design; the CLI tests check those lines.
  const level = getLogLevel();
  setLogLevel('silent');
  try {
    summary = await predictFiles(predictor, [INPUTS, svgFile], {
      out: OUT,
      csv: CSV,
      silent: true,
      onRecord: (record) => records.set(path.basename(record.file), record),
    });
  } finally {
    setLogLevel(level);
  }
});

afterAll(() => {
  fs.rmSync(WORK, { recursive: true, force: true });
});

function record(name: string): PredictionRecord {
  const found = records.get(name);
  if (found === undefined) {
    throw new Error(`no record for ${name}; records: ${[...records.keys()].join(', ')}`);
  }
  return found;
}

describe('predict input kinds', () => {
  it.each(['group.jpg', 'group.png', 'group.webp', 'grey.png', 'rgba.png', 'deep16.png', 'café 顔 photo.jpg'])('finds three faces in %s', (name) => {
    const result = record(name);
    expect(result.error).toBeUndefined();
    expect(result.width).toBe(GROUP_WIDTH);
    expect(result.height).toBe(GROUP_HEIGHT);
    expect(result.fallback).toBeNull();
    expect(result.faces).toHaveLength(3);
  });

  it('applies EXIF orientation before detecting', () => {
    const result = record('rotated.jpg');
    expect(result.width).toBe(GROUP_WIDTH);
    expect(result.height).toBe(GROUP_HEIGHT);
    expect(result.faces).toHaveLength(3);
    const reference = record('group.jpg').faces.map((f) => f.box.x).sort((a, b) => a - b);
    const rotated = result.faces.map((f) => f.box.x).sort((a, b) => a - b);
    rotated.forEach((x, i) => expect(Math.abs(x - (reference[i] as number))).toBeLessThan(8));
  });

  it('classifies a face crop as a whole', () => {
    const result = record('face crop.jpg');
    expect(result.fallback).toBe('whole-image');
    expect(result.faces).toHaveLength(1);
    const face = result.faces[0] as PredictionRecord['faces'][number];
    expect(face.box).toEqual({ x: 0, y: 0, width: result.width, height: result.height });
    expect(face.score).toBeGreaterThanOrEqual(0.5);
  });

  it('reports no faces for a photo without one', () => {
    const result = record('no face.png');
    expect(result.error).toBeUndefined();
    expect(result.fallback).toBeNull();
    expect(result.faces).toEqual([]);
  });

  it('names a broken file and continues', () => {
    const result = record('broken.jpg');
    expect(result.error).toContain('broken.jpg');
    expect(result.error).toMatch(/truncated or corrupt JPEG/);
    expect(result.faces).toEqual([]);
  });

  it('names an unsupported format', () => {
    const result = record('drawing.svg');
    expect(result.error).toContain('drawing.svg');
    expect(result.error).toContain('unsupported image format SVG');
  });

  it('counts the outcome of every file', () => {
    expect(records.size).toBe(12);
    expect(summary.images).toBe(10);
    expect(summary.failed).toBe(2);
    expect(summary.wholeImage).toBe(1);
    expect(summary.withoutFaces).toBe(1);
    expect(summary.faces).toBe(3 * 8 + 1);
    expect(summary.skippedFiles).toBe(1);
  });
});

describe('predict records', () => {
  it('follow the documented layout', () => {
    for (const result of records.values()) {
      expect(result.schema).toBe(1);
      expect(typeof result.file).toBe('string');
      expect(Array.isArray(result.faces)).toBe(true);
      if (result.error !== undefined) {
        continue;
      }
      expect(result.classes).toEqual(CANONICAL_CLASSES);
      expect(result.detector).toBe('ssd');
      expect(result.timingsMs?.total).toBeGreaterThan(0);
      for (const face of result.faces) {
        expect(Object.keys(face.probabilities)).toEqual([...CANONICAL_CLASSES]);
        const probabilities = Object.values(face.probabilities);
        expect(probabilities.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 4);
        expect(face.confidence).toBe(Math.max(...probabilities));
        expect(face.probabilities[face.label]).toBe(face.confidence);
        expect(face.box.x).toBeGreaterThanOrEqual(0);
        expect(face.box.y).toBeGreaterThanOrEqual(0);
        expect(face.box.x + face.box.width).toBeLessThanOrEqual(result.width as number);
        expect(face.box.y + face.box.height).toBeLessThanOrEqual(result.height as number);
        expect(face.cropBox.width).toBeGreaterThanOrEqual(face.box.width);
      }
    }
  });

  it('puts the faces where the photo has them', () => {
    const scale = GROUP_WIDTH / 1920;
    const faces = record('group.jpg').faces.map((f) => f.box).sort((a, b) => a.x - b.x);
    faces.forEach((box, i) => {
      const [left, top] = SAMPLE1_FACES[i] as readonly [number, number, number, number];
      expect(Math.abs(box.x - left * scale)).toBeLessThan(10);
      expect(Math.abs(box.y - top * scale)).toBeLessThan(10);
    });
  });

  it('are written next to annotated copies', async () => {
    for (const name of ['group.jpg', 'group.png', 'group.webp', 'café 顔 photo.jpg', 'no face.png']) {
      const written = JSON.parse(fs.readFileSync(path.join(OUT, 'inputs', `${name}.json`), 'utf8')) as PredictionRecord;
      expect(written).toEqual(record(name));
      expect(written.annotated).toBe(path.join('inputs', name));
      const metadata = await sharp(path.join(OUT, 'inputs', name)).metadata();
      expect(metadata.width).toBe(GROUP_WIDTH);
      expect(metadata.format).toBe(path.extname(name) === '.jpg' ? 'jpeg' : path.extname(name).slice(1));
    }
    expect(fs.existsSync(path.join(OUT, 'inputs', 'broken.jpg'))).toBe(false);
  });

  it('fill the CSV with one row per face', () => {
    const lines = fs.readFileSync(CSV, 'utf8').trimEnd().split('\n');
    expect(lines[0]).toBe(CSV_COLUMNS.join(','));
    expect(lines).toHaveLength(1 + 3 * 8 + 1 + 1 + 2);
    const nonAscii = lines.filter((line) => line.includes('café 顔 photo.jpg'));
    expect(nonAscii).toHaveLength(3);
    const noFace = lines.find((line) => line.includes('no face.png')) as string;
    expect(noFace.split(',')[1]).toBe('0');
    const broken = lines.find((line) => line.includes('broken.jpg')) as string;
    expect(broken).toMatch(/truncated or corrupt JPEG/);
  });
});

describe('predict streaming', () => {
  it('walks folders lazily in sorted order', async () => {
    const root = path.join(WORK, 'lazy');
    for (const folder of ['a', 'b', 'c']) {
      fs.mkdirSync(path.join(root, folder), { recursive: true });
      fs.writeFileSync(path.join(root, folder, '1.png'), 'x');
    }
    const seen: string[] = [];
    for await (const entry of walkInputs([root])) {
      seen.push(entry.path);
      if (seen.length === 1) {
        // Created after the walk started: a lazy walk lists folder c only when it gets there.
        fs.writeFileSync(path.join(root, 'c', '0.jpg'), 'x');
      }
    }
    expect(seen.map((p) => path.relative(root, p))).toEqual([path.join('a', '1.png'), path.join('b', '1.png'), path.join('c', '0.jpg'), path.join('c', '1.png')]);
  });

  it('processes a folder of many files in order', async () => {
    const root = path.join(WORK, 'many');
    const names: string[] = [];
    for (let i = 0; i < 30; i++) {
      const folder = path.join(root, `part${i % 3}`);
      fs.mkdirSync(folder, { recursive: true });
      const file = path.join(folder, `img${String(i).padStart(3, '0')}.png`);
      await sharp({ create: { width: 48, height: 48, channels: 3, background: { r: (i * 8) % 256, g: 90, b: 160 } } }).png().toFile(file);
      names.push(file);
    }
    fs.writeFileSync(path.join(root, 'part0', 'README.md'), 'listing');
    const fast = await Predictor.create(run, { detector: 'tiny', fallback: 'never' });
    const order: string[] = [];
    const result = await predictFiles(fast, [root], { silent: true, onRecord: (r) => order.push(r.file) });
    expect(order).toEqual([...names].sort());
    expect(result.images).toBe(30);
    expect(result.failed).toBe(0);
    expect(result.skippedFiles).toBe(1);
  });
});

describe('predict detection', () => {
  it('finds small faces with a larger detection size', async () => {
    // Three faces about 45 pixels wide on a 1024x512 canvas: 22 pixels in the 512-pixel pass, too small for SSD.
    const tiles: sharp.OverlayOptions[] = [];
    for (const [i, face] of [0, 1, 2].entries()) {
      tiles.push({ input: await sharp(await faceCrop(face, 1)).resize(48).toBuffer(), left: 120 + i * 330, top: 150 + (i % 2) * 180 });
    }
    const canvas = await rawRgb(sharp({ create: { width: 1024, height: 512, channels: 3, background: '#9a9080' } }).composite(tiles).png());
    const onePass = await FaceDetector.load({});
    const tiled = await FaceDetector.load({ detectSize: 1024 });
    expect((await onePass.detect(canvas)).length).toBeLessThan(3);
    const found = await tiled.detect(canvas);
    expect(found).toHaveLength(3);
    found.forEach((d) => {
      expect(d.box.width).toBeGreaterThan(25);
      expect(d.box.width).toBeLessThan(70);
    });
  });

  it('rejects invalid detector options', async () => {
    await expect(FaceDetector.load({ minScore: 1.5 })).rejects.toThrow(/minimum detector score 1.5/);
    await expect(FaceDetector.load({ detectSize: 50 })).rejects.toThrow(/detection size 50/);
    await expect(FaceDetector.load({ detector: 'yolo' as never })).rejects.toThrow(/Invalid detector "yolo"/);
  });
});

describe('predict geometry', () => {
  it('covers a side with overlapping tiles', () => {
    expect(tileStarts(400, 512, 128)).toEqual([0]);
    const starts = tileStarts(1024, 512, 128);
    expect(starts[0]).toBe(0);
    expect((starts.at(-1) as number) + 512).toBe(1024);
    for (let i = 1; i < starts.length; i++) {
      expect((starts[i - 1] as number) + 512 - (starts[i] as number)).toBeGreaterThanOrEqual(128);
    }
    expect(tileGrid(1024, 683, 512, 128)).toHaveLength(6);
  });

  it('merges duplicate and cut detections', () => {
    const merged = mergeDetections([
      { score: 0.9, box: { x: 0, y: 0, width: 100, height: 100 } },
      { score: 0.8, box: { x: 5, y: 5, width: 100, height: 100 } },
      { score: 0.7, box: { x: 50, y: 0, width: 40, height: 60 } },
      { score: 0.6, box: { x: 300, y: 0, width: 100, height: 100 } },
    ]);
    expect(merged.map((d) => d.score)).toEqual([0.9, 0.6]);
  });

  it('squares crops and clamps them to the image', () => {
    expect(cropRegion({ x: 100, y: 100, width: 50, height: 100 }, 0.2, 1000, 1000)).toEqual({ left: 55, top: 80, width: 140, height: 140 });
    expect(cropRegion({ x: 0, y: 0, width: 50, height: 50 }, 0.2, 1000, 1000)).toEqual({ left: 0, top: 0, width: 60, height: 60 });
  });
});

describe('predict outputs', () => {
  it('gives colliding names a suffix', () => {
    const planner = new OutputPlanner('/out');
    expect(planner.plan('x.jpg').annotated).toBe('x.jpg');
    expect(planner.plan('X.jpg').annotated).toBe('X_2.jpg');
    expect(planner.plan('x.bmp').annotated).toBe('x.bmp.png');
    expect(planner.plan('x.bmp').record).toBe('x_2.bmp.json');
    expect(planner.plan('x.bmp.png').annotated).toBe('x.bmp_2.png');
    expect(planner.plan('../../etc/y.png').annotated).toBe(path.join('etc', 'y.png'));
  });

  it('quotes CSV fields with commas and quotes', () => {
    const [row] = csvRows({ schema: 1, file: 'a, "b".jpg', faces: [], error: 'x' });
    expect(row).toBe('"a, ""b"".jpg",,,,,,,,,,,,,,,,,x');
  });
});

describe('predict class lists', () => {
  it('reorders a permuted class list', () => {
    expect(canonicalOrder('run', ['happy', 'anger', 'disgust', 'fear', 'neutral', 'sad', 'surprised'])).toEqual([3, 0, 1, 2, 4, 5, 6]);
  });

  it('rejects a class outside the canonical ones', async () => {
    const dir = path.join(WORK, 'contempt-run');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'classes.json'), JSON.stringify(['anger', 'contempt', 'fear', 'happiness', 'neutral', 'sadness', 'surprise']));
    await expect(checkRunClasses(dir)).rejects.toThrow(ClassListMismatchError);
    await expect(checkRunClasses(dir)).rejects.toThrow(/include "contempt"/);
  });

  it('rejects a class list of another length', () => {
    expect(() => canonicalOrder('run', ['happy', 'sad'])).toThrow(/are 2, not 7/);
  });
});

describe('face-api expression model', () => {
  it('maps its labels to canonical order', () => {
    // neutral, happy, sad, angry, fearful, disgusted, surprised
    expect(FACEAPI_TO_CANONICAL).toEqual([4, 3, 5, 0, 2, 1, 6]);
  });

  it('scores FER-2013 images as face crops', async () => {
    if (!fs.existsSync(DATA)) {
      throw new Error(`FER-2013 not found at ${DATA}; run "npm run setup" or set FER_DATA (see data/README.md).`);
    }
    const test = discoverDataset(DATA).splits.test ?? [];
    const sample = CANONICAL_CLASSES.flatMap((_, label) => test.filter((r) => r.label === label).slice(0, 2));
    const store = await ImageStore.load(sample, { size: 112, silent: true });
    const predictions = await predictStoreFaceApi(store, { silent: true });
    expect(predictions.probabilities).toHaveLength(sample.length * 7);
    for (let i = 0; i < sample.length; i++) {
      const row = Array.from(predictions.probabilities.subarray(i * 7, (i + 1) * 7));
      expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 4);
    }
    const happy = CANONICAL_CLASSES.indexOf('happiness');
    const happyRows = sample.map((r, i) => ({ r, i })).filter(({ r }) => r.label === happy);
    // Smiling faces are the class face-api gets right most often (recall 0.77 on the whole test split).
    const hits = happyRows.filter(({ i }) => {
      const row = Array.from(predictions.probabilities.subarray(i * 7, (i + 1) * 7));
      return row.indexOf(Math.max(...row)) === happy;
    });
    expect(hits.length).toBeGreaterThanOrEqual(1);
  });
});

describe('fer predict command', () => {
  it('exits 1 and names a missing file', () => {
    const out = path.join(WORK, 'cli-out');
    const result = fer(['predict', RUN, path.join(INPUTS, 'group.jpg'), path.join(WORK, 'missing photo.jpg'), '--out', out, '--explain', '-q']);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('missing photo.jpg: file or folder not found');
    const lines = result.stdout.trimEnd().split('\n').map((line) => JSON.parse(line) as PredictionRecord);
    expect(lines).toHaveLength(2);
    expect(lines[0]?.faces).toHaveLength(3);
    expect(lines[1]?.error).toContain('file or folder not found');
    expect(lines[0]?.faces.map((f) => (f as { explanation?: string }).explanation)).toEqual([1, 2, 3].map((i) => `group.jpg.face${i}.gradcam.png`));
    for (const i of [1, 2, 3]) {
      expect(fs.existsSync(path.join(out, `group.jpg.face${i}.gradcam.png`))).toBe(true);
    }
    expect(result.stderr).toMatch(/predicted 1 images .*3 faces.*1 failed/);
  });

  it('exits 0 when every file succeeds', () => {
    const result = fer(['predict', RUN, path.join(INPUTS, 'face crop.jpg'), '-q']);
    expect(result.status).toBe(0);
    expect(result.stderr).toContain('whole image was classified');
    expect((JSON.parse(result.stdout) as PredictionRecord).fallback).toBe('whole-image');
  });

  it.each([
    [['predict', 'run-only'], 'missing required argument'],
    [['predict', 'run', 'x.jpg', '--min-score', '2'], 'not between 0 and 1'],
    [['predict', 'run', 'x.jpg', '--detector', 'yolo'], 'Allowed choices are ssd, tiny'],
    [['predict', 'run', 'x.jpg', '--explain'], 'needs an output folder'],
  ])('exits 2 for usage error %j', (args, message) => {
    const result = fer(args);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain(message);
  });

  it('explains a mismatching class list', () => {
    const dir = path.join(WORK, 'eight-classes');
    fs.mkdirSync(dir, { recursive: true });
    fs.copyFileSync(path.join(RUN, 'config.json'), path.join(dir, 'config.json'));
    fs.writeFileSync(path.join(dir, 'classes.json'), JSON.stringify([...CANONICAL_CLASSES, 'contempt']));
    const result = fer(['predict', dir, path.join(INPUTS, 'group.jpg')]);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`The model of ${dir} cannot be used for prediction`);
    expect(result.stderr).toContain('are 8, not 7');
  });

  it('explains missing model files', () => {
    const dir = path.join(WORK, 'no-model');
    fs.mkdirSync(dir, { recursive: true });
    fs.copyFileSync(path.join(RUN, 'config.json'), path.join(dir, 'config.json'));
    const result = fer(['predict', dir, path.join(INPUTS, 'group.jpg')]);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('model/model.json missing');
  });

  it('describes its options with units', () => {
    const result = fer(['predict', '--help']);
    expect(result.status).toBe(0);
    expect(result.stderr).toBe('');
    for (const option of ['--out', '--csv', '--detector', '--min-score', '--detect-size <px>', '--margin', '--fallback', '--colour', '--explain', '--annotate-size <px>']) {
      expect(result.stdout).toContain(option);
    }
  });
});

describe('fer evaluate --faceapi', () => {
  it('scores face-api on a split sample', () => {
    const out = path.join(WORK, 'faceapi-eval');
    const result = fer(['evaluate', '--faceapi', '--data', DATA, '--limit', '14', '--no-figures', '--out', out, '-q']);
    expect(result.status).toBe(0);
    const summaryLine = JSON.parse(result.stdout.trim()) as { model: string; images: number; accuracy: number; macroF1: number };
    expect(summaryLine.model).toBe('faceapi-expression');
    expect(summaryLine.images).toBe(14);
    expect(summaryLine.accuracy).toBeGreaterThanOrEqual(0);
    const metrics = JSON.parse(fs.readFileSync(path.join(out, 'metrics.json'), 'utf8')) as { classNames: string[]; numSamples: number };
    expect(metrics.classNames).toEqual([...CANONICAL_CLASSES]);
    expect(metrics.numSamples).toBe(14);
    expect(fs.existsSync(path.join(out, 'predictions.csv'))).toBe(true);
  });

  it('requires a run folder without --faceapi', () => {
    const result = fer(['evaluate']);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('missing run folder');
  });
});
