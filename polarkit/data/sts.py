"""Korean STS: KLUE-STS v1.1 (MANIFEST §2) and KorSTS (§3), one schema for both.

Schema: sentence1, sentence2, score (float, 0-5), [source], binary (int64 0/1).
`binary` follows KLUE: official label = round(real-label, 1), binary = label >= 3.0.
KorSTS has no official binary label; the same rule is applied so F1@3.0 is comparable.
"""

from __future__ import annotations

import csv

import pandas as pd

from polarkit.data._io import (
    check_rows,
    check_split,
    data_root,
    hub_frame,
    locate,
    read_json,
    read_table,
    require_columns,
    sample,
)

_KLUE_FILES = {"train": "klue_sts/klue_sts_train.csv", "dev": "klue_sts/klue-sts-v1.1_dev.json"}
_KORSTS_FILES = {"train": "korsts/sts-train.tsv", "dev": "korsts/sts-dev.tsv"}
_KORSTS_HUB_SPLIT = {"train": "train", "dev": "valid"}


def add_binary(df: pd.DataFrame) -> pd.DataFrame:
    """Add `binary` = round(score, 1) >= 3.0 (KLUE's binary-label rule), int64."""
    return df.assign(binary=(df["score"].round(1) >= 3.0).astype("int64"))


def _klue_dev_local() -> pd.DataFrame:
    path = locate("klue_sts", _KLUE_FILES["dev"])
    df = pd.json_normalize(read_json(path))  # labels.{label, real-label, binary-label}
    require_columns(df, ["source", "sentence1", "sentence2", "labels.real-label", "labels.binary-label"], path)
    df = add_binary(df.rename(columns={"labels.real-label": "score"}))
    # the rule above must reproduce the official binary label (it does, 519/519)
    if not (df["binary"] == df["labels.binary-label"]).all():
        raise ValueError(f"{path}: round(real-label, 1) >= 3.0 disagrees with binary-label")
    return check_rows(df, 519, path)


def _klue_hub(split: str) -> pd.DataFrame:
    df = hub_frame(
        "klue_sts",
        {"dev": "validation"}.get(split, split),
        _KLUE_FILES[split],
        ["source", "sentence1", "sentence2", "labels"],
    )
    return df.assign(score=df["labels"].map(lambda d: d["real-label"]))


def load_klue_sts(split: str = "train", n: int | None = None, seed: int = 0) -> pd.DataFrame:
    """KLUE-STS ("train" 11,668 | "dev" 519) -> DataFrame[sentence1, sentence2, score, binary];
    dev also has `source` (airbnb-rtt, policy-sampled, ...). score = real-label (0-5)."""
    check_split(split, ("train", "dev"))
    if data_root() is None:
        df = _klue_hub(split)
    elif split == "train":
        # the CSV's `label` is KLUE's real-label (annotator mean), MANIFEST §2
        df = read_table(
            locate("klue_sts", _KLUE_FILES["train"]), ["sentence1", "sentence2", "label"], 11_668, keep_default_na=False
        )
        df = df.rename(columns={"label": "score"})
    else:
        df = _klue_dev_local()
    cols = ["sentence1", "sentence2", "score"] + (["source"] if split == "dev" else [])
    return sample(add_binary(df[cols]), n, seed)


def load_korsts(split: str = "train", n: int | None = None, seed: int = 0) -> pd.DataFrame:
    """KorSTS ("train" 5,749 | "dev" 1,500) -> DataFrame[sentence1, sentence2, score, source,
    binary]; source = the STS-B genre (main-captions / main-news / main-forums)."""
    check_split(split, ("train", "dev"))
    if data_root() is None:
        df = hub_frame("korsts", _KORSTS_HUB_SPLIT[split], _KORSTS_FILES[split], ["sentence1", "sentence2", "score"])
        df = df.assign(source=df["genre"] if "genre" in df else pd.NA)
    else:
        # QUOTE_NONE: some sentences start with a quote; default quoting merges rows
        df = read_table(
            locate("korsts", _KORSTS_FILES[split]),
            ["genre", "score", "sentence1", "sentence2"],
            {"train": 5_749, "dev": 1_500}[split],
            sep="\t",
            quoting=csv.QUOTE_NONE,
            keep_default_na=False,
        )
        df = df.rename(columns={"genre": "source"})
    return sample(add_binary(df[["sentence1", "sentence2", "score", "source"]]), n, seed)
