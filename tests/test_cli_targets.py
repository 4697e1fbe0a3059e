"""`polarkit run` targets: stems and prefixes, profile folders, `-f` pairing, and clear refusals."""

import json
from pathlib import Path

import pytest
import yaml

from polarkit import cli
from polarkit.params import ParamError

ROOT = Path(__file__).resolve().parents[1]
STEMS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))


def test_stem_and_unique_prefix():
    ((nb, y),) = cli._jobs(["03"], "smoke")
    assert nb == ROOT / "notebooks" / "03_nlp_cola.ipynb" and y == ROOT / "params" / "smoke" / "03_nlp_cola.yaml"
    assert cli._jobs(["03_nlp_cola"], None) == [(nb, None)]


def test_ambiguous_prefix_lists_the_matches():
    with pytest.raises(ParamError) as e:
        cli._jobs(["0"], "smoke")
    assert str(e.value) == f"0: ambiguous, matches {len(STEMS)} notebooks: {', '.join(STEMS)}"
    with pytest.raises(ParamError, match=r"^9: no such notebook \(have: 01_mnist_cnn, "):
        cli._jobs(["9"], None)


def test_missing_yaml_names_the_path():
    with pytest.raises(ParamError, match=r"^params/quick/01_mnist_cnnn.yaml: no such parameter file"):
        cli._jobs(["params/quick/01_mnist_cnnn.yaml"], None)
    with pytest.raises(ParamError) as e:
        cli._jobs(["01"], "smoke-keywords")
    have = ", ".join(sorted(p.parent.name for p in (ROOT / "params").glob("*/01_mnist_cnn.yaml")))
    assert "smoke" in have and "sweeps" not in have
    assert str(e.value) == (
        f"{ROOT / 'params/smoke-keywords/01_mnist_cnn.yaml'}: missing: no 'smoke-keywords' "
        f"parameter file for 01_mnist_cnn (profiles that have one: {have})"
    )


def test_profile_accepts_the_variant_folders_under_params(capsys):
    args = cli.parser().parse_args(["run", "06", "--profile", "full-bi"])
    assert cli._jobs(args.targets, args.profile)[0][1] == ROOT / "params" / "full-bi" / "06_sts.yaml"
    assert cli.parser().parse_args(["run-all", "--profile", "smoke-keywords"]).profile == "smoke-keywords"
    with pytest.raises(SystemExit) as e:
        cli.parser().parse_args(["run", "06", "--profile", "fulll"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "no profile 'fulll'" in err and "full-bi" in err and "smoke-keywords" in err


def test_run_one_notebook_with_any_yaml(outputs, tiny_notebook, tmp_path):
    f = tmp_path / "elsewhere" / "my.yaml"
    f.parent.mkdir()
    f.write_text("lr: 0.5\nname: abc  # a YAML that sits outside params/\n")
    assert cli.main(["run", str(tiny_notebook), "-f", str(f)]) == 0
    (d,) = list((outputs / "98_tiny").iterdir())
    assert json.loads((d / "metrics.json").read_text()) == {"test_lr": 0.5, "test_len": 3.0}
    assert yaml.safe_load((d / "params.yaml").read_text())["name"] == "abc"
    assert json.loads((d / "status.json").read_text())["profile"] == str(f)  # not the folder's name "elsewhere"


def test_file_option_is_checked_before_any_kernel(outputs, tiny_notebook, tmp_path, capsys):
    f = tmp_path / "my.yaml"
    f.write_text("lr: -1\n")
    assert cli.main(["run", str(tiny_notebook), "-f", str(tmp_path / "none.yaml")]) == 2
    assert f"{tmp_path / 'none.yaml'}: no such parameter file" in capsys.readouterr().err
    assert cli.main(["run", str(tiny_notebook), "03", "-f", str(f)]) == 2
    assert "pairs one YAML with one notebook target" in capsys.readouterr().err
    assert cli.main(["run", str(tiny_notebook), "-f", str(f), "--profile", "smoke"]) == 2
    assert "without --profile" in capsys.readouterr().err
    f.write_text("lrr: 1\n")
    assert cli.main(["run", str(tiny_notebook), "-f", str(f)]) == 2
    assert f"{f}:\n  lrr: unknown parameter; did you mean 'lr'?" in capsys.readouterr().err
    assert not outputs.exists() or not list(outputs.rglob("status.json"))


def test_check_reports_every_bad_file(tmp_path, capsys):
    (tmp_path / "notebooks").symlink_to(ROOT / "notebooks")
    folder = tmp_path / "params" / "mine"
    folder.mkdir(parents=True)
    good = ROOT / "params" / "smoke" / "01_mnist_cnn.yaml"
    bad = {
        "01_mnist_cnn.yaml": "batch_size: 0\n",
        "03_nlp_cola.yaml": "# nothing set\n",
        "06_sts.yaml": "lr: 1e-4\nlr: 2e-4\n",
    }
    for name, text in bad.items():
        (folder / name).write_text(text)
    (folder / "07_review_classifier.yaml").write_bytes("prefix: é\n".encode("latin-1"))
    files = [str(p) for p in sorted(folder.iterdir())]
    assert cli.main(["check", *files, str(good)]) == 2
    out, err = capsys.readouterr()
    assert f"ok  {good}" in out and err.count("FAIL ") == 4
    for expected in (
        "01_mnist_cnn.yaml:\n  batch_size: 0 is not in [1, inf)",
        "03_nlp_cola.yaml:\n  empty parameter file",
        "06_sts.yaml:\n  duplicate key 'lr' (lines 1 and 2)",
        "07_review_classifier.yaml:\n  not UTF-8 text",
    ):
        assert f"FAIL {folder}/{expected}" in err
    assert "4 of 5 parameter file(s) failed" in err
