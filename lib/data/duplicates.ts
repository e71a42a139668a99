/**
 * Exact-duplicate detection between splits by content hash. Scraped face
 * sets often contain the same file in training and test folders, which
 * inflates published test scores.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';

import type { ImageRecord, SplitName } from './dataset';
import { ProgressBar } from '../util/progress';

export interface DuplicateGroup {
  sha256: string;
  /** Every file with this content, with its split. */
  files: Array<{ split: SplitName; path: string; label: number }>;
}

export interface DuplicateReport {
  /** Groups whose files span more than one split. */
  crossSplit: DuplicateGroup[];
  /** Number of groups of identical files within one split. */
  withinSplitGroups: number;
  /** Cross-split groups whose files carry different labels. */
  conflictingLabels: number;
  filesHashed: number;
}

async function hashFile(file: string): Promise<string | undefined> {
  try {
    const bytes = await fs.promises.readFile(file);
    return createHash('sha256').update(bytes).digest('hex');
  } catch {
    // Unreadable files are reported by the decoder; they cannot be duplicates.
    return undefined;
  }
}

/** Hashes every file of every split and reports identical content across splits. */
export async function findDuplicates(
  splits: Partial<Record<SplitName, readonly ImageRecord[]>>,
  options: { silent?: boolean; concurrency?: number } = {},
): Promise<DuplicateReport> {
  const items: Array<{ split: SplitName; record: ImageRecord }> = [];
  for (const [split, records] of Object.entries(splits) as Array<[SplitName, readonly ImageRecord[]]>) {
    for (const record of records) {
      items.push({ split, record });
    }
  }
  const progress = new ProgressBar('hashing files', items.length, { unit: 'file', silent: options.silent ?? false });
  const groups = new Map<string, DuplicateGroup>();
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++] as (typeof items)[number];
      const digest = await hashFile(item.record.path);
      progress.tick();
      if (digest === undefined) {
        continue;
      }
      let group = groups.get(digest);
      if (group === undefined) {
        group = { sha256: digest, files: [] };
        groups.set(digest, group);
      }
      group.files.push({ split: item.split, path: item.record.path, label: item.record.label });
    }
  };
  await Promise.all(Array.from({ length: options.concurrency ?? 16 }, worker));
  progress.finish();

  const report: DuplicateReport = { crossSplit: [], withinSplitGroups: 0, conflictingLabels: 0, filesHashed: items.length };
  for (const group of groups.values()) {
    if (group.files.length < 2) {
      continue;
    }
    const splitsInGroup = new Set(group.files.map((f) => f.split));
    if (splitsInGroup.size > 1) {
      group.files.sort((a, b) => (a.path < b.path ? -1 : 1));
      report.crossSplit.push(group);
      if (new Set(group.files.map((f) => f.label)).size > 1) {
        report.conflictingLabels++;
      }
    } else {
      report.withinSplitGroups++;
    }
  }
  report.crossSplit.sort((a, b) => (a.files[0]!.path < b.files[0]!.path ? -1 : 1));
  return report;
}

/** Counts cross-split duplicate files per pair of splits, e.g. { "train/test": 12 }. */
export function countCrossSplitPairs(report: DuplicateReport): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const group of report.crossSplit) {
    const present = [...new Set(group.files.map((f) => f.split))].sort();
    for (let i = 0; i < present.length; i++) {
      for (let j = i + 1; j < present.length; j++) {
        const pair = `${present[i]}/${present[j]}`;
        counts[pair] = (counts[pair] ?? 0) + 1;
      }
    }
  }
  return counts;
}

/** Files of `split` whose exact content also occurs in one of `others`. */
export function filesSharedWith(report: DuplicateReport, split: SplitName, others: readonly SplitName[]): Set<string> {
  const shared = new Set<string>();
  for (const group of report.crossSplit) {
    if (!group.files.some((f) => others.includes(f.split))) {
      continue;
    }
    for (const file of group.files) {
      if (file.split === split) {
        shared.add(file.path);
      }
    }
  }
  return shared;
}
