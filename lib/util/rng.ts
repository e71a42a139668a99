/**
 * Seeded pseudo-random numbers (sfc32), so that splits, shuffles,
 * augmentation and dropout masks repeat exactly for a given seed.
 */

/** Mixes a seed and any number of stream identifiers into one 32-bit value. */
export function mixSeed(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const part of parts) {
    h ^= Math.imul((part | 0) ^ (part / 0x100000000), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number, ...stream: number[]) {
    const s = mixSeed(seed, ...stream);
    this.a = s;
    this.b = mixSeed(s, 1);
    this.c = mixSeed(s, 2);
    this.d = 1;
    for (let i = 0; i < 15; i++) {
      this.nextUint32();
    }
  }

  nextUint32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.nextUint32() / 0x100000000;
  }

  /** Uniform in [low, high). */
  uniform(low: number, high: number): number {
    return low + (high - low) * this.next();
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Fisher-Yates shuffle, in place. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const tmp = items[i] as T;
      items[i] = items[j] as T;
      items[j] = tmp;
    }
    return items;
  }
}

/** Returns a permutation of 0..n-1 that depends only on the seed and the stream ids. */
export function permutation(n: number, seed: number, ...stream: number[]): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  return new Rng(seed, ...stream).shuffle(order);
}
