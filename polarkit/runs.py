"""Run folders: one per notebook execution, whether started by the CLI or by plain papermill.

outputs/<notebook-stem>/<YYYYmmdd-HHMMSS>-<short id>/ holds params.yaml, env.json, status.json,
metrics.json, figures/, attention/, predictions.csv, and (written by `polarkit.executor` once the
kernel is gone) notebook.ipynb + notebook.html.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from polarkit import environment
from polarkit.environment import ROOT

RUN_DIR_ENV = "POLARKIT_RUN_DIR"  # set by the CLI: the folder it already made for this run
_CURRENT: Run | None = None


def now() -> str:
    """UTC timestamp, ISO 8601, seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


PATH_ENVS = ("POLARKIT_OUTPUTS", "POLARKIT_DATA", "POLARKIT_MODELS")  # folders named by the environment


def absolute_env() -> dict[str, str]:
    """Make the folder variables ($POLARKIT_OUTPUTS, $POLARKIT_DATA, $POLARKIT_MODELS) absolute, in place.

    Called before a kernel starts: the kernel runs in the notebook's folder, where a relative path
    would name another folder than the one the user meant. Returns the variables that are set.
    """
    out = {}
    for name in PATH_ENVS:
        if os.environ.get(name):
            os.environ[name] = out[name] = os.path.abspath(os.path.expanduser(os.environ[name]))
    return out


def outputs_dir() -> Path:
    """$POLARKIT_OUTPUTS, else <repo>/outputs (or ./outputs when polarkit is installed elsewhere); absolute."""
    if os.environ.get("POLARKIT_OUTPUTS"):
        return Path(os.environ["POLARKIT_OUTPUTS"]).expanduser().absolute()
    return (ROOT if (ROOT / "notebooks").is_dir() else Path.cwd()).absolute() / "outputs"


class OutputsError(OSError):
    """The outputs folder cannot hold a new run folder; the message says which folder and why."""

    def __str__(self) -> str:  # the message alone, without OSError's "[Errno N]" prefix
        return self.strerror or super().__str__()


def new_run_dir(stem: str, base: Path | None = None) -> Path:
    """Create outputs/<stem>/<time>-<id>/; the random id keeps runs started in one second apart."""
    root = Path(base or outputs_dir())
    base = root / stem
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        why = (
            "it is a file, not a folder"
            if root.exists() and not root.is_dir()
            else "it is not writable"
            if isinstance(e, PermissionError)
            else e.strerror or str(e)
        )
        raise OutputsError(e.errno, f"cannot create run folders under {root} ($POLARKIT_OUTPUTS): {why}") from None
    while True:
        d = base / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        try:
            d.mkdir()  # exist_ok=False: a collision just draws another id
            return d
        except FileExistsError:
            continue


def write_json(path: Path, data: dict) -> None:
    """Write strict JSON atomically (tmp + rename) so readers never see half a file.

    Non-finite floats become null: bare NaN/Infinity is not JSON (browsers' JSON.parse rejects it).
    """
    write_text(path, json.dumps(_finite(data), indent=2, ensure_ascii=False, default=str, allow_nan=False))


def write_text(path: Path, text: str) -> None:
    """Write UTF-8 `text` to `path` whole or not at all: a temporary file beside it, then a rename."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}-{threading.get_ident()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _finite(x: Any) -> Any:
    """`x` with every non-finite float (nan, inf) replaced by None, through dicts and lists."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def read_json(path: Path) -> dict:
    """Read a JSON file; {} when missing or half-written."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


class Run:
    """Handle on one run folder; the notebook gets it from `start_run`."""

    def __init__(self, path: Path):
        self.dir = Path(path)
        self._last_beat = 0.0

    @property
    def id(self) -> str:
        return self.dir.name

    @property
    def figures_dir(self) -> Path:
        return _mkdir(self.dir / "figures")

    @property
    def attention_dir(self) -> Path:
        return _mkdir(self.dir / "attention")

    @property
    def models_dir(self) -> Path:
        return _mkdir(self.dir / "models")

    def status(self) -> dict:
        return read_json(self.dir / "status.json")

    def set_status(self, state: str, **extra: Any) -> None:
        """Merge `state` and extra fields into status.json."""
        write_json(self.dir / "status.json", {**self.status(), "state": state, **extra})

    def heartbeat(self, every: float = 5.0, **progress: Any) -> None:
        """Record progress (e.g. step=120, total=900) in status.json, at most once per `every` seconds."""
        if time.monotonic() - self._last_beat < every:
            return
        self._last_beat = time.monotonic()
        st = self.status()
        write_json(self.dir / "status.json", {**st, "heartbeat": {"time": now(), **progress}})

    def update_env(self, **fields: Any) -> None:
        """Add fields (device, seed, threads, ...) to env.json."""
        write_json(self.dir / "env.json", {**read_json(self.dir / "env.json"), **fields})

    def log_metrics(self, metrics: dict[str, Any]) -> dict[str, float]:
        """Merge flat {split_metric: number} into metrics.json; returns the whole file's content.

        A non-finite value (nan, inf) is written as null: the metric exists but has no value.
        """
        clean = {k: float(v) if math.isfinite(float(v)) else None for k, v in metrics.items() if _is_number(v)}
        merged = {**read_json(self.dir / "metrics.json"), **clean}
        write_json(self.dir / "metrics.json", merged)
        return merged

    def save_predictions(self, df) -> Path:
        """Write per-example predictions (a DataFrame) to predictions.csv."""
        path = self.dir / "predictions.csv"
        df.to_csv(path, index=False)
        return path

    def save_history(self, df, name: str = "history") -> Path:
        """Write a training history (one row per evaluation or logged step) to `<name>.csv`.

        `compare` reads history.csv."""
        path = self.dir / f"{name}.csv"
        df.to_csv(path, index=False)
        return path

    def finish(self, metrics: dict[str, Any] | None = None):
        """Log final metrics, mark the notebook body as done, and return the metrics table."""
        merged = self.log_metrics(metrics or {})
        self.set_status("succeeded", end=now(), duration_s=_duration(self.status()))
        import pandas as pd

        return pd.DataFrame({"metric": list(merged), "value": list(merged.values())})


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def _is_number(v: Any) -> bool:
    try:
        float(v)
        return not isinstance(v, (str, bool))
    except (TypeError, ValueError):
        return False


def _duration(status: dict) -> float | None:
    try:
        start = datetime.fromisoformat(status["start"])
        return round((datetime.now(timezone.utc) - start).total_seconds(), 1)
    except (KeyError, ValueError):
        return None


def parameters_in(namespace: dict[str, Any]) -> dict[str, Any]:
    """The notebook's parameters: the plain-valued public globals defined before `start_run`."""
    skip = {"In", "Out", "exit", "quit", "get_ipython", "open"}
    plain = (int, float, str, bool, list, dict, type(None))
    return {k: v for k, v in namespace.items() if not k.startswith("_") and k not in skip and isinstance(v, plain)}


def current() -> Run | None:
    """The run this process is recording into, if any."""
    return _CURRENT


def start_run(notebook: str, namespace: dict[str, Any]) -> Run:
    """Open the run folder for this notebook execution; call right after the parameters cell.

    Checks the parameter values against the notebook's declared types (repairing YAML 1.1
    mangling from plain papermill in place), writes params.yaml, env.json, status.json, and,
    under plain papermill, starts a watcher that saves the executed notebook and HTML here.
    """
    global _CURRENT
    given = os.environ.get(RUN_DIR_ENV)
    run = Run(Path(given)) if given else Run(new_run_dir(notebook))
    run.dir.mkdir(parents=True, exist_ok=True)
    old = run.status()
    run.set_status(
        "running",
        notebook=notebook,
        start=old.get("start") or now(),
        profile=os.environ.get("POLARKIT_PROFILE") or old.get("profile"),
        kernel_pid=os.getpid(),
    )
    if not given:
        _watch_papermill(run)  # first, so that even a parameter error below leaves a finished record
    _CURRENT = run
    values = _checked(notebook, namespace)
    (run.dir / "params.yaml").write_text(yaml.safe_dump(values, allow_unicode=True, sort_keys=False), encoding="utf-8")
    write_json(run.dir / "env.json", {**environment.capture(), "seed": values.get("seed")})
    _show_summary(run, notebook, values)
    return run


def _show_summary(run: Run, notebook: str, values: dict[str, Any]) -> None:
    """The first thing a reviewer sees: what ran, where, on what, at which commit."""
    env = read_json(run.dir / "env.json")
    commit = (env.get("commit") or "?")[:10] + (" (dirty)" if env.get("dirty") else "")
    rows = {
        "notebook": notebook,
        "run id": run.id,
        "profile": run.status().get("profile") or "-",
        "model": values.get("model", "-"),
        "data": os.environ.get("POLARKIT_DATA") or "hub",
        "device": env.get("device", "-"),
        "git commit": commit,
        "run folder": str(run.dir),
    }
    try:
        from IPython.display import Markdown, display

        display(Markdown("| run | |\n|---|---|\n" + "\n".join(f"| {k} | `{v}` |" for k, v in rows.items())))
    except ImportError:
        print("\n".join(f"{k}: {v}" for k, v in rows.items()))


def _checked(notebook: str, namespace: dict[str, Any]) -> dict[str, Any]:
    """Parameters of the namespace, checked against the notebook's declaration when it can be found."""
    values = parameters_in(namespace)
    nb = ROOT / "notebooks" / f"{notebook}.ipynb"
    if not nb.is_file():  # a notebook outside the repo: papermill's command line names it
        nb = (_papermill_paths(os.getppid()) or (Path(),))[0]
    if not nb.is_file():
        return values
    from polarkit import params

    declared = params.declared(nb)
    unknown = {k: namespace[k] for k in _injected_names(namespace) if k not in declared}
    if unknown:  # papermill only warns about a -p name the notebook does not declare; refuse it as the CLI does
        params.check(unknown, declared, source=f"parameters given to {nb.name}")
    notes = _yaml12_values(namespace)
    values = {k: namespace[k] for k in values if k in declared}
    fixed, repaired = params.repair(values, declared)
    notes += repaired
    for note in notes:
        print(f"polarkit: {note}", file=sys.stderr)
    namespace.update(fixed)
    values.update(fixed)
    params.check(values, declared, source=f"parameters of {nb.name}")
    return values


def _injected_names(namespace: dict[str, Any]) -> list[str]:
    """Names assigned by papermill's injected-parameters cell (its source starts `# Parameters`), if any."""
    import ast

    for source in reversed(namespace.get("In") or []):
        if source.lstrip().startswith("# Parameters"):
            try:
                tree = ast.parse(source)
            except SyntaxError:
                return []
            return [
                t.id
                for node in tree.body
                if isinstance(node, ast.Assign)
                for t in node.targets
                if isinstance(t, ast.Name)
            ]
    return []


def _papermill_command(pid: int) -> tuple[Path, dict] | None:
    """(working folder, parsed options) if process `pid` is a papermill command line, else None."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None
    for i, a in enumerate(argv[:3]):
        if Path(a).name == "papermill" or (a == "-m" and argv[i + 1 : i + 2] == ["papermill"]):
            args = argv[i + (2 if a == "-m" else 1) :]
            break
    else:
        return None
    try:
        from papermill.cli import papermill as cli

        return cwd, cli.make_context("papermill", list(args), resilient_parsing=True).params
    except Exception:  # noqa: BLE001 - an unparsable command line only loses the notebook copy
        return None


def _papermill_paths(pid: int) -> tuple[Path, Path | None] | None:
    """(input notebook, output notebook or None) if process `pid` is a papermill command line."""
    found = _papermill_command(pid)
    if not found or not found[1].get("notebook_path"):
        return None
    cwd, opts = found
    out = opts.get("output_path")
    return cwd / opts["notebook_path"], (cwd / out if out and out != "-" else None)


def _yaml12_values(namespace: dict[str, Any]) -> list[str]:
    """Re-read plain papermill's `-f` files as YAML 1.2 (papermill reads YAML 1.1: `010` -> 8,
    `1:04` -> 64) and put those values in `namespace`, except names `-p` gave. Returns notes.

    A duplicate key or an empty file is refused here as the CLI refuses it (ParamError)."""
    from polarkit import params

    found = _papermill_command(os.getppid())
    if not found:
        return []
    cwd, opts = found
    given = {k for k, _ in opts.get("parameters") or ()}
    notes = []
    for f in opts.get("parameters_file") or ():
        for key, value in params.load_yaml(cwd / f).items():
            if key in namespace and key not in given and namespace[key] != value:
                notes.append(f"{key}: YAML 1.1 (papermill) read {namespace[key]!r}; YAML 1.2 reads {value!r}: using it")
                namespace[key] = value
    return notes


def _watch_papermill(run: Run) -> None:
    """Under plain papermill, spawn a detached watcher that finalises the run when papermill exits."""
    found = _papermill_paths(os.getppid())
    if not found or found[1] is None:
        return  # interactive session (or output to stdout): no executed notebook file to collect
    subprocess.Popen(
        [sys.executable, "-m", "polarkit.executor", "watch", str(os.getppid()), str(run.dir), str(found[1])],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=open(run.dir / "watcher.log", "w"),
    )
