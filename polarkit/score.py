"""Pure scoring: arrays in, `dict[str, float]` out. No files, no plots, no polarkit imports.

Metric keys are `{prefix}{metric}`; callers pass prefix="test_" etc. to get `{split}_{metric}`.
"""
from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn import metrics as skm


def classification(y_true, y_pred, prefix: str = "", average: str = "binary") -> dict[str, float]:
    """Accuracy, Matthews correlation, F1 (binary or macro) for label vectors [N]."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    avg = average if len(np.union1d(y_true, y_pred)) <= 2 or average != "binary" else "macro"
    return {
        f"{prefix}accuracy": float(skm.accuracy_score(y_true, y_pred)),
        f"{prefix}mcc": float(skm.matthews_corrcoef(y_true, y_pred)),
        f"{prefix}f1": float(skm.f1_score(y_true, y_pred, average=avg, zero_division=0)),
    }


def softmax(logits) -> np.ndarray:
    """Row-wise softmax of [N, C] logits."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def similarity(gold, pred, prefix: str = "", threshold: float = 3.0) -> dict[str, float]:
    """Pearson, Spearman, and F1 of (pred >= threshold) vs (gold >= threshold), for scores [N]."""
    gold, pred = np.asarray(gold, dtype=float), np.asarray(pred, dtype=float)
    return {
        f"{prefix}pearson": float(stats.pearsonr(gold, pred)[0]),
        f"{prefix}spearman": float(stats.spearmanr(gold, pred)[0]),
        f"{prefix}f1": float(skm.f1_score(gold >= threshold, pred >= threshold, zero_division=0)),
    }


def multilabel(y_true, y_prob, threshold=0.5, prefix: str = "") -> dict[str, float]:
    """Micro/macro precision, recall, F1 of [N, C] 0/1 targets vs probabilities thresholded per class."""
    y_true = np.asarray(y_true).astype(int)
    y_pred = (np.asarray(y_prob) >= np.asarray(threshold)).astype(int)
    out = {}
    for avg in ("micro", "macro"):
        p, r, f, _ = skm.precision_recall_fscore_support(y_true, y_pred, average=avg, zero_division=0)
        out |= {f"{prefix}{avg}_precision": float(p), f"{prefix}{avg}_recall": float(r), f"{prefix}{avg}_f1": float(f)}
    return out


def ranking(labels, scores, prefix: str = "") -> dict[str, float]:
    """ROC-AUC and the accuracy at the best threshold, for binary labels [N] and scores [N]."""
    labels, scores = np.asarray(labels).astype(int), np.asarray(scores, dtype=float)
    fpr, tpr, _ = skm.roc_curve(labels, scores)
    n_pos, n_neg = labels.sum(), len(labels) - labels.sum()
    best_acc = float(np.max((tpr * n_pos + (1 - fpr) * n_neg) / len(labels)))
    return {f"{prefix}auc": float(skm.roc_auc_score(labels, scores)), f"{prefix}best_accuracy": best_acc}


def minmax_gap(labels, scores) -> float:
    """The seed team's TestSheet loss: mean |label - minmax(score)|; lower is better."""
    s = np.asarray(scores, dtype=float)
    span = s.max() - s.min()
    norm = (s - s.min()) / span if span > 0 else np.zeros_like(s)
    return float(np.mean(np.abs(np.asarray(labels, dtype=float) - norm)))
