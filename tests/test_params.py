"""Parameter checks: YAML 1.2 scalars, unknown names, wrong types, and every YAML under params/."""
from pathlib import Path

import pytest

from polarkit import params as P

ROOT = Path(__file__).resolve().parents[1]
DECL = {"lr": P.Param("lr", "float", 3e-5, ""), "name": P.Param("name", "str", "x", ""),
        "epochs": P.Param("epochs", "int", 1, ""), "tags": P.Param("tags", "list", [], ""),
        "qa": P.Param("qa", "dict", {}, ""), "any": P.Param("any", "None", None, "")}


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
        "lr": ("float", 3e-5), "name": ("str", "x"), "fail": ("bool", False), "seed": ("int", 0)}
    assert d["lr"].help == "learning rate"


YAMLS = sorted((ROOT / "params").glob("*/*.yaml"))


@pytest.mark.parametrize("yaml_path", YAMLS, ids=[f"{p.parent.name}/{p.stem}" for p in YAMLS])
def test_every_params_yaml_matches_its_notebook(yaml_path):
    P.check_file(yaml_path)


def test_every_notebook_has_all_three_profiles():
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for profile in ("smoke", "quick", "full"):
            assert (ROOT / "params" / profile / f"{nb.stem}.yaml").is_file(), f"{profile}/{nb.stem}.yaml"
