"""Run folders through the executor (CLI path) and through plain papermill; failures keep a record."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from polarkit import cli, executor, report, runs


def _status(d: Path) -> dict:
    return json.loads((d / "status.json").read_text())


def _wait_for(condition, timeout: float = 120.0) -> None:
    """Poll `condition` until it holds or a generous deadline passes; not a speed check (assert after)."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)


def test_new_run_dirs_never_collide(outputs):
    dirs = {runs.new_run_dir("x", outputs) for _ in range(50)}  # same second, 50 distinct folders
    assert len(dirs) == 50


def test_executor_success_writes_the_whole_record(outputs, tiny_notebook, capfd):
    d = executor.execute(tiny_notebook, {"lr": 1e-3, "name": "no"}, profile="smoke")
    if sys.platform != "win32":  # the kernel talks over Unix sockets: no TCP warning in batch logs
        assert "without encryption" not in capfd.readouterr().err
    st = _status(d)
    assert st["state"] == "succeeded" and st["profile"] == "smoke" and st["duration_s"] >= 0
    assert {"notebook.ipynb", "notebook.html", "params.yaml", "env.json", "metrics.json"} <= {
        p.name for p in d.iterdir()
    }
    assert yaml.safe_load((d / "params.yaml").read_text()) == {"lr": 1e-3, "name": "no", "fail": False, "seed": 0}
    assert json.loads((d / "metrics.json").read_text()) == {"test_lr": 1e-3, "test_len": 2.0}
    env = json.loads((d / "env.json").read_text())
    assert env["versions"]["transformers"] and env["cores"] >= 1 and "commit" in env and "dirty" in env
    assert (outputs / "index.html").read_text().count("<tr>") == 2  # header + this run


def test_executor_failure_keeps_folder_marked_failed_with_cell(outputs, tiny_notebook):
    d = executor.execute(tiny_notebook, {"fail": True})
    st = _status(d)
    assert st["state"] == "failed" and st["error"] == "AssertionError" and st["message"] == "asked to fail"
    assert st["cell"] == 4  # execution count: parameters, injected parameters, start_run, the assert
    assert (d / "notebook.html").exists()


def test_plain_papermill_run_gets_a_folder_via_the_watcher(outputs, tiny_notebook, tmp_path):
    yml = tmp_path / "p.yaml"
    yml.write_text("lr: 1e-3\nname: 'ok'\n")  # papermill reads 1e-3 as a string; the kernel repairs it
    out = tmp_path / "out.ipynb"
    papermill = Path(sys.executable).parent / "papermill"
    subprocess.run(
        [str(papermill), str(tiny_notebook), str(out), "-f", str(yml), "-k", "python3"],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (d,) = list((outputs / "98_tiny").iterdir())
    _wait_for(lambda: (d / "notebook.html").exists() and _status(d).get("end"))  # the watcher finishes after papermill
    assert _status(d)["state"] == "succeeded" and (d / "notebook.ipynb").exists()
    assert json.loads((d / "metrics.json").read_text())["test_lr"] == 1e-3


def test_compare_shows_succeeded_failed_and_running(outputs, tiny_notebook, capsys):
    executor.execute(tiny_notebook, {"lr": 0.1})
    executor.execute(tiny_notebook, {"lr": 0.2})
    executor.execute(tiny_notebook, {"fail": True})
    half = runs.new_run_dir("98_tiny", outputs)
    runs.write_json(half / "status.json", {"state": "running", "kernel_pid": None, "start": runs.now()})
    (runs.new_run_dir("98_tiny", outputs) / "params.yaml").write_text("lr: [\n")  # half-written
    board = report.leaderboard(outputs, "98_tiny", metric="test_lr")
    assert list(board["status"])[:2] == ["succeeded", "succeeded"]
    assert list(board["test_lr"])[:2] == [0.2, 0.1]
    assert sorted(board["status"]) == ["failed", "running", "succeeded", "succeeded", "unknown"]
    assert "lr" in board.columns and "fail" in board.columns  # the params that differ
    assert cli.main(["compare", "98_tiny", "--metric", "test_lr", "--outputs", str(outputs)]) == 0
    assert "failed" in capsys.readouterr().out


def test_cli_check_refuses_bad_yaml_without_starting_anything(tmp_path, capsys, monkeypatch):
    root = Path(__file__).resolve().parents[1]
    nbs = sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if not nbs:
        pytest.skip("no notebooks yet")
    bad = root / "params" / "smoke" / nbs[0].name.replace(".ipynb", ".yaml")
    tmp = tmp_path / "params" / "smoke"
    tmp.mkdir(parents=True)
    (tmp_path / "notebooks").symlink_to(root / "notebooks")
    f = tmp / bad.name
    f.write_text(bad.read_text() + "\nseeed: 1\n")

    def no_process(*args, **kwargs):
        raise AssertionError(f"check must not start a kernel or any process: {args[:1]}")

    # the launcher first: importing it binds its own `Popen` to subprocess.Popen, patched or not
    monkeypatch.setattr("jupyter_client.launcher.Popen", no_process)  # what launches a kernel
    monkeypatch.setattr(subprocess, "Popen", no_process)  # cheap by construction: no kernel, no subprocess
    monkeypatch.setattr(executor, "execute", no_process)
    assert cli.main(["check", str(f)]) == 2
    assert "seeed: unknown parameter; did you mean 'seed'?" in capsys.readouterr().err


def test_cli_run_param_overrides_are_yaml_12_and_checked(outputs, tiny_notebook, capsys):
    assert cli.main(["run", str(tiny_notebook), "-p", "lr=1e-3", "-p", "name=no"]) == 0
    (d,) = list((outputs / "98_tiny").iterdir())
    assert json.loads((d / "metrics.json").read_text())["test_lr"] == 1e-3
    assert "name: 'no'" in (d / "params.yaml").read_text()
    capsys.readouterr()
    assert cli.main(["run", str(tiny_notebook), "-p", "lrr=1"]) == 2
    assert "lrr: unknown parameter; did you mean 'lr'?" in capsys.readouterr().err
    assert cli.main(["run", str(tiny_notebook), "-p", "lr"]) == 2
    assert "expected NAME=VALUE" in capsys.readouterr().err
    assert len(list((outputs / "98_tiny").iterdir())) == 1  # refused before any kernel or folder


def test_environment_capture_names_commit_versions_and_device():
    from polarkit import environment

    env = environment.capture()
    assert {"commit", "dirty", "versions", "device", "cores", "data"} <= set(env)
    assert env["versions"]["torch"] and env["device"] in ("cpu", "cuda", "mps")
    assert environment.device("cpu") == "cpu" and environment.device() == env["device"]
