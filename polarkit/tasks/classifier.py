"""Text classification / regression on a pretrained encoder: tokenise, model, save, predict.

    ds, n_cut = text_dataset(df, tok, max_length=128)              # datasets.Dataset + truncations
    model = EncoderClassifier(models.load_model(spec, head="encoder"), num_labels=2)
    trainer, hist = train.fit(model, ds, val_ds, tokenizer=tok, compute_metrics=compute_metrics_for("classification"))
    save_classifier(model, tok, dir, labels); Predictor(*load_classifier(dir)).predict(["..."])

The head is our own linear layer on the [CLS] vector or the mean of the tokens, not
`*ForSequenceClassification`: packaged encoders (e5-small-ko, minilm-l6) carry no pooler, so
that class would put a randomly initialised pooler between the encoder and the head.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from polarkit import data, models, score
from polarkit.embed import pool

PROBLEMS = {"single_label_classification", "regression", "multi_label_classification"}
_KIND = {
    "classification": "single_label_classification",
    "single_label": "single_label_classification",
    "regression": "regression",
    "multilabel": "multi_label_classification",
    "multi_label": "multi_label_classification",
    **{p: p for p in PROBLEMS},
}
_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _require(df: pd.DataFrame, cols: Sequence[str]) -> None:
    data.require_columns(df, cols, "text_dataset")
    if len(df) == 0:
        raise ValueError("empty data frame: nothing to tokenize (did a filter remove every row?)")


def _labels(df: pd.DataFrame, label_col, label_dtype: str) -> list:
    """Label column(s) -> int list, float list, or list of float vectors (multi)."""
    if label_dtype == "int":
        return df[label_col].astype("int64").tolist()
    if label_dtype == "float":
        return df[label_col].astype("float32").tolist()
    if label_dtype == "multi":  # a list of 0/1 columns, or one column holding vectors
        cols = [label_col] if isinstance(label_col, str) else list(label_col)
        m = np.stack(df[cols[0]].to_numpy()) if len(cols) == 1 else df[cols].to_numpy()
        return m.astype("float32").tolist()
    raise ValueError(f"label_dtype must be 'int', 'float' or 'multi', got {label_dtype!r}")


def text_dataset(
    df: pd.DataFrame,
    tokenizer,
    text_col: str = "text",
    pair_col: str | None = None,
    label_col="label",
    max_length: int = 128,
    label_dtype: str = "int",
    prefix: str = "",
):
    """DataFrame -> (datasets.Dataset[input_ids, attention_mask, (token_type_ids), labels, length],
    number of rows longer than max_length). No padding: batches are padded dynamically.
    label_col=None gives a dataset without labels; for "multi" it may be a list of columns.
    `prefix` is prepended to every text (not to the pair), e.g. e5's "query: "."""
    import datasets

    label_cols = [] if label_col is None else [label_col] if isinstance(label_col, str) else list(label_col)
    _require(df, [text_col] + ([pair_col] if pair_col else []) + label_cols)
    texts = [prefix + t for t in df[text_col].astype(str)]
    pairs = df[pair_col].astype(str).tolist() if pair_col else None
    full = tokenizer(texts, pairs, truncation=False, verbose=False)["input_ids"]
    n_truncated = int(sum(len(ids) > max_length for ids in full))
    enc = tokenizer(texts, pairs, truncation=True, max_length=max_length)
    cols = {k: enc[k] for k in _MODEL_INPUTS if k in enc}
    cols["length"] = [len(ids) for ids in enc["input_ids"]]
    if label_col is not None:
        cols["labels"] = _labels(df, label_col, label_dtype)
    return datasets.Dataset.from_dict(cols), n_truncated


class EncoderClassifier(nn.Module):
    """encoder -> pool ([CLS] or mean) -> dropout -> linear [H -> num_labels]; loss by problem_type."""

    def __init__(
        self,
        encoder: nn.Module,
        num_labels: int = 2,
        pooling: str = "cls",
        problem_type: str = "single_label_classification",
        dropout: float = 0.1,
        class_weight: Sequence[float] | None = None,
    ):
        """class_weight: per-class weights of the softmax cross-entropy (e.g. `balanced_weights`)."""
        super().__init__()
        if problem_type not in PROBLEMS:
            raise ValueError(f"problem_type must be one of {sorted(PROBLEMS)}, got {problem_type!r}")
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
        self.encoder, self.pooling, self.problem_type = encoder, pooling, problem_type
        self.num_labels = 1 if problem_type == "regression" else num_labels
        self.dropout_p = dropout
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, self.num_labels)
        nn.init.normal_(self.head.weight, std=0.02)  # BERT's initializer_range
        nn.init.zeros_(self.head.bias)
        if class_weight is not None:
            if problem_type != "single_label_classification" or len(class_weight) != self.num_labels:
                raise ValueError(
                    f"class_weight needs a softmax head and {self.num_labels} weights, "
                    f"got {problem_type} and {len(class_weight)}"
                )
            class_weight = torch.as_tensor(class_weight, dtype=torch.float32)
        self.register_buffer("class_weight", class_weight, persistent=False)  # a loss setting, not a weight

    @property
    def config(self):
        """The encoder's config (Trainer and bertviz look for `model.config`)."""
        return self.encoder.config

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        """input_ids [B, T] -> {"loss": scalar or None, "logits": [B, num_labels]}."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        kw = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kw).last_hidden_state
        logits = self.head(self.dropout(pool(hidden, attention_mask, self.pooling)))
        return {"loss": None if labels is None else self._loss(logits, labels), "logits": logits}

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.problem_type == "regression":
            return nn.functional.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
        if self.problem_type == "multi_label_classification":
            return nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        weight = None if self.class_weight is None else self.class_weight.to(logits.dtype)
        return nn.functional.cross_entropy(logits, labels.long(), weight=weight)


def balanced_weights(y, num_labels: int) -> np.ndarray:
    """sklearn's "balanced" class weights n / (k · count) for labels 0..k-1 (a class absent from y
    counts once, so its weight stays finite)."""
    counts = np.bincount(np.asarray(y, dtype=int), minlength=num_labels)
    return len(y) / (num_labels * np.maximum(counts, 1))


def freeze_embeddings(model: nn.Module) -> int:
    """Freeze the encoder's word embeddings (~27% faster steps on e5-small's 250k vocab); returns #frozen."""
    emb = model.encoder.get_input_embeddings() if hasattr(model, "encoder") else model.get_input_embeddings()
    emb.weight.requires_grad_(False)
    return emb.weight.numel()


def freeze_layers(model: nn.Module, n: int) -> int:
    """Freeze the encoder's embeddings and its first `n` transformer layers; returns #frozen parameters.

    Backward then stops at layer n: with 6 of e5-small's 12 layers frozen a step costs ~2/3 as much.
    """
    enc = model.encoder if isinstance(model, EncoderClassifier) else model
    layers = getattr(getattr(enc, "encoder", None), "layer", None)
    if layers is None or not hasattr(enc, "embeddings"):
        raise ValueError(f"freeze_layers: {type(enc).__name__} has no BERT-style .embeddings/.encoder.layer")
    if not 0 <= n <= len(layers):
        raise ValueError(f"freeze_layers: n={n} outside 0..{len(layers)} (the encoder has {len(layers)} layers)")
    frozen = [enc.embeddings, *layers[:n]]
    for m in frozen:
        m.requires_grad_(False)
    return sum(models.n_params(m) for m in frozen)


def save_classifier(
    model: EncoderClassifier,
    tokenizer,
    directory,
    labels: Sequence[str],
    max_length: int | None = None,
    prefix: str = "",
) -> Path:
    """Write config.json (encoder), tokenizer files, classifier.json and model.safetensors into `directory`."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    model.encoder.config.save_pretrained(d)
    tokenizer.save_pretrained(d)
    meta = {
        "num_labels": model.num_labels,
        "pooling": model.pooling,
        "problem_type": model.problem_type,
        "dropout": model.dropout_p,
        "labels": list(labels),
        "max_length": max_length,
        "prefix": prefix,
    }
    (d / "classifier.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(d / "model.safetensors"))
    return d


def load_classifier(directory):
    """(EncoderClassifier in eval mode, tokenizer, labels) from a `save_classifier` folder."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    d = Path(directory)
    if not (d / "classifier.json").is_file():
        raise FileNotFoundError(f"{d}: no classifier.json (not written by polarkit.tasks.classifier.save_classifier)")
    meta = json.loads((d / "classifier.json").read_text(encoding="utf-8"))
    encoder = AutoModel.from_config(AutoConfig.from_pretrained(d))
    model = EncoderClassifier(encoder, meta["num_labels"], meta["pooling"], meta["problem_type"], meta["dropout"])
    model.load_state_dict(load_file(str(d / "model.safetensors")))
    return model.eval(), AutoTokenizer.from_pretrained(d), meta["labels"]


class Predictor:
    """Batched inference from a trained classifier: length-sorted batches, eval mode, no grad."""

    def __init__(
        self, model: EncoderClassifier, tokenizer, labels: Sequence[str], max_length: int = 128, prefix: str = ""
    ):
        self.model, self.tokenizer, self.labels, self.max_length = model, tokenizer, list(labels), max_length
        self.prefix = prefix  # prepended to every text, as in training (`text_dataset(prefix=...)`)

    @classmethod
    def load(cls, directory, max_length: int | None = None) -> Predictor:
        """Predictor from a `save_classifier` folder (max_length: the saved one, else 128; the saved prefix)."""
        meta = json.loads((Path(directory) / "classifier.json").read_text(encoding="utf-8"))
        return cls(
            *load_classifier(directory),
            max_length=max_length or meta.get("max_length") or 128,
            prefix=meta.get("prefix", ""),
        )

    @torch.no_grad()
    def logits(self, texts: Sequence[str], pairs: Sequence[str] | None = None, batch_size: int = 64) -> np.ndarray:
        """texts [N] (+ pairs [N]) -> logits [N, num_labels], in input order."""
        texts = [self.prefix + str(t) for t in texts]
        if pairs is not None and len(pairs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(pairs)} pairs")
        order = np.argsort(
            [-len(t) - (len(pairs[i]) if pairs is not None else 0) for i, t in enumerate(texts)], kind="stable"
        )  # similar lengths together: little padding per batch
        was_training, out = self.model.training, np.zeros((len(texts), self.model.num_labels), dtype=np.float32)
        self.model.eval()
        device = next(self.model.parameters()).device
        for s in range(0, len(texts), batch_size):
            idx = order[s : s + batch_size]
            enc = self.tokenizer(
                [texts[i] for i in idx],
                [pairs[i] for i in idx] if pairs is not None else None,
                truncation=True,
                max_length=self.max_length,
                padding=True,
                return_tensors="pt",
            )
            batch = {k: v.to(device) for k, v in enc.items() if k in _MODEL_INPUTS}
            out[idx] = self.model(**batch)["logits"].float().cpu().numpy()
        self.model.train(was_training)
        return out

    def scores(self, texts: Sequence[str], pairs: Sequence[str] | None = None, batch_size: int = 64) -> np.ndarray:
        """Probabilities [N, C] (softmax; sigmoid for multi-label) or raw values [N, 1] for regression."""
        z = self.logits(texts, pairs, batch_size)
        if self.model.problem_type == "single_label_classification":
            return score.softmax(z)
        return 1.0 / (1.0 + np.exp(-z)) if self.model.problem_type == "multi_label_classification" else z

    def predict(
        self, texts: Sequence[str], pairs: Sequence[str] | None = None, batch_size: int = 64, threshold: float = 0.5
    ) -> list[dict]:
        """[{"label", "score"}] per text: argmax class + its probability; multi-label: labels with
        p >= threshold + all probabilities; regression: {"label": name, "score": value}."""
        p = self.scores(texts, pairs, batch_size)
        if self.model.problem_type == "regression":
            name = self.labels[0] if self.labels else "score"
            return [{"label": name, "score": float(v)} for v in p[:, 0]]
        if self.model.problem_type == "multi_label_classification":
            return [
                {
                    "label": [self.labels[j] for j in np.flatnonzero(row >= threshold)],
                    "score": {lab: float(v) for lab, v in zip(self.labels, row)},
                }
                for row in p
            ]
        return [{"label": self.labels[int(k)], "score": float(row[k])} for row, k in zip(p, p.argmax(1))]


# the keys compute_metrics_for returns per problem type (score.classification / similarity / multilabel)
METRIC_NAMES = {
    "single_label_classification": ("accuracy", "mcc", "f1"),
    "regression": ("pearson", "spearman", "f1"),
    "multi_label_classification": tuple(
        f"{avg}_{m}" for avg in ("micro", "macro") for m in ("precision", "recall", "f1")
    ),
}


def compute_metrics_for(kind: str, scale: float = 5.0, threshold: float = 3.0, average: str = "binary") -> Callable:
    """A Trainer `compute_metrics` for "classification" (accuracy, mcc, f1 with `average`), "regression"
    (pearson, spearman, f1 at `threshold` after multiplying by `scale`) or "multilabel"."""
    problem = _KIND.get(kind)
    if problem is None:
        raise ValueError(f"kind must be one of {sorted(_KIND)}, got {kind!r}")

    def compute(eval_pred) -> dict[str, float]:
        logits, labels = eval_pred.predictions, eval_pred.label_ids
        logits = logits[0] if isinstance(logits, tuple) else logits
        if problem == "regression":
            return score.similarity(
                np.asarray(labels) * scale, np.asarray(logits).reshape(-1) * scale, threshold=threshold
            )
        if problem == "multi_label_classification":
            return score.multilabel(labels, 1.0 / (1.0 + np.exp(-np.asarray(logits))))
        return score.classification(labels, np.asarray(logits).argmax(-1), average=average)

    compute.names = METRIC_NAMES[problem]  # what train.fit may choose checkpoints by (besides loss)
    return compute


def confident_mistakes(
    df: pd.DataFrame, probs: np.ndarray, labels: Sequence[str], k: int = 10, label_col: str = "label"
) -> pd.DataFrame:
    """The k wrong predictions with the highest predicted probability: df rows + gold, predicted, confidence."""
    probs = np.asarray(probs)
    pred = probs.argmax(1)
    gold = df[label_col].to_numpy()
    out = df.assign(gold=[labels[g] for g in gold], predicted=[labels[p] for p in pred], confidence=probs.max(1))
    return out[pred != gold].nlargest(k, "confidence").drop(columns=[label_col]).reset_index(drop=True)
