"""Parameter checks: YAML 1.2 scalars, unknown names, wrong types, and every YAML under params/."""

from pathlib import Path

import pytest
from conftest import make_notebook

from polarkit import params as P

ROOT = Path(__file__).resolve().parents[1]
DECL = {
    "lr": P.Param("lr", "float", 3e-5, ""),
    "name": P.Param("name", "str", "x", ""),
    "epochs": P.Param("epochs", "int", 1, ""),
    "tags": P.Param("tags", "list", [], ""),
    "qa": P.Param("qa", "dict", {}, ""),
    "any": P.Param("any", "None", None, ""),
}


def test_yaml_12_scalars(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("lr: 1e-3\nname: no\nflag: true\nn: 3\nx: 2.5E+2\noff: off\n")
    assert P.load_yaml(f) == {"lr": 0.001, "name": "no", "flag": True, "n": 3, "x": 250.0, "off": "off"}


def test_unknown_name_did_you_mean():
    with pytest.raises(P.ParamError, match=r"lrr: unknown parameter; did you mean 'lr'\?"):
        P.check({"lrr": 1.0}, DECL, "f.yaml")


def test_wrong_type_names_file_key_and_expectation():
    with pytest.raises(P.ParamError) as e:
        P.check({"epochs": "three", "name": False}, DECL, "params/quick/x.yaml")
    msg = str(e.value)
    assert "params/quick/x.yaml" in msg and "epochs: expected int" in msg and "name: expected str" in msg


def test_int_widens_to_float_and_none_accepts_anything():
    assert P.check({"lr": 1, "any": [1]}, DECL) == {"lr": 1.0, "any": [1]}
    assert isinstance(P.check({"lr": 1}, DECL)["lr"], float)


def test_float_is_not_an_int():
    with pytest.raises(P.ParamError, match="epochs: expected int"):
        P.check({"epochs": 2.5}, DECL)


def test_repair_undoes_yaml11_mangling():
    fixed, notes = P.repair({"lr": "1e-3", "name": "ok"}, DECL)
    assert fixed == {"lr": 0.001} and "1e-3" in notes[0]
    with pytest.raises(P.ParamError, match="quote"):
        P.repair({"name": False}, DECL)


def test_bad_yaml_files(tmp_path):
    (tmp_path / "a.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(P.ParamError, match="mapping"):
        P.load_yaml(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("a: [1\n")
    with pytest.raises(P.ParamError, match="not valid YAML"):
        P.load_yaml(tmp_path / "b.yaml")
    with pytest.raises(P.ParamError, match="no such parameter file"):
        P.load_yaml(tmp_path / "missing.yaml")


def test_declared_reads_the_parameters_cell(tiny_notebook):
    d = P.declared(tiny_notebook)
    assert {k: (p.type, p.default) for k, p in d.items()} == {
        "lr": ("float", 3e-5),
        "name": ("str", "x"),
        "fail": ("bool", False),
        "seed": ("int", 0),
    }
    assert d["lr"].help == "learning rate"


YAMLS = sorted(p for p in (ROOT / "params").glob("*/*.yaml") if p.parent.name != "sweeps")  # sweep files: test_sweep.py


@pytest.mark.parametrize("yaml_path", YAMLS, ids=[f"{p.parent.name}/{p.stem}" for p in YAMLS])
def test_every_params_yaml_matches_its_notebook(yaml_path):
    P.check_file(yaml_path)


def test_every_notebook_has_all_three_profiles():
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for profile in ("smoke", "quick", "full"):
            assert (ROOT / "params" / profile / f"{nb.stem}.yaml").is_file(), f"{profile}/{nb.stem}.yaml"


# --- YAML 1.2 as promised -----------------------------------------------------------------


def test_yaml_12_integers_times_and_dates(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(
        "batch_size: 010\nn_train: 0512\noctal: 0o10\nhexa: 0x1f\nmax_length: 1:04\n"
        "day: 2024-01-31\nneg: -07\nbinary: 0b11\n"
    )
    assert P.load_yaml(f) == {
        "batch_size": 10,
        "n_train": 512,
        "octal": 8,
        "hexa": 31,
        "max_length": "1:04",
        "day": "2024-01-31",
        "neg": -7,
        "binary": "0b11",
    }
    assert P.parse_overrides(["batch_size=010", "n_train=0512", "max_length=1:04", "day=2024-01-31"]) == {
        "batch_size": 10,
        "n_train": 512,
        "max_length": "1:04",
        "day": "2024-01-31",
    }


def test_sexagesimal_looking_value_is_refused_as_a_string():
    with pytest.raises(P.ParamError, match=r"epochs: expected int .*got str '1:04'"):
        P.check(P.parse_overrides(["epochs=1:04"]), DECL, "-p")


def test_duplicate_keys_are_refused_naming_key_line_and_file(tmp_path):
    f = tmp_path / "dup.yaml"
    f.write_text("lr: 1e-3\nepochs: 2\nlr: 2e-3\n")
    with pytest.raises(P.ParamError, match=rf"{f}: duplicate key 'lr' \(lines 1 and 3\)"):
        P.load_yaml(f)
    f.write_text("qa:\n  a: 1\n  a: 2\n")  # nested mappings too
    with pytest.raises(P.ParamError, match="duplicate key 'a'"):
        P.load_yaml(f)
    with pytest.raises(P.ParamError, match="duplicate key 'a'"):
        P.parse_overrides(["qa={a: 1, a: 2}"])
    with pytest.raises(P.ParamError, match="-p lr: given twice"):
        P.parse_overrides(["lr=1e-3", "lr=2e-3"])
    f.write_text("base: &b {x: 1}\nqa:\n  <<: *b\n  x: 2\n")  # a merge key overriding is not a duplicate
    assert P.load_yaml(f)["qa"] == {"x": 2}


@pytest.mark.parametrize("text", ["", "\n\n", "# quick profile\n# lr: 1e-3\n", "---\n"])
def test_empty_or_comment_only_yaml_is_refused(tmp_path, text):
    f = tmp_path / "empty.yaml"
    f.write_text(text)
    with pytest.raises(P.ParamError, match=rf"{f}: empty parameter file .* defaults would run.*`{{}}`"):
        P.load_yaml(f)


def test_explicit_empty_mapping_runs_the_defaults_on_purpose(tmp_path):
    f = tmp_path / "defaults.yaml"
    f.write_text("{}  # the notebook's own defaults\n")
    assert P.load_yaml(f) == {}


def test_non_utf8_yaml_names_the_file(tmp_path):
    f = tmp_path / "latin1.yaml"
    f.write_bytes("name: café\n".encode("latin-1"))
    with pytest.raises(P.ParamError, match=rf"{f}: not UTF-8 text \(byte b'\\xe9' at offset 9\)"):
        P.load_yaml(f)


# --- valid-value rules declared in the parameters cell ------------------------------------


@pytest.mark.parametrize(
    "comment, good, bad",
    [
        ("sentences per step [1, inf)", [1, 32, 10**9], [0, -1]),
        ("dropout [0, 1)", [0, 0.0, 0.5], [1, 1.0, -0.1, float("nan")]),
        ("lr (0, inf)", [1e-9, 3], [0, 0.0, -1e-3, float("nan")]),
        ("share (0, 1]", [1, 0.5], [0, 1.5]),
        ("max steps [-1, inf)", [-1, 0, 5], [-2]),
        ("pooling {cls, mean}", ["cls", "mean"], ["max", "CLS", ""]),
        ("patch side {2, 4, 7, 14}", [2, 14], [3, 28, "7", True]),
        ("widths, 3 ints in [1, inf)", [[1, 2, 3]], [[16, 32], [16, 0, 3], [1, 2, 3, 4], [1.0, 2, 3], 3]),
        ("numbers in (0, 1)", [[], [0.5, 0.25]], [[0.5, 1]]),
        ("vectors, items in {pooler, cls, mean}", [["cls"], ["mean", "cls"]], [["max"]]),
    ],
)
def test_rules_in_comments(comment, good, bad):
    rule = P.parse_rule(comment)
    assert rule is not None and comment.endswith(rule.text)
    assert [v for v in good if rule.problem(v)] == []
    assert [v for v in bad if rule.problem(v) is None] == []


@pytest.mark.parametrize(
    "comment",
    [
        "learning rate",
        "tanh of [CLS]",
        "{mask} marks the blank",
        "(0 for all 1,043; smoke uses a few)",
        "seeds (2, 4, 7) tried",
    ],
)
def test_comments_without_rules(comment):
    assert P.parse_rule(comment) is None


def test_check_refuses_values_outside_the_declared_rule(tmp_path):
    nb = make_notebook(
        tmp_path / "97_ranged.ipynb",
        "batch_size: int = 32  # nuisance: sentences per step [1, inf)\n"
        "epochs: float = 2.0  # scientific: passes (0, inf)\n"
        "channels: list = [32, 64, 128]  # scientific: widths, 3 ints in [1, inf)\n"
        'pooling: str = "mean"  # scientific: sentence vector {cls, mean}\n'
        'note: str = ""  # fixed: free text, no rule',
    )
    decl = P.declared(nb)
    assert decl["batch_size"].rule.text == "[1, inf)" and decl["note"].rule is None
    with pytest.raises(P.ParamError) as e:
        P.check({"batch_size": 0, "epochs": -1, "channels": [16, 32], "pooling": "max", "note": "x"}, decl, "q.yaml")
    msg = str(e.value)
    assert "batch_size: 0 is not in [1, inf) (default 32)" in msg and "epochs: -1 is not in (0, inf)" in msg
    assert "channels: expected 3 ints in [1, inf), got 2 item(s): [16, 32]" in msg
    assert "pooling: 'max' is not in {cls, mean}" in msg and "note" not in msg
    assert P.check({"batch_size": 1, "epochs": 1, "channels": [1, 2, 3]}, decl) == {
        "batch_size": 1,
        "epochs": 1.0,
        "channels": [1, 2, 3],
    }


def test_a_default_that_breaks_its_own_rule_is_a_notebook_error(tmp_path):
    nb = make_notebook(tmp_path / "96_bad.ipynb", "batch_size: int = 0  # nuisance: sentences per step [1, inf)")
    with pytest.raises(P.ParamError, match=r"96_bad.ipynb: parameters cell:\n  batch_size: default 0 breaks"):
        P.declared(nb)


@pytest.mark.parametrize(
    "nb, values, expected",
    [
        ("01_mnist_cnn", {"batch_size": 0}, "batch_size: 0 is not in [1, inf)"),
        ("01_mnist_cnn", {"epochs": -1}, "epochs: -1 is not in (0, inf)"),
        ("01_mnist_cnn", {"channels": [16, 32]}, "channels: expected 3 ints in [1, inf)"),
        ("02_mnist_vit", {"patch_size": 5}, "patch_size: 5 is not in {2, 4, 7, 14}"),
        ("03_nlp_cola", {"batch_size": 0, "dropout": 1.0}, "dropout: 1.0 is not in [0, 1)"),
        ("06_sts", {"family": "siamese"}, "family: 'siamese' is not in {bi, cross}"),
        ("07_review_classifier", {"epochs": -1.0, "task": "sentimnt"}, "task: 'sentimnt' is not in"),
    ],
)
def test_the_real_notebooks_refuse_out_of_range_values(nb, values, expected):
    with pytest.raises(P.ParamError) as e:
        P.check(values, P.declared(ROOT / "notebooks" / f"{nb}.ipynb"), nb)
    assert expected in str(e.value)


def test_batch_size_epochs_and_lr_have_rules_in_every_notebook():
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for name, p in P.declared(nb).items():
            if name in ("batch_size", "epochs", "lr", "seed", "max_length", "evals_per_epoch", "dropout"):
                assert p.rule is not None, f"{nb.stem}: {name} declares no valid range"
