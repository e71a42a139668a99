/** Default locations of datasets and weights, each overridable by an option or an environment variable. */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Dataset folder: the option, then FER_DATA, then data/fer2013 under the working directory. */
export function resolveDataDir(option?: string): string {
  return path.resolve(option ?? process.env.FER_DATA ?? path.join('data', 'fer2013'));
}

/** Folder of pretrained weight folders: the option, then FER_WEIGHTS_DIR, then data/weights. */
export function resolveWeightsDir(option?: string): string {
  return path.resolve(option ?? process.env.FER_WEIGHTS_DIR ?? path.join('data', 'weights'));
}

/** Folder of run folders: the option, then FER_RUNS_DIR, then runs/. */
export function resolveRunsDir(option?: string): string {
  return path.resolve(option ?? process.env.FER_RUNS_DIR ?? 'runs');
}

export function assertDirectory(dir: string, what: string, hint: string): void {
  if (!fs.existsSync(dir)) {
    throw new Error(`${what} not found: ${dir}. ${hint}`);
  }
  if (!fs.statSync(dir).isDirectory()) {
    throw new Error(`${what} is not a folder: ${dir}. ${hint}`);
  }
}
