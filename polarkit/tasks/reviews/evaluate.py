"""Scores, tables, the seed-shaped predictor, and the keyword -> polarity pipeline.

p = predictor.scores(stage.test["text"])                 # [N, C]
m = evaluate(stage, p, "test", key_prefix="test_")        # {test_accuracy, test_f1, ...}
table, thr = compare(stage, {"transformer": {"val": pv, "test": pt}, "tfidf": {...}}, "test")
pairs = pipeline_pairs(texts, kw_probs, kw_labels, thresholds, polarity_proba)
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd

from polarkit import score
from polarkit.tasks.reviews.explain import label_names
from polarkit.tasks.reviews.stages import POLARITIES, Stage


def stage_probs(proba: Callable, stage: Stage, split: str, batch_size: int = 64) -> np.ndarray:
    """Probabilities [N, C] of `proba(texts, pairs, batch_size=...)` on one split of a stage."""
    df = getattr(stage, split)
    pairs = df["keyword"].tolist() if stage.pair_col else None
    return np.asarray(proba(df["text"].tolist(), pairs, batch_size=batch_size))


def predicted(stage: Stage, probs, threshold=0.5) -> np.ndarray:
    """[N] class ids (argmax), or [N, C] 0/1 for multi-label (p >= threshold, scalar or [C])."""
    probs = np.asarray(probs)
    return (probs >= np.asarray(threshold)).astype(int) if stage.kind == "multi" else probs.argmax(axis=1)


def evaluate(stage: Stage, probs, split: str, threshold=0.5, key_prefix: str | None = None) -> dict[str, float]:
    """Metrics of a split: accuracy, MCC, macro F1 over every declared class (+ F1 of class 1 if binary);
    multi-label: micro/macro precision, recall, F1 and exact match. Keys `{key_prefix}{metric}`
    (default key_prefix: `{split}_`)."""
    key_prefix = f"{split}_" if key_prefix is None else key_prefix
    y, pred = stage.y(split), predicted(stage, probs, threshold)
    if stage.kind == "multi":
        out = score.multilabel(y, probs, threshold, key_prefix=key_prefix)
        return out | {f"{key_prefix}exact_match": float(np.mean((y == pred).all(axis=1)))}
    average = "binary" if len(stage.labels) == 2 else "macro"
    out = score.classification(y, pred, key_prefix=key_prefix, average=average)
    if len(stage.labels) > 2:  # sklearn's macro skips classes absent from both y and pred: use ours
        out.pop(f"{key_prefix}f1")
    macro = np.mean([c["f1"] for c in score.per_class(y, pred, stage.labels).values()])
    return out | {f"{key_prefix}macro_f1": float(macro)}


def errors(stage: Stage, probs, split: str, threshold=0.5) -> np.ndarray:
    """[N] 1 where the prediction is wrong (multi-label: any class wrong)."""
    y, pred = stage.y(split), predicted(stage, probs, threshold)
    return ((y != pred).any(axis=1) if stage.kind == "multi" else y != pred).astype(int)


def class_table(stage: Stage, probs, split: str, threshold=0.5) -> pd.DataFrame:
    """Per-class precision / recall / F1 / support, plus micro and macro rows (multi-label)."""
    y, pred = stage.y(split), predicted(stage, probs, threshold)
    table = pd.DataFrame(score.per_class(y, pred, stage.labels)).T
    table["support"] = table["support"].astype(int)
    if stage.kind == "multi":
        m = score.multilabel(y, probs, threshold)
        for avg in ("micro", "macro"):
            table.loc[f"({avg})"] = [m[f"{avg}_precision"], m[f"{avg}_recall"], m[f"{avg}_f1"], int(y.sum())]
    if threshold is not None and np.ndim(threshold) == 1:
        table["threshold"] = list(np.asarray(threshold, float)) + [np.nan] * (len(table) - len(stage.labels))
    return table


def compare(
    stage: Stage, probs: dict[str, dict[str, np.ndarray]], test_split: str, threshold: float = 0.5
) -> tuple[pd.DataFrame, dict]:
    """Score several models on the same val/test split: probs {model: {"val": [N, C], "test": [M, C]}}.
    Multi-label: also with per-class thresholds chosen on val (`tuned_*` columns, val only decides).
    -> (table: one row per model, columns `{split}_{metric}`; {model: thresholds [C] or the scalar})."""
    rows, chosen = {}, {}
    for name, p in probs.items():
        m = evaluate(stage, p["val"], "val", threshold) | evaluate(
            stage, p["test"], "test", threshold, key_prefix=f"{test_split}_"
        )
        chosen[name] = threshold
        if stage.kind == "multi":
            chosen[name] = score.best_thresholds(stage.y("val"), p["val"], default=threshold)
            m |= {
                k.replace("_", "_tuned_", 1): v
                for k, v in evaluate(stage, p["test"], "test", chosen[name], key_prefix=f"{test_split}_").items()
            }
        rows[name] = m
    return pd.DataFrame(rows).T, chosen


def flat_metrics(table: pd.DataFrame, main: str = "transformer", tag: str = "") -> dict[str, float]:
    """Table rows -> flat `{split}_{metric}` keys: the `main` row as is, other rows tagged after the
    split (row "tfidf": test_accuracy -> test_tfidf_accuracy); `tag` ("keywords_") marks a stage."""
    out = {}
    for name, row in table.iterrows():
        for key, v in row.items():
            split, _, metric = key.partition("_")
            out[f"{split}_{'' if name == main else name + '_'}{tag}{metric}"] = float(v)
    return out


def score_pipeline(
    data, keyword_proba: dict[str, Callable], polarity_proba: dict[str, Callable], threshold: float = 0.5
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """keyword_sentiment: score each model's keyword stage (val-chosen per-class thresholds), then its
    full pipeline (keywords -> polarity per keyword) on the held-out reviews by pair micro-F1.
    keyword_proba / polarity_proba: {model name: proba}. -> (keyword table, pipeline table,
    {model: predicted pairs per review})."""
    kw = data.stages["keywords"]
    probs = {n: {s: stage_probs(f, kw, s) for s in ("val", "test")} for n, f in keyword_proba.items()}
    table, chosen = compare(kw, probs, data.test_split, threshold)
    texts, gold = data.reviews["text"].tolist(), data.reviews["pairs"].tolist()
    pairs = {n: pipeline_pairs(texts, probs[n]["test"], kw.labels, chosen[n], polarity_proba[n]) for n in probs}
    pipe = {n: pipeline_scores(gold, p, key_prefix=f"{data.test_split}_") for n, p in pairs.items()}
    return table, pd.DataFrame(pipe).T, pairs


def prediction_frame(stage: Stage, probs, split: str, threshold=0.5) -> pd.DataFrame:
    """Per-example predictions: text, (keyword), gold, predicted, confidence, p_<class> columns."""
    df = getattr(stage, split)
    probs = np.asarray(probs)
    out = df[["text"] + (["keyword"] if stage.pair_col else [])].copy()
    gold = stage.y(split)
    out["gold"] = label_names(gold, stage.labels, "multi") if stage.kind == "multi" else [stage.labels[i] for i in gold]
    out["predicted"] = label_names(probs, stage.labels, stage.kind, threshold)
    out["confidence"] = probs.max(axis=1)
    return pd.concat([out, pd.DataFrame(probs, columns=[f"p_{c}" for c in stage.labels], index=out.index)], axis=1)


class ReviewPredictor:
    """The seed's predictor shape: predict(texts) -> [{text, label, confidence, probs}].

    proba: (texts, pairs, batch_size=...) -> [N, C], e.g. `polarkit.tasks.classifier.Predictor.scores`.
    Multi-label: label is the list of classes at or above their threshold; confidence = max p.
    """

    def __init__(self, proba: Callable, labels: Sequence[str], kind: str, threshold=0.5):
        self.proba, self.labels, self.kind, self.threshold = proba, list(labels), kind, threshold

    def predict(self, texts: Sequence[str], keywords: Sequence[str] | None = None, batch_size: int = 64) -> list[dict]:
        texts = [str(t) for t in texts]
        p = np.asarray(self.proba(texts, None if keywords is None else list(keywords), batch_size=batch_size))
        names = label_names(p, self.labels, self.kind, self.threshold)
        out = []
        for i, (t, row) in enumerate(zip(texts, p)):
            label = [n for n in names[i].split(", ") if n] if self.kind == "multi" else names[i]
            item = {
                "text": t,
                "label": label,
                "confidence": float(row.max()),
                "probs": {c: round(float(v), 4) for c, v in zip(self.labels, row)},
            }
            out.append(item | ({"keyword": keywords[i]} if keywords is not None else {}))
        return out


def pipeline_pairs(
    texts: Sequence[str],
    keyword_probs,
    keyword_labels: Sequence[str],
    threshold,
    polarity_proba: Callable,
    at_least_one: bool = True,
    batch_size: int = 64,
) -> list[list[tuple]]:
    """Full pipeline per review [N]: keywords with p >= threshold ([C] or scalar; the top one when none
    passes and at_least_one), then one batched polarity call on every (review, keyword) pair.
    -> [N] lists of (keyword, polarity) tuples."""
    kp = np.asarray(keyword_probs)
    chosen = kp >= np.asarray(threshold)
    if at_least_one:
        chosen[np.arange(len(kp)), kp.argmax(axis=1)] |= ~chosen.any(axis=1)
    rows, cols = np.nonzero(chosen)
    if len(rows) == 0:
        return [[] for _ in texts]
    pol = np.asarray(
        polarity_proba([str(texts[r]) for r in rows], [keyword_labels[c] for c in cols], batch_size=batch_size)
    ).argmax(axis=1)
    out: list[list[tuple]] = [[] for _ in texts]
    for r, c, k in zip(rows, cols, pol):
        out[r].append((keyword_labels[c], POLARITIES[k]))
    return out


def pipeline_scores(gold_pairs, pred_pairs, keyword_gold=None, key_prefix: str = "") -> dict[str, float]:
    """Pair micro-F1 (the NIKL metric) + keyword-only micro-F1 (pairs with polarity ignored)."""
    out = score.pair_f1(gold_pairs, pred_pairs, key_prefix=key_prefix)
    kw = score.pair_f1([{(k,) for k, _ in g} for g in gold_pairs], [{(k,) for k, _ in p} for p in pred_pairs])
    return out | {f"{key_prefix}pipeline_keyword_f1": kw["pair_f1"]}
