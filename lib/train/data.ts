/**
 * Data preparation of a run: discovery, hold-out validation split, seeded
 * subsets for reduced-scale runs, duplicate check between splits, and the
 * data report written into the run folder.
 */
import { CANONICAL_CLASSES, ClassAliases, NUM_CLASSES } from '../classes';
import { classCounts, discoverDataset, formatClassCounts, type ImageRecord, type SkippedFile, type SplitName } from '../data/dataset';
import { countCrossSplitPairs, findDuplicates, type DuplicateReport } from '../data/duplicates';
import { stratifiedHoldOut } from '../data/split';
import { log } from '../util/log';
import { Rng } from '../util/rng';
import type { SplitLimits } from './options';

export interface PreparedSplits {
  train: ImageRecord[];
  validation: ImageRecord[];
  test: ImageRecord[] | undefined;
  /** How the validation split was obtained. */
  validationSource: 'folder' | 'held-out';
  layout: 'splits' | 'single';
  root: string;
  classFolders: Record<string, string>;
  skippedAtDiscovery: SkippedFile[];
  duplicates?: DuplicateReport;
}

/**
 * Keeps at most `limit` records, drawn per class in proportion to its share
 * (largest remainders get the leftover places), chosen by `seed`. Every
 * class present keeps at least one record when the limit allows it.
 */
export function stratifiedSubset(records: readonly ImageRecord[], limit: number | undefined, seed: number, stream: number): ImageRecord[] {
  if (limit === undefined || limit >= records.length) {
    return [...records];
  }
  const byClass: ImageRecord[][] = Array.from({ length: NUM_CLASSES }, () => []);
  records.forEach((r) => byClass[r.label]?.push(r));
  const present = byClass.map((group, label) => ({ group, label })).filter(({ group }) => group.length > 0);
  const quotas = present.map(({ group }) => (group.length / records.length) * limit);
  const take = quotas.map((q) => Math.floor(q));
  if (limit >= present.length) {
    take.forEach((t, i) => (take[i] = Math.max(1, t)));
  }
  // Hand out what is left by largest remainder, then trim any excess from the largest classes.
  let left = limit - take.reduce((a, b) => a + b, 0);
  const byRemainder = quotas.map((q, i) => ({ i, r: q - (take[i] as number) })).sort((a, b) => b.r - a.r || a.i - b.i);
  for (const { i } of byRemainder) {
    if (left <= 0) {
      break;
    }
    if ((take[i] as number) < (present[i] as { group: ImageRecord[] }).group.length) {
      take[i] = (take[i] as number) + 1;
      left--;
    }
  }
  while (left < 0) {
    const largest = take.indexOf(Math.max(...take));
    take[largest] = (take[largest] as number) - 1;
    left++;
  }
  const result: ImageRecord[] = [];
  present.forEach(({ group, label }, i) => {
    result.push(...new Rng(seed, 0x5b5e7, stream, label).shuffle([...group]).slice(0, take[i]));
  });
  return result.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

export interface PrepareOptions {
  dataDir: string;
  seed: number;
  validationFraction: number;
  limits: SplitLimits;
  classAliases: Record<string, string>;
  checkDuplicates: boolean;
  silent: boolean;
}

export async function prepareSplits(options: PrepareOptions): Promise<PreparedSplits> {
  const dataset = discoverDataset(options.dataDir, { aliases: new ClassAliases(options.classAliases) });
  let train = dataset.splits.train ?? [];
  let validation = dataset.splits.validation;
  let validationSource: PreparedSplits['validationSource'] = 'folder';
  if (validation === undefined) {
    const holdOut = stratifiedHoldOut(train, options.validationFraction, options.seed);
    train = holdOut.kept;
    validation = holdOut.held;
    validationSource = 'held-out';
    log.info(
      `data: no validation folder; held out ${(options.validationFraction * 100).toFixed(0)}% of training per class ` +
        `(${validation.length} images, seed ${options.seed}).`,
    );
  }
  let test = dataset.splits.test;

  train = stratifiedSubset(train, options.limits.train, options.seed, 1);
  validation = stratifiedSubset(validation, options.limits.validation, options.seed, 2);
  test = test === undefined ? undefined : stratifiedSubset(test, options.limits.test, options.seed, 3);

  const prepared: PreparedSplits = {
    train,
    validation,
    test,
    validationSource,
    layout: dataset.layout,
    root: dataset.root,
    classFolders: dataset.classFolders,
    skippedAtDiscovery: dataset.skipped,
  };
  log.info(`data: ${dataset.root} (${dataset.layout === 'splits' ? 'split folders' : 'one folder of classes'})`);
  log.info(`data: train ${train.length} [${formatClassCounts(train)}]`);
  log.info(`data: validation ${validation.length} (${validationSource}) [${formatClassCounts(validation)}]`);
  if (test !== undefined) {
    log.info(`data: test ${test.length} [${formatClassCounts(test)}]`);
  } else {
    log.warn('data: no test split; the run reports validation metrics only.');
  }
  for (const skipped of dataset.skipped.slice(0, 10)) {
    log.warn(`skipped ${skipped.path}: ${skipped.reason}`);
  }
  if (dataset.skipped.length > 10) {
    log.warn(`skipped ${dataset.skipped.length - 10} more files during discovery (listed in data-report.json).`);
  }

  if (options.checkDuplicates) {
    const splits: Partial<Record<SplitName, ImageRecord[]>> = { train, validation };
    if (test !== undefined) {
      splits.test = test;
    }
    prepared.duplicates = await findDuplicates(splits, { silent: options.silent });
    const pairs = countCrossSplitPairs(prepared.duplicates);
    const total = prepared.duplicates.crossSplit.length;
    if (total > 0) {
      log.warn(
        `data: ${total} images appear byte-identical in more than one split (${Object.entries(pairs)
          .map(([pair, n]) => `${pair}: ${n}`)
          .join(', ')}); ${prepared.duplicates.conflictingLabels} of them with different labels. ` +
          'Test scores on such data overstate accuracy; the list is in data-report.json.',
      );
    } else {
      log.info('data: no identical files shared between splits.');
    }
  }
  return prepared;
}

/** JSON-ready summary of the data of a run. */
export function dataReport(prepared: PreparedSplits, skippedAtDecode: Record<string, SkippedFile[]>): Record<string, unknown> {
  const counts = (records: readonly ImageRecord[] | undefined) =>
    records === undefined ? null : Object.fromEntries(classCounts(records).map((n, i) => [CANONICAL_CLASSES[i], n]));
  return {
    root: prepared.root,
    layout: prepared.layout,
    validationSource: prepared.validationSource,
    classFolders: prepared.classFolders,
    counts: { train: counts(prepared.train), validation: counts(prepared.validation), test: counts(prepared.test) },
    skippedAtDiscovery: prepared.skippedAtDiscovery,
    skippedAtDecode,
    duplicates:
      prepared.duplicates === undefined
        ? null
        : {
            filesHashed: prepared.duplicates.filesHashed,
            crossSplitGroups: prepared.duplicates.crossSplit.length,
            crossSplitPairs: countCrossSplitPairs(prepared.duplicates),
            conflictingLabels: prepared.duplicates.conflictingLabels,
            withinSplitGroups: prepared.duplicates.withinSplitGroups,
            groups: prepared.duplicates.crossSplit,
          },
  };
}
