/** `fer explain`: class activation maps, attention shares and galleries of a trained run on a dataset split. */
import * as path from 'node:path';

import { Command, InvalidArgumentError, Option } from 'commander';

import { initBackend, type BackendPreference } from '../backend';
import { ClassAliases, toCanonicalClass } from '../classes';
import { discoverDataset, type SplitName } from '../data/dataset';
import { ImageStore } from '../data/store';
import { CentralFaceRegion, DEFAULT_FOCUS_THRESHOLD, type RegionShape } from '../explain/attention';
import { CAM_METHODS, createCam, type CamMethod } from '../explain/cam';
import { COLORMAPS, type ColormapName } from '../explain/overlay';
import {
  categoryCounts,
  explainStore,
  METHOD_FOLDERS,
  METHOD_TITLES,
  writeExplanationRecords,
  writeGalleries,
  writeOverlays,
  type ExplainContext,
} from '../explain/run';
import { resolveDataDir } from '../paths';
import { stratifiedSubset } from '../train/data';
import { loadRun } from '../train/load_run';
import { log } from '../util/log';
import { collect, parseAliases, parseNumber, parsePositiveInteger } from './parse';

interface ExplainCliOptions {
  data?: string;
  split: SplitName;
  out?: string;
  method: CamMethod;
  layer?: string;
  class?: string;
  limit?: number;
  batchSize: number;
  tiles: number;
  columns: number;
  tileSize: number;
  colormap: ColormapName;
  opacity: number;
  focusThreshold: number;
  region: RegionShape;
  regionWidth: number;
  regionHeight: number;
  overlays?: boolean;
  scoreCamChannels?: number;
  classAlias?: string[];
  backend?: BackendPreference;
  quiet?: boolean;
}

/** Score of the target class per method, as written into explanations.json. */
const SCORES: Record<CamMethod, string> = {
  gradcam: 'logit',
  'gradcam++': 'logit',
  eigencam: 'none (class-agnostic)',
  scorecam: 'probability of masked inputs',
};

function parseFraction(value: string): number {
  const parsed = parseNumber(value);
  if (parsed < 0 || parsed > 1) {
    throw new InvalidArgumentError(`"${value}" is not between 0 and 1.`);
  }
  return parsed;
}

export function registerExplainCommand(program: Command): void {
  program
    .command('explain')
    .description(
      'Explain the predictions of a trained run on a dataset split with class activation maps. Measures for each image the ' +
        'share of heatmap mass inside the central face region, and writes three galleries (correct with attention on the face, ' +
        'correct with attention elsewhere, misclassified) plus per-image results as JSON and CSV.',
    )
    .argument('<run-dir>', 'run folder written by "fer train"')
    .option('-d, --data <dir>', "dataset folder (default: the run's dataset)")
    .addOption(new Option('--split <name>', 'split to explain').choices(['train', 'validation', 'test']).default('test'))
    .option('-o, --out <dir>', 'output folder (default: images/<run folder name>/<method>/<split>)')
    .addOption(new Option('--method <name>', 'class activation map method').choices([...CAM_METHODS]).default('gradcam'))
    .option('--layer <name>', "layer whose feature map is explained (default: the backbone's last convolutional feature map)")
    .option('--class <name>', 'class every map explains, e.g. happiness (default: each image\'s predicted class)')
    .option('--limit <n>', 'explain at most n images, drawn per class in proportion (seeded, as fer evaluate)', parsePositiveInteger)
    .option('--batch-size <n>', 'images per CAM batch', parsePositiveInteger, 16)
    .option('--tiles <n>', 'images per gallery', parsePositiveInteger, 16)
    .option('--columns <n>', 'gallery tiles per row', parsePositiveInteger, 4)
    .option('--tile-size <px>', 'side of each gallery image in pixels', parsePositiveInteger, 144)
    .addOption(new Option('--colormap <name>', 'heatmap colour map').choices([...COLORMAPS]).default('jet'))
    .option('--opacity <weight>', 'weight of the heatmap colour in the overlay, from 0 (image only) to 1 (colour only)', parseFraction, 0.4)
    .option(
      '--focus-threshold <share>',
      `attention share (0 to 1) at or above which a correct prediction counts as focused on the face; ` +
        `a uniform map gets the region's area fraction, 0.44 for the default ellipse`,
      parseFraction,
      DEFAULT_FOCUS_THRESHOLD,
    )
    .addOption(new Option('--region <shape>', 'shape of the central face region').choices(['ellipse', 'box']).default('ellipse'))
    .option('--region-width <fraction>', 'face region width as a fraction of the image width', parseFraction, 0.7)
    .option('--region-height <fraction>', 'face region height as a fraction of the image height', parseFraction, 0.8)
    .option('--overlays', 'also write one overlay PNG per image, at the original resolution, to <out>/overlays')
    .option(
      '--score-cam-channels <n>',
      'Score-CAM only: channels scored per image, those with the highest mean activation (default: all; one forward pass each)',
      parsePositiveInteger,
    )
    .option('--class-alias <folder=class>', 'map a folder name to a class, e.g. contempt=disgust (repeatable)', collect)
    .addOption(new Option('--backend <name>', 'TensorFlow.js backend (default: auto)').choices(['auto', 'node-gpu', 'node', 'wasm', 'cpu']))
    .option('-q, --quiet', 'no progress bars')
    .action(async (runDir: string, opts: ExplainCliOptions) => {
      const backend = await initBackend(opts.backend);
      if (backend.name === 'wasm' && opts.method !== 'eigencam' && opts.method !== 'scorecam') {
        log.warn('the wasm backend lacks some gradients (depthwise convolution among them); if Grad-CAM fails, use --backend node or --method eigencam.');
      }
      const region = new CentralFaceRegion({ shape: opts.region, widthFraction: opts.regionWidth, heightFraction: opts.regionHeight });
      // Checked before the run loads, so that a typo fails at once.
      const canonical = opts.class !== undefined ? toCanonicalClass(opts.class) : undefined;
      const run = await loadRun(runDir);
      const fer = run.fer;

      let targetClass: number | undefined;
      if (canonical !== undefined) {
        targetClass = fer.classNames.indexOf(canonical);
        if (targetClass < 0) {
          throw new Error(`Class "${opts.class}" is not an output of this run's model (classes: ${fer.classNames.join(', ')}).`);
        }
      }

      const cam = createCam(opts.method, fer, {
        ...(opts.layer !== undefined ? { layer: opts.layer } : {}),
        ...(opts.scoreCamChannels !== undefined ? { maxChannels: opts.scoreCamChannels } : {}),
      });
      const [lh, lw, lc] = cam.split.featureShape;
      log.info(`explain: ${METHOD_TITLES[opts.method]} at layer ${cam.layerName} (${lh}x${lw}x${lc}) of ${fer.configuration.name}.`);
      if (lh <= 2 && lw <= 2) {
        // Bilinear upsampling of a map of at most 2x2 cells is symmetric about the image centre, and so is the region.
        log.warn(
          `layer ${cam.layerName} gives a ${lh}x${lw} map, so every attention share equals the face region's area fraction ` +
            'and the galleries cannot separate focused from misplaced attention. Name an earlier layer with a larger map ' +
            '(--layer), or train with a larger --input-size.',
        );
      }
      if (opts.method === 'scorecam') {
        const channels = Math.min(lc, opts.scoreCamChannels ?? lc);
        const hint = opts.scoreCamChannels === undefined ? '; bound it with --score-cam-channels' : '';
        log.info(`explain: Score-CAM runs the model ${channels} times per image${hint}.`);
      }

      const dataDir = opts.data !== undefined ? resolveDataDir(opts.data) : run.options.dataDir;
      const aliases = { ...run.options.classAliases, ...parseAliases(opts.classAlias) };
      const dataset = discoverDataset(dataDir, { aliases: new ClassAliases(aliases) });
      const records = dataset.splits[opts.split];
      if (records === undefined) {
        const available = Object.keys(dataset.splits).join(', ');
        throw new Error(`Dataset ${dataDir} has no ${opts.split} split (found: ${available}). Choose one with --split.`);
      }
      const selected = stratifiedSubset(records, opts.limit, run.options.seed, 3);
      const store = await ImageStore.load(selected, {
        size: fer.inputSize,
        fit: run.options.resizeFit,
        label: opts.split,
        silent: opts.quiet ?? false,
      });

      const images = await explainStore(cam, store, {
        preprocessing: fer.backbone.preprocessing,
        ...(targetClass !== undefined ? { targetClass } : {}),
        batchSize: opts.batchSize,
        region,
        focusThreshold: opts.focusThreshold,
        label: opts.split,
        silent: opts.quiet ?? false,
      });

      const out = path.resolve(opts.out ?? path.join('images', path.basename(run.runDir), METHOD_FOLDERS[opts.method], opts.split));
      const context: ExplainContext = {
        runDir: run.runDir,
        configuration: fer.configuration.name,
        backbone: fer.backbone.name,
        method: opts.method,
        layerName: cam.layerName,
        layerShape: cam.split.featureShape,
        score: SCORES[opts.method],
        split: opts.split,
        dataDir,
        classNames: fer.classNames,
        ...(targetClass !== undefined ? { targetClass } : {}),
        region: region.description,
        focusThreshold: opts.focusThreshold,
        inputSize: fer.inputSize,
        resizeFit: run.options.resizeFit,
      };
      const galleries = await writeGalleries(images, context, out, {
        tiles: opts.tiles,
        columns: opts.columns,
        tileSize: opts.tileSize,
        colormap: opts.colormap,
        opacity: opts.opacity,
      });
      if (opts.overlays) {
        await writeOverlays(images, context, path.join(out, 'overlays'), { colormap: opts.colormap, opacity: opts.opacity }, opts.quiet ?? false);
      }
      const files = await writeExplanationRecords(images, context, out, {
        regionAreaFraction: region.maskFor({ index: 0 }, fer.inputSize, fer.inputSize).areaFraction,
        skipped: store.skipped,
        galleries,
      });

      const counts = categoryCounts(images);
      const shares = images.map((image) => image.attentionShare).filter((share) => !Number.isNaN(share));
      const meanShare = shares.length > 0 ? shares.reduce((a, b) => a + b, 0) / shares.length : Number.NaN;
      log.info(
        `${opts.split}: ${images.length} images explained; correct with attention on the face ${counts.correct_focused}, ` +
          `correct with attention elsewhere ${counts.correct_misplaced}, misclassified ${counts.misclassified}; ` +
          `mean attention share ${meanShare.toFixed(3)}. Files: ${out}`,
      );
      process.stdout.write(
        JSON.stringify({
          split: opts.split,
          images: images.length,
          skipped: store.skipped.length,
          method: opts.method,
          layer: cam.layerName,
          counts,
          meanAttentionShare: Number.isNaN(meanShare) ? null : meanShare,
          galleries,
          results: files,
          out,
        }) + '\n',
      );
    });
}
