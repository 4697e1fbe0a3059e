"""Sweeps (polarkit.sweep, polarkit.trial): sweep-file checks, SQLite and PostgreSQL studies, pruning,
and a worker killed mid-trial. Trials run a tiny notebook whose metric is a known function of its
parameters (seconds per trial); one test trains a tiny regression through `train.fit`."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import nbformat
import optuna
import pytest
import yaml
from conftest import make_notebook
from pg import PASSWORD, postgres_url  # noqa: F401  (fixture)

from polarkit import params as P
from polarkit import runs, sweep
from polarkit import trial as T

ROOT = Path(__file__).resolve().parents[1]
TS = optuna.trial.TrialState

QUAD = (
    'lr: float = 0.01  # learning rate (0, inf)\nwidth: int = 8  # width [1, 64]\nopt: str = "adam"  # optimiser\n'
    "seed: int = 0  # seed\nsteps: int = 4  # steps reported to the trial",
    # the trial numbered $HOLD_TRIAL sleeps, so that a test can kill its worker mid-trial
    "import math, os, time\nfrom polarkit import trial as T\n"
    "quality = -(math.log10(lr) + 2) ** 2 - abs(width - 16) / 16 + (opt == 'adam') * 0.1\n"
    "if os.environ.get('POLARKIT_TRIAL_NUMBER') == os.environ.get('HOLD_TRIAL', '-'):\n    time.sleep(600)",
    "rep = T.Reporter('val_score')\nfor step in range(steps):\n"
    "    if rep.report(quality * (steps - step) / steps, step):\n        break\nT.raise_if_pruned(rep)",
    "run.finish({'val_score': quality, 'test_score': quality + 0.5, 'train_seconds': 0.1})",
)


@pytest.fixture
def quad(tmp_path):
    """A notebook whose val_score peaks at lr 1e-2, width 16, opt adam; it reports 4 steps to a pruner."""
    return make_notebook(tmp_path / "97_quad.ipynb", *QUAD)


def write_sweep(folder: Path, name: str, notebook: Path, **keys) -> Path:
    spec = {
        "notebook": str(notebook),
        "metric": "val_score",
        "direction": "maximize",
        "sampler": "random",
        "seed": 0,
        "trials": 3,
        "space": {"lr": {"low": 1.0e-4, "high": 1.0, "log": True}},
        **keys,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in spec.items() if v is not None}, sort_keys=False))
    return path


def run_folders(outputs: Path, stem: str = "97_quad") -> list[Path]:
    return sorted(p.parent for p in (outputs / stem).glob("*/status.json"))


def folders_by_trial(outputs: Path, study: str, stem: str = "97_quad") -> dict[int, list[Path]]:
    found: dict[int, list[Path]] = {}
    for d in run_folders(outputs, stem):
        st = runs.read_json(d / "status.json")
        if st.get("study") == study:
            found.setdefault(st["trial"], []).append(d)
    return found


def assert_best_agrees(study, outputs: Path) -> None:
    """The study's best trial is the best of the run folders' metrics, and points at its own folder."""
    by_trial = folders_by_trial(outputs, study.study_name)
    complete = study.get_trials(states=(TS.COMPLETE,))
    from_folders = {t.number: runs.read_json(by_trial[t.number][0] / "metrics.json")["val_score"] for t in complete}
    assert study.best_trial.value == pytest.approx(max(from_folders.values()))
    assert from_folders[study.best_trial.number] == pytest.approx(study.best_trial.value)
    assert Path(study.best_trial.user_attrs["run_dir"]) == by_trial[study.best_trial.number][0]


# --- sweep files refused before anything starts ----------------------------------------------------

BAD = {
    "unknown parameter": (
        {"space": {"lrr": {"low": 1e-4, "high": 1.0, "log": True}}},
        r"space\.lrr: unknown parameter; did you mean 'lr'\?",
    ),
    "float range on an int parameter": (
        {"space": {"width": {"low": 1.5, "high": 8.0}}},
        r"space\.width: a float range on the int parameter width",
    ),
    "type disagrees with the declaration": (
        {"space": {"width": {"type": "float", "low": 1, "high": 8}}},
        r"space\.width: a float range on the int parameter",
    ),
    "a choice of the wrong type": ({"space": {"opt": ["adam", 3]}}, r"space\.opt: opt: expected str"),
    "empty space": ({"space": {}}, r"space: empty"),
    "metric the notebook does not write": (
        {"metric": "val_scor"},
        r"metric: val_scor is not written by 97_quad.ipynb; did you mean 'val_score'\?",
    ),
    "test-set metric": ({"metric": "test_score"}, r"metric: test_score is measured on the 'test' split.*test set"),
    "not a validation metric": (
        {"metric": "train_seconds", "direction": "minimize"},
        r"metric: train_seconds is not a validation metric",
    ),
    "unknown key": ({"trails": 4}, r"trails: unknown key; did you mean 'trials'\?"),
    "range outside the declared values": (
        {"space": {"width": {"low": 0, "high": 8}}},
        r"space\.width: low: width: 0 is not in \[1, 64\]",
    ),
    "log range from zero": (
        {"space": {"lr": {"low": 0.0, "high": 1.0, "log": True}}},
        r"space\.lr: log: needs low > 0",
    ),
    "grid over a continuous range": (
        {"sampler": "grid"},
        r"sampler: grid needs enumerable dimensions: give lr a `step`",
    ),
    "unknown pruner": ({"pruner": "hyperbnd"}, r"pruner: unknown pruner 'hyperbnd'"),
    "maximising a loss": ({"metric": "val_loss"}, r"direction: maximize on val_loss"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_sweep_file_is_refused_naming_the_key(case, quad, tmp_path, outputs, capsys):
    keys, expected = BAD[case]
    if case == "maximising a loss":  # a notebook that writes val_loss, so that only the direction is wrong
        make_notebook(quad, QUAD[0], *QUAD[1:-1], "run.finish({'val_score': quality, 'val_loss': -quality})")
    path = write_sweep(tmp_path, "bad", quad, **keys)
    with pytest.raises(P.ParamError, match=expected) as e:
        sweep.load(path)
    assert str(path) in str(e.value)
    assert sweep.main([str(path)]) == 2  # the command line: exit status 2, message on stderr
    assert re.search(expected, capsys.readouterr().err)
    assert not run_folders(outputs) and not (outputs / "sweeps").exists(), "no trial, no study"


def test_bad_base_yaml_is_refused(quad, tmp_path, outputs):
    base = tmp_path / "base.yaml"
    base.write_text("lrr: 0.1\n")
    with pytest.raises(P.ParamError, match=r"(?s)base: .*lrr: unknown parameter; did you mean 'lr'"):
        sweep.load(write_sweep(tmp_path, "bad", quad, base=str(base)))
    with pytest.raises(P.ParamError, match=r"space\.lr: also fixed by -p"):
        sweep.load(write_sweep(tmp_path, "bad", quad), overrides={"lr": 0.1})


def test_notebook_can_declare_its_val_split_a_test_set(quad, tmp_path):
    """03_nlp_cola's `val_*` figures are on GLUE's validation set, its test set: its metadata says so."""
    book = nbformat.read(quad, as_version=4)
    book.metadata["polarkit"] = {"test_splits": ["val"]}
    nbformat.write(book, quad)
    with pytest.raises(
        P.ParamError,
        match=r"metric: val_score is measured on the 'val' split, which this notebook "
        r"declares a test split",
    ):
        sweep.load(write_sweep(tmp_path, "bad", quad))


def test_unreachable_storage_is_refused_within_seconds(quad, tmp_path, outputs):
    path = write_sweep(tmp_path, "bad", quad)
    refused = r"--storage postgresql\+psycopg2://polarkit@127\.0\.0\.1:1/x: cannot connect"  # no password shown
    with pytest.raises(P.ParamError, match=refused):
        sweep.run_sweep(path, storage="postgresql://polarkit:secret@127.0.0.1:1/x")
    with pytest.raises(P.ParamError, match=r"--storage ftp://x: unsupported scheme"):
        sweep.run_sweep(path, storage="ftp://x")
    assert not run_folders(outputs) and not (outputs / "sweeps").exists()


def test_cli_exit_status_2_on_a_bad_file(quad, tmp_path, outputs):
    path = write_sweep(tmp_path, "bad", quad, metric="test_score")
    out = subprocess.run(
        [sys.executable, "-m", "polarkit.sweep", str(path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2 and "metric: test_score" in out.stderr and "test set" in out.stderr


@pytest.mark.parametrize("path", sorted((ROOT / "params" / "sweeps").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_sweep_files_check(path):
    sw = sweep.load(path)
    assert sw.space and sw.trials >= 12 and sw.base is not None
    assert sw.metric.split("_", 1)[0] not in sw.test_splits


# --- running sweeps ---------------------------------------------------------------------------------


def test_sqlite_single_worker(quad, tmp_path, outputs):
    path = write_sweep(
        tmp_path,
        "quad",
        quad,
        trials=4,
        fixed={"steps": 2},
        space={
            "lr": {"low": 1e-4, "high": 1.0, "log": True},
            "width": {"low": 4, "high": 32, "step": 4},
            "opt": ["adam", "sgd"],
        },
    )
    study = sweep.run_sweep(path)
    assert (outputs / "sweeps" / "quad" / "study.db").is_file()
    trials = study.get_trials()
    assert [t.state for t in trials] == [TS.COMPLETE] * 4
    by_trial = folders_by_trial(outputs, "quad")
    assert sorted(by_trial) == [0, 1, 2, 3] and all(len(v) == 1 for v in by_trial.values())
    for t in trials:
        folder = by_trial[t.number][0]
        st = runs.read_json(folder / "status.json")
        assert st["state"] == "succeeded" and st["sweep"] == st["study"] == "quad" and st["trial"] == t.number
        assert st["storage"].startswith("sqlite:///")
        ran = yaml.safe_load((folder / "params.yaml").read_text())
        assert {k: ran[k] for k in t.params} == t.params and ran["steps"] == 2
    assert_best_agrees(study, outputs)

    again = sweep.run_sweep(path)  # resuming a finished study runs nothing
    assert len(again.get_trials()) == 4
    more = sweep.run_sweep(path, trials=5)  # a larger total runs the difference
    assert len(more.get_trials(states=(TS.COMPLETE,))) == 5 and len(run_folders(outputs)) == 5

    rep = sweep.report_sweep("quad")
    assert len(rep["trials"]) == 5 and rep["best"]["number"] == more.best_trial.number
    assert {"history", "slice", "importances", "parallel"} <= set(rep["figures"])
    assert all(p.is_file() for p in rep["figures"].values())
    assert set(rep["importances"]) == {"lr", "width", "opt"} and rep["noise"]["k"] >= 2
    assert rep["best_test"] == {"test_score": pytest.approx(more.best_trial.value + 0.5)}
    best = P.check_file(rep["best_yaml"], quad)  # `polarkit run` / papermill accept it as is
    assert {k: best[k] for k in more.best_trial.params} == more.best_trial.params and best["steps"] == 2
    assert "polarkit run 97_quad -f" in rep["best_yaml"].read_text()
    assert "quad" in sweep.format_report(rep)


def test_pruned_trials_stop_early_and_say_so(quad, tmp_path, outputs):
    path = write_sweep(
        tmp_path,
        "pruning",
        quad,
        sampler="grid",
        trials=None,
        pruner={"type": "median", "n_startup_trials": 1},
        space={"lr": [1e-2, 1e-4, 1.0, 1e-3]},
    )
    study = sweep.run_sweep(path)
    states = [t.state for t in study.get_trials()]
    assert len(states) == 4 and TS.PRUNED in states and states.count(TS.COMPLETE) + states.count(TS.PRUNED) == 4
    by_trial = folders_by_trial(outputs, "pruning")
    for t in study.get_trials(states=(TS.PRUNED,)):
        st = runs.read_json(by_trial[t.number][0] / "status.json")
        assert st["state"] == "pruned" and st["pruned_at_step"] == t.last_step < 3
        assert "val_score" not in runs.read_json(by_trial[t.number][0] / "metrics.json")  # stopped before finish
    table = sweep.report_sweep(study)["trials"]
    assert table.loc[table.state == "PRUNED", "pruned_at_step"].notna().all()


def test_a_surplus_trial_ends_unrun(quad, tmp_path, outputs):
    """Two workers asking at the same instant for the last of N trials: the later-numbered one yields."""
    sw = sweep.load(write_sweep(tmp_path, "surplus", quad, trials=2))
    study = optuna.create_study(direction="maximize")
    study.ask(), study.ask()  # two trials already running (elsewhere)
    objective = sweep._Objective(sw, "sqlite:///unused.db", sw.trials)
    with pytest.raises(sweep.Surplus):
        objective(study.ask())
    assert study.trials[2].user_attrs == {"surplus": True} and not run_folders(outputs)


def test_pruning_callback_steps_and_directions():
    """Unit: eval_<metric> reported at global_step or examples seen, sign-adjusted to the study's direction."""
    seen = []

    class FakeTrial:
        number, study = 7, SimpleNamespace(direction=optuna.study.StudyDirection.MAXIMIZE)

        def report(self, value, step):
            seen.append((value, step))

        def should_prune(self):
            return len(seen) >= 2

    args = SimpleNamespace(train_batch_size=8, gradient_accumulation_steps=2, world_size=1)
    control = SimpleNamespace(should_training_stop=False)
    cb = T.PruningCallback("loss", trial=FakeTrial(), step_unit="examples")
    cb.on_train_begin(args, None, control)
    cb.on_evaluate(args, SimpleNamespace(global_step=5), control, metrics={"eval_loss": 0.5})
    assert seen == [(-0.5, 80)] and not control.should_training_stop  # a loss in a maximise study: negated
    cb.on_evaluate(args, SimpleNamespace(global_step=10), control, metrics={"eval_loss": 0.4})
    assert control.should_training_stop and cb.pruned_at_step == 160 and cb.value == 0.4
    acc = T.PruningCallback("eval_accuracy", trial=FakeTrial())
    acc.on_evaluate(args, SimpleNamespace(global_step=3), control, metrics={"eval_accuracy": 0.9})
    assert seen[-1] == (0.9, 3)
    assert T.pruning_callback("loss") is None  # not a trial: no callback, ordinary runs untouched
    with pytest.raises(T.Pruned, match="trial 7 pruned at step 160"):
        T.raise_if_pruned(cb)


FIT = (
    "lr: float = 0.01  # learning rate\nseed: int = 0  # seed",
    "import tempfile, torch\nfrom polarkit import train\ntrain.setup(seed)\n"
    "class Reg(torch.nn.Module):\n"
    "    def __init__(self):\n        super().__init__()\n        self.lin = torch.nn.Linear(4, 1)\n"
    "    def forward(self, x, labels=None):\n"
    "        out = self.lin(x).squeeze(-1)\n"
    "        return {'loss': torch.nn.functional.mse_loss(out, labels), 'logits': out}\n"
    "class Data(torch.utils.data.Dataset):\n"
    "    def __init__(self, n, s):\n        g = torch.Generator().manual_seed(s)\n"
    "        self.x = torch.randn(n, 4, generator=g)\n"
    "        self.y = self.x @ torch.tensor([1.0, -2.0, 3.0, 0.5]) + 4\n"
    "    def __len__(self):\n        return len(self.y)\n"
    "    def __getitem__(self, i):\n        return {'x': self.x[i], 'labels': self.y[i]}\n"
    "trainer, hist = train.fit(Reg(), Data(256, 1), Data(64, 2), out_dir=tempfile.mkdtemp(), epochs=2, lr=lr,\n"
    "                          batch_size=16, evals_per_epoch=4, metric='loss', group_by_length=False, seed=seed)",
    "run.finish({'val_loss': float(hist.eval_loss.min())})",
)


def test_pruning_reaches_train_fit(tmp_path, outputs):
    """`train.fit` reports each evaluation to the trial and stops a pruned run at once (no per-notebook code)."""
    nb = make_notebook(tmp_path / "96_fit.ipynb", *FIT)
    path = write_sweep(
        tmp_path,
        "fit",
        nb,
        metric="eval_loss",
        direction="minimize",
        sampler="grid",
        trials=None,
        pruner={"type": "median", "n_startup_trials": 1},
        space={"lr": [0.1, 0.0003, 0.03, 0.001]},
    )
    study = sweep.run_sweep(path)
    pruned = study.get_trials(states=(TS.PRUNED,))
    assert pruned and len(study.get_trials(states=(TS.COMPLETE, TS.PRUNED))) == 4
    by_trial = folders_by_trial(outputs, "fit", "96_fit")
    for t in pruned:
        folder = by_trial[t.number][0]
        st = runs.read_json(folder / "status.json")
        assert st["state"] == "pruned" and st["pruned_at_step"] == t.last_step and st["metric"] == "eval_loss"
        hist = __import__("pandas").read_csv(folder / "history.csv")
        assert hist.step.max() == t.last_step < 32  # training stopped where the pruner said (32 = 2 epochs)
    for t in study.get_trials(states=(TS.COMPLETE,)):  # the objective: the best eval_loss in history.csv
        assert t.value == pytest.approx(runs.read_json(by_trial[t.number][0] / "metrics.json")["val_loss"])


def test_killed_worker_is_failed_and_retried_on_resume(quad, tmp_path, outputs, monkeypatch):
    monkeypatch.setenv("POLARKIT_SWEEP_HEARTBEAT", "1,5")  # a loaded CI machine still beats within 5 s
    path = write_sweep(tmp_path, "killed", quad, trials=3)
    cmd = [sys.executable, "-m", "polarkit.sweep", str(path)]
    worker = subprocess.Popen(
        cmd, env={**os.environ, "HOLD_TRIAL": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    held, kernel = None, None
    try:
        deadline = time.monotonic() + 180  # a timeout, not an assertion on speed
        while held is None and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.5)
            for d in run_folders(outputs):
                st = runs.read_json(d / "status.json")
                if st.get("trial") == 1 and st.get("state") == "running":
                    held, kernel = d, st.get("kernel_pid")
        assert held is not None, "trial 1 never started"
        worker.send_signal(signal.SIGKILL)  # mid-trial: the kernel sleeps in its second cell
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    for _ in range(20):  # the kernel notices its parent is gone (ipykernel's parent poller) and exits
        if not kernel or not Path(f"/proc/{kernel}").exists():
            break
        time.sleep(0.5)
    else:
        os.kill(kernel, signal.SIGKILL)
    assert runs.read_json(held / "status.json")["state"] == "running"  # what a crash leaves behind

    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=600)  # the same command resumes
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    out = resumed.stdout  # the dead trial's folder is settled before its retry runs, not at the end
    assert out.index(f"marked failed: {held}") < out.index("(retry of 1)")
    study = optuna.load_study(study_name="killed", storage=sweep.resolve_storage(None, "killed"))
    assert len(study.get_trials(states=(TS.COMPLETE, TS.PRUNED))) == 3
    killed = study.trials[1]
    assert killed.state == TS.FAIL
    st = runs.read_json(held / "status.json")
    assert st["state"] == "failed" and st["error"] == "worker died" and st["trial"] == 1
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == 1]
    assert len(retries) == 1 and retries[0].state == TS.COMPLETE and retries[0].params == killed.params
    assert not [d for d in run_folders(outputs) if runs.read_json(d / "status.json")["state"] in ("queued", "running")]
    by_trial = folders_by_trial(outputs, "killed")
    assert all(len(by_trial[t.number]) == 1 for t in study.get_trials(states=(TS.COMPLETE,)))
    assert_best_agrees(study, outputs)
    table = sweep.report_sweep(study)["trials"]
    assert table.loc[1, "note"].startswith("worker died") and "retry of trial 1" in table.note.dropna().str.cat()


def test_two_workers_share_a_postgres_study(quad, tmp_path, outputs, postgres_url, monkeypatch):  # noqa: F811
    monkeypatch.setenv("POLARKIT_SWEEP_HEARTBEAT", "1,5")
    path = write_sweep(
        tmp_path, "shared", quad, trials=5, space={"lr": {"low": 1e-4, "high": 1.0, "log": True}, "width": [8, 16, 24]}
    )
    study = sweep.run_sweep(path, storage=postgres_url, workers=2)
    finished = study.get_trials(states=(TS.COMPLETE, TS.PRUNED))
    assert len(finished) == 5
    others = study.get_trials(states=(TS.FAIL, TS.RUNNING, TS.WAITING))
    assert all(t.user_attrs.get("surplus") and "run_dir" not in t.user_attrs for t in others), others
    by_trial = folders_by_trial(outputs, "shared")
    assert sorted(by_trial) == sorted(t.number for t in finished)  # every trial ran once, in one run folder
    assert all(len(v) == 1 for v in by_trial.values())
    assert len({t.user_attrs["worker_pid"] for t in finished}) == 2, "both workers ran trials"
    assert_best_agrees(study, outputs)
    for d in run_folders(outputs):
        text = (d / "status.json").read_text()
        assert PASSWORD not in text and json.loads(text)["storage"].startswith("postgresql+psycopg2://postgres@")
    rep = sweep.report_sweep("shared", storage=postgres_url)
    assert rep["best"]["number"] == study.best_trial.number and rep["counts"]["finished"] == 5


def test_03_val_mcc_is_its_test_set_and_refused(tmp_path):
    """03's `val_*` figures are on GLUE's validation set, read once as its test set (its markdown says so;
    its metadata declares it): a sweep on val_mcc is refused; eval_mcc (the held-out slice) is accepted."""
    shipped = ROOT / "params" / "sweeps" / "03_nlp_cola.yaml"
    bad = tmp_path / "03_val.yaml"
    bad.write_text(
        shipped.read_text()
        .replace("metric: eval_mcc", "metric: val_mcc")
        .replace("base: params/", f"base: {ROOT}/params/")
        .replace("notebook: 03_nlp_cola", f"notebook: {ROOT}/notebooks/03_nlp_cola.ipynb")
    )
    with pytest.raises(
        P.ParamError,
        match=r"metric: val_mcc is measured on the 'val' split, which this notebook "
        r"declares a test split",
    ):
        sweep.load(bad)
    assert sweep.load(shipped).metric == "eval_mcc"
