"""Compute the reference metrics of tests/metrics.test.ts with scikit-learn.

Reads {"cases": [{"name", "y_true", "probabilities", "class_names", "digits"}]}
as JSON on stdin, where probabilities contains N rows of K floats, and writes one
result per case as JSON on stdout. Infinity and NaN are written as the strings
"inf" and "nan", because JSON has no literal for them.
"""

import json
import math
import sys
import warnings

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    auc,
    classification_report,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)


def encode(value):
    """Convert numpy values to JSON-ready Python values, non-finite floats to strings."""
    if isinstance(value, np.ndarray):
        return [encode(item) for item in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [encode(item) for item in value]
    if isinstance(value, dict):
        return {key: encode(item) for key, item in value.items()}
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, np.integer):
        return int(value)
    return value


def averaged(y_true, y_pred, present, average):
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=present, average=average, zero_division=0
    )
    return {"precision": precision, "recall": recall, "f1": f1}


def evaluate(case):
    y_true = np.asarray(case["y_true"], dtype=np.int64)
    probabilities = np.asarray(case["probabilities"], dtype=np.float64)
    class_names = case["class_names"]
    num_classes = len(class_names)
    all_labels = list(range(num_classes))
    present = sorted(set(y_true.tolist()))
    y_pred = np.argmax(probabilities, axis=1)

    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=all_labels, average=None, zero_division=0
    )

    roc = []
    if len(present) >= 2:
        for c in present:
            is_positive = (y_true == c).astype(np.int64)
            fpr, tpr, thresholds = roc_curve(is_positive, probabilities[:, c])
            roc.append(
                {
                    "index": c,
                    "fpr": fpr,
                    "tpr": tpr,
                    "thresholds": thresholds,
                    "auc": auc(fpr, tpr),
                    "roc_auc_score": roc_auc_score(is_positive, probabilities[:, c]),
                }
            )
    macro_auc = float(np.mean([curve["auc"] for curve in roc])) if roc else float("nan")

    # sklearn's table matches reportToText only when no class is absent, because
    # reportToText lists absent classes while its averages leave them out.
    texts = {}
    if len(present) == num_classes:
        for digits in case["digits"]:
            texts[str(digits)] = classification_report(
                y_true,
                y_pred,
                labels=all_labels,
                target_names=class_names,
                digits=digits,
                zero_division=0,
            )

    return {
        "name": case["name"],
        "present": present,
        "y_pred": y_pred,
        "accuracy": accuracy_score(y_true, y_pred),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": support,
        "macro": averaged(y_true, y_pred, present, "macro"),
        "weighted": averaged(y_true, y_pred, present, "weighted"),
        "macro_f1": f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0),
        "log_loss": log_loss(y_true, probabilities, labels=all_labels),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=all_labels),
        "roc": roc,
        "macro_auc": macro_auc,
        "texts": texts,
    }


def main():
    request = json.load(sys.stdin)
    with warnings.catch_warnings():
        # Undefined precision of never-predicted classes and rows that do not
        # sum exactly to 1 are test cases here, not mistakes.
        warnings.simplefilter("ignore")
        results = [evaluate(case) for case in request["cases"]]
    json.dump(encode(results), sys.stdout)


if __name__ == "__main__":
    main()
