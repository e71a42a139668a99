/**
 * The canonical emotion classes and the folder-name aliases that map onto them.
 *
 * Every model, metric and output in the toolkit uses this order, so a
 * probability vector always reads anger, disgust, fear, happiness, neutral,
 * sadness, surprise.
 */

export const CANONICAL_CLASSES = [
  'anger',
  'disgust',
  'fear',
  'happiness',
  'neutral',
  'sadness',
  'surprise',
] as const;

export type EmotionClass = (typeof CANONICAL_CLASSES)[number];

export const NUM_CLASSES = CANONICAL_CLASSES.length;

/**
 * Folder names seen in public FER datasets (FER-2013, CK+, RAF-DB, AffectNet
 * exports, the stock-photo study set), lower-cased. Lookups are
 * case-insensitive and ignore spaces, dashes and underscores.
 */
const DEFAULT_ALIASES: Readonly<Record<string, EmotionClass>> = {
  anger: 'anger',
  angry: 'anger',
  disgust: 'disgust',
  disgusted: 'disgust',
  fear: 'fear',
  fearful: 'fear',
  afraid: 'fear',
  scared: 'fear',
  happiness: 'happiness',
  happy: 'happiness',
  joy: 'happiness',
  neutral: 'neutral',
  neutrality: 'neutral',
  sadness: 'sadness',
  sad: 'sadness',
  surprise: 'surprise',
  surprised: 'surprise',
};

function normaliseFolderName(name: string): string {
  return name.toLowerCase().replace(/[\s_-]+/g, '');
}

export class UnknownClassError extends Error {
  constructor(
    readonly folder: string,
    readonly path: string,
  ) {
    super(
      `Unknown class folder "${folder}" in ${path}. Known names (case-insensitive): ` +
        `${Object.keys(DEFAULT_ALIASES).join(', ')}. ` +
        `Map it to a class with --class-alias ${folder}=<class> ` +
        `(classes: ${CANONICAL_CLASSES.join(', ')}), or move the folder out of the dataset.`,
    );
    this.name = 'UnknownClassError';
  }
}

/**
 * Alias table: the defaults plus user entries such as `{ "contempt": "disgust" }`.
 * User entries win over the defaults.
 */
export class ClassAliases {
  private readonly table = new Map<string, EmotionClass>();

  constructor(extra: Readonly<Record<string, string>> = {}) {
    for (const [alias, cls] of Object.entries(DEFAULT_ALIASES)) {
      this.table.set(alias, cls);
    }
    for (const [alias, cls] of Object.entries(extra)) {
      this.table.set(normaliseFolderName(alias), toCanonicalClass(cls));
    }
  }

  /** Parses `name=class` pairs as given on the command line. */
  static fromPairs(pairs: readonly string[]): ClassAliases {
    const extra: Record<string, string> = {};
    for (const pair of pairs) {
      const eq = pair.indexOf('=');
      if (eq <= 0 || eq === pair.length - 1) {
        throw new Error(`Invalid class alias "${pair}": expected FOLDER=CLASS, for example contempt=disgust.`);
      }
      extra[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
    return new ClassAliases(extra);
  }

  /** Returns the canonical class of a folder name, or undefined when no alias matches. */
  lookup(folder: string): EmotionClass | undefined {
    return this.table.get(normaliseFolderName(folder));
  }

  /** Returns the canonical class of a folder name or throws UnknownClassError naming the folder. */
  resolve(folder: string, path: string): EmotionClass {
    const cls = this.lookup(folder);
    if (cls === undefined) {
      throw new UnknownClassError(folder, path);
    }
    return cls;
  }
}

/** Validates a canonical class name, accepting the aliases too (`happy` gives `happiness`). */
export function toCanonicalClass(name: string): EmotionClass {
  const cls = DEFAULT_ALIASES[normaliseFolderName(name)];
  if (cls === undefined) {
    throw new Error(`Invalid class "${name}": expected one of ${CANONICAL_CLASSES.join(', ')}.`);
  }
  return cls;
}

export function classIndex(cls: EmotionClass): number {
  return CANONICAL_CLASSES.indexOf(cls);
}
