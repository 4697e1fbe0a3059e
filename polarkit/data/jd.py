"""KDT-AiVENGERS job descriptions (sectioned and free-text crawls), TestSheet, lectures and keyword
lists (MANIFEST §6).

All files are UTF-8 (two with a BOM, hence utf-8-sig) comma CSVs with multi-line quoted
cells; pandas' C parser handles them. Empty cells are read as "" (keep_default_na=False).
There is no hub copy of any of this.
"""

from __future__ import annotations

import json

import pandas as pd

from polarkit.data._io import locate, read_table, read_text, sample
from polarkit.data.registry import FREE_TEXT_JD_FILES, JUMPIT_FILES

# section order of the original prediction tensor [41, 5 x 768] (MANIFEST §6a)
JD_SECTIONS = ("자격요건", "우대조건", "복지", "회사소개", "주요업무")
JD_COLUMNS = ("회사명", "공고명", "직무내용", "자격요건", "우대조건", "주요업무", "복지", "회사소개", "출처 URL")
_KDT = "kdt_aivengers/"
_CSV = dict(encoding="utf-8-sig", keep_default_na=False)
# Jobplanet crawls use English names; job_classification -> 직무내용 is our addition
# (sampling_data's 직무내용 holds the same kind of value, e.g. "백엔드 개발").
_JOBPLANET_MAP = {
    "company_name": "회사명",
    "title": "공고명",
    "job_classification": "직무내용",
    "qualification": "자격요건",
    "preference": "우대조건",
    "main_task": "주요업무",
    "benefits": "복지",
    "company_intro": "회사소개",
    "href": "출처 URL",
}
JD_SOURCES = {
    "jumpit": JUMPIT_FILES,
    "jobplanet": (f"{_KDT}jd/jobplanet.csv",),
    "dataengineer": (f"{_KDT}jd/extracted_dataengineer.csv",),
}


def load_jd_sample() -> pd.DataFrame:
    """The 41 sample JDs the TestSheet indexes (row position = url idx) -> DataFrame[JD_COLUMNS]."""
    path = locate("jd", f"{_KDT}jd/sampling_data.csv")
    return read_table(path, JD_COLUMNS, 41, index_col=0, **_CSV)[list(JD_COLUMNS)]


def _read_source(source: str) -> pd.DataFrame:
    rename = {} if source == "jumpit" else _JOBPLANET_MAP
    required = list(rename) if rename else JD_COLUMNS
    frames = [read_table(locate("jd_corpus", rel), required, **_CSV) for rel in JD_SOURCES[source]]
    df = pd.concat(frames, ignore_index=True).rename(columns=rename)
    return df[list(JD_COLUMNS)].assign(source=source)


def load_jd_corpus(
    sources=("jumpit", "jobplanet", "dataengineer"), n: int | None = None, seed: int = 0
) -> pd.DataFrame:
    """JD corpus in one schema -> DataFrame[*JD_COLUMNS, source], one row per 출처 URL.

    Jumpit (21 files, 3,116 rows) has 2,724 unique URLs: repeats are the same posting crawled
    under another job category (only 직무내용 differs); the first is kept. Across sources the
    first listed source wins (jobplanet and dataengineer share 76 URLs).
    """
    unknown = set(sources) - set(JD_SOURCES)
    if unknown:
        raise ValueError(f"unknown JD source(s) {sorted(unknown)}; choose from {list(JD_SOURCES)}")
    df = pd.concat([_read_source(s) for s in sources], ignore_index=True)
    return sample(df.drop_duplicates("출처 URL", keep="first"), n, seed)


FREE_TEXT_SOURCES = tuple(FREE_TEXT_JD_FILES)  # wanted, saramin
_FREE_TEXT_ROWS = {"wanted": 60, "saramin": 386}


def load_free_text_jds(source: str = "wanted") -> pd.DataFrame:
    """Wanted (60) or Saramin (386) postings -> DataFrame[회사명, 공고명, 직무내용, document, 출처 URL,
    source]; `document` is the whole posting (채용공고상세, stripped): these crawls have no sections."""
    if source not in FREE_TEXT_SOURCES:
        raise ValueError(f"source must be one of {FREE_TEXT_SOURCES}, got {source!r}")
    df = read_table(
        locate("jd_free_text", FREE_TEXT_JD_FILES[source]),
        ["회사명", "채용공고명", "직무명", "채용공고상세", "출처"],
        _FREE_TEXT_ROWS[source],
        **_CSV,
    )
    return pd.DataFrame(
        {
            "회사명": df["회사명"],
            "공고명": df["채용공고명"],
            "직무내용": df["직무명"],
            "document": df["채용공고상세"].str.strip(),
            "출처 URL": df["출처"],
            "source": source,
        }
    )


def load_testsheet() -> pd.DataFrame:
    """TestSheet -> DataFrame[idx1, idx2, section, label] (38 pairs, 19 similar / 19 not).

    idx1/idx2 are row positions in load_jd_sample(); section is one of JD_SECTIONS. The sheet
    says 우대사항 where the JD columns say 우대조건; it is mapped to 우대조건 (the original
    code silently reused the previous section for those 6 rows).
    """
    path = locate("jd", f"{_KDT}testsheet/test_case.csv")
    raw = read_table(
        path, ["url1_idx", "url2_idx", "평가대상columns", "분류", "url1", "url2"], 38, encoding="utf-8-sig"
    )
    df = pd.DataFrame(
        {
            "idx1": raw["url1_idx"],
            "idx2": raw["url2_idx"],
            "section": raw["평가대상columns"].replace({"우대사항": "우대조건"}),
            "label": raw["분류"].astype("int64"),
        }
    )
    urls = load_jd_sample()["출처 URL"]
    for i in (1, 2):  # the sheet's URLs must be the JDs its indices point at
        if not (urls.iloc[raw[f"url{i}_idx"]].to_numpy() == raw[f"url{i}"].to_numpy()).all():
            raise ValueError(f"{path}: url{i} does not match sampling_data.csv row url{i}_idx")
    if not df["section"].isin(JD_SECTIONS).all():
        raise ValueError(f"{path}: sections {set(df['section']) - set(JD_SECTIONS)} not in {JD_SECTIONS}")
    return df


_LECTURES = {
    "udemy": (f"{_KDT}lectures/udemy_resultKE_prep.csv", 5_735, "가격(현재가격)"),
    "programmers": (f"{_KDT}lectures/prgms_ver01_230715.csv", 126, "가격(원가-할인가)"),
}


def load_lectures(source: str = "udemy") -> pd.DataFrame:
    """Lecture list ("udemy" 5,735 | "programmers" 126) -> DataFrame[강의명, 강의소개, 출처, ...];
    the price column is renamed to 가격, other columns are kept as crawled (text)."""
    if source not in _LECTURES:
        raise ValueError(f"source must be one of {tuple(_LECTURES)}, got {source!r}")
    rel, rows, price = _LECTURES[source]
    df = read_table(locate("lectures", rel), ["강의명", "강의소개", "출처", price], rows, **_CSV)
    return df.drop(columns=["Unnamed: 0"], errors="ignore").rename(columns={price: "가격"})


_WORD_LISTS = {"job_skills": "job_skills.csv", "udemy_skills": "udemy_skills.csv", "userwords": "userwords_ver01.csv"}


def load_keywords() -> dict[str, list[str]]:
    """{job_skills, udemy_skills, userwords} -> words (column 단어명), stripped, blanks and
    repeats dropped, file order kept (job_skills.csv has 126 blank lines: 523 words)."""
    out = {}
    for key, name in _WORD_LISTS.items():
        words = read_table(locate("keywords", f"{_KDT}keywords/{name}"), ["단어명"], dtype=str, **_CSV)[
            "단어명"
        ].str.strip()
        out[key] = list(dict.fromkeys(w for w in words if w))
    return out


def load_skill_aliases(source: str = "tech_stack") -> dict[str, list[str]]:
    """Canonical skill name -> aliases, from "tech_stack" (505 keys) or "skill" (18 keys)."""
    if source not in ("tech_stack", "skill"):
        raise ValueError(f"source must be 'tech_stack' or 'skill', got {source!r}")
    path = locate("keywords", f"{_KDT}keywords/{source}.json")
    text = read_text(path, "utf-8-sig")
    # skill.json is one JSON object followed by a pasted Python list: parse the object only
    obj, _ = json.JSONDecoder().raw_decode(text.lstrip())
    return {k: [v] if isinstance(v, str) else list(v) for k, v in obj.items()}
