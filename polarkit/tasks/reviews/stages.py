"""Review-classification tasks as data: which dataset, which stages, and checked train/val/test/pool frames.

    data = load_task("keywords", "unsmile", n_train=2000, n_pool=500, seed=0)
    data.main.train        # DataFrame[text, label]  (label: int, or a 0/1 vector for "multi")
    data.main.kind         # "single" | "multi" | "pair"  (pair frames also carry `keyword`)

Tasks: sentiment (NSMC), keywords (UnSmile | NIKL categories, multi-label), keyword_sentiment
(NIKL | KSC: `(review, keyword) -> polarity` plus a keyword stage for the full pipeline).
Splits are drawn at the review level, so one review never sits in two of train/val/pool.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from polarkit import data as D
from polarkit.data import POLARITIES

TASKS = {"sentiment": ("nsmc",), "keywords": ("unsmile", "nikl"), "keyword_sentiment": ("nikl", "ksc")}
KINDS = ("single", "multi", "pair")
SENTIMENT_LABELS = ("부정", "긍정")  # NSMC label 0 / 1
TEST_SAMPLE_SEED = 0  # a fixed test sample: the same reviews are scored whatever the run's seed
# held-out split per dataset (its name goes into the metric keys, e.g. valid_micro_f1)
_HELD_OUT = {"nsmc": "test", "unsmile": "valid", "nikl": "dev", "ksc": "test"}


@dataclass
class Stage:
    """One classifier to train: frames with columns text[, keyword], label; label names; kind."""

    name: str
    kind: str
    labels: list[str]
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    pool: pd.DataFrame

    @property
    def pair_col(self) -> str | None:
        return "keyword" if self.kind == "pair" else None

    @property
    def label_dtype(self) -> str:
        return "multi" if self.kind == "multi" else "int"

    def y(self, split: str) -> np.ndarray:
        """Gold labels of a split: [N] class ids, or [N, C] 0/1 for multi-label."""
        col = getattr(self, split)["label"]
        return np.stack(col.to_numpy()).astype(int) if self.kind == "multi" else col.to_numpy().astype(int)

    def sizes(self) -> dict[str, int]:
        return {s: len(getattr(self, s)) for s in ("train", "val", "test", "pool")}


@dataclass
class TaskData:
    """A task's stages (the first is the main model) + for keyword_sentiment the held-out reviews'
    gold (keyword, polarity) pairs, the target of the pipeline score."""

    task: str
    dataset: str
    test_split: str
    stages: dict[str, Stage]
    reviews: pd.DataFrame | None = field(default=None)  # [text, pairs] of the held-out reviews

    @property
    def main(self) -> Stage:
        return next(iter(self.stages.values()))

    def summary(self) -> pd.DataFrame:
        """Rows per stage and split, and the number of classes."""
        return pd.DataFrame(
            [{"stage": s.name, "kind": s.kind, "classes": len(s.labels), **s.sizes()} for s in self.stages.values()]
        )


def check_task(task: str, dataset: str = "") -> str:
    """Validate task/dataset names; returns the dataset ('' -> the task's first)."""
    if task not in TASKS:
        near = difflib.get_close_matches(str(task), list(TASKS), n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ValueError(f"unknown task {task!r}{hint} (tasks: {', '.join(TASKS)})")
    dataset = dataset or TASKS[task][0]
    if dataset not in TASKS[task]:
        raise ValueError(f"task {task!r} has no dataset {dataset!r} (choose one of {TASKS[task]})")
    return dataset


def validate(
    df: pd.DataFrame,
    kind: str,
    labels,
    text_col: str = "text",
    label_col: str = "label",
    pair_col: str | None = None,
    source: str = "data",
) -> pd.DataFrame:
    """Raise a ValueError naming `source` on a missing column, an empty text, or labels outside
    `labels` (class ids 0..C-1; for multi-label a 0/1 vector of length C per row); returns df."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    D.require_columns(df, [text_col, label_col] + ([pair_col] if pair_col else []), source)
    for col in [text_col] + ([pair_col] if pair_col else []):
        empty = df.index[df[col].isna() | (df[col].astype(str).str.strip() == "")]
        if len(empty):
            raise ValueError(
                f"{source}: {len(empty)} empty {col!r} value(s), e.g. rows {list(empty[:5])}; "
                "drop or fill them before training"
            )
    bad = _bad_labels(df[label_col], kind, len(labels))
    if len(bad):
        raise ValueError(
            f"{source}: {len(bad)} label(s) outside the declared set (class ids 0..{len(labels) - 1} "
            f"for {list(labels)}{', as 0/1 vectors' if kind == 'multi' else ''}), e.g. "
            f"{df[label_col].loc[bad[:3]].tolist()} at rows {list(bad[:3])}"
        )
    return df


def _bad_labels(col: pd.Series, kind: str, n_classes: int) -> pd.Index:
    """Index of rows whose label is not a class id (or, for multi, not a 0/1 vector of length C)."""
    if kind == "multi":

        def ok(v):
            a = np.asarray(v)
            return a.shape == (n_classes,) and np.isin(a, (0, 1)).all()
    else:

        def ok(v):
            return isinstance(v, (int, np.integer)) and 0 <= v < n_classes

    return col.index[~col.map(ok).astype(bool)]


# ---- source reviews: one row per review, label = class id / 0-1 vector / list of pairs --------


def _source(dataset: str, split: str, n: int | None = None) -> pd.DataFrame:
    """Reviews of one split: nsmc/unsmile -> [text, label]; nikl/ksc -> [text, pairs]."""
    if dataset == "nsmc":
        seed = TEST_SAMPLE_SEED if split == "test" else 0
        return D.load_nsmc(split, n=n, seed=seed)[["text", "label"]]
    if dataset == "unsmile":
        df = D.load_unsmile(split, n=n, seed=TEST_SAMPLE_SEED)
        return pd.DataFrame({"text": df["text"], "label": list(df[list(D.UNSMILE_LABELS)].to_numpy())})
    if dataset == "nikl":
        df = D.load_nikl(split, n=n, seed=TEST_SAMPLE_SEED)
        return pd.DataFrame({"text": df["text"], "pairs": [sorted(set(a)) for a in df["annotations"]]})
    df = D.load_ksc(split)  # one row per (review, aspect): group into reviews
    df = df.assign(pair=list(zip(df["aspect"], df["polarity"])))
    out = df.groupby("text", sort=False)["pair"].agg(lambda s: sorted(set(s))).reset_index()
    return D.sample(out.rename(columns={"pair": "pairs"}), n, TEST_SAMPLE_SEED)


def _split_reviews(df: pd.DataFrame, n_train, n_pool, val_frac, seed):
    """Seeded review-level split -> (train, val, pool); pool first, then a sample of n_train + val."""
    order = np.random.default_rng(seed).permutation(len(df))
    pool = df.iloc[order[:n_pool]]
    rest = df.iloc[order[n_pool:]]
    if n_train is not None:
        rest = rest.iloc[: int(round(n_train / (1 - val_frac)))]
    n_val = int(round(val_frac * len(rest)))
    return rest.iloc[n_val:], rest.iloc[:n_val], pool


def _multi_hot(pairs_col: pd.Series, labels) -> list[np.ndarray]:
    index = {k: i for i, k in enumerate(labels)}
    out = []
    for pairs in pairs_col:
        v = np.zeros(len(labels), dtype=np.int64)
        v[[index[k] for k, _ in pairs if k in index]] = 1
        out.append(v)
    return out


def _explode(df: pd.DataFrame) -> pd.DataFrame:
    """[text, pairs] -> [text, keyword, label] one row per (review, keyword, polarity)."""
    rows = [(t, k, POLARITIES.index(p)) for t, pairs in zip(df["text"], df["pairs"]) for k, p in pairs]
    return pd.DataFrame(rows, columns=["text", "keyword", "label"])


def _stage(name, kind, labels, frames: dict[str, pd.DataFrame]) -> Stage:
    checked = {
        s: validate(
            f.reset_index(drop=True), kind, labels, pair_col="keyword" if kind == "pair" else None, source=f"{name}/{s}"
        )
        for s, f in frames.items()
    }
    return Stage(name, kind, list(labels), **checked)


def load_task(
    task: str,
    dataset: str = "",
    n_train: int | None = None,
    n_test: int | None = None,
    n_pool: int = 500,
    val_frac: float = 0.1,
    seed: int = 0,
) -> TaskData:
    """Load and check a task's frames. n_train: training reviews (None = all left after the pool);
    val_frac of them more form the validation set (early stopping, thresholds); n_test: a fixed
    sample of the held-out split (None = all); n_pool: unlabelled-pool reviews for active learning."""
    dataset = check_task(task, dataset)
    train, val, pool = _split_reviews(_source(dataset, "train"), n_train, n_pool, val_frac, seed)
    test = _source(dataset, _HELD_OUT[dataset], n_test)
    frames = {"train": train, "val": val, "test": test, "pool": pool}
    held = _HELD_OUT[dataset]
    if task == "sentiment":
        return TaskData(task, dataset, held, {"sentiment": _stage("sentiment", "single", SENTIMENT_LABELS, frames)})
    if dataset == "unsmile":
        return TaskData(task, dataset, held, {"keywords": _stage("keywords", "multi", D.UNSMILE_LABELS, frames)})
    keywords = _keyword_labels(dataset, train)
    kw = _stage(
        "keywords",
        "multi",
        keywords,
        {s: pd.DataFrame({"text": f["text"], "label": _multi_hot(f["pairs"], keywords)}) for s, f in frames.items()},
    )
    if task == "keywords":
        return TaskData(task, dataset, held, {"keywords": kw})
    pol = _stage("polarity", "pair", POLARITIES, {s: _explode(f) for s, f in frames.items()})
    return TaskData(
        task, dataset, held, {"polarity": pol, "keywords": kw}, reviews=test[["text", "pairs"]].reset_index(drop=True)
    )


def _keyword_labels(dataset: str, train: pd.DataFrame) -> list[str]:
    """KSC: its 5 aspects; NIKL: the official categories that occur in train (a class never seen
    in training cannot be learned; held-out pairs of other categories still count as misses)."""
    if dataset == "ksc":
        return list(D.KSC_ASPECTS)
    seen = {k for pairs in train["pairs"] for k, _ in pairs}
    return [c for c in D.NIKL_CATEGORIES if c in seen]


def label_counts(stage: Stage, split: str = "train") -> pd.Series:
    """Examples per class in one split (multi-label: rows carrying each class)."""
    y = stage.y(split)
    counts = y.sum(axis=0) if stage.kind == "multi" else np.bincount(y, minlength=len(stage.labels))
    return pd.Series(counts, index=stage.labels, name=f"{stage.name} {split}")
