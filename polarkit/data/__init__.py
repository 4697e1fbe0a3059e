"""Dataset loaders with one normalised schema per task (see shared/data/MANIFEST.md).

Data root: $POLARKIT_DATA, else ../shared/data next to the repo (`polarkit.environment.data_root`);
without either, loaders that have a hub id fall back to `datasets.load_dataset`. Every split loader
takes `n` (seeded sample without replacement; None or too big = whole split) and `seed`.

    text classification   load_cola, load_nsmc, load_unsmile   -> text, label(s)
    sentence similarity   load_klue_sts, load_korsts           -> sentence1, sentence2, score, ...
    aspect sentiment      load_nikl, load_ksc                  (POLARITIES: positive, negative, neutral)
    vision                load_mnist                           -> (uint8 [N,28,28], int64 [N])
    job descriptions      load_jd_sample, load_jd_corpus, load_free_text_jds, load_testsheet,
                          load_lectures, load_keywords, load_skill_aliases

Helpers for any frame: `require_columns(df, cols, source)` (ValueError naming source and columns),
`sample(df, n, seed)` (the package's one seeded sub-sample), `train_val_split(df, frac, seed)`.
"""

from __future__ import annotations

import pandas as pd

from polarkit.data._io import data_root, probe, require_columns, sample, train_val_split
from polarkit.data.absa import KSC_ASPECTS, NIKL_CATEGORIES, POLARITIES, load_ksc, load_nikl
from polarkit.data.glue import load_cola
from polarkit.data.jd import (
    FREE_TEXT_SOURCES,
    JD_COLUMNS,
    JD_SECTIONS,
    load_free_text_jds,
    load_jd_corpus,
    load_jd_sample,
    load_keywords,
    load_lectures,
    load_skill_aliases,
    load_testsheet,
)
from polarkit.data.registry import DATASETS, DatasetInfo
from polarkit.data.reviews import UNSMILE_LABELS, load_nsmc, load_unsmile
from polarkit.data.sts import load_klue_sts, load_korsts
from polarkit.data.vision import load_mnist

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "FREE_TEXT_SOURCES",
    "JD_COLUMNS",
    "JD_SECTIONS",
    "KSC_ASPECTS",
    "NIKL_CATEGORIES",
    "POLARITIES",
    "UNSMILE_LABELS",
    "check",
    "data_root",
    "load_cola",
    "load_free_text_jds",
    "load_jd_corpus",
    "load_jd_sample",
    "load_keywords",
    "load_klue_sts",
    "load_korsts",
    "load_ksc",
    "load_lectures",
    "load_mnist",
    "load_nikl",
    "load_nsmc",
    "load_skill_aliases",
    "load_testsheet",
    "load_unsmile",
    "require_columns",
    "sample",
    "train_val_split",
]


def check(names=None) -> pd.DataFrame:
    """Which files of `names` (default: all DATASETS) exist under the data root and can be read ->
    DataFrame[dataset, file, present, bytes, problem]; bytes is 0 when absent or when there is no
    root; problem is "" for a readable file, else why not ("missing", "empty file (0 bytes)", "not
    utf-8 text: ...", a parse error of the header and first rows; see `_io.probe`)."""
    names = list(DATASETS) if names is None else [names] if isinstance(names, str) else names
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        raise ValueError(f"unknown dataset(s) {unknown}; known: {list(DATASETS)}")
    root = data_root()
    rows = []
    for name in names:
        for rel in DATASETS[name].files:
            path = None if root is None else root / rel
            present = path is not None and path.is_file()
            problem = (probe(path) or "") if present else "missing" if root else "no data root"
            rows.append((name, rel, present, path.stat().st_size if present else 0, problem))
    return pd.DataFrame(rows, columns=["dataset", "file", "present", "bytes", "problem"])
