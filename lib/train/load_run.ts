/** Loading a finished run folder as a model ready for evaluation, prediction or explanation. */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { createModel, type FerModel } from '../models/factory';
import { assignWeights, disposeWeights, readTfjsWeights } from '../models/weights';
import type { ResolvedTrainOptions } from './options';

export interface LoadedRun {
  runDir: string;
  options: ResolvedTrainOptions;
  fer: FerModel;
}

/**
 * Rebuilds the run's model from its config.json and loads the weights of its
 * exported model (model/model.json + weights.bin). The class list in
 * classes.json must match the model's output size.
 */
export async function loadRun(runDir: string): Promise<LoadedRun> {
  const dir = path.resolve(runDir);
  const configFile = path.join(dir, 'config.json');
  const modelDir = path.join(dir, 'model');
  if (!fs.existsSync(configFile)) {
    throw new Error(`${dir} is not a run folder: config.json not found. Pass a folder written by "fer train".`);
  }
  if (!fs.existsSync(path.join(modelDir, 'model.json'))) {
    throw new Error(
      `${dir} has no trained model (model/model.json missing). The run may still be training or was interrupted; ` +
        `finish it with "fer train --resume ${dir}".`,
    );
  }
  const options = JSON.parse(await fs.promises.readFile(configFile, 'utf8')) as ResolvedTrainOptions;
  const classesFile = path.join(dir, 'classes.json');
  const classNames = fs.existsSync(classesFile) ? (JSON.parse(await fs.promises.readFile(classesFile, 'utf8')) as string[]) : undefined;
  if (classNames !== undefined && (!Array.isArray(classNames) || classNames.some((c) => typeof c !== 'string'))) {
    throw new Error(`Invalid ${classesFile}: expected a JSON array of class names.`);
  }
  const fer = await createModel(options.configuration, {
    inputSize: options.inputSize,
    dense: options.dense,
    dropout: options.dropout,
    weights: 'random',
    seed: options.seed,
    ...(classNames !== undefined ? { classNames } : {}),
  });
  const weights = await readTfjsWeights(modelDir);
  try {
    assignWeights(fer.model, weights, { requireAll: true, sourceLabel: modelDir });
  } catch (error) {
    throw new Error(`Cannot load the model of ${dir}: ${(error as Error).message}`);
  } finally {
    disposeWeights(weights);
  }
  return { runDir: dir, options, fer };
}
