/**
 * Lazy expansion of the files and folders given on the command line into
 * image files. Folders are walked depth-first in sorted name order, and only
 * the listings of the folders on the current path are in memory, so a tree of
 * many thousands of images is never listed in full before work starts.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { IMAGE_EXTENSIONS } from '../data/decode';

export interface InputFile {
  kind: 'file';
  /** Path as it can be opened: the argument itself or the argument joined with the names below it. */
  path: string;
  /**
   * Path for output names: the file name for a file argument, or the folder's
   * name followed by the path inside it for files found in a folder argument.
   */
  relative: string;
}

/** An argument or folder entry that could not be read. */
export interface InputProblem {
  kind: 'problem';
  path: string;
  reason: string;
}

export type InputEntry = InputFile | InputProblem;

export interface WalkOptions {
  /** Folders (resolved paths) not to enter, such as the output folder. */
  exclude?: readonly string[];
  /** Called for each file in a folder that is skipped for its extension. */
  onSkipped?: (file: string) => void;
}

function problemReason(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'file or folder not found';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied; check the permissions';
  return `cannot be read (${(error as Error).message})`;
}

/**
 * Yields the image files of `inputs` in order: a file argument as given,
 * whatever its extension, and the files of a folder argument whose extension
 * is one of IMAGE_EXTENSIONS. Hidden entries (names starting with ".") inside
 * folders are skipped. Unreadable arguments and folders are yielded as
 * problems, so the caller can report them and continue.
 */
export async function* walkInputs(inputs: readonly string[], options: WalkOptions = {}): AsyncGenerator<InputEntry> {
  const exclude = new Set((options.exclude ?? []).map((dir) => path.resolve(dir)));
  for (const input of inputs) {
    let stat: fs.Stats;
    try {
      stat = await fs.promises.stat(input);
    } catch (error) {
      yield { kind: 'problem', path: input, reason: problemReason(error) };
      continue;
    }
    if (!stat.isDirectory()) {
      yield { kind: 'file', path: input, relative: path.basename(input) };
      continue;
    }
    const visited = new Set<string>();
    yield* walkFolder(input, path.basename(path.resolve(input)), exclude, visited, options.onSkipped);
  }
}

async function* walkFolder(
  dir: string,
  relative: string,
  exclude: ReadonlySet<string>,
  visited: Set<string>,
  onSkipped: ((file: string) => void) | undefined,
): AsyncGenerator<InputEntry> {
  let real: string;
  let entries: fs.Dirent[];
  try {
    real = await fs.promises.realpath(dir);
    entries = await fs.promises.readdir(dir, { withFileTypes: true });
  } catch (error) {
    yield { kind: 'problem', path: dir, reason: problemReason(error) };
    return;
  }
  // Symbolic links can make a cycle; each real folder is entered once per argument.
  if (visited.has(real) || exclude.has(real) || exclude.has(path.resolve(dir))) {
    return;
  }
  visited.add(real);
  // Code-unit order, the same on every platform and locale; names in one folder are unique.
  entries.sort((a, b) => (a.name < b.name ? -1 : 1));

  for (const entry of entries) {
    if (entry.name.startsWith('.')) {
      continue;
    }
    const full = path.join(dir, entry.name);
    const rel = path.join(relative, entry.name);
    let isDirectory = entry.isDirectory();
    let isFile = entry.isFile();
    if (entry.isSymbolicLink()) {
      try {
        const target = await fs.promises.stat(full);
        isDirectory = target.isDirectory();
        isFile = target.isFile();
      } catch (error) {
        yield { kind: 'problem', path: full, reason: `broken symbolic link (${problemReason(error)})` };
        continue;
      }
    }
    if (isDirectory) {
      yield* walkFolder(full, rel, exclude, visited, onSkipped);
    } else if (isFile) {
      if (IMAGE_EXTENSIONS.has(path.extname(entry.name).toLowerCase())) {
        yield { kind: 'file', path: full, relative: rel };
      } else {
        onSkipped?.(full);
      }
    }
  }
}

/** Counts the entries walkInputs would yield, for a progress bar's total; reads directory listings only. */
export async function countInputs(inputs: readonly string[], options: WalkOptions = {}): Promise<number> {
  let count = 0;
  for await (const _entry of walkInputs(inputs, { exclude: options.exclude ?? [] })) {
    count++;
  }
  return count;
}
