"""polarkit.tasks.matching: TestSheet scoring, mock JD, JD and lecture recommendation, encoder resolution."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from polarkit import data
from polarkit.tasks import matching

SECS = data.JD_SECTIONS


def _sample(n=4):
    return pd.DataFrame({"회사명": [f"c{i}" for i in range(n)], **{s: [f"{s} {i}" for i in range(n)] for s in SECS}})


SHEET = pd.DataFrame(
    {
        "idx1": [0, 0, 1, 2],
        "idx2": [1, 2, 3, 3],
        "section": ["자격요건", "복지", "자격요건", "복지"],
        "label": [1, 0, 1, 0],
    }
)


def test_testsheet_texts_and_sims():
    items = matching.testsheet_texts(_sample(), SHEET)
    assert len(items) == 6 and not items.duplicated(["idx", "section"]).any()
    assert items.set_index(["idx", "section"]).loc[(3, "복지"), "text"] == "복지 3"
    emb = np.random.default_rng(0).normal(size=(len(items), 5))
    sims = matching.testsheet_sims(items, emb, SHEET)
    row = {(i, s): r for r, (i, s) in enumerate(zip(items.idx, items.section))}
    a, b = emb[row[(0, "복지")]], emb[row[(2, "복지")]]
    assert sims[1] == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b), abs=1e-5)
    with pytest.raises(ValueError, match="sample has 2"):
        matching.testsheet_texts(_sample(2), SHEET)


def test_testsheet_scores_and_breakdown():
    sims = np.array([0.9, 0.2, 0.5, 0.6])
    got = matching.testsheet_scores(SHEET, sims, key_prefix="t_")
    assert got["t_auc"] == pytest.approx(roc_auc_score(SHEET.label, sims))
    norm = (sims - sims.min()) / (sims.max() - sims.min())
    assert got["t_seed_gap"] == pytest.approx(np.mean(np.abs(SHEET.label - norm)))
    br = matching.section_breakdown(SHEET, sims).set_index("section")
    assert (
        br.loc["자격요건", "pairs"] == 2 and br.loc["자격요건", "similar"] == 2 and np.isnan(br.loc["자격요건", "auc"])
    )
    assert br.loc["복지", "mean_sim_dissimilar"] == pytest.approx(0.4)
    pairs = matching.pair_table(SHEET, _sample(), sims)
    assert pairs["rank"].tolist() == [1, 4, 3, 2] and pairs.company2.tolist() == ["c1", "c2", "c3", "c3"]


def test_mock_jd_follows_the_seed_mapping():
    m = matching.mock_jd({"personality": ["꼼꼼함"], "stack": ["Python", "AWS"], "job": "백엔드", "domain": ["금융"]})
    assert "꼼꼼함" in m["자격요건"] and "꼼꼼함" in m["회사소개"]
    assert "Python, AWS" in m["자격요건"] and "Python, AWS" in m["우대조건"]
    assert "백엔드" in m["주요업무"] and "금융" in m["회사소개"]
    assert "수습" in m["복지"]  # the seed's default welfare answer
    assert "Python" not in m["주요업무"]
    assert matching.document(m, ("주요업무", "우대조건")).split("\n") == [m["주요업무"], m["우대조건"]]
    with pytest.raises(ValueError, match="unknown answer keys"):
        matching.mock_jd({"hobby": ["축구"]})


def test_recommend_jds_ranks_by_cosine():
    pool = pd.DataFrame(
        {
            "회사명": list("abc"),
            "공고명": list("xyz"),
            "직무내용": "",
            "document": ["d1", "d2", "d3"],
            "출처 URL": ["u1", "u2", "u3"],
        }
    )
    corpus = np.array([[1.0, 0], [0, 1], [0.7, 0.7]])
    recs = matching.recommend_jds(np.array([1.0, 0.1]), corpus, pool, k=2)
    assert recs.회사명.tolist() == ["a", "c"] and recs["rank"].tolist() == [1, 2]
    assert recs.score.iloc[0] > recs.score.iloc[1]


KEYWORDS = {
    "job_skills": ["Python", "Docker", "Spring Boot", "java"],
    "udemy_skills": ["python", "docker", "springboot", "excel"],
}


def test_lecture_logic():
    assert matching.lecture_vocabulary(KEYWORDS) == ["python", "docker", "springboot"]
    row = pd.Series(
        {"자격요건": "Python 필수", "우대조건": "Spring Boot 경험", "주요업무": "API 개발", "복지": "docker"}
    )
    assert matching.jd_keywords(row, matching.lecture_vocabulary(KEYWORDS)) == [
        "python",
        "springboot",
    ]  # 복지 is not read
    lectures = pd.DataFrame(
        {
            "강의명": ["Python 입문", "Spring Boot 마스터", "Excel", "Python과 Spring Boot"],
            "강의소개": ["python python", "스프링", "엑셀", "백엔드"],
            "출처": list("ABCD"),
        }
    )
    recs = matching.recommend_lectures(row, lectures, KEYWORDS, k=5)
    assert recs["강의명"].tolist() == ["Python 입문", "Python과 Spring Boot", "Spring Boot 마스터"]
    assert recs.score.tolist() == [3, 2, 1]
    assert recs.matched.iloc[1] == "python×1, springboot×1"
    free = pd.Series({"document": "Docker 운영", **{s: "" for s in SECS}})
    assert matching.jd_keywords(free, matching.lecture_vocabulary(KEYWORDS)) == ["docker"]


def _run(base, stem, name, state, adapted=True):
    d = base / stem / name
    (d / "models" / "adapted").mkdir(parents=True)
    (d / "status.json").write_text(json.dumps({"state": state}))
    if adapted:
        (d / "models" / "adapted" / "config.json").write_text("{}")
    return d


def test_resolve_encoder_latest(outputs):
    assert matching.resolve_encoder("e5-small-ko") == "e5-small-ko"
    with pytest.raises(FileNotFoundError, match="no succeeded run"):
        matching.resolve_encoder("latest:04_bert_embedding")
    old = _run(outputs, "04_bert_embedding", "20240101-000000-aaaaaa", "succeeded")
    _run(outputs, "04_bert_embedding", "20240102-000000-bbbbbb", "failed")
    _run(outputs, "04_bert_embedding", "20240103-000000-cccccc", "succeeded", adapted=False)
    assert matching.resolve_encoder("latest:04_bert_embedding") == str(old / "models" / "adapted")
    newer = _run(outputs, "04_bert_embedding", "20240104-000000-dddddd", "succeeded")
    assert matching.resolve_encoder("latest:04_bert_embedding") == str(newer / "models" / "adapted")


@pytest.mark.skipif(data.data_root() is None, reason="needs the shared JD data")
def test_recommendation_pool_has_3000_unique_jds():
    pool = matching.recommendation_pool(("주요업무", "자격요건"))
    assert len(pool) >= 3000 and pool["출처 URL"].is_unique and (pool.document.str.len() > 0).all()
    assert {"jumpit", "wanted", "saramin"} <= set(pool.source)
    assert len(matching.recommendation_pool(free_text=False, n=50, seed=1)) == 50
