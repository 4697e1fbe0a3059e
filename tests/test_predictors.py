"""polarkit.predictors + polarkit.tasks.predict + `polarkit predict`: one predictor shape for every task,
model cards, specs, and clear errors for bad input files (no MLflow store needed)."""

import argparse
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow_store import make_run, tiny_classifier, tiny_parts  # noqa: F401  (fixtures)

from polarkit import cli_models, predictors
from polarkit.tasks import classifier, predict, sts

TEXTS = ["The cat sat on the mat.", "Cat the on sat.", "A much longer sentence, with many more words, comes here."]


def _cli(*argv):
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    cli_models.add_parsers(sub)
    args = ap.parse_args([str(a) for a in argv])
    return args.fn(args)


def test_classification_predictor_shape_order_and_card(tiny_classifier, tmp_path):
    d = tiny_classifier(tmp_path / "m")
    card = predictors.read_card(d)
    assert (card["task"], card["kind"], card["labels"]) == ("cola", "classification", ["unacceptable", "acceptable"])
    p = predictors.load(d)
    out = p.predict(TEXTS)
    ref = classifier.Predictor.load(d).scores(TEXTS)
    assert [set(r) for r in out] == [{"label", "confidence", "probs"}] * 3
    np.testing.assert_allclose([r["probs"]["acceptable"] for r in out], ref[:, 1], atol=1e-6)
    assert [r["label"] for r in out] == [["unacceptable", "acceptable"][k] for k in ref.argmax(1)]
    single = p.predict(TEXTS[0])  # alone in its batch: no padding, so equal up to float noise
    assert len(single) == 1 and single[0]["label"] == out[0]["label"]
    assert single[0]["confidence"] == pytest.approx(out[0]["confidence"], abs=1e-5) and p.predict([]) == []
    assert p.predict(pd.DataFrame({"text": TEXTS}))[2] == out[2]


def test_run_folder_and_model_folder_specs(tiny_classifier, outputs):
    run_dir = make_run(outputs)
    with pytest.raises(ValueError, match="holds no saved model"):
        predictors.load(run_dir)
    d = tiny_classifier(run_dir / "models" / "best")
    assert predictors.resolve(run_dir) == d == predictors.resolve(d)
    tiny_classifier(run_dir / "models" / "second")
    with pytest.raises(ValueError, match="holds several models"):
        predictors.resolve(run_dir)
    assert predictors.parse_spec("sts@champion") == ("alias", "sts", "champion")
    assert predictors.parse_spec("cola/3") == ("version", "cola", "3")
    with pytest.raises(ValueError, match="not a registry spec"):
        predictors.parse_spec("nowhere/at/all")


def test_model_cards_refuse_loaders_outside_polarkit(tmp_path, tiny_classifier):
    with pytest.raises(ValueError, match="inside polarkit"):
        predictors.save_model_card(tmp_path, "cola", "os:system", "classification")
    with pytest.raises(ValueError, match="kind must be one of"):
        predictors.save_model_card(tmp_path, "cola", predict.LOADERS["classification"], "regression")
    d = tiny_classifier(tmp_path / "m")
    card = json.loads((d / predictors.CARD).read_text())
    (d / predictors.CARD).write_text(json.dumps({**card, "loader": "subprocess:run"}))
    with pytest.raises(ValueError, match="refused"):
        predictors.load(d)


def test_multilabel_predictor_uses_per_label_thresholds(tiny_parts, tmp_path):
    tok, encoder = tiny_parts
    clf = classifier.EncoderClassifier(encoder(1), 3, problem_type="multi_label_classification")
    d = predict.save_classifier_model(
        tmp_path / "kw", clf, tok, ["a", "b", "c"], "keywords", max_length=32, thresholds=[0.0, 1.0, 0.5]
    )
    out = predictors.load(d).predict(TEXTS)
    probs = classifier.Predictor.load(d).scores(TEXTS)
    for row, p in zip(out, probs):
        assert "a" in row["labels"] and "b" not in row["labels"] and ("c" in row["labels"]) == (p[2] >= 0.5)
        assert list(row["labels"].values()) == sorted(row["labels"].values(), reverse=True)
        np.testing.assert_allclose(list(row["probs"].values()), p, atol=1e-6)


def test_sts_predictor_scores_pairs(tiny_parts, tmp_path):
    tok, encoder = tiny_parts
    for family in ("cross", "bi"):
        sim = sts.Similarity(sts.build(family, encoder(2)), tok, family, max_length=32)
        d = predict.save_sts_model(tmp_path / family, sim)
        p = predictors.load(d)
        pairs = [("a cat", "a dog"), ("one", "two three four")]
        out = p.predict(pairs)
        np.testing.assert_allclose([r["score"] for r in out], sim.scores(*zip(*pairs)), atol=1e-5)
        assert p.predict(pd.DataFrame(pairs, columns=["sentence1", "sentence2"])) == out
        assert p.predict(("a cat", "a dog"))[0]["score"] == pytest.approx(out[0]["score"], abs=1e-5)  # one bare pair
        assert all(0 <= r["score"] <= 5 for r in out)


def test_keyword_sentiment_and_encoder_predictors(tiny_parts, tmp_path):
    from polarkit import embed

    tok, encoder = tiny_parts
    kw = classifier.EncoderClassifier(encoder(3), 2, problem_type="multi_label_classification")
    pol = classifier.EncoderClassifier(encoder(4), 3)
    d = predict.save_keyword_sentiment(
        tmp_path / "ks",
        kw,
        pol,
        tok,
        ["price", "taste"],
        ["positive", "negative", "neutral"],
        thresholds=[0.0, 1.01],
        max_length=32,
    )
    out = predictors.load(d).predict(TEXTS)
    assert all([k for k, _ in r["pairs"]] == ["price"] for r in out)  # price always passes, taste never
    assert all(pol_ in ("positive", "negative", "neutral") for r in out for _, pol_ in r["pairs"])
    enc = encoder(5)
    enc.save_pretrained(tmp_path / "enc")
    tok.save_pretrained(tmp_path / "enc")
    predict.save_encoder_card(tmp_path / "enc", pooling="mean", prefix="query: ", max_length=32)
    e = predictors.load(tmp_path / "enc")
    ref = embed.encode(enc.eval(), tok, TEXTS, pooling="mean", prefix="query: ", max_length=32, progress=False)
    np.testing.assert_allclose(np.array([r["embedding"] for r in e.predict(TEXTS)]), ref, atol=1e-5)


def test_quantized_load_predicts_the_same_labels_shape(tiny_classifier, tmp_path):
    d = tiny_classifier(tmp_path / "m")
    q = predictors.load(d, quantize=True).predict(TEXTS)
    assert [set(r) for r in q] == [{"label", "confidence", "probs"}] * 3


def test_cli_predict_texts_pairs_and_files(tiny_classifier, tmp_path, capsys):
    d = tiny_classifier(tmp_path / "m")
    assert _cli("predict", d, *TEXTS[:2]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["text"] for x in lines] == TEXTS[:2] and {"label", "confidence", "probs"} <= set(lines[0])
    src = tmp_path / "in.csv"
    pd.DataFrame({"id": [1, 2, 3], "text": TEXTS}).to_csv(src, index=False)
    assert _cli("predict", d, "--input", src, "--output", tmp_path / "out.csv") == 0
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == ["id", "text", "label", "confidence", "p_unacceptable", "p_acceptable"]
    np.testing.assert_allclose(
        out.p_acceptable, [r["probs"]["acceptable"] for r in predictors.load(d).predict(TEXTS)], atol=1e-6
    )
    src_jsonl = tmp_path / "in.jsonl"
    src_jsonl.write_text("".join(json.dumps({"sentence": t}) + "\n" for t in TEXTS))
    assert _cli("predict", d, "--input", src_jsonl, "--column", "sentence", "--output", tmp_path / "o.jsonl") == 0
    assert [json.loads(x)["sentence"] for x in (tmp_path / "o.jsonl").read_text().splitlines()] == TEXTS


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("empty.csv", b"", "is empty"),
        ("header.csv", b"text\n", r"has no rows \(only a header\)"),
        ("latin1.csv", "text\ncaf\xe9\n".encode("latin-1"), "is not UTF-8 text"),
        ("nocol.csv", b"sentence,id\nhello,1\n", r"has no column 'text' \(columns: \['sentence', 'id'\]\)"),
        ("bad.jsonl", b'{"text": "ok"}\n{"text": \n', "line 2: not JSON"),
        ("list.jsonl", b'["a", "b"]\n', "record 1 is not a JSON object"),
        ("data.xlsx", b"PK", "unknown format"),
    ],
)
def test_cli_predict_file_errors_are_clear(tiny_classifier, tmp_path, name, content, message):
    d = tiny_classifier(tmp_path / "m")
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=message):
        _cli("predict", d, "--input", tmp_path / name)


def test_cli_predict_argument_errors(tiny_parts, tiny_classifier, tmp_path):
    d = tiny_classifier(tmp_path / "m")
    with pytest.raises(ValueError, match="nothing to predict"):
        _cli("predict", d)
    with pytest.raises(ValueError, match="no such file"):
        _cli("predict", d, "--input", tmp_path / "missing.csv")
    tok, encoder = tiny_parts
    s = predict.save_sts_model(tmp_path / "sts", sts.Similarity(sts.build("cross", encoder(2)), tok, "cross", 32))
    with pytest.raises(ValueError, match="use --pair A B"):
        _cli("predict", s, "one sentence")
    (tmp_path / "p.csv").write_text("a,b,c\nx,y,z\n")
    with pytest.raises(ValueError, match="for the sentence pairs"):
        _cli("predict", s, "--input", tmp_path / "p.csv")
    assert _cli("predict", s, "--input", tmp_path / "p.csv", "--column", "a,c", "--output", tmp_path / "s.csv") == 0
    assert list(pd.read_csv(tmp_path / "s.csv").columns) == ["a", "b", "c", "score"]


def test_cli_models_registry_option_is_added_to_an_existing_models_command():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("models")
    m.set_defaults(fn=lambda args: "specs")
    cli_models.add_parsers(sub)
    assert ap.parse_args(["models"]).fn(ap.parse_args(["models"])) == "specs"
    assert {"predict", "promote", "registry", "track", "mlflow-ui"} <= set(sub.choices)


def test_every_predictor_names_its_attention_parts(tiny_parts, tiny_classifier, tmp_path):
    """What `polarkit serve`'s /explain draws with: the HF encoder inside each predictor, its tokenizer and
    prefix, and whether a pair is one input (cross) or two (bi)."""
    tok, encoder = tiny_parts
    clf = predictors.load(tiny_classifier(tmp_path / "clf"))
    (part,) = clf.attention_parts()
    assert part[0] is clf.predictor.model.encoder and part[1] is clf.predictor.tokenizer and part[3] is True
    for family in ("cross", "bi"):
        sim = sts.Similarity(sts.build(family, encoder(2)), tok, family, max_length=32, prefix="query: ")
        (part,) = predictors.load(predict.save_sts_model(tmp_path / family, sim)).attention_parts()
        assert hasattr(part[0], "set_attn_implementation") and part[2] == "query: " and part[3] == (family == "cross")
    kw = classifier.EncoderClassifier(encoder(3), 2, problem_type="multi_label_classification")
    pol = classifier.EncoderClassifier(encoder(4), 3)
    d = predict.save_keyword_sentiment(
        tmp_path / "ks", kw, pol, tok, ["price", "taste"], ["positive", "negative", "neutral"], [0.5, 0.5], 32
    )
    ks = predictors.load(d)
    assert ks.attention_parts()[0][0] is ks.keywords.model.encoder  # the keyword stage: what decides the pairs
    with pytest.raises(ValueError, match="has no Hugging Face encoder"):
        predict.attention_part(SimpleNamespace(model=torch.nn.Linear(2, 2), tokenizer=tok, prefix=""))
