/**
 * Classification metrics of the evaluation step, computed in float64 and
 * matched number for number against scikit-learn 1.9 (tests/metrics.test.ts).
 *
 * Averages and ROC curves cover only the classes present in the true labels,
 * so a test set without, say, neutral faces is not penalised with a recall of
 * 0 for a class it cannot contain. A class that is predicted but never true
 * still lowers accuracy and the precision of nothing else.
 */

import type { AveragedMetrics, ClassMetrics, ClassificationReport, RocCurve } from './types';

/** N rows of K class scores: nested rows, or one flat row-major array of N * K values. */
export type ScoreMatrix = Float32Array | Float64Array | number[][];

/**
 * Maximum distance of a probability row's sum from 1. Float32 softmax rows of
 * 7 classes sum to within about 2e-7 of 1 (20,000 random rows in Node 20),
 * while logits or independent sigmoid outputs are off by far more.
 */
const ROW_SUM_TOLERANCE = 1e-3;

/** Float64 machine epsilon, the clipping bound of sklearn.metrics.log_loss for float64 input. */
const FLOAT64_EPS = 2 ** -52;

// ---------------------------------------------------------------------------
// Input checks

function describeCell(probabilities: ScoreMatrix, row: number, column: number, numClasses: number): string {
  if (Array.isArray(probabilities)) {
    return `probabilities[${row}][${column}]`;
  }
  return `probabilities[${row * numClasses + column}] (row ${row}, class ${column})`;
}

function validateNumClasses(caller: string, numClasses: number): void {
  if (!Number.isInteger(numClasses) || numClasses < 1) {
    throw new Error(`${caller}: numClasses is ${numClasses}, expected a positive integer.`);
  }
}

/** Throws unless every label is an integer class index in [0, numClasses). */
function validateLabels(caller: string, name: string, labels: ArrayLike<number>, numClasses: number): void {
  for (let i = 0; i < labels.length; i++) {
    const label = labels[i] as number;
    if (!Number.isInteger(label) || label < 0 || label >= numClasses) {
      throw new Error(
        `${caller}: ${name}[${i}] is ${label}, expected an integer class index in [0, ${numClasses - 1}].`,
      );
    }
  }
}

/**
 * Copies the scores into one flat float64 array of numRows * numClasses values.
 * Pass numRows to require that many rows, or undefined to derive it from the input.
 */
function toFlatScores(
  caller: string,
  probabilities: ScoreMatrix,
  numRows: number | undefined,
  numClasses: number,
): Float64Array {
  if (Array.isArray(probabilities)) {
    if (numRows !== undefined && probabilities.length !== numRows) {
      throw new Error(
        `${caller}: probabilities has ${probabilities.length} rows but yTrue has ${numRows} labels. ` +
          'Pass one row of class probabilities per sample.',
      );
    }
    const flat = new Float64Array(probabilities.length * numClasses);
    probabilities.forEach((row, i) => {
      if (row.length !== numClasses) {
        throw new Error(
          `${caller}: probabilities[${i}] has ${row.length} values, expected ${numClasses} (one per class).`,
        );
      }
      flat.set(row, i * numClasses);
    });
    return flat;
  }

  if (numRows !== undefined && probabilities.length !== numRows * numClasses) {
    throw new Error(
      `${caller}: flat probabilities has ${probabilities.length} values, expected ` +
        `${numRows} samples * ${numClasses} classes = ${numRows * numClasses} in row-major order.`,
    );
  }
  if (numRows === undefined && probabilities.length % numClasses !== 0) {
    throw new Error(
      `${caller}: flat probabilities has ${probabilities.length} values, which is not a multiple of ` +
        `numClasses = ${numClasses}. Pass N * ${numClasses} values in row-major order.`,
    );
  }
  return Float64Array.from(probabilities);
}

function validateFinite(caller: string, original: ScoreMatrix, flat: Float64Array, numClasses: number): void {
  for (let k = 0; k < flat.length; k++) {
    const value = flat[k] as number;
    if (!Number.isFinite(value)) {
      const cell = describeCell(original, Math.floor(k / numClasses), k % numClasses, numClasses);
      throw new Error(`${caller}: ${cell} is ${value}, expected a finite score. Check the model output for NaN.`);
    }
  }
}

/** Throws unless every value lies in [0, 1] and every row sums to 1 within ROW_SUM_TOLERANCE. */
function validateProbabilities(caller: string, original: ScoreMatrix, flat: Float64Array, numClasses: number): void {
  validateFinite(caller, original, flat, numClasses);
  const numRows = flat.length / numClasses;
  for (let i = 0; i < numRows; i++) {
    let sum = 0;
    for (let j = 0; j < numClasses; j++) {
      const value = flat[i * numClasses + j] as number;
      if (value < 0 || value > 1) {
        throw new Error(
          `${caller}: ${describeCell(original, i, j, numClasses)} is ${value}, expected a probability in [0, 1]. ` +
            'Pass softmax outputs, not logits.',
        );
      }
      sum += value;
    }
    if (Math.abs(sum - 1) > ROW_SUM_TOLERANCE) {
      throw new Error(
        `${caller}: row ${i} of probabilities sums to ${sum}, expected 1 (within ${ROW_SUM_TOLERANCE}). ` +
          'Pass softmax outputs, one distribution over the classes per sample.',
      );
    }
  }
}

function validateClassNames(caller: string, classNames: readonly string[]): void {
  if (classNames.length < 2) {
    throw new Error(
      `${caller}: classNames has ${classNames.length} entries, expected at least 2. ` +
        'Pass the model classes in output order.',
    );
  }
  const seen = new Set<string>();
  for (const name of classNames) {
    if (seen.has(name)) {
      throw new Error(`${caller}: classNames contains "${name}" twice. Class names must be unique.`);
    }
    seen.add(name);
  }
}

// ---------------------------------------------------------------------------
// Counting helpers for the training loop

function argmaxOfFlat(flat: Float64Array, numClasses: number): Int32Array {
  const numRows = flat.length / numClasses;
  const predictions = new Int32Array(numRows);
  for (let i = 0; i < numRows; i++) {
    const offset = i * numClasses;
    let best = 0;
    // Strict comparison keeps the lowest index on ties, as numpy.argmax does.
    for (let j = 1; j < numClasses; j++) {
      if ((flat[offset + j] as number) > (flat[offset + best] as number)) {
        best = j;
      }
    }
    predictions[i] = best;
  }
  return predictions;
}

/**
 * Returns the index of the highest score of each row, the lowest index on ties
 * (as numpy.argmax). Scores may be logits or probabilities, but NaN or an
 * infinite value throws, since it means that the model output is broken.
 */
export function argmaxRows(probs: ScoreMatrix, numClasses: number): Int32Array {
  validateNumClasses('argmaxRows', numClasses);
  const flat = toFlatScores('argmaxRows', probs, undefined, numClasses);
  validateFinite('argmaxRows', probs, flat, numClasses);
  return argmaxOfFlat(flat, numClasses);
}

/** Counts samples into counts[trueIndex][predictedIndex] over all numClasses classes. */
export function confusionMatrix(
  yTrue: ArrayLike<number>,
  yPred: ArrayLike<number>,
  numClasses: number,
): number[][] {
  validateNumClasses('confusionMatrix', numClasses);
  if (yTrue.length !== yPred.length) {
    throw new Error(
      `confusionMatrix: yTrue has ${yTrue.length} labels but yPred has ${yPred.length}. ` +
        'Pass one prediction per sample.',
    );
  }
  validateLabels('confusionMatrix', 'yTrue', yTrue, numClasses);
  validateLabels('confusionMatrix', 'yPred', yPred, numClasses);

  const counts = Array.from({ length: numClasses }, () => new Array<number>(numClasses).fill(0));
  for (let i = 0; i < yTrue.length; i++) {
    const row = counts[yTrue[i] as number] as number[];
    row[yPred[i] as number] = (row[yPred[i] as number] as number) + 1;
  }
  return counts;
}

/** Per-class precision, recall, F1 and support, with 0 in place of 0/0 (sklearn zero_division=0). */
function perClassScores(counts: number[][], classNames: readonly string[]): ClassMetrics[] {
  const numClasses = counts.length;
  return classNames.map((className, c) => {
    let support = 0;
    let predicted = 0;
    for (let j = 0; j < numClasses; j++) {
      support += (counts[c] as number[])[j] as number;
      predicted += (counts[j] as number[])[c] as number;
    }
    const truePositives = (counts[c] as number[])[c] as number;
    const precision = predicted > 0 ? truePositives / predicted : 0;
    const recall = support > 0 ? truePositives / support : 0;
    // sklearn's form 2 * tp / (support + predicted), which needs no precision or recall.
    const f1Denominator = support + predicted;
    const f1 = f1Denominator > 0 ? (2 * truePositives) / f1Denominator : 0;
    return { className, index: c, precision, recall, f1, support };
  });
}

/** Macro and support-weighted means over the classes with support > 0. */
function averageOverPresent(perClass: ClassMetrics[]): { macro: AveragedMetrics; weighted: AveragedMetrics } {
  const present = perClass.filter((metrics) => metrics.support > 0);
  const totalSupport = present.reduce((sum, metrics) => sum + metrics.support, 0);
  const mean = (pick: (metrics: ClassMetrics) => number): number =>
    present.reduce((sum, metrics) => sum + pick(metrics), 0) / present.length;
  const weightedMean = (pick: (metrics: ClassMetrics) => number): number =>
    present.reduce((sum, metrics) => sum + pick(metrics) * metrics.support, 0) / totalSupport;

  return {
    macro: { precision: mean((m) => m.precision), recall: mean((m) => m.recall), f1: mean((m) => m.f1) },
    weighted: {
      precision: weightedMean((m) => m.precision),
      recall: weightedMean((m) => m.recall),
      f1: weightedMean((m) => m.f1),
    },
  };
}

/**
 * Computes the unweighted mean F1 over the classes present in yTrue, equal to
 * sklearn f1_score(yTrue, yPred, labels=present, average='macro', zero_division=0).
 * Throws on empty input, because no class is present to average over.
 */
export function macroF1(yTrue: ArrayLike<number>, yPred: ArrayLike<number>, numClasses: number): number {
  if (yTrue.length === 0) {
    throw new Error('macroF1: yTrue is empty. Pass at least one labelled sample.');
  }
  const counts = confusionMatrix(yTrue, yPred, numClasses);
  const names = Array.from({ length: numClasses }, (_, c) => String(c));
  return averageOverPresent(perClassScores(counts, names)).macro.f1;
}

// ---------------------------------------------------------------------------
// Log loss and ROC

/**
 * Mean of -log(p[i, yTrue[i]]) with p clipped to [eps, 1 - eps] for float64 eps,
 * as sklearn.metrics.log_loss 1.9 does for float64 input. Rows are not
 * renormalised, because sklearn 1.9 only warns about rows that do not sum to 1.
 */
function meanLogLoss(yTrue: ArrayLike<number>, flat: Float64Array, numClasses: number): number {
  let total = 0;
  for (let i = 0; i < yTrue.length; i++) {
    const p = flat[i * numClasses + (yTrue[i] as number)] as number;
    const clipped = Math.min(Math.max(p, FLOAT64_EPS), 1 - FLOAT64_EPS);
    total -= Math.log(clipped);
  }
  return total / yTrue.length;
}

/**
 * Builds the ROC curve of one binary problem point for point as
 * sklearn.metrics.roc_curve 1.9 with drop_intermediate=True. The caller
 * guarantees at least one positive and one negative sample.
 */
function binaryRoc(isPositive: Uint8Array, scores: Float64Array): { fpr: number[]; tpr: number[]; thresholds: number[] } {
  const n = scores.length;
  // Array.prototype.sort is stable, like sklearn's argsort(stable=True, descending=True).
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => (scores[b] as number) - (scores[a] as number));

  // One point per distinct score, taken at the last sample of each run of equal scores.
  const tps: number[] = [];
  const fps: number[] = [];
  const thresholds: number[] = [];
  let positives = 0;
  for (let k = 0; k < n; k++) {
    const sample = order[k] as number;
    positives += isPositive[sample] as number;
    const score = scores[sample] as number;
    const isLastOfRun = k === n - 1 || scores[order[k + 1] as number] !== score;
    if (isLastOfRun) {
      tps.push(positives);
      fps.push(k + 1 - positives);
      thresholds.push(score);
    }
  }

  // Drop points collinear with both neighbours, whose second difference is 0 in fps and tps.
  let keep = tps.map(() => true);
  if (tps.length > 2) {
    keep = tps.map((_, k) => {
      if (k === 0 || k === tps.length - 1) {
        return true;
      }
      const fpsCurvature = (fps[k + 1] as number) - 2 * (fps[k] as number) + (fps[k - 1] as number);
      const tpsCurvature = (tps[k + 1] as number) - 2 * (tps[k] as number) + (tps[k - 1] as number);
      return fpsCurvature !== 0 || tpsCurvature !== 0;
    });
  }

  const totalPositives = tps[tps.length - 1] as number;
  const totalNegatives = fps[fps.length - 1] as number;
  // The extra first point (0, 0) at threshold +Infinity starts the curve at the origin.
  const curve = { fpr: [0], tpr: [0], thresholds: [Infinity] };
  for (let k = 0; k < tps.length; k++) {
    if (keep[k]) {
      curve.fpr.push((fps[k] as number) / totalNegatives);
      curve.tpr.push((tps[k] as number) / totalPositives);
      curve.thresholds.push(thresholds[k] as number);
    }
  }
  return curve;
}

/** Trapezoidal area under a curve with increasing x, in numpy.trapezoid's operation order. */
function trapezoidArea(x: number[], y: number[]): number {
  let area = 0;
  for (let k = 0; k + 1 < x.length; k++) {
    area += ((x[k + 1] as number) - (x[k] as number)) * ((y[k + 1] as number) + (y[k] as number)) / 2;
  }
  return area;
}

function rocCurves(
  yTrue: ArrayLike<number>,
  flat: Float64Array,
  classNames: readonly string[],
  presentIndices: number[],
): RocCurve[] {
  const numClasses = classNames.length;
  const numSamples = yTrue.length;
  return presentIndices.map((c) => {
    const isPositive = new Uint8Array(numSamples);
    const scores = new Float64Array(numSamples);
    for (let i = 0; i < numSamples; i++) {
      isPositive[i] = yTrue[i] === c ? 1 : 0;
      scores[i] = flat[i * numClasses + c] as number;
    }
    const curve = binaryRoc(isPositive, scores);
    return {
      className: classNames[c] as string,
      index: c,
      ...curve,
      auc: trapezoidArea(curve.fpr, curve.tpr),
    };
  });
}

// ---------------------------------------------------------------------------
// Report

/**
 * Evaluates class probabilities against integer labels.
 *
 * Predictions are the argmax of each row (lowest index on ties). Every number
 * equals its scikit-learn 1.9 counterpart on the float64 inputs: Float32Array
 * input is widened to float64 first. Macro and weighted averages use
 * labels = the present classes with zero_division=0. logLoss is
 * log_loss(yTrue, probabilities, labels=range(K)), and each ROC curve is
 * roc_curve(yTrue == c, probabilities[:, c]) for a present class c.
 *
 * When only one class is present, one-vs-rest ROC has no negatives, so roc is
 * empty and macroAuc is NaN. Throws on empty input, labels outside [0, K),
 * values outside [0, 1], rows that do not sum to 1 within 1e-3, and shape mismatches.
 */
export function classificationReport(
  yTrue: ArrayLike<number>,
  probabilities: ScoreMatrix,
  classNames: readonly string[],
): ClassificationReport {
  const caller = 'classificationReport';
  validateClassNames(caller, classNames);
  if (yTrue.length === 0) {
    throw new Error(`${caller}: yTrue is empty. Pass at least one labelled sample.`);
  }
  const numClasses = classNames.length;
  const numSamples = yTrue.length;
  validateLabels(caller, 'yTrue', yTrue, numClasses);
  const flat = toFlatScores(caller, probabilities, numSamples, numClasses);
  validateProbabilities(caller, probabilities, flat, numClasses);

  const predictions = argmaxOfFlat(flat, numClasses);
  const counts = confusionMatrix(yTrue, predictions, numClasses);
  const perClass = perClassScores(counts, classNames);
  const { macro, weighted } = averageOverPresent(perClass);

  let correct = 0;
  for (let c = 0; c < numClasses; c++) {
    correct += (counts[c] as number[])[c] as number;
  }

  const presentIndices = perClass.filter((m) => m.support > 0).map((m) => m.index);
  const roc = presentIndices.length >= 2 ? rocCurves(yTrue, flat, classNames, presentIndices) : [];
  const macroAuc = roc.length > 0 ? roc.reduce((sum, curve) => sum + curve.auc, 0) / roc.length : NaN;

  return {
    classNames: [...classNames],
    presentClasses: perClass.filter((m) => m.support > 0).map((m) => m.className),
    absentClasses: perClass.filter((m) => m.support === 0).map((m) => m.className),
    numSamples,
    accuracy: correct / numSamples,
    perClass,
    macro,
    weighted,
    logLoss: meanLogLoss(yTrue, flat, numClasses),
    confusionMatrix: counts,
    roc,
    macroAuc,
  };
}

// ---------------------------------------------------------------------------
// Text and CSV output

/**
 * Formats x with a fixed number of decimals like Python's format(x, '.Nf'),
 * which rounds exact halves to even where Number.prototype.toFixed rounds them up.
 */
function formatFixed(x: number, digits: number): string {
  if (Number.isNaN(x)) {
    return 'nan';
  }
  if (!Number.isFinite(x)) {
    return x > 0 ? 'inf' : '-inf';
  }
  const rounded = x.toFixed(digits);
  if (Math.abs(x) >= 1e21) {
    return rounded;
  }
  // toFixed(100) prints the exact binary value for the values that can be exact halves.
  const exact = Math.abs(x).toFixed(100);
  const cut = exact.indexOf('.') + digits + 1;
  const isExactHalf = exact[cut] === '5' && /^0*$/.test(exact.slice(cut + 1));
  if (!isExactHalf) {
    return rounded;
  }
  const truncated = exact.slice(0, digits > 0 ? cut : cut - 1);
  const lastDigit = Number(truncated[truncated.length - 1]);
  if (lastDigit % 2 === 1) {
    return rounded;
  }
  return (x < 0 ? '-' : '') + truncated;
}

export interface ReportTextOptions {
  /** Decimals of the table, as the digits argument of sklearn's classification_report. Default 2. */
  digits?: number;
}

/**
 * Renders the report as text. The table has the layout of sklearn's
 * classification_report (per class, accuracy, macro avg, weighted avg) and
 * lists absent classes with support 0. Log loss, macro AUC and, when classes
 * are absent, a line naming them follow the table.
 */
export function reportToText(report: ClassificationReport, options: ReportTextOptions = {}): string {
  const digits = options.digits ?? 2;
  if (!Number.isInteger(digits) || digits < 0 || digits > 20) {
    throw new Error(`reportToText: digits is ${digits}, expected an integer in [0, 20].`);
  }
  const headers = ['precision', 'recall', 'f1-score', 'support'];
  const lastHeading = 'weighted avg';
  const width = Math.max(...report.classNames.map((name) => name.length), lastHeading.length, digits);
  const cell = (value: number): string => ' ' + formatFixed(value, digits).padStart(9);
  const row = (heading: string, scores: AveragedMetrics, support: number): string =>
    heading.padStart(width) +
    ' ' +
    cell(scores.precision) +
    cell(scores.recall) +
    cell(scores.f1) +
    ' ' +
    String(support).padStart(9) +
    '\n';

  let text = ''.padStart(width) + ' ' + headers.map((header) => ' ' + header.padStart(9)).join('') + '\n\n';
  for (const metrics of report.perClass) {
    text += row(metrics.className, metrics, metrics.support);
  }
  text += '\n';
  text +=
    'accuracy'.padStart(width) +
    ' ' +
    ' '.repeat(20) +
    cell(report.accuracy) +
    ' ' +
    String(report.numSamples).padStart(9) +
    '\n';
  text += row('macro avg', report.macro, report.numSamples);
  text += row(lastHeading, report.weighted, report.numSamples);

  text += '\n';
  text += `log loss: ${formatFixed(report.logLoss, 4)}\n`;
  const auc = Number.isNaN(report.macroAuc)
    ? 'undefined (ROC needs at least two classes present)'
    : formatFixed(report.macroAuc, 4);
  text += `macro AUC: ${auc}\n`;
  if (report.absentClasses.length > 0) {
    text +=
      `metrics cover the classes present in the data: ${report.presentClasses.join(', ')}; ` +
      `absent: ${report.absentClasses.join(', ')}\n`;
  }
  return text;
}

function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

/**
 * Renders per-class and averaged scores as CSV with the header
 * class,precision,recall,f1-score,support and full float64 precision. The
 * macro avg and weighted avg rows give the total number of samples as support.
 */
export function reportToCsv(report: ClassificationReport): string {
  const lines = ['class,precision,recall,f1-score,support'];
  const line = (name: string, scores: AveragedMetrics, support: number): string =>
    [csvField(name), scores.precision, scores.recall, scores.f1, support].join(',');
  for (const metrics of report.perClass) {
    lines.push(line(metrics.className, metrics, metrics.support));
  }
  lines.push(line('macro avg', report.macro, report.numSamples));
  lines.push(line('weighted avg', report.weighted, report.numSamples));
  return lines.join('\n') + '\n';
}
