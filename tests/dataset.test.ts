/**
 * Checks dataset discovery, stratified splits and duplicate detection on
 * small temporary trees built from real FER-2013 images. The images come
 * from process.env.FER_DATA, or data/fer2013 relative to the repository root.
 */

import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { CANONICAL_CLASSES, ClassAliases, UnknownClassError } from '../lib/classes';
import {
  classCounts,
  discoverDataset,
  formatClassCounts,
  type DiscoveredDataset,
  type ImageRecord,
} from '../lib/data/dataset';
import { countCrossSplitPairs, findDuplicates } from '../lib/data/duplicates';
import { stratifiedHoldOut } from '../lib/data/split';
import { prepareSplits, stratifiedSubset } from '../lib/train/data';
import { addLogListener, getLogLevel, setLogLevel, type LogLevel } from '../lib/util/log';

const REPO_ROOT = resolve(__dirname, '..');
const DATA_DIR = resolve(REPO_ROOT, process.env.FER_DATA ?? 'data/fer2013');

/** FER-2013 folder names in canonical class order. */
const FER_NAMES = ['angry', 'disgust', 'fear', 'happy', 'neutral', 'sad', 'surprise'];

/** Folder names of the stock-photo study set in canonical class order. */
const STUDY_NAMES = ['Anger', 'Disgust', 'Fear', 'Happiness', 'Neutral', 'Sadness', 'Surprise'];

const IMAGES_PER_CLASS = 6;

let tempRoot: string;
let previousLogLevel: LogLevel;
/** Real FER-2013 training images per canonical class, with distinct content. */
let sources: string[][];

/**
 * Picks `count` training images of each class with pairwise distinct bytes,
 * because FER-2013 itself contains identical files and the duplicate tests
 * must only see the copies they make.
 */
function pickDistinctImages(count: number): string[][] {
  const seen = new Set<string>();
  return FER_NAMES.map((folder) => {
    const dir = join(DATA_DIR, 'train', folder);
    const picked: string[] = [];
    for (const name of readdirSync(dir).sort()) {
      if (picked.length === count) {
        break;
      }
      const file = join(dir, name);
      const digest = createHash('sha256').update(readFileSync(file)).digest('hex');
      if (!seen.has(digest)) {
        seen.add(digest);
        picked.push(file);
      }
    }
    if (picked.length < count) {
      throw new Error(`Only ${picked.length} distinct images found in ${dir}; the tests need ${count}.`);
    }
    return picked;
  });
}

let treeCounter = 0;

/** Creates an empty folder under the temporary root. */
function newTree(name: string): string {
  const dir = join(tempRoot, `${name}-${treeCounter++}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Copies `count` images of canonical class `label` into `dir`, starting at source `offset`. */
function copyImages(dir: string, label: number, count: number, offset = 0): string[] {
  mkdirSync(dir, { recursive: true });
  const files = (sources[label] as string[]).slice(offset, offset + count);
  if (files.length < count) {
    throw new Error(`copyImages: requested ${count} images of class ${label} from index ${offset}, but only ${files.length} are available.`);
  }
  return files.map((source) => {
    const target = join(dir, basename(source));
    copyFileSync(source, target);
    return target;
  });
}

function writeFile(path: string, content: string): string {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, content);
  return path;
}

/** Builds split folders with one class folder per name, `perClass[label]` images each. */
function buildSplit(splitDir: string, names: readonly string[], perClass: readonly number[], offset = 0): void {
  names.forEach((name, label) => {
    const count = perClass[label] as number;
    if (count > 0) {
      copyImages(join(splitDir, name), label, count, offset);
    }
  });
}

function labelsOf(records: readonly ImageRecord[] | undefined): number[] {
  return (records ?? []).map((r) => r.label);
}

function pathsOf(records: readonly ImageRecord[]): string[] {
  return records.map((r) => r.path).sort();
}

/** Returns the error thrown by `action`, failing the test when nothing is thrown. */
function thrownBy(action: () => unknown): Error {
  try {
    action();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the call to throw, but it returned normally');
}

/** Synthetic records: `counts[label]` records per class with sortable unique paths. */
function syntheticRecords(counts: readonly number[]): ImageRecord[] {
  const records: ImageRecord[] = [];
  counts.forEach((count, label) => {
    for (let i = 0; i < count; i++) {
      records.push({ path: `/synthetic/${CANONICAL_CLASSES[label]}/${String(i).padStart(4, '0')}.jpg`, label });
    }
  });
  return records;
}

beforeAll(() => {
  if (!existsSync(join(DATA_DIR, 'train'))) {
    throw new Error(
      `FER-2013 not found at ${DATA_DIR} (expected ${join(DATA_DIR, 'train')}/<class>/*.jpg). ` +
        'See data/README.md for how to download it, or set FER_DATA to its folder.',
    );
  }
  sources = pickDistinctImages(IMAGES_PER_CLASS);
  tempRoot = mkdtempSync(join(tmpdir(), 'dataset-test-'));
  previousLogLevel = getLogLevel();
  setLogLevel('error');
});

afterAll(() => {
  setLogLevel(previousLogLevel);
  if (tempRoot !== undefined) {
    rmSync(tempRoot, { recursive: true, force: true });
  }
});

describe('discoverDataset FER-2013 layout', () => {
  let root: string;
  let dataset: DiscoveredDataset;
  const perClass = [2, 1, 2, 3, 2, 2, 1];

  beforeAll(() => {
    root = newTree('fer');
    buildSplit(join(root, 'train'), FER_NAMES, perClass);
    buildSplit(join(root, 'validation'), FER_NAMES, [1, 1, 1, 1, 1, 1, 1], 3);
    buildSplit(join(root, 'test'), FER_NAMES, [1, 1, 1, 1, 1, 1, 1], 4);
    dataset = discoverDataset(root);
  });

  it('detects split layout', () => {
    expect(dataset.layout).toBe('splits');
    expect(dataset.root).toBe(root);
  });

  it('finds all three split folders', () => {
    expect(dataset.splitFolders).toEqual({ train: 'train', validation: 'validation', test: 'test' });
  });

  it('maps FER folders to classes', () => {
    expect(dataset.classFolders).toEqual({
      angry: 'anger',
      disgust: 'disgust',
      fear: 'fear',
      happy: 'happiness',
      neutral: 'neutral',
      sad: 'sadness',
      surprise: 'surprise',
    });
  });

  it('labels train images by folder', () => {
    for (const record of dataset.splits.train ?? []) {
      const folder = basename(dirname(record.path));
      expect(record.label, record.path).toBe(FER_NAMES.indexOf(folder));
    }
  });

  it('counts train images per class', () => {
    expect(classCounts(dataset.splits.train ?? [])).toEqual(perClass);
  });

  it('counts validation and test images', () => {
    expect(classCounts(dataset.splits.validation ?? [])).toEqual([1, 1, 1, 1, 1, 1, 1]);
    expect(classCounts(dataset.splits.test ?? [])).toEqual([1, 1, 1, 1, 1, 1, 1]);
  });

  it('records absolute image paths', () => {
    const first = dataset.splits.test?.[0];
    expect(first?.path.startsWith(join(root, 'test'))).toBe(true);
    expect(existsSync(first?.path ?? '')).toBe(true);
  });

  it('skips nothing in a clean tree', () => {
    expect(dataset.skipped).toEqual([]);
  });
});

describe('discoverDataset study layout', () => {
  let root: string;
  let dataset: DiscoveredDataset;

  beforeAll(() => {
    root = newTree('study');
    buildSplit(join(root, 'Train'), STUDY_NAMES, [3, 2, 3, 3, 3, 3, 3]);
    buildSplit(join(root, 'Test'), STUDY_NAMES, [1, 1, 1, 1, 0, 1, 1], 3);
    dataset = discoverDataset(root);
  });

  it('detects split layout', () => {
    expect(dataset.layout).toBe('splits');
  });

  it('keeps on-disk split names', () => {
    expect(dataset.splitFolders).toEqual({ train: 'Train', test: 'Test' });
  });

  it('has no validation split', () => {
    expect(dataset.splits.validation).toBeUndefined();
  });

  it('maps study folders to classes', () => {
    expect(dataset.classFolders).toEqual({
      Anger: 'anger',
      Disgust: 'disgust',
      Fear: 'fear',
      Happiness: 'happiness',
      Neutral: 'neutral',
      Sadness: 'sadness',
      Surprise: 'surprise',
    });
  });

  it('labels images with canonical indices', () => {
    for (const record of dataset.splits.train ?? []) {
      const folder = basename(dirname(record.path));
      expect(record.label, record.path).toBe(STUDY_NAMES.indexOf(folder));
    }
  });

  it('accepts test split without neutral', () => {
    expect(classCounts(dataset.splits.test ?? [])).toEqual([1, 1, 1, 1, 0, 1, 1]);
  });

  it('formats the missing class as 0', () => {
    expect(formatClassCounts(dataset.splits.test ?? [])).toBe(
      'anger 1, disgust 1, fear 1, happiness 1, neutral 0, sadness 1, surprise 1',
    );
  });
});

describe('discoverDataset single folder', () => {
  let root: string;
  let dataset: DiscoveredDataset;

  beforeAll(() => {
    root = newTree('single');
    buildSplit(root, ['ANGRY', 'disgusted', 'Fearful', 'joy', 'neutral', 'Sad', 'surprised'], [2, 1, 1, 2, 1, 1, 1]);
    dataset = discoverDataset(root);
  });

  it('detects single layout', () => {
    expect(dataset.layout).toBe('single');
  });

  it('puts everything in train', () => {
    expect(Object.keys(dataset.splits)).toEqual(['train']);
    expect(dataset.splitFolders).toEqual({});
  });

  it('labels images with canonical indices', () => {
    expect(classCounts(dataset.splits.train ?? [])).toEqual([2, 1, 1, 2, 1, 1, 1]);
  });

  it('maps alias folders to classes', () => {
    expect(dataset.classFolders).toEqual({
      ANGRY: 'anger',
      disgusted: 'disgust',
      Fearful: 'fear',
      joy: 'happiness',
      neutral: 'neutral',
      Sad: 'sadness',
      surprised: 'surprise',
    });
  });
});

describe('discoverDataset unknown class', () => {
  let root: string;

  beforeAll(() => {
    root = newTree('unknown');
    buildSplit(join(root, 'train'), FER_NAMES, [1, 1, 1, 1, 1, 1, 1]);
    copyImages(join(root, 'train', 'contempt'), 1, 1);
  });

  it('throws naming folder and path', () => {
    const error = thrownBy(() => discoverDataset(root));
    expect(error).toBeInstanceOf(UnknownClassError);
    expect((error as UnknownClassError).folder).toBe('contempt');
    expect(error.message).toContain('"contempt"');
    expect(error.message).toContain(join(root, 'train', 'contempt'));
  });

  it('accepts a user alias for it', () => {
    const dataset = discoverDataset(root, { aliases: new ClassAliases({ contempt: 'disgust' }) });
    expect(dataset.classFolders['contempt']).toBe('disgust');
    expect(classCounts(dataset.splits.train ?? [])).toEqual([1, 2, 1, 1, 1, 1, 1]);
  });
});

describe('discoverDataset skipped files', () => {
  let root: string;
  let dataset: DiscoveredDataset;

  beforeAll(() => {
    root = newTree('skipped');
    buildSplit(join(root, 'train'), FER_NAMES, [1, 1, 1, 1, 1, 1, 1]);
    writeFile(join(root, 'train', 'angry', 'labels.csv'), 'file,label\n');
    writeFile(join(root, 'train', 'happy', 'NOTES'), 'no extension');
    writeFile(join(root, 'train', 'README.txt'), 'files outside class folders');
    writeFile(join(root, 'train', 'angry', '.DS_Store'), 'finder');
    writeFile(join(root, 'train', '.DS_Store'), 'finder');
    writeFile(join(root, 'train', 'sad', 'Thumbs.db'), 'explorer');
    writeFile(join(root, 'train', 'sad', '._copy.jpg'), 'macOS resource fork');
    dataset = discoverDataset(root);
  });

  it('reports a non-image extension', () => {
    expect(dataset.skipped).toContainEqual({
      path: join(root, 'train', 'angry', 'labels.csv'),
      reason: 'extension ".csv" is not an image type',
    });
  });

  it('reports a file without extension', () => {
    expect(dataset.skipped).toContainEqual({
      path: join(root, 'train', 'happy', 'NOTES'),
      reason: 'extension "(none)" is not an image type',
    });
  });

  it('reports files outside class folders', () => {
    expect(dataset.skipped).toContainEqual({
      path: join(root, 'train', 'README.txt'),
      reason: 'file outside any class folder',
    });
  });

  it('ignores system clutter silently', () => {
    expect(dataset.skipped).toHaveLength(3);
    for (const skipped of dataset.skipped) {
      expect(skipped.path, skipped.path).not.toMatch(/\.DS_Store$|Thumbs\.db$|\._copy\.jpg$/);
    }
  });

  it('keeps only image files', () => {
    expect(classCounts(dataset.splits.train ?? [])).toEqual([1, 1, 1, 1, 1, 1, 1]);
  });
});

describe('discoverDataset nested folders', () => {
  it('keep the class label', () => {
    const root = newTree('nested');
    buildSplit(join(root, 'train'), FER_NAMES, [1, 1, 1, 1, 1, 1, 1]);
    const nested = copyImages(join(root, 'train', 'happy', 'subject01', 'session2'), 3, 2, 1);
    const dataset = discoverDataset(root);
    const records = dataset.splits.train ?? [];
    for (const file of nested) {
      expect(records.find((r) => r.path === file)?.label, file).toBe(3);
    }
    expect(classCounts(records)).toEqual([1, 1, 1, 3, 1, 1, 1]);
  });
});

describe('discoverDataset folder merging', () => {
  it('merges two folders of one class', () => {
    const root = newTree('merge');
    copyImages(join(root, 'train', 'happy'), 3, 1);
    copyImages(join(root, 'train', 'Happiness'), 3, 2, 1);
    const warnings: string[] = [];
    const stop = addLogListener((level, message) => {
      if (level === 'warn') {
        warnings.push(message);
      }
    });
    const dataset = discoverDataset(root);
    stop();
    expect(labelsOf(dataset.splits.train)).toEqual([3, 3, 3]);
    expect(warnings.some((w) => w.includes('both map to class happiness'))).toBe(true);
  });
});

describe('discoverDataset errors', () => {
  it('throws on an empty split', () => {
    const root = newTree('empty-split');
    buildSplit(join(root, 'Train'), STUDY_NAMES, [1, 1, 1, 1, 1, 1, 1]);
    mkdirSync(join(root, 'Test', 'Anger'), { recursive: true });
    const error = thrownBy(() => discoverDataset(root));
    expect(error.message).toBe(`The test split of ${root} contains no images.`);
  });

  it('throws on two validation folders', () => {
    const root = newTree('two-val');
    buildSplit(join(root, 'train'), FER_NAMES, [1, 1, 1, 1, 1, 1, 1]);
    buildSplit(join(root, 'val'), FER_NAMES, [1, 0, 0, 0, 0, 0, 0], 1);
    buildSplit(join(root, 'validation'), FER_NAMES, [1, 0, 0, 0, 0, 0, 0], 2);
    const error = thrownBy(() => discoverDataset(root));
    expect(error.message).toContain('has two folders for the validation split');
    expect(error.message).toContain('"val"');
    expect(error.message).toContain('"validation"');
  });

  it('throws without a train folder', () => {
    const root = newTree('no-train');
    buildSplit(join(root, 'test'), FER_NAMES, [1, 1, 1, 1, 1, 1, 1]);
    const error = thrownBy(() => discoverDataset(root));
    expect(error.message).toContain('no training folder');
  });

  it('throws on a missing folder', () => {
    const missing = join(tempRoot, 'does-not-exist');
    const error = thrownBy(() => discoverDataset(missing));
    expect(error.message).toContain(`Dataset folder not found: ${missing}`);
    expect(error.message).toContain('data/README.md');
  });

  it('throws on a folder without subfolders', () => {
    const root = newTree('flat');
    copyFileSync(sources[0]?.[0] as string, join(root, 'a.jpg'));
    const error = thrownBy(() => discoverDataset(root));
    expect(error.message).toContain('has no subfolders');
  });
});

describe('stratifiedHoldOut', () => {
  const counts = [40, 5, 13, 100, 0, 1, 2];
  const records = syntheticRecords(counts);

  it('holds out the rounded fraction', () => {
    const { held } = stratifiedHoldOut(records, 0.1, 7);
    // 40 -> 4, 5 -> round(0.5) = 1, 13 -> 1, 100 -> 10, 1 -> 0, and 2 -> 0 raised to 1.
    expect(classCounts(held)).toEqual([4, 1, 1, 10, 0, 0, 1]);
  });

  it('holds out larger fractions', () => {
    const { held } = stratifiedHoldOut(records, 0.25, 7);
    // 40 -> 10, 5 -> 1, 13 -> round(3.25) = 3, 100 -> 25, 1 -> 0, 2 -> round(0.5) = 1.
    expect(classCounts(held)).toEqual([10, 1, 3, 25, 0, 0, 1]);
  });

  it('is deterministic per seed', () => {
    const first = stratifiedHoldOut(records, 0.2, 42);
    const second = stratifiedHoldOut([...records], 0.2, 42);
    expect(pathsOf(second.held)).toEqual(pathsOf(first.held));
    expect(pathsOf(second.kept)).toEqual(pathsOf(first.kept));
  });

  it('differs between seeds', () => {
    const first = stratifiedHoldOut(records, 0.2, 1);
    const second = stratifiedHoldOut(records, 0.2, 2);
    expect(pathsOf(second.held)).not.toEqual(pathsOf(first.held));
  });

  it('partitions the input', () => {
    const { kept, held } = stratifiedHoldOut(records, 0.3, 5);
    const keptPaths = new Set(kept.map((r) => r.path));
    expect(held.filter((r) => keptPaths.has(r.path))).toEqual([]);
    expect([...pathsOf(kept), ...pathsOf(held)].sort()).toEqual(pathsOf(records));
  });

  it('keeps labels with records', () => {
    const { kept, held } = stratifiedHoldOut(records, 0.3, 5);
    const labelByPath = new Map(records.map((r) => [r.path, r.label]));
    for (const record of [...kept, ...held]) {
      expect(record.label, record.path).toBe(labelByPath.get(record.path));
    }
  });

  it('keeps single-image class in kept', () => {
    for (const fraction of [0.1, 0.2, 0.3, 0.4]) {
      for (const seed of [0, 1, 2]) {
        const { kept, held } = stratifiedHoldOut(records, fraction, seed);
        expect(classCounts(kept)[5], `fraction ${fraction}, seed ${seed}`).toBe(1);
        expect(classCounts(held)[5], `fraction ${fraction}, seed ${seed}`).toBe(0);
      }
    }
  });

  it('sorts both parts by path', () => {
    const { kept, held } = stratifiedHoldOut(records, 0.3, 5);
    expect(kept.map((r) => r.path)).toEqual(pathsOf(kept));
    expect(held.map((r) => r.path)).toEqual(pathsOf(held));
  });

  it('rejects invalid fractions', () => {
    for (const fraction of [0, 1, -0.1, 1.5, Number.NaN]) {
      expect(() => stratifiedHoldOut(records, fraction, 0), String(fraction)).toThrow(
        `Invalid hold-out fraction ${fraction}`,
      );
    }
  });
});

describe('stratifiedSubset', () => {
  const counts = [40, 5, 13, 100, 0, 1, 2];
  const records = syntheticRecords(counts);

  it('takes classes in proportion', () => {
    const subset = stratifiedSubset(records, 80, 3, 1);
    // round(n / 161 * 80): 40 -> 20, 5 -> 2, 13 -> 6, 100 -> 50, 1 -> 0 raised to 1, 2 -> 1.
    expect(classCounts(subset)).toEqual([20, 2, 6, 50, 0, 1, 1]);
  });

  it('keeps one of every present class', () => {
    const subset = stratifiedSubset(records, 10, 3, 1);
    const subsetCounts = classCounts(subset);
    counts.forEach((count, label) => {
      const expected = count > 0 ? 1 : 0;
      expect(Math.min(subsetCounts[label] as number, 1), CANONICAL_CLASSES[label]).toBe(expected);
    });
  });

  it('never exceeds the limit', () => {
    // stratifiedSubset documents "at most limit" and one image per present class.
    // Every limit here is at least the 6 classes present, so both can hold.
    for (const limit of [10, 20, 30, 50, 80, 150]) {
      expect(stratifiedSubset(records, limit, 3, 1).length, `limit ${limit}`).toBeLessThanOrEqual(limit);
    }
  });

  it('draws only input records', () => {
    const all = new Set(records.map((r) => r.path));
    for (const record of stratifiedSubset(records, 30, 3, 1)) {
      expect(all.has(record.path), record.path).toBe(true);
    }
  });

  it('is deterministic per seed', () => {
    expect(pathsOf(stratifiedSubset(records, 30, 9, 1))).toEqual(pathsOf(stratifiedSubset([...records], 30, 9, 1)));
  });

  it('differs between seeds', () => {
    expect(pathsOf(stratifiedSubset(records, 30, 9, 1))).not.toEqual(pathsOf(stratifiedSubset(records, 30, 10, 1)));
  });

  it('differs between streams', () => {
    expect(pathsOf(stratifiedSubset(records, 30, 9, 1))).not.toEqual(pathsOf(stratifiedSubset(records, 30, 9, 2)));
  });

  it('returns everything without a limit', () => {
    expect(stratifiedSubset(records, undefined, 0, 1)).toEqual(records);
    expect(stratifiedSubset(records, records.length, 0, 1)).toEqual(records);
    expect(stratifiedSubset(records, records.length + 5, 0, 1)).toEqual(records);
  });
});

describe('prepareSplits study layout', () => {
  let root: string;
  let trainFiles: ImageRecord[];

  beforeAll(() => {
    root = newTree('prepare');
    buildSplit(join(root, 'Train'), STUDY_NAMES, [5, 2, 5, 5, 5, 5, 5]);
    buildSplit(join(root, 'Test'), STUDY_NAMES, [1, 1, 1, 1, 0, 1, 1], 5);
    trainFiles = discoverDataset(root).splits.train ?? [];
  });

  const options = (dataDir: string) => ({
    dataDir,
    seed: 11,
    validationFraction: 0.2,
    limits: {},
    classAliases: {},
    checkDuplicates: true,
    silent: true,
  });

  it('holds out validation from train', async () => {
    const prepared = await prepareSplits(options(root));
    expect(prepared.validationSource).toBe('held-out');
    expect(prepared.layout).toBe('splits');
    // 5 -> 1 and 2 -> round(0.4) = 0 raised to 1.
    expect(classCounts(prepared.validation)).toEqual([1, 1, 1, 1, 1, 1, 1]);
    expect(classCounts(prepared.train)).toEqual([4, 1, 4, 4, 4, 4, 4]);
  });

  it('partitions the train folder', async () => {
    const prepared = await prepareSplits(options(root));
    const trainPaths = new Set(prepared.train.map((r) => r.path));
    expect(prepared.validation.filter((r) => trainPaths.has(r.path))).toEqual([]);
    expect([...pathsOf(prepared.train), ...pathsOf(prepared.validation)].sort()).toEqual(pathsOf(trainFiles));
  });

  it('keeps the test folder', async () => {
    const prepared = await prepareSplits(options(root));
    expect(classCounts(prepared.test ?? [])).toEqual([1, 1, 1, 1, 0, 1, 1]);
  });

  it('finds no duplicates in clean data', async () => {
    const prepared = await prepareSplits(options(root));
    expect(prepared.duplicates?.crossSplit).toEqual([]);
    expect(prepared.duplicates?.filesHashed).toBe(trainFiles.length + 6);
  });

  it('applies split limits', async () => {
    const prepared = await prepareSplits({ ...options(root), limits: { train: 14, validation: 7 } });
    // Train after hold-out has [4, 1, 4, 4, 4, 4, 4]: quotas 2.24 and 0.56 give [2, 1, 2, 2, 2, 2, 2] = 13,
    // and the last place goes to the first class with the largest remainder (anger, 0.24).
    expect(classCounts(prepared.train)).toEqual([3, 1, 2, 2, 2, 2, 2]);
    expect(prepared.validation).toHaveLength(7);
  });
});

describe('duplicates across splits', () => {
  let root: string;
  let shared: string;

  beforeAll(() => {
    root = newTree('duplicates');
    buildSplit(join(root, 'Train'), STUDY_NAMES, [3, 2, 3, 3, 3, 3, 3]);
    buildSplit(join(root, 'Test'), STUDY_NAMES, [1, 1, 1, 1, 1, 1, 1], 4);
    // The same file in Train/Anger and in Test/Anger under another name.
    shared = join(root, 'Train', 'Anger', basename(sources[0]?.[0] as string));
    copyFileSync(shared, join(root, 'Test', 'Anger', 'copy-of-train.jpg'));
  });

  it('findDuplicates reports the pair', async () => {
    const dataset = discoverDataset(root);
    const report = await findDuplicates(dataset.splits, { silent: true });
    expect(report.crossSplit).toHaveLength(1);
    expect(report.crossSplit[0]?.files.map((f) => f.split).sort()).toEqual(['test', 'train']);
    expect(report.conflictingLabels).toBe(0);
    expect(report.withinSplitGroups).toBe(0);
  });

  it('countCrossSplitPairs counts train/test', async () => {
    const dataset = discoverDataset(root);
    const report = await findDuplicates(dataset.splits, { silent: true });
    expect(countCrossSplitPairs(report)).toEqual({ 'test/train': 1 });
  });

  it('reports the content hash', async () => {
    const dataset = discoverDataset(root);
    const report = await findDuplicates(dataset.splits, { silent: true });
    const digest = createHash('sha256').update(readFileSync(shared)).digest('hex');
    expect(report.crossSplit[0]?.sha256).toBe(digest);
  });

  it('prepareSplits finds the pair', async () => {
    const prepared = await prepareSplits({
      dataDir: root,
      seed: 3,
      validationFraction: 0.2,
      limits: {},
      classAliases: {},
      checkDuplicates: true,
      silent: true,
    });
    // The train copy may have been held out into validation.
    const heldOut = prepared.validation.some((r) => r.path === shared);
    const expectedPair = heldOut ? 'test/validation' : 'test/train';
    expect(prepared.duplicates?.crossSplit).toHaveLength(1);
    expect(countCrossSplitPairs(prepared.duplicates!)).toEqual({ [expectedPair]: 1 });
  });

  it('counts conflicting labels', async () => {
    const conflictRoot = newTree('conflict');
    buildSplit(join(conflictRoot, 'Train'), STUDY_NAMES, [1, 1, 1, 1, 1, 1, 1]);
    buildSplit(join(conflictRoot, 'Test'), STUDY_NAMES, [1, 1, 1, 1, 1, 1, 1], 1);
    const angerImage = join(conflictRoot, 'Train', 'Anger', basename(sources[0]?.[0] as string));
    copyFileSync(angerImage, join(conflictRoot, 'Test', 'Happiness', 'relabelled.jpg'));
    const report = await findDuplicates(discoverDataset(conflictRoot).splits, { silent: true });
    expect(report.conflictingLabels).toBe(1);
    expect(report.crossSplit[0]?.files.map((f) => f.label).sort()).toEqual([0, 3]);
  });

  it('counts groups within one split', async () => {
    const withinRoot = newTree('within');
    buildSplit(join(withinRoot, 'train'), FER_NAMES, [1, 1, 1, 1, 1, 1, 1]);
    const image = join(withinRoot, 'train', 'angry', basename(sources[0]?.[0] as string));
    copyFileSync(image, join(withinRoot, 'train', 'sad', 'same-as-angry.jpg'));
    const report = await findDuplicates(discoverDataset(withinRoot).splits, { silent: true });
    expect(report.withinSplitGroups).toBe(1);
    expect(report.crossSplit).toEqual([]);
  });
});
