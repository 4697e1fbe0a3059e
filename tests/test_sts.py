"""polarkit.tasks.sts: the seed's preprocessing, EDA, bi-/cross-encoder pieces, predictor, report tables."""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from sklearn import metrics as skm

from polarkit import data, embed, models
from polarkit.tasks import classifier, sts

PAIRS = pd.DataFrame(
    {
        "sentence1": ["숙소 위치는 찾기 쉽습니다.", "호스트가 친절했어요!", "정책 브리핑 내용입니다", "같은 문장"],
        "sentence2": ["위치를 쉽게 찾을 수 있어요.", "날씨가 좋네요.", "정책 설명 자료입니다", "같은 문장"],
        "score": [4.2, 0.4, 3.0, 5.0],
    }
)


@pytest.fixture(scope="module")
def tok():
    return models.load_tokenizer("e5-small-ko")


@pytest.fixture(scope="module")
def encoder(tok):
    """A tiny random BERT on e5's tokenizer (fast; same code path as the real encoder)."""
    torch.manual_seed(0)
    return models.load_model("scratch:tiny", head="encoder", tokenizer=tok)


def test_clean_keeps_hangul_digits_spaces():
    assert sts.clean("KTX 3시에  출발!! (서울→부산) ㅋㅋ") == "3시에 출발 서울부산 ㅋㅋ"


def test_preprocess_reproduces_the_seed_counts():
    raw = data.load_klue_sts("train")
    assert len(raw) == 11_668
    assert len(sts.preprocess(raw)) == len(sts.preprocess(raw, do_clean=False)) == 11_661
    tr, va = data.train_val_split(sts.preprocess(raw), 0.1, seed=0)
    assert (len(tr), len(va)) == (10_495, 1_166)


def test_bad_input_fails_clearly():
    with pytest.raises(ValueError, match="outside 0-5"):
        sts.check(PAIRS.assign(score=[1.0, 5.5, 2.0, 3.0]))
    with pytest.raises(ValueError, match=r"missing column\(s\) \['score'\]"):
        sts.check(PAIRS.drop(columns="score"))
    with pytest.raises(ValueError, match="no rows"):
        sts.preprocess(PAIRS.assign(sentence1="!!!"))  # nothing survives cleaning
    with pytest.raises(ValueError, match="family"):
        sts.build("poly", None)


def test_eda_operations():
    rng = np.random.default_rng(0)
    s = "하나 둘 셋 넷 다섯 여섯"
    assert sorted(sts.random_swap(s, 2, rng).split()) == sorted(s.split())
    kept = sts.random_deletion(s, 0.5, rng).split()
    assert 1 <= len(kept) <= 6 and all(w in s.split() for w in kept)
    assert sts.random_deletion("혼자", 0.99, rng) == "혼자"
    df = pd.concat([PAIRS] * 10, ignore_index=True).assign(sentence1=lambda d: d.sentence1 + " 추가 단어 여럿")
    aug = sts.augment(df, frac=0.5, seed=1)
    assert 0 < len(aug) <= 20 and aug.augmented.all() and aug.score.isin(df.score).all()
    pd.testing.assert_frame_equal(aug, sts.augment(df, frac=0.5, seed=1))  # seeded


def test_bi_dataset_collator_and_loss(tok, encoder):
    ds, n_cut = sts.bi_dataset(PAIRS, tok, max_length=8, prefix="query: ")
    assert ds["labels"] == pytest.approx((PAIRS.score / 5).tolist())
    assert n_cut == sum(
        max(len(tok("query: " + a)["input_ids"]), len(tok("query: " + b)["input_ids"])) > 8
        for a, b in zip(PAIRS.sentence1, PAIRS.sentence2)
    )
    batch = sts.PairCollator(tok)([ds[i] for i in range(len(ds))])
    assert batch["input_ids_a"].shape == batch["attention_mask_a"].shape and batch["labels"].shape == (4,)
    net = sts.BiEncoder(encoder).eval()
    out = net(**batch)
    a = net.embed(batch["input_ids_a"], batch["attention_mask_a"])
    b = net.embed(batch["input_ids_b"], batch["attention_mask_b"])
    cos = torch.nn.functional.cosine_similarity(a, b)
    assert torch.allclose(out["logits"], cos, atol=1e-6)
    assert torch.allclose(out["loss"], ((cos - batch["labels"]) ** 2).mean(), atol=1e-6)


def test_bi_scores_match_manual_cosine_and_keep_order(tok, encoder):
    got = sts.bi_scores(encoder, tok, PAIRS.sentence1, PAIRS.sentence2, prefix="query: ", batch_size=3)
    for i, (s1, s2) in enumerate(zip(PAIRS.sentence1, PAIRS.sentence2)):
        e = [embed.encode(encoder, tok, [s], prefix="query: ", progress=False)[0] for s in (s1, s2)]
        cos = e[0] @ e[1] / np.linalg.norm(e[0]) / np.linalg.norm(e[1])
        assert got[i] == pytest.approx(5 * cos, abs=1e-4)
    assert got[3] == pytest.approx(5.0, abs=1e-4)  # identical sentences


def test_cross_encoder_regression_and_similarity_roundtrip(tok, encoder, tmp_path):
    ds, _ = sts.make_dataset("cross", PAIRS, tok, max_length=32)
    assert ds["labels"] == pytest.approx((PAIRS.score / 5).tolist())
    net = sts.build("cross", encoder, "mean").eval()
    assert net.problem_type == "regression" and net.num_labels == 1
    sim = sts.Similarity(net, tok, "cross", max_length=32, do_clean=True)
    raw = classifier.Predictor(net, tok, [], 32).logits(PAIRS.sentence1.map(sts.clean), PAIRS.sentence2.map(sts.clean))
    np.testing.assert_allclose(sim.scores(PAIRS.sentence1, PAIRS.sentence2), np.clip(raw[:, 0] * 5, 0, 5), atol=1e-5)
    again = sts.Similarity.load(sim.save(tmp_path / "cross"))
    assert again.family == "cross" and again.do_clean
    assert again(PAIRS.sentence1[0], PAIRS.sentence2[0]) == pytest.approx(
        sim(PAIRS.sentence1[0], PAIRS.sentence2[0]), abs=1e-5
    )


def test_bi_similarity_roundtrip(tok, encoder, tmp_path):
    sim = sts.Similarity(sts.BiEncoder(encoder), tok, "bi", max_length=32, prefix="query: ")
    again = sts.Similarity.load(sim.save(tmp_path / "bi"))
    np.testing.assert_allclose(
        again.scores(PAIRS.sentence1, PAIRS.sentence2), sim.scores(PAIRS.sentence1, PAIRS.sentence2), atol=1e-5
    )


def test_by_source_against_scipy():
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "source": rng.choice(["airbnb-rtt", "airbnb-sampled", "policy-rtt", "paraKQC-para"], 80),
            "score": rng.uniform(0, 5, 80),
        }
    )
    df["pred"] = np.clip(df.score + rng.normal(0, 1, 80), 0, 5)
    table = sts.by_source(df).set_index("source")
    assert list(table.index) == ["airbnb", "paraKQC", "policy", "all"]
    air = df[df.source.str.startswith("airbnb")]
    assert table.loc["airbnb", "n"] == len(air)
    assert table.loc["airbnb", "pearson"] == pytest.approx(stats.pearsonr(air.score, air.pred)[0])
    assert table.loc["all", "spearman"] == pytest.approx(stats.spearmanr(df.score, df.pred)[0])
    assert table.loc["all", "f1"] == pytest.approx(skm.f1_score(df.score >= 3, df.pred >= 3))
    worst = sts.worst_pairs(df, k=3)
    assert worst.abs_error.tolist() == sorted((df.pred - df.score).abs(), reverse=True)[:3]


def test_length_table(tok):
    lengths = sts.pair_lengths(PAIRS, tok)
    assert lengths[0] == len(tok(PAIRS.sentence1[0], PAIRS.sentence2[0])["input_ids"])
    t = sts.length_table(lengths, max_length=10)
    assert t.loc[0, "share > 10"] == pytest.approx((lengths > 10).mean()) and t.loc[0, "max"] == lengths.max()


def test_load_splits_counts_and_subsamples():
    splits, counts = sts.load_splits(do_clean=True, n_train=50, n_val=10, n_test=20, seed=1)
    assert counts.loc["after preprocessing", "pairs"] == 11_661 and counts.loc["val split", "pairs"] == 1_166
    assert [len(splits[k]) for k in ("train", "val", "test")] == [50, 10, 20]
    assert splits["test"].source.notna().all()  # the dev JSON keeps its source for the by-source table
    assert not splits["train"].sentence1.str.contains(r"[.?!,]").any()  # cleaned like the seed
    full, _ = sts.load_splits(do_clean=False)
    assert len(full["test"]) == 519 and len(full["train"]) == 10_495
    pairs = set(zip(full["train"].sentence1, full["train"].sentence2))
    assert not pairs & set(zip(full["val"].sentence1, full["val"].sentence2))  # no leak across the split
