"""polarkit.tasks.classifier: tokenisation, the encoder + linear head, save/load, Predictor, Trainer metrics."""

import os

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from sklearn import metrics as skm

from polarkit import models, train
from polarkit.tasks import classifier


@pytest.fixture(scope="module")
def tok():
    return models.load_tokenizer("minilm-l6")


@pytest.fixture(scope="module")
def encoder_factory(tok):
    """A fresh tiny random BERT on MiniLM's vocabulary (fast; weights differ per seed)."""

    def make(seed=0):
        torch.manual_seed(seed)
        return models.load_model("scratch:tiny", head="encoder", tokenizer=tok)

    return make


DF = pd.DataFrame(
    {
        "text": [
            "The cat sat on the mat.",
            "Cat the on sat.",
            "Dogs bark loudly at night.",
            "A very long sentence " + "with many words " * 20,
        ],
        "other": ["x", "y", "z", "w"],
        "label": [1, 0, 1, 0],
        "y": [0.1, 0.9, 0.5, 0.0],
    }
)


def test_tokenize_counts_truncation_and_types(tok):
    ds, n_cut = classifier.text_dataset(DF, tok, max_length=12)
    full = [len(tok(t)["input_ids"]) for t in DF["text"]]
    assert n_cut == sum(n > 12 for n in full) == 1
    assert ds["length"] == [min(n, 12) for n in full]
    assert ds["labels"] == [1, 0, 1, 0] and {"input_ids", "attention_mask"} <= set(ds.column_names)
    pair, _ = classifier.text_dataset(DF, tok, pair_col="other", label_col="y", label_dtype="float")
    assert pair["length"][0] == len(tok(DF.text[0], "x")["input_ids"])
    assert pair["labels"] == pytest.approx(DF.y.tolist())


def test_prefix_goes_before_the_text_in_training_and_prediction(tok, encoder_factory, tmp_path):
    ds, _ = classifier.text_dataset(DF, tok, pair_col="other", prefix="query: ")
    assert ds["input_ids"][0] == tok("query: " + DF.text[0], "x")["input_ids"]  # not before the pair
    model = classifier.EncoderClassifier(encoder_factory(2), 2)
    plain = classifier.Predictor(model, tok, ["no", "yes"], max_length=32)
    prefixed = classifier.Predictor(model, tok, ["no", "yes"], max_length=32, prefix="query: ")
    np.testing.assert_allclose(prefixed.logits(DF.text), plain.logits("query: " + DF.text), atol=1e-5)
    assert not np.allclose(prefixed.logits(DF.text), plain.logits(DF.text), atol=1e-3)
    classifier.save_classifier(model, tok, tmp_path / "m", ["no", "yes"], max_length=32, prefix="query: ")
    assert classifier.Predictor.load(tmp_path / "m").prefix == "query: "


def test_tokenize_multi_labels_and_no_labels(tok):
    df = DF.assign(a=[1, 0, 0, 1], b=[0, 0, 1, 1])
    ds, _ = classifier.text_dataset(df, tok, label_col=["a", "b"], label_dtype="multi")
    assert ds["labels"] == [[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    assert "labels" not in classifier.text_dataset(DF, tok, label_col=None)[0].column_names


def test_tokenize_clear_errors(tok):
    with pytest.raises(ValueError, match=r"missing column\(s\) \['sentence'\]"):
        classifier.text_dataset(DF, tok, text_col="sentence")
    with pytest.raises(ValueError, match="empty"):
        classifier.text_dataset(DF.iloc[:0], tok)
    with pytest.raises(ValueError, match="label_dtype"):
        classifier.text_dataset(DF, tok, label_dtype="str")


def test_pooling_against_manual():
    h = torch.randn(2, 4, 3)
    m = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    got = classifier.pool(h, m, "mean")
    assert torch.allclose(got[0], h[0, :2].mean(0)) and torch.allclose(got[1], h[1].mean(0))
    assert torch.equal(classifier.pool(h, m, "cls"), h[:, 0])


@pytest.mark.parametrize(
    "problem,labels,ref",
    [
        ("single_label_classification", torch.tensor([1, 0]), lambda z, y: torch.nn.functional.cross_entropy(z, y)),
        ("regression", torch.tensor([0.2, 0.8]), lambda z, y: ((z[:, 0] - y) ** 2).mean()),
        (
            "multi_label_classification",
            torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]),
            lambda z, y: torch.nn.functional.binary_cross_entropy_with_logits(z, y),
        ),
    ],
)
def test_loss_matches_torch_reference(tok, encoder_factory, problem, labels, ref):
    model = classifier.EncoderClassifier(
        encoder_factory(), 3 if problem.startswith("multi") else 2, pooling="mean", problem_type=problem
    ).eval()
    enc = tok(["a b c", "d e"], padding=True, return_tensors="pt")
    out = model(enc["input_ids"], enc["attention_mask"], labels=labels)
    assert out["logits"].shape == (2, model.num_labels)
    assert torch.allclose(out["loss"], ref(out["logits"], labels), atol=1e-6)


def test_bad_model_arguments(encoder_factory):
    with pytest.raises(ValueError, match="pooling"):
        classifier.EncoderClassifier(encoder_factory(), pooling="max")
    with pytest.raises(ValueError, match="problem_type"):
        classifier.EncoderClassifier(encoder_factory(), problem_type="ranking")


def test_fit_overfits_one_batch_and_save_load_roundtrip(tok, encoder_factory, tmp_path):
    train.setup(0)
    ds, _ = classifier.text_dataset(DF, tok)
    model = classifier.EncoderClassifier(encoder_factory(), 2, dropout=0.0)
    repeated = classifier.text_dataset(pd.concat([DF] * 4), tok)[0]  # 4 steps per epoch: fewer evals/checkpoints
    trainer, hist = train.fit(
        model,
        repeated,
        ds,
        out_dir=tmp_path / "ckpt",
        epochs=8,
        lr=1e-3,
        batch_size=4,
        tokenizer=tok,
        compute_metrics=classifier.compute_metrics_for("classification"),
        warmup_ratio=0.0,
        disable_tqdm=True,
    )
    assert hist["eval_loss"].iloc[-1] < 0.1 < hist["eval_loss"].iloc[0]
    logits, labels = train.predict(trainer, ds)  # rows come back in dataset order
    assert labels.tolist() == DF.label.tolist() and (logits.argmax(1) == labels).all()
    classifier.save_classifier(model, tok, tmp_path / "m", ["bad", "good"], max_length=128)
    pred = classifier.Predictor.load(tmp_path / "m")
    assert pred.max_length == 128 and pred.labels == ["bad", "good"]
    np.testing.assert_allclose(pred.logits(DF.text), logits, atol=1e-4)


def test_predictor_keeps_input_order_and_reports_probabilities(tok, encoder_factory):
    model = classifier.EncoderClassifier(encoder_factory(1), 2)
    p = classifier.Predictor(model, tok, ["no", "yes"], max_length=16)
    texts = DF.text.tolist() * 3
    batched = p.logits(texts, batch_size=2)
    one_by_one = np.concatenate([p.logits([t]) for t in texts])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-4)
    assert model.training  # the caller's mode is restored
    out = p.predict(texts[:2])
    probs = p.scores(texts[:2])
    assert out[0] == {"label": ["no", "yes"][probs[0].argmax()], "score": pytest.approx(probs[0].max())}
    np.testing.assert_allclose(probs.sum(1), 1.0)


def test_compute_metrics_against_sklearn_and_scipy():
    class EP:  # the two fields of transformers.EvalPrediction that compute_metrics reads
        def __init__(self, p, y):
            self.predictions, self.label_ids = p, y

    rng = np.random.default_rng(0)
    logits, y = rng.normal(size=(50, 2)), rng.integers(0, 2, 50)
    got = classifier.compute_metrics_for("classification")(EP(logits, y))
    assert got["mcc"] == pytest.approx(skm.matthews_corrcoef(y, logits.argmax(1)))
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, logits.argmax(1)))
    logits3, y3 = rng.normal(size=(60, 3)), rng.integers(0, 3, 60)
    got3 = classifier.compute_metrics_for("classification", average="macro")(EP(logits3, y3))
    assert got3["f1"] == pytest.approx(skm.f1_score(y3, logits3.argmax(1), average="macro"))
    gold, pred = rng.uniform(0, 1, 40), rng.uniform(0, 1, (40, 1))
    got = classifier.compute_metrics_for("regression")(EP(pred, gold))
    assert got["pearson"] == pytest.approx(stats.pearsonr(gold, pred[:, 0])[0])
    assert got["f1"] == pytest.approx(skm.f1_score(gold * 5 >= 3, pred[:, 0] * 5 >= 3))
    multi = classifier.compute_metrics_for("multilabel")(EP(rng.normal(size=(30, 3)), rng.integers(0, 2, (30, 3))))
    for kind, out in (
        ("classification", classifier.compute_metrics_for("classification")(EP(logits, y))),
        ("regression", got),
        ("multilabel", multi),
    ):
        assert set(classifier.compute_metrics_for(kind).names) == set(out), kind  # the names train.fit checks against
    with pytest.raises(ValueError, match="kind"):
        classifier.compute_metrics_for("ranking")


def test_fit_refuses_a_metric_the_eval_does_not_compute(tok, encoder_factory, tmp_path):
    ds, _ = classifier.text_dataset(DF, tok)
    model = classifier.EncoderClassifier(encoder_factory(), 2)
    with pytest.raises(ValueError, match="'auc' is not computed.*'mcc'"):
        train.fit(
            model,
            ds,
            ds,
            out_dir=tmp_path,
            metric="auc",
            tokenizer=tok,
            compute_metrics=classifier.compute_metrics_for("classification"),
        )
    assert not any(tmp_path.iterdir())  # refused before any training step or checkpoint


def test_setup_threads_follow_argument_then_omp_num_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert train.setup(0)["threads"] == 1
        assert train.setup(0, threads=2)["threads"] == 2
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert train.setup(0)["threads"] == torch.get_num_threads() == os.cpu_count()
    finally:
        torch.set_num_threads(before)


def test_freeze_layers_stops_gradients_below_layer_n(tok, encoder_factory):
    model = classifier.EncoderClassifier(encoder_factory(), 2)
    n_layers = len(model.encoder.encoder.layer)
    frozen = classifier.freeze_layers(model, 1)
    grads = {n for n, p in model.named_parameters() if p.requires_grad}
    assert frozen == sum(p.numel() for n, p in model.named_parameters() if n not in grads)
    assert not any(n.startswith(("encoder.embeddings.", "encoder.encoder.layer.0.")) for n in grads)
    assert any(n.startswith(f"encoder.encoder.layer.{n_layers - 1}.") for n in grads) and "head.weight" in grads
    enc = tok(["a b c"], return_tensors="pt")
    model(enc["input_ids"], enc["attention_mask"], labels=torch.tensor([1]))["loss"].backward()
    assert all(p.grad is None for n, p in model.named_parameters() if n not in grads)
    with pytest.raises(ValueError, match="outside 0..2"):
        classifier.freeze_layers(model, n_layers + 1)


def test_head_lr_gives_the_head_its_own_scheduled_learning_rate(tok, encoder_factory, tmp_path):
    ds, _ = classifier.text_dataset(DF, tok)
    model = classifier.EncoderClassifier(encoder_factory(), 2)
    trainer, _ = train.fit(
        model,
        ds,
        None,
        out_dir=tmp_path,
        max_steps=3,
        lr=1e-4,
        head_lr=1e-2,
        batch_size=2,
        tokenizer=tok,
        warmup_ratio=0.0,
        disable_tqdm=True,
    )
    head = {id(p) for p in model.head.parameters()}
    groups = [g for g in trainer.optimizer.param_groups if g["params"]]
    by_head = {all(id(p) in head for p in g["params"]): g for g in groups}
    assert set(by_head) == {True, False}  # the head's parameters alone in their own group(s)
    assert sum(len(g["params"]) for g in groups if id(g["params"][0]) in head) == 2  # weight and bias
    assert by_head[True]["initial_lr"] == 1e-2 and by_head[False]["initial_lr"] == 1e-4
    assert {1e-4, 1e-2} <= set(trainer.lr_scheduler.base_lrs)  # the schedule scales each group's own peak


def test_fit_times_training_in_a_temporary_checkpoint_folder(tok, encoder_factory, monkeypatch, tmp_path):
    """One training time (`trainer.train_seconds`, the wall clock of train()); checkpoints in a folder removed after."""
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # where fit's temporary folder goes
    ds, _ = classifier.text_dataset(DF, tok)
    model = classifier.EncoderClassifier(encoder_factory(), 2)
    trainer, hist = train.fit(
        model,
        ds,
        ds,
        max_steps=2,
        evals_per_epoch=2,
        batch_size=2,
        tokenizer=tok,
        compute_metrics=classifier.compute_metrics_for("classification"),
        disable_tqdm=True,
    )
    assert 0 < trainer.train_seconds < 60 and len(hist)
    assert trainer.args.greater_is_better is False  # metric "loss": lower is better (score.greater_is_better)
    assert not any(tmp_path.iterdir()), "the checkpoint folder is gone"
