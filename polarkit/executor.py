"""Execute a notebook with papermill into a run folder, and finalise the folder afterwards.

`execute` is what the CLI calls: it checks the parameters first (no kernel starts on a bad YAML),
creates the run folder, runs papermill there, and finalises. `finalize` also serves plain
papermill runs: `polarkit.runs.start_run` spawns `python -m polarkit.executor watch ...`, which
waits for papermill to exit and then copies the executed notebook into the run folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from polarkit import params as P
from polarkit import runs, tracking

KERNEL = "polarkit"
# papermill's default is 60 s: several kernels starting at once on a loaded 2-core machine (sweep
# workers, `run --jobs`) can take longer to import torch than that, and the run failed for nothing.
START_TIMEOUT_S = 600


def ensure_kernel() -> str:
    """Register a Jupyter kernel for this interpreter (in sys.prefix) so papermill finds it."""
    spec = Path(sys.prefix) / "share" / "jupyter" / "kernels" / KERNEL / "kernel.json"
    if spec.is_file() and sys.executable in spec.read_text():
        return KERNEL
    from ipykernel.kernelspec import install

    install(kernel_name=KERNEL, display_name=f"Python (polarkit, {Path(sys.prefix).name})", prefix=sys.prefix)
    return KERNEL


def kernel_manager_class(workdir: Path, env: dict[str, str], holder: dict | None = None):
    """A kernel manager whose connection file and IPC sockets live in `workdir` (private to one run)
    and whose kernel gets `env` on top of this process's environment (never by mutating os.environ,
    so several runs can start at once from one process).

    POSIX kernels talk over Unix sockets: no open TCP ports, and no ipykernel "running over TCP
    without encryption" warning in every batch log. `holder["km"]` receives the manager, so an
    interrupted run can stop its kernel.
    """
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class RunKernelManager(AsyncKernelManager):
        @default("transport")
        def _transport_default(self) -> str:
            return "ipc" if os.name == "posix" else "tcp"

        @default("connection_file")
        def _connection_file_default(self) -> str:  # the IPC sockets are named after it (<file>-ipc-N)
            return str(workdir / "kernel.json")

        async def _async_pre_start_kernel(self, **kw):
            kw["env"] = {**kw.get("env", os.environ), **env}
            if holder is not None:
                holder["km"] = self
            return await super()._async_pre_start_kernel(**kw)

    return RunKernelManager


class Interrupted(Exception):
    """The run was stopped by a signal; `code` is the conventional exit status (130 SIGINT, 143 SIGTERM)."""

    def __init__(self, signame: str, run_dir: Path):
        self.signame, self.run_dir = signame, run_dir
        self.code = 128 + getattr(signal, signame, signal.SIGINT).value
        super().__init__(f"{signame}: run interrupted; partial record in {run_dir}")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt."""


_STOPPING = threading.Event()  # set when the process is stopping: every active run records `interrupted`
_STOP_SIGNAL = {"name": "SIGINT"}
_ACTIVE: dict[Path, dict] = {}  # run folder -> holder of its kernel manager


@contextlib.contextmanager
def signals_as_exceptions():
    """Within the block, Ctrl-C and SIGTERM stop every kernel this process runs at once (so none
    prints into the terminal while its run is being recorded) and raise KeyboardInterrupt /
    `Terminated` in the main thread; the runs they interrupt are recorded as `interrupted`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _STOPPING.clear()

    def on_signal(signum, frame):
        stop_all(signal.Signals(signum).name)
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def stop_all(signame: str) -> None:
    """Stop every kernel this process runs (after Ctrl-C/SIGTERM); their runs are marked interrupted."""
    _STOP_SIGNAL["name"] = signame
    _STOPPING.set()
    for holder in list(_ACTIVE.values()):
        _kill_kernel(holder)


def _kill_kernel(holder: dict) -> None:
    """Kill the kernel (its whole process group) of a run if it still runs; then remove its files."""
    km = holder.get("km")
    prov = getattr(km, "provisioner", None)
    proc = getattr(prov, "process", None)
    if proc is None or proc.poll() is not None:  # shut down normally (or never started)
        return
    with contextlib.suppress(OSError):
        os.killpg(prov.pgid or proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        proc.kill()
    with contextlib.suppress(Exception):
        proc.wait(timeout=10)
    with contextlib.suppress(Exception):
        km.cleanup_connection_file()
        km.cleanup_ipc_files()


def execute(
    notebook: Path,
    values: dict[str, Any],
    profile: str | None = None,
    log_output: bool = False,
    env: dict[str, str] | None = None,
    status: dict[str, Any] | None = None,
) -> Path:
    """Check `values`, run `notebook` into a new run folder, finalise it; returns the folder.

    `env`: extra environment variables for the kernel (e.g. a sweep trial's study and trial id);
    `status`: extra fields recorded in status.json from the start (e.g. sweep name, trial number).
    """
    import papermill as pm

    declared = P.declared(notebook)
    values = P.check(values, declared, source=f"parameters for {notebook.name}")
    resolved = {k: values.get(k, p.default) for k, p in declared.items()}
    run = runs.Run(runs.new_run_dir(notebook.stem))
    (run.dir / "params.yaml").write_text(
        yaml.safe_dump(resolved, allow_unicode=True, sort_keys=False), encoding="utf-8"
    )
    run.set_status(
        "queued", notebook=notebook.stem, profile=profile, start=runs.now(), executor_pid=os.getpid(), **(status or {})
    )
    tracking.prepare()  # import MLflow / open the store while the kernel works
    env = {**runs.absolute_env(), **(env or {}), runs.RUN_DIR_ENV: str(run.dir), "POLARKIT_PROFILE": profile or ""}
    error = signame = None
    ticker = _Ticker(run) if not sys.stderr.isatty() else None  # batch logs: a sparse progress line
    workdir = Path(tempfile.mkdtemp(prefix="polarkit-kernel-"))  # short: Unix socket paths max ~107 bytes
    holder = _ACTIVE.setdefault(run.dir, {})
    try:
        pm.execute_notebook(
            str(notebook),
            str(run.dir / "notebook.ipynb"),
            parameters=values,
            kernel_name=ensure_kernel(),
            cwd=str(notebook.parent),
            kernel_manager_class=kernel_manager_class(workdir, env, holder),
            progress_bar=sys.stderr.isatty() and threading.current_thread() is threading.main_thread(),
            start_timeout=START_TIMEOUT_S,
            log_output=log_output,
        )
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM through `signals_as_exceptions`
        signame = "SIGTERM" if isinstance(e, Terminated) else "SIGINT"
    except Exception as e:  # noqa: BLE001 - recorded in status.json, then re-raised by the caller's choice
        error = e
        if _STOPPING.is_set():  # another thread was told to stop: its kernel was killed under it
            signame = _STOP_SIGNAL["name"]
    finally:
        if ticker:
            ticker.stop()
        _kill_kernel(_ACTIVE.pop(run.dir, holder))  # normally gone already; an interrupt leaves it running
        shutil.rmtree(workdir, ignore_errors=True)  # connection file and IPC sockets
    finalize(run.dir, run.dir / "notebook.ipynb", error=error, interrupted=signame)
    if signame:
        raise Interrupted(signame, run.dir)
    return run.dir


class _Ticker:
    """Prints the run's heartbeat to stderr every `every` seconds while a notebook executes."""

    def __init__(self, run: runs.Run, every: float = 60.0):
        import threading

        self.run, self.every, self.t0 = run, every, time.monotonic()
        self._stop = threading.Event()
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            beat = self.run.status().get("heartbeat") or {}
            shown = " ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in beat.items() if k != "time"
            )
            print(
                f"  … {self.run.dir.parent.name} {time.monotonic() - self.t0:.0f}s {shown}", file=sys.stderr, flush=True
            )

    def stop(self) -> None:
        self._stop.set()


def _first_error(nb) -> tuple[int | None, str | None, str | None]:
    """(execution count, ename, evalue) of the first cell whose outputs hold an error."""
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return cell.get("execution_count") or i, out.get("ename"), out.get("evalue")
    return None, None, None


def finalize(run_dir: Path, executed: Path, error: BaseException | None = None, interrupted: str | None = None) -> dict:
    """Copy the executed notebook into the run, export HTML, settle status.json; returns the status.

    Whatever fails on the way (a full disk, an unreadable notebook) is recorded: status.json always
    leaves `running`/`queued`: `succeeded`, `failed`, `interrupted` (with the signal) or `pruned`
    (a sweep trial stopped early; set by the kernel).
    """
    run = runs.Run(run_dir)
    status = run.status()
    cell = ename = evalue = None
    problems = []  # finalisation steps that failed: the record is incomplete
    try:
        cell, ename, evalue = _collect_notebook(run, executed)
    except Exception as e:  # noqa: BLE001 - e.g. ENOSPC; recorded below
        problems.append(f"notebook.html not written: {e}")
    state = status.get("state")
    if interrupted:
        fields = {
            "state": "interrupted",
            "signal": interrupted,
            "cell": cell,
            "error": "Interrupted",
            "message": f"stopped by {interrupted}",
        }
    elif state == "pruned" and (error is None or ename == "Pruned"):  # a sweep trial stopped by its pruner
        fields = {"state": "pruned", "cell": cell}
    elif error is not None or cell is not None or state != "succeeded" or problems:
        fields = {
            "state": "failed",
            "cell": cell,
            "error": ename
            or (
                type(error).__name__
                if error
                else "FinalizeError"
                if problems and state == "succeeded"
                else "NotebookIncomplete"
            ),
            "message": evalue
            or (
                (str(error).splitlines() or [""])[-1]
                if error
                else "; ".join(problems)
                if problems and state == "succeeded"
                else "the notebook stopped before its last cell"
            ),
        }
    else:
        fields = {"state": "succeeded"}
    if problems:
        fields["finalize_errors"] = problems
    try:
        run.set_status(fields.pop("state"), end=runs.now(), duration_s=runs._duration(status), **fields)
    except OSError as e:  # nothing more can be written there; say so where someone will see it
        print(f"polarkit: cannot record the end of run {run.dir}: {e}", file=sys.stderr)
    _rebuild_index(run.dir)
    tracking.mirror(run.dir)  # the MLflow run mirrors the folder; never raises (one warning line)
    return run.status()


def _collect_notebook(run: runs.Run, executed: Path) -> tuple:
    """Copy `executed` into the run folder and export its HTML; returns the first error cell's info."""
    import nbformat

    if not executed.is_file():
        return None, None, None
    if executed.resolve() != (run.dir / "notebook.ipynb").resolve():
        shutil.copyfile(executed, run.dir / "notebook.ipynb")
    nb = nbformat.read(run.dir / "notebook.ipynb", as_version=4)
    found = _first_error(nb)
    _export_html(nb, run.dir / "notebook.html")
    return found


def _export_html(nb, path: Path) -> None:
    """Static HTML with images embedded (data URIs), openable anywhere; written whole or not at all."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(embed_images=True)
    body, _ = exporter.from_notebook_node(nb)
    runs.write_text(path, body)


def _rebuild_index(run_dir: Path) -> None:
    """Refresh outputs/index.html when the report module is available (it sits above us)."""
    try:
        from polarkit import report

        report.write_index(run_dir.parents[1])
    except ImportError:
        pass
    except OSError as e:  # a full disk: the run's own record matters more than the index
        print(f"polarkit: outputs/index.html not rebuilt: {e}", file=sys.stderr)


def watch(pid: int, run_dir: Path, executed: Path, poll: float = 1.0) -> dict:
    """Wait for process `pid` (papermill) to exit, then finalise `run_dir` from `executed`."""
    while Path(f"/proc/{pid}").exists():
        time.sleep(poll)
    return finalize(run_dir, executed)


if __name__ == "__main__":  # python -m polarkit.executor watch PID RUN_DIR EXECUTED
    if len(sys.argv) != 5 or sys.argv[1] != "watch":
        sys.exit("usage: python -m polarkit.executor watch PID RUN_DIR EXECUTED_NOTEBOOK")
    print(watch(int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])))
