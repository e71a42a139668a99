/** `fer predict`: find the faces in photos, classify each with a trained run, and write records and annotated copies. */
import { Command, InvalidArgumentError, Option } from 'commander';

import { initBackend, type BackendPreference } from '../backend';
import { predictFiles } from '../predict/batch';
import { checkRunClasses, COLOUR_MODES, type ColourMode } from '../predict/classify';
import { DETECTOR_INPUT_SIZE, DETECTORS, MIN_DETECT_SIZE, type DetectorName } from '../predict/detect';
import { FALLBACK_MODES, Predictor, type FallbackMode } from '../predict/predictor';
import { loadRun } from '../train/load_run';
import { log } from '../util/log';
import { parseInteger, parseNumber } from './parse';

interface PredictCliOptions {
  out?: string;
  csv?: string;
  annotate: boolean;
  annotateSize: number;
  detector: DetectorName;
  minScore: number;
  detectSize?: number;
  margin: number;
  fallback: FallbackMode;
  colour: ColourMode;
  explain?: boolean;
  backend?: BackendPreference;
  quiet?: boolean;
}

/** Exit status of a usage error (an invalid option or argument); status 1 means that some input files failed. */
const USAGE_EXIT_CODE = 2;

function usageError(message: string): Error {
  return Object.assign(new Error(message), { exitCode: USAGE_EXIT_CODE });
}

function parseOpenFraction(value: string): number {
  const parsed = parseNumber(value);
  if (!(parsed > 0 && parsed < 1)) {
    throw new InvalidArgumentError(`"${value}" is not between 0 and 1 (exclusive).`);
  }
  return parsed;
}

function parseMargin(value: string): number {
  const parsed = parseNumber(value);
  if (parsed < 0 || parsed > 2) {
    throw new InvalidArgumentError(`"${value}" is not a share from 0 to 2.`);
  }
  return parsed;
}

function parseDetectSize(value: string): number {
  const parsed = parseInteger(value);
  if (parsed < MIN_DETECT_SIZE) {
    throw new InvalidArgumentError(`"${value}" is below the minimum of ${MIN_DETECT_SIZE} pixels.`);
  }
  return parsed;
}

function parseAnnotateSize(value: string): number {
  const parsed = parseInteger(value);
  if (parsed < 0) {
    throw new InvalidArgumentError(`"${value}" is negative; use 0 for the original size.`);
  }
  return parsed;
}

export function registerPredictCommand(program: Command): void {
  program
    .command('predict')
    .description(
      'Find every face in photos with a face detector from @vladmandic/face-api (offline), classify each face with a trained run, ' +
        'and print one JSON record per image to stdout (per face: box, detector score, the probabilities of the 7 classes in ' +
        'canonical order, top label). With --out, also writes annotated copies and the records as files. Folders are walked ' +
        'recursively. A file that cannot be read is reported and skipped; the exit status is 1 when any file failed, 2 for usage errors.',
    )
    .argument('<run-dir>', 'run folder written by "fer train"')
    .argument('<inputs...>', 'image files (JPEG, PNG, WebP, GIF, TIFF, AVIF, BMP) and folders of them')
    .option('-o, --out <dir>', 'output folder for annotated copies, <image>.json records and Grad-CAM overlays, mirroring the input paths')
    .option('--csv <file>', 'write a CSV file with one row per face (and one row per image without faces or with an error)')
    .option('--no-annotate', 'skip the annotated copies in the output folder')
    .option('--annotate-size <px>', 'longest side of the annotated copies in pixels; 0 keeps the original size', parseAnnotateSize, 1280)
    .addOption(
      new Option('--detector <name>', 'face detector: ssd (SSD MobileNet v1, more accurate) or tiny (Tiny Face Detector, about 3x faster)')
        .choices(DETECTORS)
        .default('ssd'),
    )
    .option('--min-score <p>', 'minimum detector score of a face, between 0 and 1', parseOpenFraction, 0.5)
    .option(
      '--detect-size <px>',
      `longest side, in pixels, of the photo copy that the detector searches (default: its network input, ${DETECTOR_INPUT_SIZE.ssd} for ssd ` +
        `and ${DETECTOR_INPUT_SIZE.tiny} for tiny, one pass). Larger values add a pass over overlapping tiles that finds smaller faces, ` +
        'at one more detector run per tile (1024 gives 6 tiles on a 3:2 photo)',
      parseDetectSize,
    )
    .option('--margin <share>', 'margin added on each side of the square around a face before classifying, as a share of its side', parseMargin, 0.2)
    .addOption(
      new Option(
        '--fallback <mode>',
        'when no face passes the detector: auto classifies the whole image if a second search on the image framed by a border finds ' +
          'that it is a face crop; always classifies the whole image (for folders of face crops); never reports no faces',
      )
        .choices(FALLBACK_MODES)
        .default('auto'),
    )
    .addOption(
      new Option('--colour <mode>', 'colour of the face crops given to the model: grey (luminance in 3 channels, as FER-2013 training images) or rgb')
        .choices(COLOUR_MODES)
        .default('grey'),
    )
    .option('--explain', 'write a Grad-CAM overlay per face (<image name>.face<N>.gradcam.png in the output folder; needs --out)')
    .addOption(new Option('--backend <name>', 'TensorFlow.js backend (default: auto)').choices(['auto', 'node-gpu', 'node', 'wasm', 'cpu']))
    .option('-q, --quiet', 'no progress bar')
    .action(async (runDir: string, inputs: string[], opts: PredictCliOptions) => {
      if (opts.explain === true && opts.out === undefined) {
        throw usageError('--explain writes overlay images and needs an output folder; add --out <dir>.');
      }
      await initBackend(opts.backend);
      await checkRunClasses(runDir);
      const run = await loadRun(runDir);
      const predictor = await Predictor.create(run, {
        detector: opts.detector,
        minScore: opts.minScore,
        ...(opts.detectSize !== undefined ? { detectSize: opts.detectSize } : {}),
        margin: opts.margin,
        fallback: opts.fallback,
        colour: opts.colour,
        explain: opts.explain === true,
      });
      log.info(
        `predict: ${run.options.configuration.name} from ${run.runDir} (input ${predictor.classifier.inputSize}px, resize ${predictor.classifier.fit}, ` +
          `${predictor.classifier.colour}), detector ${predictor.detector.detector} at ${predictor.detector.detectSize}px, ` +
          `minimum score ${predictor.detector.minScore}, margin ${predictor.margin}, fallback ${predictor.fallback}.`,
      );

      const summary = await predictFiles(predictor, inputs, {
        ...(opts.out !== undefined ? { out: opts.out } : {}),
        ...(opts.csv !== undefined ? { csv: opts.csv } : {}),
        annotate: opts.annotate,
        annotateSize: opts.annotateSize,
        silent: opts.quiet ?? false,
        onRecord: (record) => process.stdout.write(JSON.stringify(record) + '\n'),
      });

      const processed = summary.images + summary.failed;
      if (processed === 0) {
        log.warn(`no image files found in ${inputs.join(', ')} (extensions read: .jpg .jpeg .png .webp .bmp .gif .tif .tiff .avif).`);
      }
      const rate = summary.seconds > 0 ? summary.images / summary.seconds : 0;
      log.info(
        `predicted ${summary.images} images in ${summary.seconds.toFixed(1)} s (${rate.toFixed(2)} img/s): ${summary.faces} faces, ` +
          `${summary.withoutFaces} without a face, ${summary.wholeImage} classified as a whole, ${summary.failed} failed` +
          (summary.skippedFiles > 0 ? `, ${summary.skippedFiles} non-image files skipped` : '') +
          (opts.out !== undefined ? `. Output: ${opts.out}` : '') +
          (opts.csv !== undefined ? `. CSV: ${opts.csv}` : '') +
          '.',
      );
      if (summary.failed > 0) {
        process.exitCode = 1;
      }
    });
}
