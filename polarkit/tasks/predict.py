"""Task predictors behind `polarkit.load`, and the save functions that write a loadable model folder.

Every predictor here answers `predict(inputs, batch_size=64) -> list[dict]`, one dict per input, in
input order (batched and length-sorted by the task code underneath):

    TextClassifier    classification: {"label", "confidence", "probs"}; multilabel: {"labels": {name: p}
                      at or above each label's threshold, by p}, "probs"}      (a save_classifier folder)
    SimilarityScorer  sts: {"score": 0-5} per (sentence1, sentence2) pair     (an sts.Similarity folder)
    KeywordSentiment  keyword_sentiment: {"pairs": [(keyword, polarity)], "keywords": {name: p}}
                      (keywords/ + polarity/ classifier folders, per-keyword thresholds in the card)
    Encoder           encoder (jd-encoder): {"embedding": [H floats]}; `.encode(texts)` -> [N, H]

Each also answers `attention_parts()` -> [(HF encoder, tokenizer, prefix, joint_pair)]: what `polarkit
serve`'s /explain draws attention with, so the server never reaches inside a predictor.

Saving (what notebooks call when `register` is on; weights as safetensors, then the model card):

    save_classifier_model(dir, clf, tok, labels, "cola", max_length=64)      # or "sentiment", "keywords"
    save_sts_model(dir, similarity)                                           # "sts"
    save_keyword_sentiment(dir, kw_clf, pol_clf, tok, kw_labels, pol_labels, thresholds, max_length, prefix)
    save_encoder_card(dir, pooling="mean", prefix="query: ", max_length=512)  # after mlm.save_encoder
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from polarkit import predictors
from polarkit.tasks import classifier

LOADERS = {
    k: f"polarkit.tasks.predict:{v}.load"
    for k, v in (
        ("classification", "TextClassifier"),
        ("multilabel", "TextClassifier"),
        ("sts", "SimilarityScorer"),
        ("keyword_sentiment", "KeywordSentiment"),
        ("encoder", "Encoder"),
    )
}
# the validation metric each task registers by (notebook metric keys; see polarkit.registry.register)
VALIDATION_METRIC = {
    "cola": "heldout_mcc",
    "sts": "val_pearson",
    "sentiment": "val_accuracy",
    "keywords": "val_micro_f1",
    "keyword_sentiment": "val_keywords_micro_f1",
    "jd-encoder": "heldout_adapted_loss",
}


def _quantized(model, quantize: bool):
    return predictors.quantize_linear(model) if quantize else model


def attention_part(inner, joint: bool = True) -> tuple:
    """(Hugging Face encoder, tokenizer, prefix, joint_pair) of a model holder with `.model`, `.tokenizer`,
    `.prefix`, for attention views (`polarkit serve`'s /explain). joint_pair: a pair is one input (cross);
    False: each sentence is encoded alone (bi-encoder). ValueError when the model has no HF encoder."""
    model = inner.model
    encoder = model if hasattr(model, "set_attn_implementation") else getattr(model, "encoder", None)
    if encoder is None or not hasattr(encoder, "set_attn_implementation"):
        raise ValueError(f"{type(model).__name__} has no Hugging Face encoder: no attention view for it")
    return (encoder, inner.tokenizer, inner.prefix or "", joint)


class TextClassifier:
    """classification / multilabel predictor over `classifier.Predictor` (texts, or (text, pair) inputs)."""

    def __init__(
        self, predictor: classifier.Predictor, kind: str = "classification", thresholds=None, pair: bool = False
    ):
        self.predictor, self.kind, self.pair = predictor, kind, pair
        self.labels = predictor.labels
        self.thresholds = np.broadcast_to(
            np.asarray(0.5 if thresholds is None else thresholds, float), (len(self.labels),)
        )

    @classmethod
    def load(cls, directory, quantize: bool = False) -> TextClassifier:
        card = predictors.read_card(directory)
        p = classifier.Predictor.load(directory)
        p.model = _quantized(p.model, quantize)
        return cls(p, card["kind"], card.get("thresholds"), card.get("pair", False))

    def attention_parts(self) -> list[tuple]:
        return [attention_part(self.predictor)]

    def predict(self, inputs: Any, batch_size: int = 64) -> list[dict]:
        if self.pair:
            texts, pairs = predictors.as_pairs(inputs)
        else:
            texts, pairs = predictors.as_texts(inputs), None
        if not texts:
            return []
        probs = self.predictor.scores(texts, pairs, batch_size)
        if self.kind == "multilabel":
            return [
                {
                    "labels": {self.labels[j]: float(row[j]) for j in np.argsort(-row) if row[j] >= self.thresholds[j]},
                    "probs": dict(zip(self.labels, map(float, row))),
                }
                for row in probs
            ]
        return [
            {
                "label": self.labels[int(k)],
                "confidence": float(row[k]),
                "probs": dict(zip(self.labels, map(float, row))),
            }
            for row, k in zip(probs, probs.argmax(1))
        ]


class SimilarityScorer:
    """sts predictor over `sts.Similarity`: one 0-5 score per (sentence1, sentence2) pair."""

    def __init__(self, similarity):
        self.similarity = similarity

    @classmethod
    def load(cls, directory, quantize: bool = False) -> SimilarityScorer:
        from polarkit.tasks import sts

        sim = sts.Similarity.load(directory)
        sim.model = _quantized(sim.model, quantize)
        return cls(sim)

    def attention_parts(self) -> list[tuple]:
        return [attention_part(self.similarity, joint=self.similarity.family != "bi")]

    def predict(self, inputs: Any, batch_size: int = 64) -> list[dict]:
        first, second = predictors.as_pairs(inputs)
        if not first:
            return []
        return [{"score": float(s)} for s in self.similarity.scores(first, second, batch_size)]


class KeywordSentiment:
    """keyword_sentiment: keywords above their thresholds (at least one), then each keyword's polarity."""

    def __init__(
        self, keywords: classifier.Predictor, polarity: classifier.Predictor, thresholds, at_least_one: bool = True
    ):
        self.keywords, self.polarity, self.at_least_one = keywords, polarity, at_least_one
        self.thresholds = np.broadcast_to(np.asarray(thresholds, float), (len(keywords.labels),))

    @classmethod
    def load(cls, directory, quantize: bool = False) -> KeywordSentiment:
        d = Path(directory)
        card = predictors.read_card(d)
        kw, pol = classifier.Predictor.load(d / "keywords"), classifier.Predictor.load(d / "polarity")
        kw.model, pol.model = _quantized(kw.model, quantize), _quantized(pol.model, quantize)
        return cls(kw, pol, card.get("thresholds", 0.5), card.get("at_least_one", True))

    def attention_parts(self) -> list[tuple]:
        return [attention_part(self.keywords)]

    def predict(self, inputs: Any, batch_size: int = 64) -> list[dict]:
        from polarkit.tasks.reviews.evaluate import pipeline_pairs

        texts = predictors.as_texts(inputs)
        if not texts:
            return []
        kp = self.keywords.scores(texts, None, batch_size)
        pairs = pipeline_pairs(
            texts,
            kp,
            self.keywords.labels,
            self.thresholds,
            self.polarity.scores,
            at_least_one=self.at_least_one,
            batch_size=batch_size,
        )
        return [
            {
                "pairs": [tuple(p) for p in found],
                "keywords": {k: float(row[self.keywords.labels.index(k)]) for k, _ in found},
            }
            for found, row in zip(pairs, kp)
        ]


class Encoder:
    """encoder predictor (04's adapted encoder as `jd-encoder`): pooled sentence embeddings."""

    def __init__(self, model, tokenizer, pooling: str = "mean", prefix: str = "", max_length: int = 512):
        self.model, self.tokenizer = model, tokenizer
        self.pooling, self.prefix, self.max_length = pooling, prefix, max_length

    @classmethod
    def load(cls, directory, quantize: bool = False) -> Encoder:
        from polarkit import embed

        card = predictors.read_card(directory)
        model, tok = embed.load_encoder(str(directory))
        return cls(
            _quantized(model, quantize),
            tok,
            card.get("pooling", "mean"),
            card.get("prefix", ""),
            card.get("max_length") or 512,
        )

    def attention_parts(self) -> list[tuple]:
        return [attention_part(self)]

    def encode(self, texts: Any, batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """texts [N] -> float32 [N, H], the card's pooling and prefix."""
        from polarkit import embed

        return embed.encode(
            self.model,
            self.tokenizer,
            predictors.as_texts(texts),
            pooling=self.pooling,
            prefix=self.prefix,
            max_length=self.max_length,
            batch_size=batch_size,
            progress=progress,
        )

    def predict(self, inputs: Any, batch_size: int = 32) -> list[dict]:
        texts = predictors.as_texts(inputs)
        return [{"embedding": row.tolist()} for row in self.encode(texts, batch_size)] if texts else []


# ---- saving ----


def save_classifier_model(
    directory,
    model: classifier.EncoderClassifier,
    tokenizer,
    labels: Sequence[str],
    task: str,
    max_length: int = 128,
    prefix: str = "",
    thresholds=None,
    pair: bool = False,
) -> Path:
    """save_classifier + a model card (kind from the head: softmax -> classification, sigmoid -> multilabel;
    `thresholds`: per-label decision thresholds of a multilabel model, e.g. the validation-tuned ones)."""
    kind = {"single_label_classification": "classification", "multi_label_classification": "multilabel"}.get(
        model.problem_type
    )
    if kind is None:
        raise ValueError(
            f"save_classifier_model: a {model.problem_type} head is not a classifier (STS: save_sts_model)"
        )
    d = classifier.save_classifier(model, tokenizer, directory, labels, max_length=max_length, prefix=prefix)
    extra = {"thresholds": np.asarray(thresholds, float).tolist()} if thresholds is not None else {}
    predictors.save_model_card(
        d, task, LOADERS[kind], kind, labels=list(labels), max_length=max_length, prefix=prefix, pair=pair, **extra
    )
    return d


def save_sts_model(directory, similarity, task: str = "sts") -> Path:
    """`sts.Similarity.save` + a model card (kind sts: pairs in, 0-5 out)."""
    d = similarity.save(directory)
    predictors.save_model_card(
        d,
        task,
        LOADERS["sts"],
        "sts",
        family=similarity.family,
        max_length=similarity.max_length,
        prefix=similarity.prefix,
        labels=["score"],
    )
    return d


def save_keyword_sentiment(
    directory,
    keyword_model,
    polarity_model,
    tokenizer,
    keyword_labels: Sequence[str],
    polarity_labels: Sequence[str],
    thresholds,
    max_length: int = 128,
    prefix: str = "",
    task: str = "keyword_sentiment",
) -> Path:
    """Both stages (keywords/ and polarity/, each a save_classifier folder) + one card with the keyword thresholds."""
    d = Path(directory)
    classifier.save_classifier(keyword_model, tokenizer, d / "keywords", keyword_labels, max_length, prefix)
    classifier.save_classifier(polarity_model, tokenizer, d / "polarity", polarity_labels, max_length, prefix)
    predictors.save_model_card(
        d,
        task,
        LOADERS["keyword_sentiment"],
        "keyword_sentiment",
        labels=list(keyword_labels),
        polarities=list(polarity_labels),
        thresholds=np.broadcast_to(np.asarray(thresholds, float), (len(keyword_labels),)).tolist(),
        max_length=max_length,
        prefix=prefix,
        at_least_one=True,
    )
    return d


def save_encoder_card(
    directory, task: str = "jd-encoder", pooling: str = "mean", prefix: str = "", max_length: int = 512
) -> Path:
    """A model card for a from_pretrained encoder folder already written (e.g. by `mlm.save_encoder`)."""
    predictors.save_model_card(
        directory, task, LOADERS["encoder"], "encoder", pooling=pooling, prefix=prefix, max_length=max_length
    )
    return Path(directory)
