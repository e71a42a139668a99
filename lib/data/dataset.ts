/**
 * Discovery of labelled image folders.
 *
 * Three layouts are read unchanged:
 * - split folders with class subfolders: `train|validation|test/<class>/`
 *   (FER-2013) or `Train|Test/<Class>/` (the stock-photo study set);
 * - a single folder of class subfolders, which is split by the caller.
 * Images may sit in nested folders inside a class folder. Class folder names map to canonical classes through ClassAliases.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { CANONICAL_CLASSES, ClassAliases, classIndex, type EmotionClass } from '../classes';
import { log } from '../util/log';
import { IMAGE_EXTENSIONS } from './decode';

export type SplitName = 'train' | 'validation' | 'test';

export interface ImageRecord {
  path: string;
  /** Index into CANONICAL_CLASSES. */
  label: number;
}

export interface SkippedFile {
  path: string;
  reason: string;
}

export interface DiscoveredDataset {
  root: string;
  layout: 'splits' | 'single';
  /** Images per split; a single-folder dataset has only `train` until it is split. */
  splits: Partial<Record<SplitName, ImageRecord[]>>;
  /** Folder name of each split as found on disk. */
  splitFolders: Partial<Record<SplitName, string>>;
  /** Class folder names as found on disk and the class each maps to. */
  classFolders: Record<string, EmotionClass>;
  /** Files ignored during discovery because of their extension. */
  skipped: SkippedFile[];
}

const SPLIT_ALIASES: Readonly<Record<string, SplitName>> = {
  train: 'train',
  training: 'train',
  validation: 'validation',
  val: 'validation',
  valid: 'validation',
  publictest: 'validation',
  test: 'test',
  testing: 'test',
  privatetest: 'test',
};

/** Operating-system clutter that is never reported. */
const IGNORED_NAMES = new Set(['.ds_store', 'thumbs.db', 'desktop.ini']);

function splitOf(folder: string): SplitName | undefined {
  return SPLIT_ALIASES[folder.toLowerCase().replace(/[\s_-]+/g, '')];
}

function listDirectories(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && !entry.name.startsWith('.'))
    .map((entry) => entry.name)
    .sort();
}

function collectClassFolder(dir: string, label: number, records: ImageRecord[], skipped: SkippedFile[]): void {
  const entries = fs.readdirSync(dir, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      // Nested folders inside a class folder (e.g. per-subject folders) keep the class label.
      collectClassFolder(full, label, records, skipped);
      continue;
    }
    if (IGNORED_NAMES.has(entry.name.toLowerCase()) || entry.name.startsWith('._')) {
      continue;
    }
    const ext = path.extname(entry.name).toLowerCase();
    if (!IMAGE_EXTENSIONS.has(ext)) {
      skipped.push({ path: full, reason: `extension "${ext || '(none)'}" is not an image type` });
      continue;
    }
    records.push({ path: full, label });
  }
}

function collectClasses(
  splitDir: string,
  aliases: ClassAliases,
  classFolders: Record<string, EmotionClass>,
  skipped: SkippedFile[],
): ImageRecord[] {
  const records: ImageRecord[] = [];
  const seen = new Map<EmotionClass, string>();
  for (const folder of listDirectories(splitDir)) {
    const cls = aliases.resolve(folder, path.join(splitDir, folder));
    const previous = seen.get(cls);
    if (previous !== undefined) {
      log.warn(`dataset: folders "${previous}" and "${folder}" in ${splitDir} both map to class ${cls}; merging them.`);
    }
    seen.set(cls, folder);
    classFolders[folder] = cls;
    collectClassFolder(path.join(splitDir, folder), classIndex(cls), records, skipped);
  }
  for (const entry of fs.readdirSync(splitDir, { withFileTypes: true })) {
    if (entry.isFile() && !IGNORED_NAMES.has(entry.name.toLowerCase()) && !entry.name.startsWith('.')) {
      skipped.push({ path: path.join(splitDir, entry.name), reason: 'file outside any class folder' });
    }
  }
  return records;
}

export interface DiscoverOptions {
  aliases?: ClassAliases;
}

/** Finds the layout, splits and labelled images under `root`. */
export function discoverDataset(root: string, options: DiscoverOptions = {}): DiscoveredDataset {
  const aliases = options.aliases ?? new ClassAliases();
  const resolved = path.resolve(root);
  if (!fs.existsSync(resolved)) {
    throw new Error(
      `Dataset folder not found: ${resolved}. Pass --data DIR or set FER_DATA; see data/README.md for where to get FER-2013.`,
    );
  }
  if (!fs.statSync(resolved).isDirectory()) {
    throw new Error(`Dataset path is not a folder: ${resolved}.`);
  }
  const subfolders = listDirectories(resolved);
  const splitFolders: Partial<Record<SplitName, string>> = {};
  for (const folder of subfolders) {
    const split = splitOf(folder);
    if (split !== undefined) {
      if (splitFolders[split] !== undefined) {
        throw new Error(`Dataset ${resolved} has two folders for the ${split} split: "${splitFolders[split]}" and "${folder}". Remove or rename one.`);
      }
      splitFolders[split] = folder;
    }
  }

  const classFolders: Record<string, EmotionClass> = {};
  const skipped: SkippedFile[] = [];
  const splits: Partial<Record<SplitName, ImageRecord[]>> = {};
  let layout: DiscoveredDataset['layout'];

  if (Object.keys(splitFolders).length > 0) {
    layout = 'splits';
    const other = subfolders.filter((f) => splitOf(f) === undefined);
    if (other.length > 0) {
      log.warn(`dataset: ignoring folders in ${resolved} that are not splits: ${other.join(', ')}.`);
    }
    if (splitFolders.train === undefined) {
      throw new Error(`Dataset ${resolved} has ${Object.values(splitFolders).join(', ')} but no training folder (train, Train or training).`);
    }
    for (const [split, folder] of Object.entries(splitFolders) as Array<[SplitName, string]>) {
      splits[split] = collectClasses(path.join(resolved, folder), aliases, classFolders, skipped);
    }
  } else {
    if (subfolders.length === 0) {
      throw new Error(
        `Dataset ${resolved} has no subfolders. Expected train/validation/test folders with one folder per class, ` +
          `or one folder per class (${CANONICAL_CLASSES.join(', ')}).`,
      );
    }
    layout = 'single';
    splits.train = collectClasses(resolved, aliases, classFolders, skipped);
  }
  for (const [split, records] of Object.entries(splits)) {
    if (records.length === 0) {
      throw new Error(`The ${split} split of ${resolved} contains no images.`);
    }
  }
  return { root: resolved, layout, splits, splitFolders, classFolders, skipped };
}

/** Counts images per canonical class. */
export function classCounts(records: readonly ImageRecord[]): number[] {
  const counts = new Array<number>(CANONICAL_CLASSES.length).fill(0);
  for (const record of records) {
    counts[record.label] = (counts[record.label] ?? 0) + 1;
  }
  return counts;
}

/** "anger 3995, disgust 436, ..." for logs; absent classes are listed as 0. */
export function formatClassCounts(records: readonly ImageRecord[]): string {
  return classCounts(records)
    .map((count, i) => `${CANONICAL_CLASSES[i]} ${count}`)
    .join(', ');
}
