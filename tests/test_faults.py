"""A run record that tells the truth under faults: concurrent runs, signals, a full disk, NaN, paths.

Each test here reproduces a defect found by a fault matrix (issue 12) against the real executor,
the real CLI in a subprocess, real kernels and (where the machine allows) a real full filesystem.
"""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_notebook

from polarkit import runs

PY = sys.executable


def _status(d: Path) -> dict:
    return json.loads((d / "status.json").read_text())


def _cli(*args, cwd=None, env=None, **kw) -> subprocess.Popen:
    """`polarkit ARGS` in a new process (stdout/stderr piped)."""
    return subprocess.Popen(
        [PY, "-m", "polarkit.cli", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _wait_for(predicate, timeout: float = 120.0, what: str = "condition"):
    """Poll until `predicate()` is truthy (a deadline for a background process, not a speed check)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := predicate():
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def threads_notebook(tmp_path):
    """Reports the thread budget its kernel was given, and its own name parameter."""
    return make_notebook(
        tmp_path / "97_threads.ipynb",
        'name: str = "x"  # which run',
        "import os",
        'run.finish({"test_threads": float(os.environ.get("OMP_NUM_THREADS", 0)), "test_len": float(len(name))})',
    )


@pytest.fixture
def sleepy_notebook(tmp_path):
    """Sleeps in its third cell until killed (to interrupt a run in the middle)."""
    return make_notebook(
        tmp_path / "96_sleepy.ipynb",
        "seconds: float = 600.0  # how long to sleep",
        'import time\nrun.heartbeat(every=0, phase="sleeping")\ntime.sleep(seconds)',
        'run.finish({"test_slept": seconds})',
    )


def test_four_runs_started_at_once_all_succeed_each_showing_its_own_row(outputs, tiny_notebook):
    """Before: the 4 kernels raced for the same `kernel-ipc-N` socket paths in the notebook's folder."""
    procs = [_cli("run", str(tiny_notebook), "-p", f"name={'x' * (i + 1)}") for i in range(4)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [e[-2000:] for _, e in outs]
    dirs = sorted((outputs / "98_tiny").iterdir())
    assert len(dirs) == 4 and all(_status(d)["state"] == "succeeded" for d in dirs)
    lens = sorted(json.loads((d / "metrics.json").read_text())["test_len"] for d in dirs)
    assert lens == [1.0, 2.0, 3.0, 4.0]  # each run got its own parameters
    for out, _ in outs:  # each closing table shows this process's run and only it
        shown = [d.name for d in dirs if d.name in out]
        assert len(shown) == 1, out
    assert not list(tiny_notebook.parent.glob("kernel-ipc*")), "no sockets left beside the notebook"


def test_run_jobs_k_runs_notebooks_at_once_dividing_the_cores(outputs, threads_notebook, capsys):
    from polarkit import cli

    targets = [str(threads_notebook)] * 3
    assert cli.main(["run", *targets, "--jobs", "2"]) == 0
    dirs = list((outputs / "97_threads").iterdir())
    assert len(dirs) == 3 and all(_status(d)["state"] == "succeeded" for d in dirs)
    want = float(max(1, (os.cpu_count() or 1) // 2))
    assert {json.loads((d / "metrics.json").read_text())["test_threads"] for d in dirs} == {want}
    out = capsys.readouterr().out
    assert sum(d.name in out for d in dirs) == 3


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_marks_the_run_interrupted_and_leaves_nothing_behind(outputs, sleepy_notebook, tmp_path, sig, code):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = _cli("run", str(sleepy_notebook), env={"TMPDIR": str(scratch)})
    run_dir = _wait_for(
        lambda: next(iter((outputs / "96_sleepy").glob("*/status.json")), None), what="run folder"
    ).parent
    _wait_for(lambda: _status(run_dir).get("heartbeat", {}).get("phase") == "sleeping", what="the sleeping cell")
    kernel_pid = _status(run_dir)["kernel_pid"]
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert len(err.strip().splitlines()) <= 2 and "Traceback" not in err, err  # one line, not 61
    st = _status(run_dir)
    assert st["state"] == "interrupted" and st["signal"] == sig.name and st.get("end")
    assert (run_dir / "notebook.ipynb").is_file() and (run_dir / "notebook.html").is_file()  # the partial notebook
    assert (
        not Path(f"/proc/{kernel_pid}").exists() or "zombie" in Path(f"/proc/{kernel_pid}/status").read_text().lower()
    )
    assert list(scratch.iterdir()) == [], "no connection files, sockets or checkpoint folders left"
    assert run_dir.name in (outputs / "index.html").read_text()


def test_a_full_disk_in_finalisation_still_settles_the_status(tmp_path, tiny_notebook, monkeypatch):
    """ENOSPC while exporting HTML used to stop finalisation: status.json stayed `running`."""
    disk = tmp_path / "small"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        monkeypatch.setenv("POLARKIT_OUTPUTS", str(disk))
        from polarkit import executor

        d = executor.execute(tiny_notebook, {})
        st = _status(d)
        assert st["state"] == "failed" and "No space left" in st["message"], st
        assert not (d / "notebook.html").exists(), "no half-written HTML"
        assert not [p for p in d.iterdir() if ".tmp" in p.name]
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_metrics_json_is_strict_json_with_null_for_non_finite(tmp_path):
    run = runs.Run(tmp_path)
    run.log_metrics({"val_loss": float("nan"), "val_acc": 0.5, "val_inf": np.float32("inf")})
    text = (tmp_path / "metrics.json").read_text()
    strict = json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in metrics.json"))
    assert strict == {"val_loss": None, "val_acc": 0.5, "val_inf": None}


def _fit_at_lr_1e12(images: int, epochs: int):
    """train.fit of a SmallCNN on `images` random MNIST-shaped images at lr=1e12 (it diverges)."""
    from polarkit import train
    from polarkit.tasks import mnist

    rng = np.random.default_rng(0)
    ds = mnist.MnistDataset(rng.integers(0, 256, (images, 28, 28), dtype=np.uint8), rng.integers(0, 10, images))
    torch.manual_seed(0)
    fit = dict(lr=1e12, epochs=epochs, batch_size=8, group_by_length=False, disable_tqdm=True, logging_steps=1)
    return train.fit(mnist.SmallCNN(), ds, ds, **fit)


def test_a_diverged_training_stops_with_a_clear_error(tmp_path):
    """lr=1e12 used to give eval loss NaN, train loss logged as 0.0, and a `succeeded` run."""
    from polarkit import train

    with pytest.raises(train.TrainingDiverged, match="diverged at step"):
        _fit_at_lr_1e12(32, epochs=3)


def test_non_finite_weights_stop_training_at_the_first_step(tmp_path):
    from polarkit import train
    from polarkit.tasks import mnist

    rng = np.random.default_rng(0)
    ds = mnist.MnistDataset(rng.integers(0, 256, (16, 28, 28), dtype=np.uint8), rng.integers(0, 10, 16))
    model = mnist.SmallCNN()
    with torch.no_grad():
        next(model.parameters()).fill_(math.nan)  # a corrupted model cache
    with pytest.raises(train.TrainingDiverged):
        train.fit(
            model,
            ds,
            None,
            lr=1e-3,
            max_steps=2,
            batch_size=8,
            group_by_length=False,
            disable_tqdm=True,
            logging_steps=1,
        )


def test_fit_removes_its_temporary_checkpoints_even_when_training_raises(tmp_path, monkeypatch):
    import tempfile

    from polarkit import train

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(train.TrainingDiverged):
        _fit_at_lr_1e12(16, epochs=4)
    assert not list(tmp_path.glob("polarkit-checkpoints-*"))


def test_relative_outputs_and_data_paths_mean_the_callers_folder(tmp_path, tiny_notebook):
    """POLARKIT_OUTPUTS=rel_out used to split one run between ./rel_out and notebooks/rel_out."""
    work = tmp_path / "work"
    work.mkdir()
    proc = _cli("run", str(tiny_notebook), cwd=work, env={"POLARKIT_OUTPUTS": "rel_out"})
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    (d,) = list((work / "rel_out" / "98_tiny").iterdir())
    assert _status(d)["state"] == "succeeded" and (d / "notebook.html").is_file()
    assert not (tiny_notebook.parent / "rel_out").exists()


@pytest.mark.parametrize("kind", ["file", "read-only"])
def test_unusable_outputs_folder_is_one_clear_line(tmp_path, tiny_notebook, kind):
    target = tmp_path / "outs"
    if kind == "file":
        target.write_text("not a folder")
    else:
        target.mkdir()
        target.chmod(0o500)
        if os.access(target, os.W_OK):  # root writes anywhere: use a read-only filesystem instead
            target.chmod(0o700)
            if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(target)]).returncode:
                pytest.skip("root ignores permissions and no read-only mount is possible here")
    try:
        proc = _cli("run", str(tiny_notebook), env={"POLARKIT_OUTPUTS": str(target)})
        out, err = proc.communicate(timeout=120)
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)
    assert proc.returncode == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert str(target) in err and ("not a folder" in err or "not writable" in err or "Read-only" in err), err


def test_plain_papermill_with_an_unknown_parameter_is_refused_by_the_kernel(outputs, tiny_notebook, tmp_path):
    papermill = Path(sys.executable).parent / "papermill"
    done = subprocess.run(
        [str(papermill), str(tiny_notebook), str(tmp_path / "out.ipynb"), "-p", "lrr", "0.1", "-k", "python3"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode != 0
    assert "lrr: unknown parameter; did you mean 'lr'?" in done.stderr + done.stdout
    (d,) = list((outputs / "98_tiny").iterdir())
    st = _wait_for(lambda: _status(d) if _status(d).get("end") else None, what="the watcher")
    assert st["state"] == "failed" and "lrr" in st["message"]


def test_a_run_killed_while_queued_shows_as_died(outputs):
    """An executor killed before its kernel started used to leave `queued` forever."""
    from polarkit import report

    dead = subprocess.Popen([PY, "-c", "pass"])
    dead.wait()
    d = runs.new_run_dir("98_tiny", outputs)
    runs.write_json(d / "status.json", {"state": "queued", "executor_pid": dead.pid, "start": runs.now()})
    alive = runs.new_run_dir("98_tiny", outputs)
    runs.write_json(alive / "status.json", {"state": "queued", "executor_pid": os.getpid(), "start": runs.now()})
    board = report.load_runs(outputs).set_index("run")["status"]
    assert board[d.name] == "died" and board[alive.name] == "queued"


def test_plain_papermill_reads_its_yaml_as_yaml_12(outputs, tiny_notebook, tmp_path):
    """papermill's YAML 1.1 reader turns `010` into 8 and `1:04` into 64; the kernel re-reads the file."""
    nb = make_notebook(
        tmp_path / "95_ints.ipynb",
        'batch_size: int = 32  # sentences per step\nname: str = "x"  # a name',
        'run.finish({"test_batch_size": batch_size})',
    )
    yml = tmp_path / "p.yaml"
    yml.write_text("batch_size: 010\nname: 1:04\n")
    papermill = Path(sys.executable).parent / "papermill"
    subprocess.run(
        [str(papermill), str(nb), str(tmp_path / "out.ipynb"), "-f", str(yml), "-k", "python3"],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (d,) = list((outputs / "95_ints").iterdir())
    _wait_for(lambda: _status(d).get("end"), what="the watcher")
    assert json.loads((d / "metrics.json").read_text()) == {"test_batch_size": 10.0}
    assert "name: '1:04'" in (d / "params.yaml").read_text()
