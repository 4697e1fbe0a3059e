"""GLUE CoLA from the CoLA 1.1 public TSVs (MANIFEST §4), same splits as HF glue/cola."""

from __future__ import annotations

import csv

import pandas as pd

from polarkit.data._io import check_split, data_root, hub_frame, locate, read_table, sample

_COLA_COLUMNS = ["source", "label", "orig_label", "text"]  # headerless TSV
# GLUE validation = in-domain dev + out-of-domain dev, concatenated in this order
_COLA_FILES = {
    "train": (("cola/in_domain_train.tsv", 8_551),),
    "validation": (("cola/in_domain_dev.tsv", 527), ("cola/out_of_domain_dev.tsv", 516)),
}


def _read_cola_tsv(rel: str, rows: int) -> pd.DataFrame:
    # QUOTE_NONE: sentences contain literal quote characters that are not CSV quoting
    return read_table(
        locate("cola", rel),
        ["label", "text"],
        rows,
        sep="\t",
        header=None,
        names=_COLA_COLUMNS,
        quoting=csv.QUOTE_NONE,
        keep_default_na=False,
        dtype={"label": "int64"},
    )


def load_cola(split: str = "train", n: int | None = None, seed: int = 0) -> pd.DataFrame:
    """CoLA ("train" 8,551 | "validation" 1,043) -> DataFrame[text: str, label: int64 0/1]."""
    check_split(split, tuple(_COLA_FILES))
    if data_root() is None:
        df = hub_frame("cola", split, _COLA_FILES[split][0][0], ["text", "label"], rename={"sentence": "text"})
    else:
        df = pd.concat([_read_cola_tsv(rel, rows) for rel, rows in _COLA_FILES[split]], ignore_index=True)
    return sample(df[["text", "label"]], n, seed)
