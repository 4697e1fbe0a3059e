"""Scoring functions against direct sklearn/scipy references on tiny inputs."""
import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from polarkit import score

rng = np.random.default_rng(0)


def test_classification_matches_sklearn():
    y, p = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    m = score.classification(y, p, prefix="val_")
    assert m["val_accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    assert m["val_mcc"] == pytest.approx(skm.matthews_corrcoef(y, p))
    assert m["val_f1"] == pytest.approx(skm.f1_score(y, p))


def test_classification_multiclass_uses_macro_f1():
    y, p = rng.integers(0, 10, 300), rng.integers(0, 10, 300)
    assert score.classification(y, p)["f1"] == pytest.approx(skm.f1_score(y, p, average="macro"))


def test_similarity_matches_scipy():
    g, p = rng.uniform(0, 5, 100), rng.uniform(0, 5, 100)
    m = score.similarity(g, p, prefix="dev_")
    assert m["dev_pearson"] == pytest.approx(stats.pearsonr(g, p)[0])
    assert m["dev_spearman"] == pytest.approx(stats.spearmanr(g, p)[0])
    assert m["dev_f1"] == pytest.approx(skm.f1_score(g >= 3, p >= 3))


def test_multilabel_matches_sklearn():
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
