"""Scoring functions against direct sklearn/scipy references on tiny inputs."""

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from polarkit import score


@pytest.fixture
def rng():
    """A fresh seeded generator per test: each test's data is the same whatever runs before it."""
    return np.random.default_rng(0)


def test_classification_matches_sklearn(rng):
    y, p = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    m = score.classification(y, p, key_prefix="val_")
    assert m["val_accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    assert m["val_mcc"] == pytest.approx(skm.matthews_corrcoef(y, p))
    assert m["val_f1"] == pytest.approx(skm.f1_score(y, p))


def test_classification_multiclass_uses_macro_f1(rng):
    y, p = rng.integers(0, 10, 300), rng.integers(0, 10, 300)
    assert score.classification(y, p)["f1"] == pytest.approx(skm.f1_score(y, p, average="macro"))


def test_similarity_matches_scipy(rng):
    g, p = rng.uniform(0, 5, 100), rng.uniform(0, 5, 100)
    m = score.similarity(g, p, key_prefix="dev_")
    assert m["dev_pearson"] == pytest.approx(stats.pearsonr(g, p)[0])
    assert m["dev_spearman"] == pytest.approx(stats.spearmanr(g, p)[0])
    assert m["dev_f1"] == pytest.approx(skm.f1_score(g >= 3, p >= 3))


def test_multilabel_matches_sklearn(rng):
    y, prob = rng.integers(0, 2, (50, 4)), rng.uniform(size=(50, 4))
    m = score.multilabel(y, prob, 0.5)
    assert m["micro_f1"] == pytest.approx(skm.f1_score(y, prob >= 0.5, average="micro"))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, prob >= 0.5, average="macro", zero_division=0))


def test_ranking_auc_and_best_accuracy():
    labels, s = np.array([0, 0, 1, 1, 1]), np.array([0.1, 0.6, 0.5, 0.8, 0.9])
    m = score.ranking(labels, s)
    assert m["auc"] == pytest.approx(skm.roc_auc_score(labels, s))
    assert m["best_accuracy"] == pytest.approx(0.8)  # threshold 0.5 misclassifies only the 0.6 negative


def test_minmax_gap():
    assert score.minmax_gap([0, 1, 1], [0.2, 0.6, 1.0]) == pytest.approx((0 + 0.5 + 0) / 3)
    assert score.minmax_gap([1, 1], [0.5, 0.5]) == pytest.approx(1.0)


def test_softmax_rows_sum_to_one():
    p = score.softmax([[1.0, 2.0, 3.0], [1000.0, 0.0, 0.0]])
    assert np.allclose(p.sum(1), 1) and p[1, 0] == pytest.approx(1.0)


def test_per_class_matches_sklearn_multilabel_and_single_label(rng):
    y, p = rng.integers(0, 2, (60, 3)), rng.integers(0, 2, (60, 3))
    t = score.per_class(y, p, ["a", "b", "c"])
    assert t["b"]["f1"] == pytest.approx(skm.f1_score(y[:, 1], p[:, 1]))
    assert t["c"]["support"] == y[:, 2].sum()
    yi, pi = rng.integers(0, 3, 80), rng.integers(0, 3, 80)
    t = score.per_class(yi, pi, ["x", "y", "z"])
    assert t["z"]["recall"] == pytest.approx(skm.recall_score(yi, pi, labels=[2], average="macro"))


def test_best_thresholds_beat_or_match_half_on_the_same_data(rng):
    y = rng.integers(0, 2, (200, 3))
    prob = np.clip(0.25 + 0.4 * y + rng.normal(0, 0.15, y.shape), 0, 1)  # positives sit near 0.65, negatives near 0.25
    prob[:, 2] = 0.9  # an uninformative constant column: every threshold below 0.9 gives the same F1
    t = score.best_thresholds(y, prob)
    for c in range(2):
        assert skm.f1_score(y[:, c], prob[:, c] >= t[c]) >= skm.f1_score(y[:, c], prob[:, c] >= 0.5)
    assert 0.3 <= t[0] <= 0.6 and t[2] == pytest.approx(0.5)  # tie -> nearest the default
    assert score.best_thresholds(np.zeros((5, 1)), rng.uniform(size=(5, 1)))[0] == 0.5


def test_pair_f1_counts_pairs_per_review():
    gold = [{("맛", "positive")}, {("가격", "negative"), ("양", "positive")}, set()]
    pred = [[("맛", "positive")], [("가격", "positive")], [("배달", "neutral")]]
    m = score.pair_f1(gold, pred, key_prefix="dev_")
    assert m["dev_pair_precision"] == pytest.approx(1 / 3) and m["dev_pair_recall"] == pytest.approx(1 / 3)
    assert m["dev_pair_f1"] == pytest.approx(1 / 3)
    assert score.pair_f1([set()], [set()])["pair_f1"] == 0.0


def test_every_metric_name_carries_its_direction():
    lower = [
        "loss",
        "eval_loss",
        "val_loss",
        "heldout_adapted_perplexity",
        "testsheet_seed_gap",
        "pool_error_rate",
        "train_seconds",
        "val_mse",
    ]
    higher = ["accuracy", "eval_mcc", "val_micro_f1", "dev_pearson", "testsheet_auc", "dev_pair_f1", "test_lr"]
    assert not any(score.greater_is_better(m) for m in lower)
    assert all(score.greater_is_better(m) for m in higher)


def test_paired_bootstrap_of_an_accuracy_change_matches_the_normal_interval(rng):
    a = rng.random(4000) < 0.8
    b = a.copy()
    flip = rng.choice(4000, 200, replace=False)  # 200 examples set right or wrong in B: a paired change
    b[flip[:130]], b[flip[130:]] = True, False
    d = b.astype(float) - a.astype(float)
    lo, hi = score.paired_bootstrap(lambda i: b[i].mean() - a[i].mean(), len(a))
    half = 1.96 * d.std() / np.sqrt(len(d))  # the normal approximation of the same paired interval
    assert lo == pytest.approx(d.mean() - half, abs=0.002) and hi == pytest.approx(d.mean() + half, abs=0.002)
    assert score.paired_bootstrap(lambda i: b[i].mean() - a[i].mean(), len(a)) == (lo, hi)  # seeded
