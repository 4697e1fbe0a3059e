"""Korean review/comment classification: NSMC (MANIFEST §1, §11) and UnSmile (§8)."""

from __future__ import annotations

import csv
import functools

import pandas as pd

from polarkit.data._io import check_rows, check_split, data_root, hub_frame, locate, read_table, sample

_NSMC_TEST = "nsmc/ratings_test.txt"
_NSMC_DERIVED = "nsmc_derived/ratings_train_derived.txt"
NSMC_TRAIN_ROWS = 129_652  # derived train minus every id in the official test (MANIFEST §11)

UNSMILE_LABELS = (
    "여성/가족",
    "남성",
    "성소수자",
    "인종/국적",
    "연령",
    "지역",
    "종교",
    "기타 혐오",
    "악플/욕설",
    "clean",
)  # the 10 classes; 개인지칭 is an extra flag
_UNSMILE_FILES = {
    "train": ("unsmile/unsmile_train_v1.0.tsv", 15_005),
    "valid": ("unsmile/unsmile_valid_v1.0.tsv", 3_737),
}


def _read_nsmc_tsv(rel: str, rows: int) -> pd.DataFrame:
    # QUOTE_NONE: documents contain literal '"""' runs; keep_default_na: empty reviews stay ""
    return read_table(
        locate("nsmc", rel),
        ["id", "document", "label"],
        rows,
        sep="\t",
        quoting=csv.QUOTE_NONE,
        keep_default_na=False,
        dtype={"id": "int64", "label": "int64"},
    )


@functools.lru_cache(maxsize=2)
def _nsmc_local(root: str) -> dict[str, pd.DataFrame]:
    # `root` is only the cache key; callers get filtered copies, never these frames
    test = _read_nsmc_tsv(_NSMC_TEST, 50_000)
    derived = _read_nsmc_tsv(_NSMC_DERIVED, 150_000)
    # 20,348 official test reviews also sit in the derived train: drop them by id
    train = derived[~derived["id"].isin(test["id"])].reset_index(drop=True)
    check_rows(train, NSMC_TRAIN_ROWS, f"{_NSMC_DERIVED} minus ids in {_NSMC_TEST}")
    return {"train": train, "test": test}


def load_nsmc(split: str = "train", n: int | None = None, seed: int = 0, drop_empty: bool = True) -> pd.DataFrame:
    """NSMC -> DataFrame[id: int64, text: str, label: int64 (1 = positive)].

    "test" is the official file (50,000 rows, 3 with an empty text). "train" is the derived
    re-sample minus every test id (129,652 rows, 3 empty), so not the official train split.
    drop_empty=True (default) drops empty texts: 49,997 test / 129,649 train rows; sampling
    with `n` happens after the drop.
    """
    check_split(split, ("train", "test"))
    root = data_root()
    if root is None:  # the hub copy holds the official train (150,000) and test
        df = hub_frame("nsmc", split, _NSMC_TEST if split == "test" else _NSMC_DERIVED, ["id", "document", "label"])
    else:
        df = _nsmc_local(str(root))[split]
    df = df.rename(columns={"document": "text"})[["id", "text", "label"]]
    if drop_empty:
        df = df[df["text"].str.strip() != ""]
    return sample(df, n, seed)


def load_unsmile(split: str = "train", n: int | None = None, seed: int = 0) -> pd.DataFrame:
    """UnSmile v1.0 ("train" 15,005 | "valid" 3,737) -> DataFrame[text, *UNSMILE_LABELS]
    with int64 0/1 label columns (multi-label; 개인지칭 is dropped, as in HF `labels`)."""
    check_split(split, tuple(_UNSMILE_FILES))
    rel, rows = _UNSMILE_FILES[split]
    required = ["문장", *UNSMILE_LABELS]
    if data_root() is None:
        df = hub_frame("unsmile", split, rel, required)
    else:
        df = read_table(locate("unsmile", rel), required, rows, sep="\t", keep_default_na=False)
    df = df[required].rename(columns={"문장": "text"})
    return sample(df.astype({c: "int64" for c in UNSMILE_LABELS}), n, seed)
