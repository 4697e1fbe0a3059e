"""Train one stage (sentiment / keywords / polarity) on an encoder: tokenise, build, fit.

enc, cut = stage_datasets(stage, tok, max_length=64, prefix="query: ")  # {split: Dataset}, truncation counts
clf = build(spec, stage, tok, pooling="mean", freeze_embeddings=True)
trainer, hist, seconds = train_stage(clf, stage, enc, tok, epochs=1, lr=5e-5, ...)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from polarkit import models, train
from polarkit.tasks import classifier
from polarkit.tasks.reviews.stages import Stage

_PROBLEM = {
    "single": "single_label_classification",
    "pair": "single_label_classification",
    "multi": "multi_label_classification",
}


def stage_datasets(
    stage: Stage, tokenizer, max_length: int = 128, splits=("train", "val", "test", "pool"), prefix: str = ""
) -> tuple[dict, pd.DataFrame]:
    """Tokenise a stage's splits -> ({split: datasets.Dataset}, table of texts cut at max_length);
    `prefix` goes before every review (e5 was trained with "query: ")."""
    out, rows = {}, []
    for s in splits:
        df = getattr(stage, s)
        if len(df) == 0:
            continue
        out[s], n_cut = classifier.text_dataset(
            df, tokenizer, pair_col=stage.pair_col, max_length=max_length, label_dtype=stage.label_dtype, prefix=prefix
        )
        rows.append(
            {
                "stage": stage.name,
                "split": s,
                "rows": len(df),
                "truncated": n_cut,
                "truncated_share": round(n_cut / len(df), 4),
            }
        )
    return out, pd.DataFrame(rows)


def build(
    spec: str,
    stage: Stage,
    tokenizer=None,
    pooling: str = "mean",
    freeze_embeddings: bool = False,
    dropout: float = 0.1,
    freeze_layers: int = 0,
    class_weight: str = "none",
) -> classifier.EncoderClassifier:
    """EncoderClassifier over `models.load_model(spec, head="encoder")` with one output per class
    (`scratch:*` specs take their vocabulary from `tokenizer`); `freeze_layers` > 0 also freezes all
    embeddings and the bottom layers. `class_weight="balanced"` weights a softmax stage's loss by
    n / (k · count) of its training labels (multi-label stages are left as they are: their
    thresholds are tuned on validation instead)."""
    if class_weight not in ("none", "balanced"):
        raise ValueError(f"class_weight must be 'none' or 'balanced', got {class_weight!r}")
    weights = (
        classifier.balanced_weights(stage.y("train"), len(stage.labels))
        if class_weight == "balanced" and stage.kind != "multi"
        else None
    )
    encoder = models.load_model(spec, head="encoder", tokenizer=tokenizer)
    clf = classifier.EncoderClassifier(
        encoder,
        num_labels=len(stage.labels),
        pooling=pooling,
        problem_type=_PROBLEM[stage.kind],
        dropout=dropout,
        class_weight=weights,
    )
    if freeze_embeddings:
        classifier.freeze_embeddings(clf)
    if freeze_layers:
        classifier.freeze_layers(clf, freeze_layers)
    prior_bias(clf, stage)
    return clf


def prior_bias(clf, stage: Stage, eps: float = 1e-3) -> np.ndarray:
    """Start the head at the training label prior: bias = logit(rate) per sigmoid class, log(share)
    per softmax class. Adam moves a bias by about lr per step, so from 0 a few hundred steps at 1e-4
    cannot reach logit(0.1) = -2.2: the loss would stay above the all-negative guess."""
    y = stage.y("train")
    rate = y.mean(axis=0) if stage.kind == "multi" else np.bincount(y, minlength=len(stage.labels)) / len(y)
    if clf.class_weight is not None:  # the weighted loss's best constant: rate · w, renormalised
        rate = rate * clf.class_weight.numpy()
        rate = rate / rate.sum()
    rate = np.clip(rate, eps, 1 - eps)
    bias = np.log(rate / (1 - rate)) if stage.kind == "multi" else np.log(rate)
    with torch.no_grad():
        clf.head.bias.copy_(torch.as_tensor(bias, dtype=clf.head.bias.dtype))
    return bias


BEST_METRICS = ("loss", "f1")


def stage_metric(stage: Stage, best_metric: str) -> str:
    """The validation metric that picks `stage`'s checkpoint: `loss`, or `f1` — micro-F1 for a
    multi-label stage, F1 for a softmax one (macro over more than 2 classes)."""
    if best_metric not in BEST_METRICS:
        raise ValueError(f"best_metric must be one of {list(BEST_METRICS)}, got {best_metric!r}")
    return "loss" if best_metric == "loss" else "micro_f1" if stage.kind == "multi" else "f1"


def train_stage(
    clf,
    stage: Stage,
    encoded: dict,
    tokenizer,
    *,
    epochs: float = 1.0,
    lr: float = 5e-5,
    batch_size: int = 32,
    max_steps: int = -1,
    evals_per_epoch: int = 2,
    patience: int | None = None,
    best_metric: str = "loss",
    seed: int = 0,
    **extra,
):
    """`polarkit.train.fit` with this stage's metrics; keeps the best checkpoint on val by `best_metric`
    (see `stage_metric`; checkpoints in fit's temporary folder, the best weights loaded back into `clf`)
    -> (trainer, history DataFrame, training seconds = `trainer.train_seconds`)."""
    metric = stage_metric(stage, best_metric)
    # macro F1 whenever a softmax stage has more than 2 classes (a small val split may lack one of them)
    compute = classifier.compute_metrics_for(
        "multilabel" if stage.kind == "multi" else "classification",
        average="binary" if len(stage.labels) == 2 else "macro",
    )
    trainer, hist = train.fit(
        clf,
        encoded["train"],
        encoded.get("val"),
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        max_steps=max_steps,
        evals_per_epoch=evals_per_epoch,
        patience=patience,
        metric=metric,
        tokenizer=tokenizer,
        seed=seed,
        compute_metrics=compute,
        **extra,
    )
    return trainer, hist, trainer.train_seconds
