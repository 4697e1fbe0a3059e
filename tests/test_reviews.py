"""Review classifier (notebook 07): task data, bad input, baseline, highlights, active learning, pipeline."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from polarkit.data import data_root
from polarkit.tasks import reviews as R

ROOT = Path(__file__).resolve().parents[1]
needs_data = pytest.mark.skipif(data_root() is None, reason="needs the shared data folder")


def _stage(kind="single", labels=("neg", "pos"), texts=None, y=None, keyword=None):
    texts = texts or ["좋다 최고", "별로 최악", "최고 좋다 굿", "최악 별로 노잼"]
    y = y if y is not None else [1, 0, 1, 0]
    df = pd.DataFrame({"text": texts, "label": y} | ({"keyword": keyword} if keyword else {}))
    return R.Stage("s", kind, list(labels), df, df, df, df)


# ---- task names and bad input -------------------------------------------------------------


def test_unknown_task_and_dataset_are_clear_errors():
    with pytest.raises(ValueError, match="unknown task 'sentimnet'; did you mean 'sentiment'"):
        R.check_task("sentimnet")
    with pytest.raises(ValueError, match="has no dataset 'nsmc'"):
        R.check_task("keywords", "nsmc")
    assert R.check_task("keyword_sentiment") == "nikl"


def test_validate_names_the_problem():
    df = pd.DataFrame({"text": ["a", "b"], "label": [0, 1]})
    with pytest.raises(ValueError, match=r"missing column\(s\) \['review'\]"):
        R.validate(df, "single", ["n", "p"], text_col="review")
    with pytest.raises(ValueError, match="1 empty 'text'"):
        R.validate(df.assign(text=["a", "  "]), "single", ["n", "p"])
    with pytest.raises(ValueError, match="outside the declared set.*\\[2\\]"):
        R.validate(df.assign(label=[0, 2]), "single", ["n", "p"])
    with pytest.raises(ValueError, match="0/1 vectors"):
        R.validate(df.assign(label=[np.array([0, 1]), np.array([0, 2])]), "multi", ["a", "b"])
    with pytest.raises(ValueError, match="empty 'keyword'"):
        R.validate(df.assign(keyword=["맛", ""]), "pair", ["n", "p"], pair_col="keyword")
    assert R.validate(df, "single", ["n", "p"]) is df


@needs_data
def test_load_task_splits_are_disjoint_and_the_test_sample_is_fixed():
    a = R.load_task("sentiment", n_train=300, n_test=200, n_pool=50, seed=1)
    b = R.load_task("sentiment", n_train=300, n_test=200, n_pool=50, seed=2)
    s = a.main
    assert s.sizes() == {"train": 300, "val": 33, "test": 200, "pool": 50}
    assert not (set(s.train.text) & set(s.val.text)) and not (set(s.train.text) & set(s.pool.text))
    assert a.main.test.text.tolist() == b.main.test.text.tolist()  # same held-out sample whatever the seed
    assert a.main.train.text.tolist() != b.main.train.text.tolist()


@needs_data
def test_keyword_sentiment_stages_line_up_with_the_gold_pairs():
    d = R.load_task("keyword_sentiment", "ksc", n_train=200, n_test=100, n_pool=20)
    assert list(d.stages) == ["polarity", "keywords"] and d.test_split == "test"
    kw, pol = d.stages["keywords"], d.stages["polarity"]
    assert kw.labels == ["가격", "맛", "배달", "서비스", "양"] and pol.labels == list(R.POLARITIES)
    assert d.reviews.text.tolist() == kw.test.text.tolist()
    # every gold pair of a held-out review is a polarity-stage row, and its keyword is on in the multi-hot
    assert sum(len(p) for p in d.reviews.pairs) == len(pol.test)
    for _text, pairs, y in zip(d.reviews.text, d.reviews.pairs, kw.y("test")):
        assert {k for k, _ in pairs} == {kw.labels[j] for j in np.flatnonzero(y)}


# ---- baseline -----------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Label not 2 is present:UserWarning")  # class c is never seen, on purpose
def test_tfidf_baseline_single_multi_and_missing_class():
    st = _stage()
    model, seconds = R.fit_tfidf(st, ngram_max=2, C=10.0)
    p = R.tfidf_proba(model, ["최고 좋다", "최악 별로"])
    assert p.shape == (2, 2) and p[0, 1] > 0.5 > p[1, 1] and seconds >= 0
    multi = _stage("multi", ("a", "b", "c"), y=[np.array(v) for v in ([1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0])])
    pm = R.tfidf_scorer(R.fit_tfidf(multi, ngram_max=2, C=10.0)[0], 3)(["좋다 최고"])
    assert pm.shape == (1, 3) and pm[0, 0] > pm[0, 1] and pm[0, 2] < 0.5  # class c never seen: stays low
    three = _stage(labels=("neg", "pos", "neu"))  # class 2 absent from training
    p3 = R.tfidf_proba(R.fit_tfidf(three)[0], ["좋다"], n_classes=3)
    assert p3.shape == (1, 3) and p3[0, 2] == 0 and p3.sum() == pytest.approx(1)


# ---- highlights ---------------------------------------------------------------------------


class _Spy:
    """A fake model: p(pos) is high when the review contains '최고'; counts its calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, texts, pairs=None, batch_size=64):
        self.calls.append((len(texts), batch_size))
        pos = np.array([0.9 if "최고" in t else 0.3 for t in texts])
        return np.stack([1 - pos, pos], axis=1)


def test_highlights_mask_each_word_in_one_batch():
    spy = _Spy()
    h = R.highlights(spy, "이 영화 정말 최고 였다", labels=["neg", "pos"], mask_token="<mask>")
    assert spy.calls == [(6, 6)]  # the original + 5 masked variants, one forward pass
    assert h.target == "pos" and h.prob == pytest.approx(0.9)
    assert h.top(1) == [("최고", pytest.approx(0.6))] and np.allclose(np.delete(h.drops, 3), 0)
    words, variants = R.masked_variants("a b c", "[MASK]")
    assert words == ["a", "b", "c"] and variants[1] == "a [MASK] c"


def test_highlight_views_render_every_word():
    h = R.highlights(_Spy(), "<b>최고</b> 영화 였다", labels=["neg", "pos"])
    page = R.highlight_html([h])
    assert "&lt;b&gt;최고&lt;/b&gt;" in page and "영화" in page and "<b>pos</b>" in page
    fig = R.highlight_figure([h, h])
    assert isinstance(fig, Figure) and sum(t.get_text() == "영화" for t in fig.axes[0].texts) == 2


# ---- active learning ----------------------------------------------------------------------


def test_uncertainty_formulas():
    p = np.array([[1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0], [0.5, 0.25, 0.25]])
    assert np.allclose(R.uncertainty(p), [1.0, 0.0, 0.75])  # (1 - max p) * 3/2
    s = np.array([[0.5, 0.99], [0.9, 0.05], [0.7, 0.0]])
    assert np.allclose(R.uncertainty(s, multilabel=True), [1.0, 0.2, 0.6])


@pytest.fixture(scope="module")
def tok():
    from polarkit import models

    return models.load_tokenizer(
        "scratch:tiny", texts=["좋은 영화 최고", "나쁜 영화 최악", "배우 연기 좋다"] * 20, vocab_size=200
    )


def test_rare_tokens_and_picks(tok):
    rare = R.rare_token_scores(["좋은 영화", "ฟหกด ꙮꙮ"], tok, late_frac=1.0)  # unknown tokens only
    assert rare.tolist() == [0.0, 1.0]  # an unseen script is all [UNK]
    ids = tok("좋은 영화 최악", add_special_tokens=False)["input_ids"]
    late = R.rare_token_scores(["좋은 영화 최악"], tok, late_frac=0.8)[0]
    assert late == pytest.approx(np.mean([i >= 0.8 * len(tok) for i in ids]))
    pool = pd.DataFrame({"text": ["좋은 영화", "나쁜 영화", "ฟหกด", "배우 연기"], "label": [1, 0, 1, 1]})
    probs = np.array([[0.1, 0.9], [0.45, 0.55], [0.2, 0.8], [0.05, 0.95]])
    picks = R.active_learning_picks(pool, probs, ["neg", "pos"], "single", tok, k=1, k_rare=1, late_frac=1.0)
    assert picks.reason.tolist() == ["uncertain", "rare_tokens"]
    assert picks.text.tolist() == ["나쁜 영화", "ฟหกด"] and picks.gold.tolist() == ["neg", "pos"]
    assert picks.uncertainty.iloc[0] == pytest.approx(0.9)
    rates = R.pick_error_rates(picks, np.array([0, 1, 0, 0]))
    assert rates == {
        "pool_error_rate": 0.25,
        "pool_rare_tokens_picks_error_rate": 0.0,
        "pool_uncertain_picks_error_rate": 1.0,
    }


# ---- scores, predictor, pipeline ----------------------------------------------------------


def test_compare_tunes_thresholds_on_val_and_flattens_keys():
    y = [np.array(v) for v in ([1, 0], [0, 1], [1, 1], [0, 0])]
    st = _stage("multi", ("a", "b"), y=y)
    p = np.array([[0.4, 0.1], [0.1, 0.6], [0.35, 0.7], [0.2, 0.3]])  # class a needs a threshold below 0.4
    table, thr = R.compare(st, {"transformer": {"val": p, "test": p}}, "valid")
    assert thr["transformer"][0] < 0.4 and table.loc["transformer", "valid_tuned_micro_f1"] == 1.0
    assert table.loc["transformer", "valid_micro_f1"] < 1.0
    flat = R.flat_metrics(pd.concat([table, table.rename(index={"transformer": "tfidf"})]))
    assert "valid_micro_f1" in flat and "valid_tfidf_tuned_micro_f1" in flat and "val_macro_f1" in flat


def test_evaluate_three_classes_uses_every_declared_class():
    st = _stage(labels=("positive", "negative", "neutral"), y=[0, 0, 1, 0])
    m = R.evaluate(st, np.array([[0.9, 0.1, 0], [0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1]]), "test")
    assert m["test_accuracy"] == 1.0 and m["test_macro_f1"] == pytest.approx(2 / 3) and "test_f1" not in m


def test_review_predictor_has_the_seed_shape():
    out = R.ReviewPredictor(_Spy(), ["부정", "긍정"], "single").predict(["최고 영화", "그냥"])
    assert out[0]["text"] == "최고 영화" and out[0]["label"] == "긍정" and out[1]["label"] == "부정"
    assert out[0]["confidence"] == pytest.approx(0.9) and set(out[0]["probs"]) == {"부정", "긍정"}


def test_pipeline_pairs_and_scores():
    kw = np.array([[0.9, 0.2], [0.3, 0.1], [0.7, 0.8]])

    def polarity(texts, keywords, batch_size=64):
        assert len(texts) == 4  # one batched call: 1 + 1 (forced top-1) + 2 pairs
        return np.array([[0.1, 0.8, 0.1] if k == "맛" else [0.8, 0.1, 0.1] for k in keywords])

    pairs = R.pipeline_pairs(["r1", "r2", "r3"], kw, ["맛", "양"], 0.5, polarity)
    assert pairs == [[("맛", "negative")], [("맛", "negative")], [("맛", "negative"), ("양", "positive")]]
    gold = [[("맛", "negative")], [("양", "positive")], [("양", "positive")]]
    m = R.pipeline_scores(gold, pairs, key_prefix="dev_")
    assert m["dev_pair_precision"] == pytest.approx(0.5) and m["dev_pair_recall"] == pytest.approx(2 / 3)


# ---- the model path on a tiny random encoder ----------------------------------------------


def test_encode_counts_truncation_and_build_gives_one_output_per_class(tok):
    st = _stage("pair", R.POLARITIES, y=[0, 1, 0, 2], keyword=["맛", "양", "맛", "가격"])
    enc, cut = R.stage_datasets(st, tok, max_length=6, splits=("train",))
    assert cut.truncated.iloc[0] == sum(
        len(tok(t, k)["input_ids"]) > 6 for t, k in zip(st.train.text, st.train.keyword)
    )
    clf = R.build("scratch:tiny", st, tok)
    from polarkit.tasks import classifier

    p = classifier.Predictor(clf, tok, st.labels, 16).scores(["좋은 영화"], ["맛"])
    assert p.shape == (1, 3) and p.sum() == pytest.approx(1, abs=1e-5)


def test_best_metric_names_each_stages_f1_and_refuses_others():
    from polarkit.tasks.reviews import training

    multi, single = _stage("multi", ("a", "b"), y=[np.array([1, 0])] * 4), _stage()
    assert [training.stage_metric(s, m) for s in (multi, single) for m in ("loss", "f1")] == [
        "loss",
        "micro_f1",
        "loss",
        "f1",
    ]
    with pytest.raises(ValueError, match="best_metric must be one of"):
        training.stage_metric(single, "mcc")


# ---- the notebook at smoke size, every task -----------------------------------------------


@pytest.mark.slow
@needs_data
@pytest.mark.parametrize("profile", ["smoke-keywords", "smoke-keyword_sentiment"])
def test_notebook_runs_each_task_at_smoke_size(profile, tmp_path, monkeypatch):
    from polarkit import executor, params

    monkeypatch.setenv("POLARKIT_OUTPUTS", str(tmp_path))
    nb = ROOT / "notebooks" / "07_review_classifier.ipynb"
    run_dir = executor.execute(
        nb, params.check_file(ROOT / "params" / profile / f"{nb.stem}.yaml", nb), profile=profile
    )
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "succeeded", status
    metrics = json.loads((run_dir / "metrics.json").read_text())
    picks = pd.read_csv(run_dir / "active_learning.csv")
    assert set(picks.reason) == {"uncertain", "rare_tokens"} and (run_dir / "highlights.html").is_file()
    split = "dev" if "keyword_sentiment" in profile else "valid"  # NIKL dev / UnSmile valid
    key = f"{split}_pair_f1" if "keyword_sentiment" in profile else f"{split}_tuned_micro_f1"
    assert 0.0 <= metrics[key] <= 1.0 and f"{split}_tfidf_{key.split('_', 1)[1]}" in metrics


def test_head_starts_at_the_label_prior(tok):
    multi = _stage("multi", ("a", "b"), y=[np.array(v) for v in ([1, 0], [0, 0], [0, 0], [1, 1])])
    clf = R.build("scratch:tiny", multi, tok)
    assert np.allclose(clf.head.bias.detach().numpy(), [0.0, np.log(0.25 / 0.75)], atol=1e-6)
    single = _stage(y=[1, 1, 1, 0])
    assert np.allclose(R.build("scratch:tiny", single, tok).head.bias.detach().numpy(), np.log([0.25, 0.75]), atol=1e-6)


def test_balanced_class_weights_match_sklearn_and_weight_the_loss(tok):
    import torch
    from sklearn.utils.class_weight import compute_class_weight

    from polarkit.tasks import classifier

    y = np.array([0, 0, 0, 0, 0, 1, 2, 2])
    np.testing.assert_allclose(
        classifier.balanced_weights(y, 3), compute_class_weight("balanced", classes=np.arange(3), y=y)
    )
    st = _stage("pair", R.POLARITIES, y=[0, 0, 0, 1], keyword=["맛", "양", "맛", "가격"])
    clf = R.build("scratch:tiny", st, tok, class_weight="balanced")
    w = classifier.balanced_weights([0, 0, 0, 1], 3)  # the absent class counts once
    np.testing.assert_allclose(clf.class_weight.numpy(), w)
    p = np.exp(clf.head.bias.detach().numpy())  # the head starts at the weighted loss's best constant
    np.testing.assert_allclose(p / p.sum(), [0.5, 0.5, 0.0], atol=2e-3)
    logits, labels = torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1])
    ref = torch.nn.functional.cross_entropy(logits, labels, weight=torch.as_tensor(w, dtype=torch.float32))
    assert clf._loss(logits, labels).item() == pytest.approx(ref.item(), rel=1e-6)
    assert "class_weight" not in clf.state_dict()  # a loss setting: saved classifiers load unchanged
    multi = _stage("multi", ("a", "b"), y=[np.array(v) for v in ([1, 0], [0, 0], [0, 0], [1, 1])])
    assert R.build("scratch:tiny", multi, tok, class_weight="balanced").class_weight is None
    with pytest.raises(ValueError, match="class_weight must be"):
        R.build("scratch:tiny", st, tok, class_weight="inverse")
