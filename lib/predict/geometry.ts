/** Box arithmetic for face detection: tiling, merging overlapping detections and crop regions. */
import type { Box } from './faceapi';

export interface Detection {
  box: Box;
  score: number;
}

/** An integer pixel rectangle inside an image, as sharp's extract() takes it. */
export interface Region {
  left: number;
  top: number;
  width: number;
  height: number;
}

function area(box: Box): number {
  return Math.max(0, box.width) * Math.max(0, box.height);
}

function intersection(a: Box, b: Box): number {
  const width = Math.min(a.x + a.width, b.x + b.width) - Math.max(a.x, b.x);
  const height = Math.min(a.y + a.height, b.y + b.height) - Math.max(a.y, b.y);
  return width > 0 && height > 0 ? width * height : 0;
}

/** Intersection over union of two boxes, 0 when either is empty. */
export function iou(a: Box, b: Box): number {
  const shared = intersection(a, b);
  const union = area(a) + area(b) - shared;
  return union > 0 ? shared / union : 0;
}

/** Intersection over the area of the smaller box: 1 when one box lies inside the other. */
export function overlapOfSmaller(a: Box, b: Box): number {
  const smaller = Math.min(area(a), area(b));
  return smaller > 0 ? intersection(a, b) / smaller : 0;
}

export interface MergeOptions {
  /** Largest IoU of two kept boxes. */
  maxIou?: number;
  /**
   * Largest share of the smaller box that may lie inside a kept box. Tiles can
   * cut a face, and the cut part lies inside the whole face's box.
   */
  maxContained?: number;
}

/**
 * Greedy non-maximum suppression over detections from several passes: the
 * highest score wins, and a box is dropped when it overlaps a kept one by more
 * than maxIou (default 0.3) or lies inside it by more than maxContained
 * (default 0.6). Returns the kept detections by descending score.
 */
export function mergeDetections(detections: readonly Detection[], options: MergeOptions = {}): Detection[] {
  const maxIou = options.maxIou ?? 0.3;
  const maxContained = options.maxContained ?? 0.6;
  const sorted = [...detections].sort((a, b) => b.score - a.score);
  const kept: Detection[] = [];
  for (const candidate of sorted) {
    const suppressed = kept.some((k) => iou(k.box, candidate.box) > maxIou || overlapOfSmaller(k.box, candidate.box) > maxContained);
    if (!suppressed) {
      kept.push(candidate);
    }
  }
  return kept;
}

/**
 * Start offsets of tiles of `tile` pixels along a side of `length` pixels,
 * spread evenly so that neighbours overlap by at least `overlap` pixels and the
 * last tile ends at the edge.
 */
export function tileStarts(length: number, tile: number, overlap: number): number[] {
  if (length <= tile) {
    return [0];
  }
  const count = Math.ceil((length - overlap) / (tile - overlap));
  const step = (length - tile) / (count - 1);
  return Array.from({ length: count }, (_, i) => Math.round(i * step));
}

/** Tiles of at most `tile` x `tile` pixels that cover a width x height image with the given overlap. */
export function tileGrid(width: number, height: number, tile: number, overlap: number): Region[] {
  const regions: Region[] = [];
  for (const top of tileStarts(height, tile, overlap)) {
    for (const left of tileStarts(width, tile, overlap)) {
      regions.push({ left, top, width: Math.min(tile, width), height: Math.min(tile, height) });
    }
  }
  return regions;
}

/**
 * Checks whether a box found in `tile` touches one of the tile's edges that lies
 * inside the image, where a face may have been cut off. `tolerance` is in
 * pixels.
 */
export function touchesInnerEdge(box: Box, tile: Region, imageWidth: number, imageHeight: number, tolerance = 2): boolean {
  const left = tile.left > 0 && box.x <= tolerance;
  const top = tile.top > 0 && box.y <= tolerance;
  const right = tile.left + tile.width < imageWidth && box.x + box.width >= tile.width - tolerance;
  const bottom = tile.top + tile.height < imageHeight && box.y + box.height >= tile.height - tolerance;
  return left || top || right || bottom;
}

/** Scales a box by `factor` and shifts it by (dx, dy), both in the target coordinates. */
export function transformBox(box: Box, factor: number, dx = 0, dy = 0): Box {
  return { x: box.x * factor + dx, y: box.y * factor + dy, width: box.width * factor, height: box.height * factor };
}

/**
 * Computes the crop around a face box: a square of the box's longer side,
 * centred on the box, grown by `margin` of that side on every side, then
 * clamped to the image. Near an edge the clamped region is no longer square;
 * the classifier's resize fit then handles its aspect ratio, as it does for
 * training images.
 */
export function cropRegion(box: Box, margin: number, imageWidth: number, imageHeight: number): Region {
  const side = Math.max(box.width, box.height) * (1 + 2 * margin);
  const centreX = box.x + box.width / 2;
  const centreY = box.y + box.height / 2;
  const left = Math.max(0, Math.floor(centreX - side / 2));
  const top = Math.max(0, Math.floor(centreY - side / 2));
  const right = Math.min(imageWidth, Math.ceil(centreX + side / 2));
  const bottom = Math.min(imageHeight, Math.ceil(centreY + side / 2));
  if (right - left < 1 || bottom - top < 1) {
    // A box entirely outside the image; keep a one-pixel region at the nearest edge so that sharp gets a valid extract.
    const x = Math.min(imageWidth - 1, Math.max(0, Math.floor(centreX)));
    const y = Math.min(imageHeight - 1, Math.max(0, Math.floor(centreY)));
    return { left: x, top: y, width: 1, height: 1 };
  }
  return { left, top, width: right - left, height: bottom - top };
}

/** Clips a box to the image and rounds it to 0.1 pixel for output. */
export function clipBox(box: Box, imageWidth: number, imageHeight: number): Box {
  const x0 = Math.min(imageWidth, Math.max(0, box.x));
  const y0 = Math.min(imageHeight, Math.max(0, box.y));
  const x1 = Math.min(imageWidth, Math.max(0, box.x + box.width));
  const y1 = Math.min(imageHeight, Math.max(0, box.y + box.height));
  const round = (v: number) => Math.round(v * 10) / 10;
  return { x: round(x0), y: round(y0), width: round(x1 - x0), height: round(y1 - y0) };
}

export function regionToBox(region: Region): Box {
  return { x: region.left, y: region.top, width: region.width, height: region.height };
}
