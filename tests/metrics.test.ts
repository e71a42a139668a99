/**
 * Checks lib/eval/metrics.ts against scikit-learn: tests/oracle/sklearn_metrics.py
 * computes every metric of the same seeded predictions, and each number must
 * agree to 1e-9. The oracle runs with process.env.FER_PYTHON, or .venv/bin/python
 * relative to the repository root, which `npm run setup` creates.
 */

import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import {
  argmaxRows,
  classificationReport,
  confusionMatrix,
  macroF1,
  reportToCsv,
  reportToText,
  type ScoreMatrix,
} from '../lib/eval/metrics';
import type { ClassificationReport } from '../lib/eval/types';
import { Rng } from '../lib/util/rng';

const REPO_ROOT = resolve(__dirname, '..');
const ORACLE_SCRIPT = resolve(REPO_ROOT, 'tests/oracle/sklearn_metrics.py');
const TOLERANCE = 1e-9;
const CLASS_NAMES = ['anger', 'disgust', 'fear', 'happiness', 'neutral', 'sadness', 'surprise'];
const K = CLASS_NAMES.length;
const TEXT_DIGITS = [2, 4];

// ---------------------------------------------------------------------------
// Seeded test cases

interface MetricsCase {
  name: string;
  yTrue: number[];
  probabilities: ScoreMatrix;
}

function softmax(logits: number[]): number[] {
  const max = Math.max(...logits);
  const exps = logits.map((logit) => Math.exp(logit - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / sum);
}

/** Softmax with every intermediate rounded to float32, as a float32 model output is. */
function softmaxFloat32(logits: number[]): number[] {
  const max = Math.fround(Math.max(...logits.map(Math.fround)));
  const exps = logits.map((logit) => Math.fround(Math.exp(Math.fround(Math.fround(logit) - max))));
  let sum = Math.fround(0);
  for (const e of exps) {
    sum = Math.fround(sum + e);
  }
  return exps.map((e) => Math.fround(e / sum));
}

/** Logits of one sample: uniform noise, with the true class raised by `boost`. */
function noisyLogits(rng: Rng, label: number, boost: number): number[] {
  return Array.from({ length: K }, (_, j) => rng.uniform(-2, 2) + (j === label ? boost : 0));
}

function randomSevenClass(): MetricsCase {
  const rng = new Rng(7001);
  const yTrue: number[] = [];
  const rows: number[][] = [];
  for (let i = 0; i < 300; i++) {
    const label = rng.int(K);
    yTrue.push(label);
    rows.push(softmax(noisyLogits(rng, label, rng.uniform(0, 3))));
  }
  return { name: 'random 7-class', yTrue, probabilities: rows };
}

/** Builds a case where neutral (index 4) is never true but often predicted, with flat probabilities. */
function absentNeutral(): MetricsCase {
  const rng = new Rng(7002);
  const presentLabels = [0, 1, 2, 3, 5, 6];
  const yTrue: number[] = [];
  const flat: number[] = [];
  for (let i = 0; i < 200; i++) {
    const label = presentLabels[rng.int(presentLabels.length)] as number;
    yTrue.push(label);
    const logits = noisyLogits(rng, label, 1.5);
    if (rng.next() < 0.25) {
      logits[4] = (logits[4] as number) + 3;
    }
    flat.push(...softmax(logits));
  }
  return { name: 'absent neutral class', yTrue, probabilities: Float64Array.from(flat) };
}

/** Probabilities in steps of 0.1, so scores tie within a class and argmax ties too. */
function tiedScores(): MetricsCase {
  const rng = new Rng(7003);
  const yTrue: number[] = [];
  const rows: number[][] = [];
  for (let i = 0; i < 250; i++) {
    const label = rng.int(K);
    yTrue.push(label);
    const tenths = new Array<number>(K).fill(0);
    for (let unit = 0; unit < 10; unit++) {
      const target = rng.next() < 0.35 ? label : rng.int(K);
      tenths[target] = (tenths[target] as number) + 1;
    }
    rows.push(tenths.map((count) => count / 10));
  }
  return { name: 'tied scores', yTrue, probabilities: rows };
}

/** One-hot probabilities of the true class, whose exact 0 and 1 exercise log-loss clipping. */
function perfectPredictions(): MetricsCase {
  const rng = new Rng(7004);
  const yTrue = rng.shuffle(Array.from({ length: 140 }, (_, i) => i % K));
  const rows = yTrue.map((label) => Array.from({ length: K }, (_, j) => (j === label ? 1 : 0)));
  return { name: 'perfect predictions', yTrue, probabilities: rows };
}

/** Fear (index 2) is true for some samples but its score is never the highest. */
function neverPredicted(): MetricsCase {
  const rng = new Rng(7005);
  const yTrue: number[] = [];
  const rows: number[][] = [];
  for (let i = 0; i < 210; i++) {
    const label = rng.int(K);
    yTrue.push(label);
    const logits = noisyLogits(rng, label, 1.5);
    logits[2] = -6;
    rows.push(softmax(logits));
  }
  return { name: 'never predicted class', yTrue, probabilities: rows };
}

/** Float32 softmax output, whose rows do not sum exactly to 1. */
function float32Softmax(): MetricsCase {
  const rng = new Rng(7006);
  const yTrue: number[] = [];
  const flat = new Float32Array(300 * K);
  for (let i = 0; i < 300; i++) {
    const label = rng.int(K);
    yTrue.push(label);
    flat.set(softmaxFloat32(noisyLogits(rng, label, rng.uniform(0, 4))), i * K);
  }
  return { name: 'float32 softmax output', yTrue, probabilities: flat };
}

/** Builds a case where every sample is happiness (index 3), so one-vs-rest ROC has no negatives. */
function singlePresentClass(): MetricsCase {
  const rng = new Rng(7007);
  const yTrue = new Array<number>(40).fill(3);
  const rows = yTrue.map((label) => softmax(noisyLogits(rng, label, 1)));
  return { name: 'single present class', yTrue, probabilities: rows };
}

function toRows(probabilities: ScoreMatrix): number[][] {
  if (Array.isArray(probabilities)) {
    return probabilities;
  }
  const rows: number[][] = [];
  for (let offset = 0; offset < probabilities.length; offset += K) {
    rows.push(Array.from(probabilities.subarray(offset, offset + K)));
  }
  return rows;
}

// ---------------------------------------------------------------------------
// scikit-learn oracle

type OracleNumber = number | 'inf' | '-inf' | 'nan';

interface OracleRoc {
  index: number;
  fpr: OracleNumber[];
  tpr: OracleNumber[];
  thresholds: OracleNumber[];
  auc: OracleNumber;
  roc_auc_score: OracleNumber;
}

interface OracleAverage {
  precision: OracleNumber;
  recall: OracleNumber;
  f1: OracleNumber;
}

interface OracleResult {
  name: string;
  present: number[];
  y_pred: number[];
  accuracy: OracleNumber;
  precision: OracleNumber[];
  recall: OracleNumber[];
  f1: OracleNumber[];
  support: number[];
  macro: OracleAverage;
  weighted: OracleAverage;
  macro_f1: OracleNumber;
  log_loss: OracleNumber;
  confusion_matrix: number[][];
  roc: OracleRoc[];
  macro_auc: OracleNumber;
  texts: Record<string, string>;
}

function decode(value: OracleNumber): number {
  if (value === 'inf') return Infinity;
  if (value === '-inf') return -Infinity;
  if (value === 'nan') return NaN;
  return value;
}

/** Runs the oracle once for all cases. Throws with the fix when Python or scikit-learn is missing. */
function runOracle(cases: MetricsCase[]): OracleResult[] {
  const configured = process.env.FER_PYTHON ?? '.venv/bin/python';
  // A bare command name is looked up on PATH, and a path is taken relative to the repository root.
  const python = configured.includes('/') ? resolve(REPO_ROOT, configured) : configured;
  const request = {
    cases: cases.map((c) => ({
      name: c.name,
      y_true: c.yTrue,
      probabilities: toRows(c.probabilities),
      class_names: CLASS_NAMES,
      digits: TEXT_DIGITS,
    })),
  };
  const result = spawnSync(python, [ORACLE_SCRIPT], {
    cwd: REPO_ROOT,
    input: JSON.stringify(request),
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (result.error) {
    throw new Error(
      `Python for the scikit-learn oracle failed to start (${python}: ${result.error.message}). ` +
        'Run `npm run setup` to create .venv with scikit-learn, or set FER_PYTHON to a Python that has it.',
    );
  }
  if (result.status !== 0) {
    throw new Error(
      `The scikit-learn oracle exited with status ${result.status}. If scikit-learn is missing, ` +
        `run \`npm run setup\` or set FER_PYTHON. stderr:\n${result.stderr}`,
    );
  }
  return JSON.parse(result.stdout) as OracleResult[];
}

function expectClose(actual: number, expected: OracleNumber, label: string): void {
  const reference = decode(expected);
  if (!Number.isFinite(reference)) {
    expect(actual, label).toBe(reference);
    return;
  }
  expect(Math.abs(actual - reference), `${label}: got ${actual}, scikit-learn ${reference}`).toBeLessThanOrEqual(
    TOLERANCE,
  );
}

function expectArrayClose(actual: number[], expected: OracleNumber[], label: string): void {
  expect(actual.length, `${label} length`).toBe(expected.length);
  actual.forEach((value, k) => expectClose(value, expected[k] as OracleNumber, `${label}[${k}]`));
}

// ---------------------------------------------------------------------------
// Comparison with scikit-learn

const CASES = [
  randomSevenClass(),
  absentNeutral(),
  tiedScores(),
  perfectPredictions(),
  neverPredicted(),
  float32Softmax(),
  singlePresentClass(),
];

describe('classificationReport vs scikit-learn', () => {
  const oracle = new Map<string, OracleResult>();
  const reports = new Map<string, ClassificationReport>();
  // Each comparison rethrows this error, so a missing Python fails every test
  // that needs scikit-learn instead of skipping it.
  let oracleError: unknown;

  beforeAll(() => {
    try {
      for (const result of runOracle(CASES)) {
        oracle.set(result.name, result);
      }
    } catch (error) {
      oracleError = error;
    }
    for (const c of CASES) {
      reports.set(c.name, classificationReport(c.yTrue, c.probabilities, CLASS_NAMES));
    }
  });

  for (const c of CASES) {
    describe(c.name, () => {
      const reference = (): OracleResult => {
        if (oracleError !== undefined) {
          throw oracleError;
        }
        const result = oracle.get(c.name);
        if (result === undefined) {
          throw new Error(`The scikit-learn oracle returned no result for case "${c.name}".`);
        }
        return result;
      };
      const report = (): ClassificationReport => reports.get(c.name) as ClassificationReport;

      it('argmax matches numpy', () => {
        expect(Array.from(argmaxRows(c.probabilities, K))).toEqual(reference().y_pred);
      });

      it('accuracy matches', () => {
        expectClose(report().accuracy, reference().accuracy, 'accuracy');
      });

      it('sample count and classes', () => {
        const present = reference().present.map((index) => CLASS_NAMES[index]);
        expect(report().numSamples).toBe(c.yTrue.length);
        expect(report().classNames).toEqual(CLASS_NAMES);
        expect(report().presentClasses).toEqual(present);
        expect(report().absentClasses).toEqual(CLASS_NAMES.filter((name) => !present.includes(name)));
      });

      it('per-class scores match', () => {
        const { precision, recall, f1, support } = reference();
        expect(report().perClass.length).toBe(K);
        report().perClass.forEach((metrics, index) => {
          expect(metrics.index).toBe(index);
          expect(metrics.className).toBe(CLASS_NAMES[index]);
          expectClose(metrics.precision, precision[index] as OracleNumber, `precision of ${metrics.className}`);
          expectClose(metrics.recall, recall[index] as OracleNumber, `recall of ${metrics.className}`);
          expectClose(metrics.f1, f1[index] as OracleNumber, `f1 of ${metrics.className}`);
          expect(metrics.support, `support of ${metrics.className}`).toBe(support[index]);
        });
      });

      it('macro and weighted averages', () => {
        const { macro, weighted } = reference();
        expectClose(report().macro.precision, macro.precision, 'macro precision');
        expectClose(report().macro.recall, macro.recall, 'macro recall');
        expectClose(report().macro.f1, macro.f1, 'macro f1');
        expectClose(report().weighted.precision, weighted.precision, 'weighted precision');
        expectClose(report().weighted.recall, weighted.recall, 'weighted recall');
        expectClose(report().weighted.f1, weighted.f1, 'weighted f1');
      });

      it('macroF1 helper matches', () => {
        const predictions = argmaxRows(c.probabilities, K);
        expectClose(macroF1(c.yTrue, predictions, K), reference().macro_f1, 'macroF1');
      });

      it('log loss matches', () => {
        expectClose(report().logLoss, reference().log_loss, 'log loss');
      });

      it('confusion matrix matches', () => {
        expect(report().confusionMatrix).toEqual(reference().confusion_matrix);
        const predictions = argmaxRows(c.probabilities, K);
        expect(confusionMatrix(c.yTrue, predictions, K)).toEqual(reference().confusion_matrix);
      });

      it('ROC curves match', () => {
        const expectedCurves = reference().roc;
        expect(report().roc.map((curve) => curve.index)).toEqual(expectedCurves.map((curve) => curve.index));
        report().roc.forEach((curve, k) => {
          const expected = expectedCurves[k] as OracleRoc;
          expect(curve.className).toBe(CLASS_NAMES[curve.index]);
          expectArrayClose(curve.fpr, expected.fpr, `fpr of ${curve.className}`);
          expectArrayClose(curve.tpr, expected.tpr, `tpr of ${curve.className}`);
          expectArrayClose(curve.thresholds, expected.thresholds, `thresholds of ${curve.className}`);
        });
      });

      it('AUC values match', () => {
        const expectedCurves = reference().roc;
        report().roc.forEach((curve, k) => {
          const expected = expectedCurves[k] as OracleRoc;
          expectClose(curve.auc, expected.auc, `auc of ${curve.className}`);
          expectClose(curve.auc, expected.roc_auc_score, `roc_auc_score of ${curve.className}`);
        });
        expectClose(report().macroAuc, reference().macro_auc, 'macro AUC');
      });

      // sklearn prints the same table only when no class is absent, as the oracle explains.
      if (new Set(c.yTrue).size === K) {
        for (const digits of TEXT_DIGITS) {
          it(`text table, ${digits} digits`, () => {
            const expected = reference().texts[String(digits)];
            expect(expected, 'oracle text').toBeTypeOf('string');
            expect(reportToText(report(), { digits }).startsWith(expected as string)).toBe(true);
          });
        }
      }
    });
  }

  it('absent neutral is predicted', () => {
    const c = CASES[1] as MetricsCase;
    expect(Array.from(argmaxRows(c.probabilities, K))).toContain(4);
  });

  it('absent neutral listed', () => {
    const report = reports.get('absent neutral class') as ClassificationReport;
    expect(report.absentClasses).toEqual(['neutral']);
    expect(report.perClass[4]?.support).toBe(0);
    expect(report.roc.map((curve) => curve.className)).not.toContain('neutral');
  });

  it('tied scores have ties', () => {
    const report = reports.get('tied scores') as ClassificationReport;
    const curve = report.roc[0] as ClassificationReport['roc'][number];
    // 250 samples with 11 possible scores: each curve has far fewer points than samples.
    expect(curve.thresholds.length).toBeLessThanOrEqual(12);
  });

  it('tied scores include zero', () => {
    const c = CASES[2] as MetricsCase;
    const rows = toRows(c.probabilities);
    const zeroOnTrueClass = c.yTrue.some((label, i) => rows[i]?.[label] === 0);
    expect(zeroOnTrueClass).toBe(true);
  });

  it('never predicted class', () => {
    const report = reports.get('never predicted class') as ClassificationReport;
    const fear = report.perClass[2];
    expect(fear?.support).toBeGreaterThan(0);
    expect(fear?.precision).toBe(0);
    expect(fear?.recall).toBe(0);
    expect(report.confusionMatrix.every((row) => row[2] === 0)).toBe(true);
  });

  it('float32 rows miss 1', () => {
    const c = CASES[5] as MetricsCase;
    const sums = toRows(c.probabilities).map((row) => row.reduce((a, b) => a + b, 0));
    expect(sums.some((sum) => sum !== 1)).toBe(true);
  });

  it('perfect predictions score 1', () => {
    const report = reports.get('perfect predictions') as ClassificationReport;
    expect(report.accuracy).toBe(1);
    expect(report.macro.f1).toBe(1);
    expect(report.macroAuc).toBe(1);
  });

  it('single class has no ROC', () => {
    const report = reports.get('single present class') as ClassificationReport;
    expect(report.roc).toEqual([]);
    expect(report.macroAuc).toBeNaN();
  });
});

// ---------------------------------------------------------------------------
// Text and CSV output

describe('report rendering', () => {
  const absentCase = absentNeutral();
  const report = classificationReport(absentCase.yTrue, absentCase.probabilities, CLASS_NAMES);

  it('text names absent classes', () => {
    const text = reportToText(report);
    expect(text).toContain(
      'metrics cover the classes present in the data: anger, disgust, fear, happiness, sadness, surprise; ' +
        'absent: neutral',
    );
  });

  it('text shows log loss', () => {
    expect(reportToText(report)).toContain(`log loss: ${report.logLoss.toFixed(4)}`);
  });

  it('text shows macro AUC', () => {
    expect(reportToText(report)).toContain(`macro AUC: ${report.macroAuc.toFixed(4)}`);
  });

  it('text omits absent line', () => {
    const c = randomSevenClass();
    const full = classificationReport(c.yTrue, c.probabilities, CLASS_NAMES);
    expect(reportToText(full)).not.toContain('absent:');
  });

  it('text marks undefined AUC', () => {
    const c = singlePresentClass();
    const single = classificationReport(c.yTrue, c.probabilities, CLASS_NAMES);
    expect(reportToText(single)).toContain('macro AUC: undefined');
  });

  it('text rounds halves to even', () => {
    // 0.125 and 0.375 are exact in binary, so Python's format rounds them to even: 0.12 and 0.38.
    const halves: ClassificationReport = {
      ...report,
      perClass: report.perClass.map((metrics) => ({ ...metrics, precision: 0.125, recall: 0.375 })),
    };
    const angerLine = reportToText(halves)
      .split('\n')
      .find((line) => line.trim().startsWith('anger'));
    expect(angerLine?.trim().split(/\s+/).slice(1, 3)).toEqual(['0.12', '0.38']);
  });

  it('CSV has one row each', () => {
    const lines = reportToCsv(report).trimEnd().split('\n');
    expect(lines[0]).toBe('class,precision,recall,f1-score,support');
    expect(lines.length).toBe(1 + K + 2);
    expect(lines.slice(1, 1 + K).map((line) => line.split(',')[0])).toEqual(CLASS_NAMES);
    expect(lines[1 + K]?.split(',')[0]).toBe('macro avg');
    expect(lines[2 + K]?.split(',')[0]).toBe('weighted avg');
  });

  it('CSV keeps full precision', () => {
    const lines = reportToCsv(report).trimEnd().split('\n');
    const anger = lines[1]?.split(',').map(Number);
    expect(anger?.[1]).toBe(report.perClass[0]?.precision);
    expect(anger?.[4]).toBe(report.perClass[0]?.support);
    const weighted = lines[2 + K]?.split(',').map(Number);
    expect(weighted?.[3]).toBe(report.weighted.f1);
    expect(weighted?.[4]).toBe(report.numSamples);
  });

  it('CSV quotes class names', () => {
    const names = CLASS_NAMES.map((name, i) => (i === 0 ? 'anger, "hot"' : name));
    const quoted = classificationReport(absentCase.yTrue, absentCase.probabilities, names);
    expect(reportToCsv(quoted).split('\n')[1]?.startsWith('"anger, ""hot""",')).toBe(true);
  });
});

// ---------------------------------------------------------------------------
// Input validation

describe('metrics input validation', () => {
  const names = ['a', 'b', 'c'];
  const rows = [
    [0.7, 0.2, 0.1],
    [0.1, 0.8, 0.1],
  ];

  it('rejects empty yTrue', () => {
    expect(() => classificationReport([], [], names)).toThrow(/yTrue is empty/);
  });

  it('rejects label out of range', () => {
    expect(() => classificationReport([0, 3], rows, names)).toThrow(/yTrue\[1\] is 3, expected an integer class index in \[0, 2\]/);
  });

  it('rejects negative label', () => {
    expect(() => classificationReport([-1, 0], rows, names)).toThrow(/yTrue\[0\] is -1/);
  });

  it('rejects fractional label', () => {
    expect(() => classificationReport([0, 1.5], rows, names)).toThrow(/yTrue\[1\] is 1.5/);
  });

  it('rejects row count mismatch', () => {
    expect(() => classificationReport([0, 1, 2], rows, names)).toThrow(/2 rows but yTrue has 3 labels/);
  });

  it('rejects short probability row', () => {
    expect(() => classificationReport([0, 1], [[0.7, 0.2, 0.1], [0.5, 0.5]], names)).toThrow(
      /probabilities\[1\] has 2 values, expected 3/,
    );
  });

  it('rejects wrong flat length', () => {
    expect(() => classificationReport([0, 1], new Float32Array(5), names)).toThrow(
      /flat probabilities has 5 values, expected 2 samples \* 3 classes = 6/,
    );
  });

  it('rejects probability above 1', () => {
    expect(() => classificationReport([0, 1], [[1.5, -0.25, -0.25], [0.1, 0.8, 0.1]], names)).toThrow(
      /probabilities\[0\]\[0\] is 1.5, expected a probability in \[0, 1\]/,
    );
  });

  it('rejects negative flat probability', () => {
    const flat = Float64Array.from([0.7, 0.2, 0.1, 0.6, 0.5, -0.1]);
    expect(() => classificationReport([0, 1], flat, names)).toThrow(
      /probabilities\[5\] \(row 1, class 2\) is -0.1, expected a probability/,
    );
  });

  it('rejects NaN probability', () => {
    expect(() => classificationReport([0, 1], [[NaN, 0.5, 0.5], [0.1, 0.8, 0.1]], names)).toThrow(
      /probabilities\[0\]\[0\] is NaN, expected a finite score/,
    );
  });

  it('rejects rows not summing to 1', () => {
    expect(() => classificationReport([0, 1], [[0.7, 0.2, 0.1], [0.5, 0.5, 0.5]], names)).toThrow(
      /row 1 of probabilities sums to 1.5, expected 1/,
    );
  });

  it('rejects fewer than two classes', () => {
    expect(() => classificationReport([0], [[1]], ['only'])).toThrow(/classNames has 1 entries, expected at least 2/);
  });

  it('rejects duplicate class names', () => {
    expect(() => classificationReport([0, 1], rows, ['a', 'b', 'a'])).toThrow(/classNames contains "a" twice/);
  });

  it('argmaxRows takes lowest tie', () => {
    expect(Array.from(argmaxRows([[0.4, 0.4, 0.2], [0.1, 0.45, 0.45]], 3))).toEqual([0, 1]);
  });

  it('argmaxRows accepts logits', () => {
    expect(Array.from(argmaxRows(Float32Array.from([-3, -1, -2, 5, 2, 7]), 3))).toEqual([1, 2]);
  });

  it('argmaxRows rejects ragged flat', () => {
    expect(() => argmaxRows(new Float32Array(7), 3)).toThrow(/7 values, which is not a multiple of numClasses = 3/);
  });

  it('argmaxRows rejects infinite score', () => {
    expect(() => argmaxRows([[0, Infinity, 1]], 3)).toThrow(/probabilities\[0\]\[1\] is Infinity/);
  });

  it('confusionMatrix rejects length mismatch', () => {
    expect(() => confusionMatrix([0, 1], [0], 3)).toThrow(/yTrue has 2 labels but yPred has 1/);
  });

  it('confusionMatrix rejects bad prediction', () => {
    expect(() => confusionMatrix([0, 1], [0, 3], 3)).toThrow(/yPred\[1\] is 3/);
  });

  it('confusionMatrix counts by row', () => {
    expect(confusionMatrix([0, 0, 2], [1, 0, 2], 3)).toEqual([
      [1, 1, 0],
      [0, 0, 0],
      [0, 0, 1],
    ]);
  });

  it('macroF1 rejects empty input', () => {
    expect(() => macroF1([], [], 3)).toThrow(/macroF1: yTrue is empty/);
  });
});
