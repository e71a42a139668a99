/**
 * Decoded, resized images of one split, held in memory when they fit.
 *
 * Decoding runs in sharp's thread pool, many files at a time, so the main
 * thread only copies bytes. A file that cannot be decoded is reported with
 * its path and reason and left out; the split's summary counts it.
 */
import * as os from 'node:os';

import { log } from '../util/log';
import { ProgressBar } from '../util/progress';
import type { ImageRecord, SkippedFile } from './dataset';
import { decodeImage, ImageDecodeError, type DecodedImage, type ResizeFit } from './decode';

export interface StoreOptions {
  /** Square side length the images are resized to. */
  size: number;
  fit?: ResizeFit;
  /** Files decoded at once; sharp spreads them over its thread pool. */
  concurrency?: number;
  /**
   * Largest decoded size kept in memory, in bytes. A split above it is decoded
   * again for every batch. Default: 40% of the machine's memory.
   */
  memoryBudgetBytes?: number;
  /** Name shown in progress and error lines, e.g. "train". */
  label?: string;
  silent?: boolean;
  /** Most skipped files listed one by one in the log; the rest are counted. */
  maxReported?: number;
}

export function defaultMemoryBudget(): number {
  return Math.floor(os.totalmem() * 0.4);
}

/** A pixel batch in NHWC uint8 RGB and its labels. */
export interface PixelBatch {
  pixels: Uint8Array;
  labels: Int32Array;
  size: number;
  count: number;
}

export class ImageStore {
  private constructor(
    readonly records: ImageRecord[],
    readonly skipped: SkippedFile[],
    readonly size: number,
    private readonly fit: ResizeFit,
    private readonly images: DecodedImage[] | undefined,
    private readonly concurrency: number,
  ) {}

  get length(): number {
    return this.records.length;
  }

  /** True when every image is held in memory. */
  get cached(): boolean {
    return this.images !== undefined;
  }

  labels(): Int32Array {
    return Int32Array.from(this.records, (r) => r.label);
  }

  /**
   * Decodes every record once. Images that fail are skipped and reported.
   * The decoded images are kept when they fit in the memory budget.
   */
  static async load(records: readonly ImageRecord[], options: StoreOptions): Promise<ImageStore> {
    const size = options.size;
    const fit = options.fit ?? 'fill';
    const label = options.label ?? 'images';
    const concurrency = options.concurrency ?? Math.max(4, os.availableParallelism() * 4);
    const budget = options.memoryBudgetBytes ?? defaultMemoryBudget();
    // Worst case: every image in colour. Greyscale images take a third of it.
    const worstCase = records.length * size * size * 3;
    const keep = worstCase <= budget;
    if (!keep) {
      log.info(
        `${label}: ${records.length} images at ${size}x${size} need up to ${(worstCase / 2 ** 30).toFixed(1)} GiB, ` +
          `above the cache budget of ${(budget / 2 ** 30).toFixed(1)} GiB; images are decoded again for every batch.`,
      );
    }

    const decoded: Array<DecodedImage | undefined> = new Array(records.length);
    const failures: SkippedFile[] = [];
    const progress = new ProgressBar(`decoding ${label}`, records.length, { unit: 'img', silent: options.silent ?? false });
    let next = 0;
    const worker = async () => {
      while (next < records.length) {
        const index = next++;
        const record = records[index] as ImageRecord;
        try {
          const image = await decodeImage(record.path, { size, fit });
          decoded[index] = keep ? image : undefined;
        } catch (error) {
          if (!(error instanceof ImageDecodeError)) {
            throw error;
          }
          failures.push({ path: record.path, reason: error.reason });
        }
        progress.tick();
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    progress.finish();

    const failed = new Set(failures.map((f) => f.path));
    const kept = records.filter((r) => !failed.has(r.path));
    const images = keep ? (decoded.filter((d) => d !== undefined) as DecodedImage[]) : undefined;
    reportSkipped(label, failures, options.maxReported ?? 20);
    return new ImageStore(kept, failures, size, fit, images, concurrency);
  }

  /** Bytes held by the cached images. */
  memoryBytes(): number {
    return this.images?.reduce((total, image) => total + image.data.byteLength, 0) ?? 0;
  }

  /** Copies the images at `indices` into one NHWC RGB uint8 batch. */
  async batch(indices: readonly number[]): Promise<PixelBatch> {
    const side = this.size;
    const pixelsPerImage = side * side;
    const pixels = new Uint8Array(indices.length * pixelsPerImage * 3);
    const labels = new Int32Array(indices.length);
    for (const index of indices) {
      if (!Number.isInteger(index) || index < 0 || index >= this.records.length) {
        throw new RangeError(`Image index ${index} is outside the store of ${this.records.length} images.`);
      }
    }
    const images = this.images ?? (await this.decodeMany(indices));
    indices.forEach((index, slot) => {
      labels[slot] = (this.records[index] as ImageRecord).label;
      const image = (this.images !== undefined ? images[index] : images[slot]) as DecodedImage;
      writeRgb(image, pixels, slot * pixelsPerImage * 3);
    });
    return { pixels, labels, size: side, count: indices.length };
  }

  private async decodeMany(indices: readonly number[]): Promise<DecodedImage[]> {
    const out: DecodedImage[] = new Array(indices.length);
    let next = 0;
    const worker = async () => {
      while (next < indices.length) {
        const slot = next++;
        const record = this.records[indices[slot] as number] as ImageRecord;
        try {
          out[slot] = await decodeImage(record.path, { size: this.size, fit: this.fit });
        } catch (error) {
          // The file decoded when the store was built; a failure now means it changed on disk.
          log.warn(`${record.path}: ${(error as Error).message}; using a black image for this batch.`);
          out[slot] = { data: new Uint8Array(this.size * this.size), height: this.size, width: this.size, channels: 1 };
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.concurrency, indices.length) }, worker));
    return out;
  }
}

function writeRgb(image: DecodedImage, out: Uint8Array, offset: number): void {
  if (image.channels === 3) {
    out.set(image.data, offset);
    return;
  }
  const grey = image.data;
  for (let i = 0, o = offset; i < grey.length; i++, o += 3) {
    const v = grey[i] as number;
    out[o] = v;
    out[o + 1] = v;
    out[o + 2] = v;
  }
}

function reportSkipped(label: string, failures: readonly SkippedFile[], maxReported: number): void {
  if (failures.length === 0) {
    return;
  }
  failures.slice(0, maxReported).forEach((f) => log.warn(`skipped ${f.path}: ${f.reason}`));
  if (failures.length > maxReported) {
    log.warn(`skipped ${failures.length - maxReported} more files of ${label} (all listed in the run's data report).`);
  }
  log.warn(`${label}: ${failures.length} files could not be decoded and were skipped.`);
}
