"""Job-description (JD) matching: TestSheet scoring, mock JD from Q&A answers, JD and lecture recommendation.

    items = matching.testsheet_texts(sample, sheet)                    # the (JD, section) texts the sheet needs
    emb = embed.encode(model, tok, items["text"], prefix="query: ")
    sims = matching.testsheet_sims(items, emb, sheet)                  # [38] cosine per pair
    matching.testsheet_scores(sheet, sims, key_prefix="test_")         # auc, best_accuracy, seed_gap
    sections = matching.mock_jd({"job": ["백엔드"], "stack": ["Python"]})
    matching.recommend_lectures(jd_row, lectures, keywords, k=5)       # the seed's keyword-overlap logic

MANIFEST §6a-§6c describe the seed team's TestSheet, Q&A -> mock-JD mapping and lecture logic.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from polarkit import data, embed, predictors, runs, score
from polarkit.data import JD_SECTIONS

# Q&A answer key -> the mock-JD sections it feeds (MANIFEST §6c, QnA_mockJD.ipynb)
ANSWER_SECTIONS = {
    "personality": ("자격요건", "회사소개"),
    "stack": ("자격요건", "우대조건"),
    "welfare": ("복지",),
    "job": ("주요업무",),
    "domain": ("회사소개",),
}
# one sentence per (answer key, section); {items} is the comma-joined answers
TEMPLATES = {
    ("personality", "자격요건"): "{items} 성향을 갖춘 분",
    ("personality", "회사소개"): "{items} 인재와 함께 성장하는 회사",
    ("stack", "자격요건"): "{items} 사용 경험이 있는 분",
    ("stack", "우대조건"): "{items} 실무 경험 우대",
    ("welfare", "복지"): "{items} 지원",
    ("job", "주요업무"): "{items} 개발 업무",
    ("domain", "회사소개"): "{items} 분야의 회사",
}
DEFAULT_WELFARE = ["수습"]  # the seed's default when no welfare answer is given
LECTURE_SECTIONS = ("자격요건", "우대조건", "주요업무")  # what the seed's lecture logic reads of a JD


# ---- TestSheet ---------------------------------------------------------------------------


def testsheet_texts(sample: pd.DataFrame, sheet: pd.DataFrame) -> pd.DataFrame:
    """The unique (idx, section) texts the sheet compares -> DataFrame[idx, section, 회사명, text]."""
    keys = pd.concat(
        [
            sheet[["idx1", "section"]].rename(columns={"idx1": "idx"}),
            sheet[["idx2", "section"]].rename(columns={"idx2": "idx"}),
        ]
    ).drop_duplicates()
    keys = keys.sort_values(["section", "idx"]).reset_index(drop=True)
    if keys["idx"].max() >= len(sample):
        raise ValueError(f"sheet indexes row {keys['idx'].max()} but the sample has {len(sample)} JDs")
    keys["회사명"] = sample["회사명"].to_numpy()[keys["idx"]]
    keys["text"] = [str(sample.iloc[i][s]) for i, s in zip(keys["idx"], keys["section"])]
    return keys


def testsheet_sims(items: pd.DataFrame, emb: np.ndarray, sheet: pd.DataFrame) -> np.ndarray:
    """Cosine similarity [P] of each sheet pair, from embeddings [len(items), H] of `testsheet_texts`."""
    row = {(i, s): r for r, (i, s) in enumerate(zip(items["idx"], items["section"]))}
    a = [row[(i, s)] for i, s in zip(sheet["idx1"], sheet["section"])]
    b = [row[(i, s)] for i, s in zip(sheet["idx2"], sheet["section"])]
    return embed.pairwise_cos_sim(emb[a], emb[b])


def testsheet_scores(sheet: pd.DataFrame, sims, key_prefix: str = "") -> dict[str, float]:
    """ROC-AUC, accuracy at the best threshold, and the seed's minmax gap (lower is better)."""
    return {
        **score.ranking(sheet["label"], sims, key_prefix=key_prefix),
        f"{key_prefix}seed_gap": score.minmax_gap(sheet["label"], sims),
    }


def section_breakdown(sheet: pd.DataFrame, sims) -> pd.DataFrame:
    """Per section: pairs, similar pairs, mean similarity of similar / dissimilar pairs, AUC (if both kinds)."""
    df = sheet.assign(sim=np.asarray(sims, float))
    rows = []
    for sec, g in df.groupby("section", sort=False):
        both = g["label"].nunique() == 2
        rows.append(
            {
                "section": sec,
                "pairs": len(g),
                "similar": int(g["label"].sum()),
                "mean_sim_similar": g.loc[g.label == 1, "sim"].mean(),
                "mean_sim_dissimilar": g.loc[g.label == 0, "sim"].mean(),
                "auc": score.ranking(g["label"], g["sim"])["auc"] if both else np.nan,
            }
        )
    return pd.DataFrame(rows)


def pair_table(sheet: pd.DataFrame, sample: pd.DataFrame, sims) -> pd.DataFrame:
    """One row per pair: indices, companies, section, label, cosine, rank of the cosine (1 = most similar)."""
    sims = np.asarray(sims, float)
    return pd.DataFrame(
        {
            "idx1": sheet["idx1"],
            "idx2": sheet["idx2"],
            "company1": sample["회사명"].to_numpy()[sheet["idx1"]],
            "company2": sample["회사명"].to_numpy()[sheet["idx2"]],
            "section": sheet["section"],
            "label": sheet["label"],
            "cosine": sims,
            "rank": (-sims).argsort().argsort() + 1,
        }
    )


def score_encoder(model, tokenizer, sample, sheet, *, poolings=embed.POOLINGS, name: str = "", **encode_kw):
    """TestSheet metrics for every pooling of one encoder -> (DataFrame[encoder, pooling, auc, ...],
    {pooling: sims [P]}, {pooling: embeddings [len(testsheet_texts), H]})."""
    items = testsheet_texts(sample, sheet)
    embs = embed.encode_poolings(
        model, tokenizer, items["text"], poolings=poolings, desc=f"TestSheet {name}", **encode_kw
    )
    sims = {p: testsheet_sims(items, e, sheet) for p, e in embs.items()}
    rows = [{"encoder": name, "pooling": p, **testsheet_scores(sheet, s)} for p, s in sims.items()]
    return pd.DataFrame(rows), sims, embs


# ---- mock JD and JD recommendation -------------------------------------------------------


def mock_jd(answers: dict) -> dict[str, str]:
    """Q&A answers {personality, stack, welfare, job, domain: [str]} -> {section: text} over JD_SECTIONS."""
    unknown = set(answers) - set(ANSWER_SECTIONS)
    if unknown:
        raise ValueError(f"unknown answer keys {sorted(unknown)}; expected {list(ANSWER_SECTIONS)}")
    answers = {"welfare": DEFAULT_WELFARE, **{k: v for k, v in answers.items() if v}}
    parts: dict[str, list[str]] = {s: [] for s in JD_SECTIONS}
    for key, items in answers.items():
        items = [items] if isinstance(items, str) else list(items)
        for sec in ANSWER_SECTIONS[key]:
            parts[sec].append(TEMPLATES[(key, sec)].format(items=", ".join(map(str, items))))
    return {s: ". ".join(p) for s, p in parts.items() if p}


def document(sections: dict | pd.Series, order=JD_SECTIONS) -> str:
    """One text of a JD: its non-empty sections in `order`, one per line."""
    return "\n".join(str(sections[s]).strip() for s in order if s in sections and str(sections[s]).strip())


def recommendation_pool(
    sections=JD_SECTIONS, free_text: bool = True, n: int | None = None, seed: int = 0
) -> pd.DataFrame:
    """JDs to recommend from -> DataFrame[회사명, 공고명, 직무내용, document, 출처 URL, source, *JD_SECTIONS].

    Sectioned crawls (Jumpit, Jobplanet) give `document` from `sections`; with `free_text` the Wanted
    and Saramin crawls, which hold one free-text posting each, are added. Duplicate URLs dropped.
    """
    corpus = data.load_jd_corpus()
    corpus["document"] = [document(r, sections) for _, r in corpus.iterrows()]
    frames = [corpus] + ([data.load_free_text_jds(k) for k in data.FREE_TEXT_SOURCES] if free_text else [])
    cols = ["회사명", "공고명", "직무내용", "document", "출처 URL", "source", *JD_SECTIONS]
    pool = pd.concat([f.reindex(columns=cols, fill_value="") for f in frames], ignore_index=True)
    pool = pool.drop_duplicates("출처 URL")
    pool = pool[pool["document"].str.len() > 0]
    return data.sample(pool, n or None, seed, keep_order=False)


def recommend_jds(query_emb, corpus_emb, pool: pd.DataFrame, k: int = 5, snippet: int = 160) -> pd.DataFrame:
    """Top-k JDs of `pool` [N rows] for one query embedding [H] by cosine -> DataFrame[rank, score, ...]."""
    scores, idx = embed.top_k(np.atleast_2d(query_emb), corpus_emb, k)
    top = pool.iloc[idx[0]].reset_index(drop=True)
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(top) + 1),
            "score": scores[0],
            "회사명": top["회사명"],
            "공고명": top["공고명"],
            "직무내용": top["직무내용"],
            "text": top["document"].str.replace(r"\s+", " ", regex=True).str[:snippet],
            "출처 URL": top["출처 URL"],
            "pool_index": idx[0],
        }
    )


# ---- lecture recommendation (the seed's LEC_recommendlogic) -------------------------------


def _squash(text: str) -> str:
    """Lower-case and remove all whitespace, as the seed's keyword logic does."""
    return re.sub(r"\s+", "", str(text).lower())


def lecture_vocabulary(keywords: dict[str, list[str]]) -> list[str]:
    """Keywords in both job_skills and udemy_skills (squashed), in job_skills order."""
    udemy = {_squash(w) for w in keywords["udemy_skills"]}
    return list(dict.fromkeys(w for w in map(_squash, keywords["job_skills"]) if w and w in udemy))


def jd_keywords(jd_row, vocabulary, sections=LECTURE_SECTIONS) -> list[str]:
    """Vocabulary keywords that occur in the JD's 자격요건+우대조건+주요업무 (squashed); a free-text
    JD without sections is read whole (its `document`)."""
    text = _squash("".join(str(jd_row.get(s, "")) for s in sections)) or _squash(jd_row.get("document", ""))
    return [w for w in vocabulary if w in text]


def recommend_lectures(
    jd_row, lectures: pd.DataFrame, keywords: dict[str, list[str]], k: int = 5, sections=LECTURE_SECTIONS
) -> pd.DataFrame:
    """Top-k lectures by total occurrences of the JD's keywords in 강의소개+강의명.

    -> DataFrame[rank, score, matched, ...]."""
    words = jd_keywords(jd_row, lecture_vocabulary(keywords), sections)
    text = (lectures["강의소개"].astype(str) + lectures["강의명"].astype(str)).map(_squash)
    counts = pd.DataFrame({w: text.str.count(re.escape(w)) for w in words}, index=lectures.index)
    total = counts.sum(axis=1) if words else pd.Series(0, index=lectures.index)
    top = total[total > 0].sort_values(ascending=False, kind="stable").head(k).index
    matched = [", ".join(f"{w}×{c}" for w, c in counts.loc[i].items() if c > 0) for i in top]
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(top) + 1),
            "score": total.loc[top].to_numpy(),
            "강의명": lectures.loc[top, "강의명"].to_numpy(),
            "matched": matched,
            "출처": lectures.loc[top, "출처"].to_numpy(),
        }
    )


# ---- which encoder -----------------------------------------------------------------------


def resolve_encoder(model: str, adapted: str = "models/adapted") -> str:
    """`jd-encoder@champion` (a registry spec) -> that version's folder; `latest:<notebook>` -> the
    adapted-encoder folder of that notebook's newest succeeded run; else `model`."""
    if predictors.is_registry_spec(model):
        return str(predictors.resolve(model))
    if not model.startswith("latest:"):
        return model
    stem = model.split(":", 1)[1]
    for run_dir in sorted((runs.outputs_dir() / stem).glob("*/"), reverse=True):  # names start with the time
        if (
            runs.read_json(run_dir / "status.json").get("state") == "succeeded"
            and (run_dir / adapted / "config.json").is_file()
        ):
            return str(run_dir / adapted)
    raise FileNotFoundError(f"{model!r}: no succeeded run of {stem} with {adapted}/ under {runs.outputs_dir() / stem}")
