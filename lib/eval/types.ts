/** Result types of the evaluation step, shared by metrics, figures and reports. */

export interface ClassMetrics {
  className: string;
  /** Index of the class in the model's output order. */
  index: number;
  precision: number;
  recall: number;
  f1: number;
  /** Number of true samples of this class. */
  support: number;
}

export interface AveragedMetrics {
  precision: number;
  recall: number;
  f1: number;
}

/** One-vs-rest ROC curve of one class, with the points sklearn.metrics.roc_curve returns. */
export interface RocCurve {
  className: string;
  index: number;
  fpr: number[];
  tpr: number[];
  /** Decreasing score thresholds; the first is +Infinity, as in scikit-learn 1.3 and later. */
  thresholds: number[];
  auc: number;
}

export interface ClassificationReport {
  /** All classes of the model, in output order. */
  classNames: string[];
  /** Classes with at least one true sample; macro averages and AUC cover only these. */
  presentClasses: string[];
  /** Classes of the model without any true sample in this data. */
  absentClasses: string[];
  numSamples: number;
  accuracy: number;
  /** One entry per model class, present or not (absent classes have support 0). */
  perClass: ClassMetrics[];
  macro: AveragedMetrics;
  weighted: AveragedMetrics;
  /** Mean categorical cross-entropy of the predicted probabilities. */
  logLoss: number;
  /** counts[trueIndex][predictedIndex] over all model classes. */
  confusionMatrix: number[][];
  /** ROC curves of the present classes only. */
  roc: RocCurve[];
  /** Unweighted mean of the present classes' AUC. */
  macroAuc: number;
}
