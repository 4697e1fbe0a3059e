"""Korean STS (KLUE-STS): the seed's preprocessing, cross-/bi-encoder training data, zero-shot
scoring, a `similarity(s1, s2) -> 0..5` predictor and the report tables.

Scores are trained on the 0-1 scale (score / 5) and reported on 0-5: the cross-encoder is an
`EncoderClassifier` regressing score / 5; the bi-encoder (SBERT) regresses the cosine of the two
mean-pooled embeddings onto score / 5 with MSE.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from polarkit import data, embed, score
from polarkit.tasks.classifier import EncoderClassifier, load_classifier, save_classifier

SCALE = 5.0  # KLUE-STS scores run 0-5
_NOT_KEPT = re.compile(r"[^ㄱ-ㅎㅏ-ㅣ가-힣0-9\s]")  # the seed kept Hangul, digits and spaces only


def clean(text: str) -> str:
    """Keep Hangul, digits and spaces; collapse whitespace."""
    return " ".join(_NOT_KEPT.sub("", str(text)).split())


def check(df: pd.DataFrame, name: str = "data") -> pd.DataFrame:
    """ValueError unless df has sentence1, sentence2, score in 0-5 and at least one row."""
    data.require_columns(df, ("sentence1", "sentence2", "score"), name)
    if len(df) == 0:
        raise ValueError(f"{name}: no rows left (empty split after filtering?)")
    bad = df[(df["score"] < 0) | (df["score"] > SCALE) | df["score"].isna()]
    if len(bad):
        raise ValueError(f"{name}: {len(bad)} score(s) outside 0-5, e.g. {bad['score'].head(3).tolist()}")
    return df


def preprocess(df: pd.DataFrame, do_clean: bool = True, dedup: bool = True) -> pd.DataFrame:
    """Seed preprocessing: optional cleaning, drop pairs whose cleaned text is empty, and
    de-duplicate on (sentence1, sentence2) (KLUE train 11,668 -> 11,661). Rows keep their columns."""
    check(df)
    out = df.copy()
    if do_clean:
        out["sentence1"], out["sentence2"] = out["sentence1"].map(clean), out["sentence2"].map(clean)
        out = out[(out["sentence1"] != "") & (out["sentence2"] != "")]
    if dedup:
        out = out.drop_duplicates(["sentence1", "sentence2"])
    return check(out.reset_index(drop=True), "after preprocessing")


def load_splits(
    do_clean: bool = True,
    dedup: bool = True,
    val_frac: float = 0.1,
    korsts: bool = False,
    n_train: int | None = None,
    n_val: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """({"train", "val", "test"} frames, counts table). KLUE train -> preprocess -> seeded 9:1 split;
    test = the official dev JSON (519 pairs, all kept), cleaned like the training text;
    `korsts` adds KorSTS train + dev to train only; n_* subsample after the split (None = all)."""
    raw = data.load_klue_sts("train")
    pre = preprocess(raw, do_clean, dedup)
    train, val = data.train_val_split(pre, val_frac, seed)
    counts = {
        "KLUE train (raw)": len(raw),
        "after preprocessing": len(pre),
        "train split": len(train),
        "val split": len(val),
    }
    if korsts:
        extra = preprocess(pd.concat([data.load_korsts("train"), data.load_korsts("dev")]), do_clean, dedup)
        train = pd.concat([train, extra.drop(columns=["source"])], ignore_index=True)
        counts["+ KorSTS train+dev"] = len(extra)
    test = check(data.load_klue_sts("dev"), "KLUE-STS dev")  # every official pair stays, even if cleaning empties it
    if do_clean:
        test = test.assign(sentence1=test["sentence1"].map(clean), sentence2=test["sentence2"].map(clean))
    splits = {
        "train": data.sample(train, n_train, seed),
        "val": data.sample(val, n_val, seed),
        "test": data.sample(test, n_test, seed),
    }
    for name, df in splits.items():
        check(df, f"{name} split")
    counts |= {f"used: {k}": len(v) for k, v in splits.items()}
    return splits, pd.Series(counts, name="pairs").to_frame()


# ---- EDA augmentation (Wei & Zou 2019): random deletion / random swap of words ----


def random_deletion(sentence: str, p: float, rng: np.random.Generator) -> str:
    """Drop each word with probability p; always keep at least one word."""
    words = sentence.split()
    if len(words) <= 1:
        return sentence
    kept = [w for w in words if rng.random() >= p]
    return " ".join(kept) if kept else words[int(rng.integers(len(words)))]


def random_swap(sentence: str, n: int, rng: np.random.Generator) -> str:
    """Swap two random word positions, n times."""
    words = sentence.split()
    for _ in range(n if len(words) > 1 else 0):
        i, j = rng.choice(len(words), size=2, replace=False)
        words[i], words[j] = words[j], words[i]
    return " ".join(words)


def augment(df: pd.DataFrame, frac: float = 0.2, p_delete: float = 0.1, n_swap: int = 1, seed: int = 0) -> pd.DataFrame:
    """New rows for a seeded `frac` of df: half by random deletion, half by random swap, applied to
    both sentences; the score is kept. Returns only the new rows (changed text), `augmented`=True."""
    if frac <= 0:
        return df.iloc[:0].assign(augmented=True)
    rng = np.random.default_rng(seed)
    rows = data.sample(df, int(round(frac * len(df))), seed, keep_order=False)
    swap = rng.random(len(rows)) < 0.5
    op = lambda s, sw: random_swap(s, n_swap, rng) if sw else random_deletion(s, p_delete, rng)  # noqa: E731
    rows["sentence1"] = [op(s, sw) for s, sw in zip(rows["sentence1"], swap)]
    rows["sentence2"] = [op(s, sw) for s, sw in zip(rows["sentence2"], swap)]
    seen = set(zip(df["sentence1"], df["sentence2"]))  # an unchanged pair would only be a duplicate
    changed = [pair not in seen for pair in zip(rows["sentence1"], rows["sentence2"])]
    return rows[changed].assign(augmented=True).reset_index(drop=True)


# ---- model inputs ----


def pair_lengths(df: pd.DataFrame, tokenizer) -> np.ndarray:
    """Token count of each (sentence1, sentence2) pair as the cross-encoder sees it, [N]."""
    enc = tokenizer(df["sentence1"].tolist(), df["sentence2"].tolist(), truncation=False, verbose=False)
    return np.array([len(x) for x in enc["input_ids"]])


def length_table(lengths: Sequence[int], max_length: int) -> pd.DataFrame:
    """Percentiles of token lengths and the share of pairs cut at max_length, as a one-row table."""
    x = np.asarray(lengths)
    row = {f"p{q}": float(np.percentile(x, q)) for q in (50, 90, 95, 99)}
    return pd.DataFrame(
        [
            {
                "n": len(x),
                "mean": float(x.mean()),
                **row,
                "max": int(x.max()),
                f"share > {max_length}": float((x > max_length).mean()),
            }
        ]
    )


def cross_dataset(df: pd.DataFrame, tokenizer, max_length: int = 128):
    """(datasets.Dataset of joint pairs with labels = score / 5, n_truncated)."""
    from polarkit.tasks.classifier import text_dataset

    check(df)
    return text_dataset(
        df.assign(target=df["score"] / SCALE),
        tokenizer,
        "sentence1",
        "sentence2",
        "target",
        max_length,
        label_dtype="float",
    )


def bi_dataset(df: pd.DataFrame, tokenizer, max_length: int = 64, prefix: str = ""):
    """(datasets.Dataset[input_ids_a, attention_mask_a, input_ids_b, attention_mask_b, labels, length],
    n_truncated): each sentence tokenised alone with `prefix` (e5: "query: "); labels = score / 5;
    a pair counts as truncated if either side is longer than max_length."""
    import datasets

    check(df)
    sides = [[prefix + str(s) for s in df[c]] for c in ("sentence1", "sentence2")]
    n_long = [np.array([len(x) for x in tokenizer(t, verbose=False)["input_ids"]]) > max_length for t in sides]
    a, b = (tokenizer(t, truncation=True, max_length=max_length) for t in sides)
    ds = datasets.Dataset.from_dict(
        {
            "input_ids_a": a["input_ids"],
            "attention_mask_a": a["attention_mask"],
            "input_ids_b": b["input_ids"],
            "attention_mask_b": b["attention_mask"],
            "labels": (df["score"] / SCALE).astype("float32").tolist(),
            "length": [max(len(x), len(y)) for x, y in zip(a["input_ids"], b["input_ids"])],
        }
    )
    return ds, int((n_long[0] | n_long[1]).sum())


class PairCollator:
    """Pads the a and b sides of a bi-encoder batch separately -> dict of [B, T] tensors + labels [B]."""

    def __init__(self, tokenizer):
        self.pad_id = tokenizer.pad_token_id or 0

    def _pad(self, seqs: list, value: int) -> torch.Tensor:
        out = torch.full((len(seqs), max(len(s) for s in seqs)), value, dtype=torch.long)
        for i, s in enumerate(seqs):
            out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        return out

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        batch = {}
        for side in ("a", "b"):
            batch[f"input_ids_{side}"] = self._pad([f[f"input_ids_{side}"] for f in features], self.pad_id)
            batch[f"attention_mask_{side}"] = self._pad([f[f"attention_mask_{side}"] for f in features], 0)
        batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.float32)
        return batch


class BiEncoder(nn.Module):
    """SBERT-style: one shared encoder, mean pooling, cosine of the two embeddings; MSE vs score / 5."""

    def __init__(self, encoder: nn.Module, pooling: str = "mean"):
        super().__init__()
        self.encoder, self.pooling = encoder, pooling

    @property
    def config(self):
        return self.encoder.config

    def embed(self, input_ids, attention_mask) -> torch.Tensor:
        """[B, T] ids -> [B, H] pooled embeddings."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return embed.pool(hidden, attention_mask, self.pooling)

    def forward(self, input_ids_a, attention_mask_a, input_ids_b, attention_mask_b, labels=None):
        """-> {"loss": MSE or None, "logits": cosine [B]}."""
        cos = nn.functional.cosine_similarity(
            self.embed(input_ids_a, attention_mask_a), self.embed(input_ids_b, attention_mask_b), dim=-1
        )
        loss = None if labels is None else nn.functional.mse_loss(cos, labels.to(cos.dtype))
        return {"loss": loss, "logits": cos}


def bi_scores(
    encoder: nn.Module,
    tokenizer,
    s1: Sequence[str],
    s2: Sequence[str],
    prefix: str = "",
    max_length: int = 64,
    batch_size: int = 64,
) -> np.ndarray:
    """Cosine of mean-pooled embeddings of s1[i] and s2[i], times 5, [N] (zero-shot or fine-tuned)."""
    kw = dict(prefix=prefix, max_length=max_length, batch_size=batch_size, progress=False)
    return (
        embed.pairwise_cos_sim(embed.encode(encoder, tokenizer, s1, **kw), embed.encode(encoder, tokenizer, s2, **kw))
        * SCALE
    )


# ---- predictor ----


class Similarity:
    """`similarity(s1, s2) -> float` in 0-5 from a trained cross-encoder or bi-encoder."""

    def __init__(
        self, model: nn.Module, tokenizer, family: str, max_length: int = 128, prefix: str = "", do_clean: bool = False
    ):
        check_family(family)
        self.model, self.tokenizer, self.family = model, tokenizer, family
        self.max_length, self.prefix, self.do_clean = max_length, prefix, do_clean

    def scores(self, s1: Sequence[str], s2: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Predicted scores [N], clipped to 0-5."""
        if self.do_clean:  # the model was trained on cleaned text: clean its inputs the same way
            s1, s2 = [clean(s) for s in s1], [clean(s) for s in s2]
        if self.family == "bi":
            enc = self.model.encoder if isinstance(self.model, BiEncoder) else self.model
            z = bi_scores(enc, self.tokenizer, s1, s2, self.prefix, self.max_length, batch_size)
        else:
            from polarkit.tasks.classifier import Predictor

            z = Predictor(self.model, self.tokenizer, [], self.max_length).logits(s1, s2, batch_size)[:, 0] * SCALE
        return np.clip(z, 0.0, SCALE)

    def __call__(self, s1: str, s2: str) -> float:
        return float(self.scores([s1], [s2])[0])

    def save(self, directory) -> Path:
        """Cross: `classifier.save_classifier`; bi: the encoder in HF format. Plus sts.json (family,
        prefix, ...)."""
        d = Path(directory)
        if self.family == "cross":
            save_classifier(self.model, self.tokenizer, d, ["score"], self.max_length)
        else:
            (self.model.encoder if isinstance(self.model, BiEncoder) else self.model).save_pretrained(d)
            self.tokenizer.save_pretrained(d)
        meta = {"family": self.family, "max_length": self.max_length, "prefix": self.prefix, "clean": self.do_clean}
        (d / "sts.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        return d

    @classmethod
    def load(cls, directory) -> Similarity:
        """The predictor saved by `save` (eval mode)."""
        from transformers import AutoModel, AutoTokenizer

        d = Path(directory)
        meta = json.loads((d / "sts.json").read_text(encoding="utf-8"))
        family = meta.get("family", meta.get("kind"))  # folders saved before the rename say "kind"
        if family == "cross":
            model, tok, _ = load_classifier(d)
        else:
            model, tok = AutoModel.from_pretrained(d).eval(), AutoTokenizer.from_pretrained(d)
        return cls(model, tok, family, meta["max_length"], meta["prefix"], meta["clean"])


def cross_encoder(encoder: nn.Module, pooling: str = "mean", dropout: float = 0.1) -> EncoderClassifier:
    """Cross-encoder: joint pair in, one regression output (score / 5)."""
    return EncoderClassifier(encoder, 1, pooling, "regression", dropout)


FAMILIES = ("bi", "cross")  # SBERT bi-encoder | cross-encoder (notebook 06's `family` parameter)


def check_family(family: str) -> str:
    """`family` if it is one of FAMILIES, else a ValueError listing them."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    return family


def build(family: str, encoder: nn.Module, pooling: str = "mean", dropout: float = 0.1) -> nn.Module:
    """BiEncoder (mean pooling) or cross-encoder (`pooling` under a regression head) on `encoder`."""
    check_family(family)
    return BiEncoder(encoder) if family == "bi" else cross_encoder(encoder, pooling, dropout)


def make_dataset(family: str, df: pd.DataFrame, tokenizer, max_length: int = 128, prefix: str = ""):
    """(datasets.Dataset for `family`, n_truncated): cross = joint pairs cut at max_length;
    bi = each sentence with `prefix`, cut at max_length (a pair counts once if either side is cut)."""
    check_family(family)
    if family == "cross":
        return cross_dataset(df, tokenizer, max_length)
    return bi_dataset(df, tokenizer, max_length, prefix)


def fit_kwargs(family: str, tokenizer) -> dict:
    """Extra `train.fit` arguments: the cross-encoder pads with the tokenizer; the bi-encoder pads each
    side itself and keeps the `length` column for the length-grouped sampler."""
    if family == "cross":
        return {"tokenizer": tokenizer}
    return {"collator": PairCollator(tokenizer), "remove_unused_columns": False}


# ---- report tables ----


def by_source(
    df: pd.DataFrame, pred_col: str = "pred", gold_col: str = "score", source_col: str = "source"
) -> pd.DataFrame:
    """Pearson, Spearman, F1@3 per source family (airbnb / policy / paraKQC) and overall."""
    fam = df[source_col].astype(str).str.split("-").str[0]
    rows = [
        {"source": name, "n": len(g), **score.similarity(g[gold_col], g[pred_col])}
        for name, g in df.groupby(fam, sort=True)
    ]
    rows.append({"source": "all", "n": len(df), **score.similarity(df[gold_col], df[pred_col])})
    return pd.DataFrame(rows)


def worst_pairs(df: pd.DataFrame, pred_col: str = "pred", gold_col: str = "score", k: int = 10) -> pd.DataFrame:
    """The k pairs with the largest |pred - gold|."""
    err = (df[pred_col] - df[gold_col]).abs()
    return df.assign(abs_error=err).nlargest(k, "abs_error").reset_index(drop=True)
