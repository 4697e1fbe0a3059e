"""Pure scoring: arrays in, `dict[str, float]` out. No files, no plots, no polarkit imports.

Metric keys are `{key_prefix}{metric}`; callers pass key_prefix="test_" etc. to get `{split}_{metric}`.
Every metric carries its direction: `greater_is_better(name)` (losses, perplexity, the TestSheet gap,
errors and seconds are better lower), for checkpoint choice (`train.fit`) and for sorting runs (`report`).
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn import metrics as skm

# Metric names (the part after a `{split}_` key prefix) for which lower is better; every other metric
# polarkit writes (accuracy, mcc, f1, pearson, auc, ...) is better higher.
LOWER_IS_BETTER = ("loss", "perplexity", "seed_gap", "error", "error_rate", "mse", "mae", "rmse", "seconds")


def greater_is_better(name: str) -> bool:
    """False when `name` (e.g. "loss", "eval_loss", "test_seed_gap", "train_seconds") is one of
    LOWER_IS_BETTER or ends in "_" + one of them; True otherwise (an unknown metric is maximised)."""
    return not any(name == m or name.endswith("_" + m) for m in LOWER_IS_BETTER)


def classification(y_true, y_pred, key_prefix: str = "", average: str = "binary") -> dict[str, float]:
    """Accuracy, Matthews correlation, F1 (binary or macro) for label vectors [N]."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    avg = average if len(np.union1d(y_true, y_pred)) <= 2 or average != "binary" else "macro"
    return {
        f"{key_prefix}accuracy": float(skm.accuracy_score(y_true, y_pred)),
        f"{key_prefix}mcc": float(skm.matthews_corrcoef(y_true, y_pred)),
        f"{key_prefix}f1": float(skm.f1_score(y_true, y_pred, average=avg, zero_division=0)),
    }


def softmax(logits) -> np.ndarray:
    """Row-wise softmax of [N, C] logits."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def similarity(gold, pred, key_prefix: str = "", threshold: float = 3.0) -> dict[str, float]:
    """Pearson, Spearman, and F1 of (pred >= threshold) vs (gold >= threshold), for scores [N]."""
    gold, pred = np.asarray(gold, dtype=float), np.asarray(pred, dtype=float)
    return {
        f"{key_prefix}pearson": float(stats.pearsonr(gold, pred)[0]),
        f"{key_prefix}spearman": float(stats.spearmanr(gold, pred)[0]),
        f"{key_prefix}f1": float(skm.f1_score(gold >= threshold, pred >= threshold, zero_division=0)),
    }


def multilabel(y_true, y_prob, threshold=0.5, key_prefix: str = "") -> dict[str, float]:
    """Micro/macro precision, recall, F1 of [N, C] 0/1 targets vs probabilities thresholded per class."""
    y_true = np.asarray(y_true).astype(int)
    y_pred = (np.asarray(y_prob) >= np.asarray(threshold)).astype(int)
    out = {}
    for avg in ("micro", "macro"):
        p, r, f, _ = skm.precision_recall_fscore_support(y_true, y_pred, average=avg, zero_division=0)
        out |= {
            f"{key_prefix}{avg}_precision": float(p),
            f"{key_prefix}{avg}_recall": float(r),
            f"{key_prefix}{avg}_f1": float(f),
        }
    return out


def paired_bootstrap(diff, n: int, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of `diff(idx)` (e.g. metric of B on idx - metric of A on idx) over `resamples`
    resamples with replacement of the n examples both were scored on (paired: one idx for both)."""
    rng = np.random.default_rng(seed)
    d = [diff(rng.integers(0, n, n)) for _ in range(resamples)]
    return float(np.quantile(d, 0.025)), float(np.quantile(d, 0.975))


def ranking(labels, scores, key_prefix: str = "") -> dict[str, float]:
    """ROC-AUC and the accuracy at the best threshold, for binary labels [N] and scores [N]."""
    labels, scores = np.asarray(labels).astype(int), np.asarray(scores, dtype=float)
    fpr, tpr, _ = skm.roc_curve(labels, scores)
    n_pos, n_neg = labels.sum(), len(labels) - labels.sum()
    best_acc = float(np.max((tpr * n_pos + (1 - fpr) * n_neg) / len(labels)))
    return {f"{key_prefix}auc": float(skm.roc_auc_score(labels, scores)), f"{key_prefix}best_accuracy": best_acc}


def minmax_gap(labels, scores) -> float:
    """The seed team's TestSheet loss: mean |label - minmax(score)|; lower is better."""
    s = np.asarray(scores, dtype=float)
    span = s.max() - s.min()
    norm = (s - s.min()) / span if span > 0 else np.zeros_like(s)
    return float(np.mean(np.abs(np.asarray(labels, dtype=float) - norm)))


def per_class(y_true, y_pred, names) -> dict[str, dict[str, float]]:
    """Per-class precision, recall, F1, support of [N, C] 0/1 targets vs [N, C] 0/1 predictions
    (or [N] class ids, C = len(names)) -> {name: {precision, recall, f1, support}}."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = None if y_true.ndim == 2 else list(range(len(names)))
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, average=None, zero_division=0)
    return {
        str(n): {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": float(s[i])}
        for i, n in enumerate(names)
    }


def best_thresholds(y_true, y_prob, grid=None, default: float = 0.5) -> np.ndarray:
    """Per-class threshold [C] maximising F1 of (y_prob[:, c] >= t) on [N, C] targets/probabilities.

    Ties go to the threshold nearest `default`; a class without positives keeps `default`.
    """
    y_true, y_prob = np.asarray(y_true).astype(int), np.asarray(y_prob, dtype=float)
    grid = np.round(np.arange(0.05, 0.951, 0.05), 3) if grid is None else np.asarray(grid, dtype=float)
    order = np.argsort(np.abs(grid - default), kind="stable")  # first max = the one nearest default
    out = np.full(y_true.shape[1], float(default))
    for c in range(y_true.shape[1]):
        if y_true[:, c].sum() == 0:
            continue
        f1s = [skm.f1_score(y_true[:, c], y_prob[:, c] >= t, zero_division=0) for t in grid[order]]
        out[c] = grid[order][int(np.argmax(f1s))]
    return out


def pair_f1(gold_sets, pred_sets, key_prefix: str = "") -> dict[str, float]:
    """Micro precision/recall/F1 over (keyword, polarity) pairs: per review, gold and predicted
    collections of hashable pairs [N]; a predicted pair counts once if it is among that review's gold."""
    tp = n_pred = n_gold = 0
    for gold, pred in zip(gold_sets, pred_sets, strict=True):
        gold, pred = set(map(tuple, gold)), set(map(tuple, pred))
        tp, n_pred, n_gold = tp + len(gold & pred), n_pred + len(pred), n_gold + len(gold)
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {f"{key_prefix}pair_precision": p, f"{key_prefix}pair_recall": r, f"{key_prefix}pair_f1": f}
