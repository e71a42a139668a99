/** Seeded, stratified hold-out splits. */
import { NUM_CLASSES } from '../classes';
import { Rng } from '../util/rng';
import type { ImageRecord } from './dataset';

export interface HoldOut {
  kept: ImageRecord[];
  held: ImageRecord[];
}

/**
 * Holds out `fraction` of every class (rounded, at least one image of any
 * class with two or more, and never the last one), chosen by `seed`. The result depends only on the
 * records' order, the fraction and the seed.
 */
export function stratifiedHoldOut(records: readonly ImageRecord[], fraction: number, seed: number): HoldOut {
  if (!(fraction > 0 && fraction < 1)) {
    throw new Error(`Invalid hold-out fraction ${fraction}: expected a number between 0 and 1, for example 0.1.`);
  }
  const byClass: ImageRecord[][] = Array.from({ length: NUM_CLASSES }, () => []);
  for (const record of records) {
    byClass[record.label]?.push(record);
  }
  const kept: ImageRecord[] = [];
  const held: ImageRecord[] = [];
  byClass.forEach((group, label) => {
    const shuffled = new Rng(seed, 0x5011, label).shuffle([...group]);
    // Training keeps at least one image of every class it has, validation gets at least one when there are two.
    let count = Math.min(Math.round(group.length * fraction), group.length - 1);
    if (count <= 0) {
      count = group.length >= 2 ? 1 : 0;
    }
    held.push(...shuffled.slice(0, count));
    kept.push(...shuffled.slice(count));
  });
  const byPath = (a: ImageRecord, b: ImageRecord) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);
  return { kept: kept.sort(byPath), held: held.sort(byPath) };
}
