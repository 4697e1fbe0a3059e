"""Execute a notebook with papermill into a run folder, and finalise the folder afterwards.

`execute` is what the CLI calls: it checks the parameters first (no kernel starts on a bad YAML),
creates the run folder, runs papermill there, and finalises. `finalize` also serves plain
papermill runs: `polarkit.runs.start_run` spawns `python -m polarkit.executor watch ...`, which
waits for papermill to exit and then copies the executed notebook into the run folder.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from polarkit import params as P
from polarkit import runs

KERNEL = "polarkit"


def ensure_kernel() -> str:
    """Register a Jupyter kernel for this interpreter (in sys.prefix) so papermill finds it."""
    spec = Path(sys.prefix) / "share" / "jupyter" / "kernels" / KERNEL / "kernel.json"
    if spec.is_file() and sys.executable in spec.read_text():
        return KERNEL
    from ipykernel.kernelspec import install
    install(kernel_name=KERNEL, display_name=f"Python (polarkit, {Path(sys.prefix).name})", prefix=sys.prefix)
    return KERNEL


def kernel_manager_class():
    """Local kernels on POSIX talk over Unix sockets in the Jupyter runtime dir: no open TCP ports,
    and no ipykernel "running over TCP without encryption" warning in every batch log."""
    from jupyter_client.manager import AsyncKernelManager
    if os.name != "posix":
        return AsyncKernelManager
    from traitlets import default

    class IpcKernelManager(AsyncKernelManager):
        @default("transport")
        def _transport_default(self) -> str:
            return "ipc"

    return IpcKernelManager


def execute(notebook: Path, values: dict[str, Any], profile: str | None = None,
            log_output: bool = False) -> Path:
    """Check `values`, run `notebook` into a new run folder, finalise it; returns the folder."""
    import papermill as pm

    declared = P.declared(notebook)
    values = P.check(values, declared, source=f"parameters for {notebook.name}")
    resolved = {k: values.get(k, p.default) for k, p in declared.items()}
    run = runs.Run(runs.new_run_dir(notebook.stem))
    (run.dir / "params.yaml").write_text(yaml.safe_dump(resolved, allow_unicode=True, sort_keys=False),
                                         encoding="utf-8")
    run.set_status("queued", notebook=notebook.stem, profile=profile, start=runs.now())
    env = {runs.RUN_DIR_ENV: str(run.dir), "POLARKIT_PROFILE": profile or ""}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits these
    error = None
    ticker = _Ticker(run) if not sys.stderr.isatty() else None  # batch logs: a sparse progress line
    try:
        pm.execute_notebook(str(notebook), str(run.dir / "notebook.ipynb"), parameters=values,
                            kernel_name=ensure_kernel(), cwd=str(notebook.parent),
                            kernel_manager_class=kernel_manager_class(),
                            progress_bar=sys.stderr.isatty(), log_output=log_output)
    except Exception as e:  # noqa: BLE001 - recorded in status.json, then re-raised by the caller's choice
        error = e
    finally:
        if ticker:
            ticker.stop()
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    finalize(run.dir, run.dir / "notebook.ipynb", error=error)
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
            shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in beat.items() if k != "time")
            print(f"  … {self.run.dir.parent.name} {time.monotonic() - self.t0:.0f}s {shown}",
                  file=sys.stderr, flush=True)

    def stop(self) -> None:
        self._stop.set()


def _first_error(nb) -> tuple[int | None, str | None, str | None]:
    """(execution count, ename, evalue) of the first cell whose outputs hold an error."""
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return cell.get("execution_count") or i, out.get("ename"), out.get("evalue")
    return None, None, None


def finalize(run_dir: Path, executed: Path, error: BaseException | None = None) -> dict:
    """Copy the executed notebook into the run, export HTML, settle status.json; returns the status."""
    import nbformat

    run = runs.Run(run_dir)
    status = run.status()
    cell = ename = evalue = None
    if executed.is_file():
        if executed.resolve() != (run.dir / "notebook.ipynb").resolve():
            shutil.copyfile(executed, run.dir / "notebook.ipynb")
        nb = nbformat.read(run.dir / "notebook.ipynb", as_version=4)
        cell, ename, evalue = _first_error(nb)
        _export_html(nb, run.dir / "notebook.html")
    failed = error is not None or cell is not None or status.get("state") != "succeeded"
    if failed:
        why = {"cell": cell, "error": ename or (type(error).__name__ if error else "NotebookIncomplete"),
               "message": (evalue or (str(error).splitlines() or [""])[-1] if error
                           else evalue or "the notebook stopped before its last cell")}
        run.set_status("failed", end=runs.now(), duration_s=runs._duration(status), **why)
    else:
        run.set_status("succeeded", end=runs.now(), duration_s=runs._duration(status))
    _rebuild_index(run.dir)
    return run.status()


def _export_html(nb, path: Path) -> None:
    """Static HTML with images embedded (data URIs), openable anywhere."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(embed_images=True)
    body, _ = exporter.from_notebook_node(nb)
    path.write_text(body, encoding="utf-8")


def _rebuild_index(run_dir: Path) -> None:
    """Refresh outputs/index.html when the report module is available (it sits above us)."""
    try:
        from polarkit import report
        report.write_index(run_dir.parents[1])
    except ImportError:
        pass


def watch(pid: int, run_dir: Path, executed: Path, poll: float = 1.0) -> dict:
    """Wait for process `pid` (papermill) to exit, then finalise `run_dir` from `executed`."""
    while Path(f"/proc/{pid}").exists():
        time.sleep(poll)
    return finalize(run_dir, executed)


if __name__ == "__main__":  # python -m polarkit.executor watch PID RUN_DIR EXECUTED
    if len(sys.argv) != 5 or sys.argv[1] != "watch":
        sys.exit("usage: python -m polarkit.executor watch PID RUN_DIR EXECUTED_NOTEBOOK")
    print(watch(int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])))
