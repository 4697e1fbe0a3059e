"""Korean aspect-based sentiment: NIKL 2022 (MANIFEST §9a) and KSC 2021 food reviews (§9b).

Both are internal research data without a redistribution licence and without a hub copy.
"""

from __future__ import annotations

import pandas as pd

from polarkit.data._io import check_rows, check_split, locate, read_json, read_text, require_columns, sample

# The organiser's list of 25 valid entity#attribute pairs (teddysum/korean_ABSA_baseline
# README, 2022-10-05), whose '패키지/ 구성품#가격' typo is written as the data spells it.
# 4 entities x 7 attributes minus 패키지/구성품#인지도, 브랜드#편의성, 브랜드#다양성.
# train uses 22 of them and dev 21 (23 together).
NIKL_CATEGORIES = (
    "제품 전체#일반",
    "제품 전체#가격",
    "제품 전체#디자인",
    "제품 전체#품질",
    "제품 전체#편의성",
    "제품 전체#다양성",
    "제품 전체#인지도",
    "본품#일반",
    "본품#가격",
    "본품#디자인",
    "본품#품질",
    "본품#편의성",
    "본품#다양성",
    "본품#인지도",
    "패키지/구성품#일반",
    "패키지/구성품#가격",
    "패키지/구성품#디자인",
    "패키지/구성품#품질",
    "패키지/구성품#편의성",
    "패키지/구성품#다양성",
    "브랜드#일반",
    "브랜드#가격",
    "브랜드#디자인",
    "브랜드#품질",
    "브랜드#인지도",
)
POLARITIES = ("positive", "negative", "neutral")  # class ids 0, 1, 2 wherever polarity is a label
_NIKL_DIR = "korean_absa/nikluge_sa_2022/"
_NIKL_FILES = {
    "train": (f"{_NIKL_DIR}nikluge-sa-2022-train.jsonl", 3_001),
    "dev": (f"{_NIKL_DIR}nikluge-sa-2022-dev.jsonl", 2_794),
}

KSC_ASPECTS = ("가격", "맛", "배달", "서비스", "양")
_KSC_DIR = "korean_absa/food_review_ksc2021/"
_KSC_FILES = {
    "train": (f"{_KSC_DIR}food_review_Train.xml.seg", 5_044),
    "test": (f"{_KSC_DIR}food_review_Test.xml.seg", 1_249),
}
_KSC_POLARITY = {"-1": "negative", "0": "neutral", "1": "positive"}


def _pairs(annotation: list, path) -> list[tuple[str, str]]:
    """[[category, [target, begin, end], polarity], ...] -> [(category, polarity), ...]."""
    pairs = [(a[0], a[-1]) for a in annotation]
    bad = [p for p in pairs if p[0] not in NIKL_CATEGORIES or p[1] not in POLARITIES]
    if bad:
        raise ValueError(f"{path}: unknown (category, polarity) pair(s) {bad[:3]}")
    return pairs


def load_nikl(split: str = "train", n: int | None = None, seed: int = 0) -> pd.DataFrame:
    """NIKL ABSA ("train" 3,001 | "dev" 2,794) -> DataFrame[id, text, annotations] where
    annotations is a list of (category, polarity) pairs, category in NIKL_CATEGORIES.
    (The test file has no gold labels, so it is not offered; ~95% of pairs are positive.)"""
    check_split(split, tuple(_NIKL_FILES))
    rel, rows = _NIKL_FILES[split]
    path = locate("nikl_absa", rel)
    df = pd.DataFrame(read_json(path, lines=True))
    require_columns(df, ["id", "sentence_form", "annotation"], path)
    df = df.assign(annotations=[_pairs(a, path) for a in df["annotation"]])
    df = df.rename(columns={"sentence_form": "text"})[["id", "text", "annotations"]]
    return sample(check_rows(df, rows, path), n, seed)


def _parse_seg(path) -> pd.DataFrame:
    """ABSA-PyTorch .seg: 3 lines per instance (text with $T$, aspect, polarity -1/0/1)."""
    lines = read_text(path).rstrip("\n").split("\n")
    if len(lines) % 3:
        raise ValueError(f"{path}: {len(lines)} lines is not a multiple of 3")
    templates, aspects, polarities = lines[0::3], lines[1::3], lines[2::3]
    for i, (t, p) in enumerate(zip(templates, polarities)):
        if "$T$" not in t or p not in _KSC_POLARITY:
            raise ValueError(f"{path}: instance {i} (line {3 * i + 1}) has no $T$ or a polarity {p!r} outside -1/0/1")
    return pd.DataFrame(
        {
            "text": [t.replace("$T$", a) for t, a in zip(templates, aspects)],
            "aspect": aspects,
            "polarity": [_KSC_POLARITY[p] for p in polarities],
        }
    )


def load_ksc(split: str = "train", n: int | None = None, seed: int = 0) -> pd.DataFrame:
    """KSC 2021 food reviews ("train" 5,044 | "test" 1,249) -> DataFrame[text, aspect,
    polarity] with aspect in KSC_ASPECTS and polarity in negative / neutral / positive.
    One row per (review, aspect); 54 review templates occur in both train and test."""
    check_split(split, tuple(_KSC_FILES))
    rel, rows = _KSC_FILES[split]
    path = locate("ksc_absa", rel)
    return sample(check_rows(_parse_seg(path), rows, path), n, seed)
