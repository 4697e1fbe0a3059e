"""Every run folder mirrored into MLflow: parameters, metrics, stepped history, tags, reviewer artifacts.

    tracking.mirror(run_dir)        # -> MLflow run id, or None (one warning line) when the tracker fails
    tracking.backfill()             # every run folder under outputs/ not yet mirrored to this store
    tracking.mlflow_ui()            # the command that opens the dashboard on the local store

The run folder stays the source of truth; its MLflow run (one experiment per notebook stem) copies
params.yaml, metrics.json (null values skipped), history*.csv (one metric per column, stepped by the
`step` column; `history_<name>.csv` columns are logged as `<name>/<column>`), tags (notebook, profile,
run id and folder, git commit + dirty flag, status, sweep/study/trial) and the reviewer's artifacts
(notebook.html, figures/, params.yaml, env.json; never checkpoints or model weights). The MLflow run's
state follows status.json: succeeded -> FINISHED, failed / interrupted / died -> FAILED, pruned -> KILLED,
queued / running -> RUNNING.

Mirroring again updates the same run: its id is kept in status.json (`mlflow_run_id`, with the redacted
`mlflow_tracking_uri` it belongs to). Metric points carry deterministic timestamps, so a repeated point
is stored once; an artifact is uploaded again only when its size changed.

Store: `$MLFLOW_TRACKING_URI` (a team server) when set, else `sqlite:///<outputs>/mlflow.db` with
artifacts under `<outputs>/mlartifacts/`. `POLARKIT_TRACKING=off` turns mirroring off. An HTTP tracker
gets a TCP check first (2 s), then one attempt per request with a timeout (`POLARKIT_TRACKING_TIMEOUT`, 5 s), so
an unreachable one costs at most ~2 s and a hanging one one timeout; whatever fails is one warning line,
never an exception.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import re
import socket
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import yaml

from polarkit import runs

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # offline machines: MLflow would phone home on import

OFF = {"0", "off", "false", "no"}
STATES = {
    "succeeded": "FINISHED",
    "failed": "FAILED",
    "interrupted": "FAILED",
    "died": "FAILED",
    "pruned": "KILLED",
}  # queued / running stay RUNNING
ARTIFACTS = ("notebook.html", "params.yaml", "env.json")  # plus figures/*
TAG = "polarkit."
_LOCK = threading.RLock()  # one mirror at a time per process (`run --jobs K` finalises in threads; SQLite locks)
_MAX_TAG, _MAX_PARAM = 5000, 6000  # MLflow's value limits (tags 8000, params 6000 characters)


def enabled() -> bool:
    """False when `POLARKIT_TRACKING` is off/0/false/no."""
    return os.environ.get("POLARKIT_TRACKING", "on").strip().lower() not in OFF


def tracking_uri() -> str:
    """`$MLFLOW_TRACKING_URI` when set, else the local store `sqlite:///<outputs>/mlflow.db`."""
    return os.environ.get("MLFLOW_TRACKING_URI") or local_uri()


def local_uri(outputs: Path | None = None) -> str:
    return f"sqlite:///{Path(outputs or runs.outputs_dir()) / 'mlflow.db'}"


def redact(uri: str) -> str:
    """`uri` without a password (user:secret@host -> user:***@host), for status.json and messages."""
    return re.sub(r"(://[^/:@]+):[^@/]*@", r"\1:***@", uri)


def is_remote(uri: str) -> bool:
    return urlparse(uri).scheme in ("http", "https")


def artifact_root(uri: str) -> Path | None:
    """Where a database store keeps artifacts: `mlartifacts/` beside a SQLite file, else under outputs/;
    None for an HTTP tracker (the server decides)."""
    if is_remote(uri) or uri.startswith("databricks"):
        return None
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts"
    return runs.outputs_dir() / "mlartifacts"


def warn(what: str, error: BaseException | str) -> None:
    """The one line a tracking problem costs: `polarkit: warning: <what>: <Error>: <first line>`."""
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    kind = type(error).__name__ if isinstance(error, BaseException) else ""
    sep = ": " if kind and first else ""
    print(f"polarkit: warning: {what}: {kind}{sep}{first[:300]}", file=sys.stderr, flush=True)


def check_reachable(uri: str, timeout: float = 2.0) -> None:
    """ConnectionError within `timeout` seconds when an HTTP tracker's host:port takes no connection."""
    if not is_remote(uri):
        return
    u = urlparse(uri)
    port = u.port or (443 if u.scheme == "https" else 80)
    try:
        socket.create_connection((u.hostname, port), timeout=timeout).close()
    except OSError as e:
        raise ConnectionError(f"tracking server {redact(uri)} unreachable ({e.strerror or e})") from None


@contextlib.contextmanager
def session(uri: str | None = None, quick: bool = True, fluent: bool = False) -> Iterator[Any]:
    """An `MlflowClient` on `uri` (default: `tracking_uri()`) with MLflow's noisy loggers quietened and,
    when `quick`, small HTTP retry/timeout settings; `fluent` also points MLflow's global tracking URI
    there for the block (model logging and `models:/` downloads use it), restoring it afterwards."""
    uri = uri or tracking_uri()
    with _LOCK:
        check_reachable(uri)
        # quick: one attempt, a bounded wait (a run mirrored later by `polarkit track --backfill` loses nothing)
        env = (
            {
                "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
                "MLFLOW_HTTP_REQUEST_TIMEOUT": os.environ.get("POLARKIT_TRACKING_TIMEOUT", "5"),
            }
            if quick
            else {}
        )
        env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"  # per-file bars, one line each in batch logs
        import mlflow  # before quietening its loggers: importing mlflow configures them

        with _env(env), _quiet_loggers(), _fluent_uri(uri) if fluent else contextlib.nullcontext():
            _create_local_store(uri)
            yield mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def _create_local_store(uri: str) -> None:
    """A new SQLite store is created with its default experiment's artifacts under artifact_root
    (MLflow would put them in ./mlruns of whichever folder the first caller ran in)."""
    if not uri.startswith("sqlite:///") or Path(uri.removeprefix("sqlite:///")).exists():
        return
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    SqlAlchemyStore(uri, artifact_root(uri).as_uri())  # its engine is cached: the client store reuses it


@contextlib.contextmanager
def _fluent_uri(uri: str) -> Iterator[None]:
    """MLflow's global tracking URI = `uri` for the block. `mlflow.set_tracking_uri` also sets (or, given
    None, deletes) $MLFLOW_TRACKING_URI: both are put back as they were."""
    import mlflow
    from mlflow.tracking._tracking_service import utils

    old_global, old_env = utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(old_global)
        if old_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old_env


@contextlib.contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _quiet_loggers() -> Iterator[None]:
    """MLflow, alembic and urllib3 log retries and schema migrations at INFO/WARNING: keep them to errors."""
    import logging

    loggers = [logging.getLogger(n) for n in ("mlflow", "alembic", "urllib3", "sqlalchemy")]
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, old):
            lg.setLevel(level)


_PREPARED = threading.Event()


def prepare(uri: str | None = None) -> None:
    """Warm up in a background thread: import MLflow and open the store (creating a new SQLite store
    runs MLflow's schema migrations, seconds). Call when a run starts; its `mirror` at the end is then
    quick. Does nothing when tracking is off or after the first call in this process."""
    if not enabled() or _PREPARED.is_set():
        return
    _PREPARED.set()

    def warm() -> None:
        with contextlib.suppress(Exception):
            import mlflow  # noqa: F401

            target = uri or tracking_uri()
            if not is_remote(target):  # a server is not contacted before it is needed
                with session(target) as client:
                    client.get_experiment_by_name("polarkit-warm-up")

    threading.Thread(target=warm, name="polarkit-tracking-warm-up", daemon=True).start()


# ---- mirroring ----


def mirror(run_dir: Path | str, uri: str | None = None) -> str | None:
    """Mirror one run folder into MLflow; returns the MLflow run id, or None after one warning line
    (tracker unreachable, database locked, anything). Never raises; quick (see module docstring)."""
    if not enabled():
        return None
    run_dir = Path(run_dir)
    try:
        with session(uri) as client:
            return _mirror(client, run_dir, uri or tracking_uri())
    except Exception as e:  # noqa: BLE001 - tracking must never break or stop a run
        warn(f"MLflow tracking skipped for {run_dir.name}", e)
        return None


def _mirror(client, run_dir: Path, uri: str) -> str:
    """The work of `mirror` inside a session; raises on any problem."""
    from mlflow.entities import Metric, Param, RunTag

    if not (run_dir / "status.json").is_file():
        raise FileNotFoundError(f"{run_dir}: no status.json (not a run folder)")
    status = runs.read_json(run_dir / "status.json")
    stem = status.get("notebook") or run_dir.parent.name
    run_id = _find_run(client, status, uri)
    start_ms = _start_ms(run_dir, status)
    tags = _tags(run_dir, status)
    if run_id is None:
        exp_id = _experiment(client, stem, uri)
        run_id = client.create_run(exp_id, start_time=start_ms, tags=tags, run_name=run_dir.name).info.run_id
        runs.write_json(
            run_dir / "status.json",
            {**runs.read_json(run_dir / "status.json"), "mlflow_run_id": run_id, "mlflow_tracking_uri": redact(uri)},
        )
    current = client.get_run(run_id).data
    flat, history = _metrics(run_dir, start_ms)
    metrics = [Metric(k, v, ts, step) for k, v, ts, step in flat if current.metrics.get(k) != v]
    metrics += [Metric(k, v, ts, step) for k, v, ts, step in history]  # repeated points are stored once
    params = [Param(k, v) for k, v in _params(run_dir).items() if k not in current.params]
    _log_batches(client, run_id, metrics, params, [RunTag(k, v) for k, v in tags.items() if current.tags.get(k) != v])
    _log_artifacts(client, run_id, run_dir)
    _set_state(client, run_id, status)
    return run_id


def _log_batches(client, run_id: str, metrics: list, params: list, tags: list) -> None:
    """log_batch within MLflow's limits: 1000 entries, of which at most 100 params and 100 tags."""
    while metrics or params or tags:
        p, params, t, tags = params[:100], params[100:], tags[:100], tags[100:]
        room = 1000 - len(p) - len(t)
        m, metrics = metrics[:room], metrics[room:]
        client.log_batch(run_id, metrics=m, params=p, tags=t)


def _start_ms(run_dir: Path, status: dict) -> int:
    """The run's start (ms): status.json's `start`, else params.yaml's mtime, else now."""
    if ms := _ms(status.get("start")):
        return ms
    p = run_dir / "params.yaml"
    return int((p.stat().st_mtime if p.exists() else time.time()) * 1000)


def _find_run(client, status: dict, uri: str) -> str | None:
    """The MLflow run this folder was mirrored to before, if it is in this store and not deleted."""
    run_id = status.get("mlflow_run_id")
    if not run_id or status.get("mlflow_tracking_uri", redact(uri)) != redact(uri):
        return None
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException as e:  # a new database under the same URI: start afresh; anything else is a failure
        if e.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        return None
    return run_id if run.info.lifecycle_stage == "active" else None


def _experiment(client, name: str, uri: str) -> str:
    """The id of experiment `name`, created (artifacts under artifact_root) when missing; safe under races."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    root = artifact_root(uri)
    try:
        return client.create_experiment(
            name, artifact_location=(root / name).as_uri() if root else None, tags={"polarkit.notebook": name}
        )
    except MlflowException:  # created meanwhile by another process
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def _ms(iso: str | None) -> int | None:
    try:
        return int(datetime.fromisoformat(iso).timestamp() * 1000) if iso else None
    except ValueError:
        return None


def _params(run_dir: Path) -> dict[str, str]:
    """params.yaml flattened to strings (lists and mappings as their YAML flow text)."""
    try:
        values = yaml.safe_load((run_dir / "params.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}
    if not isinstance(values, dict):
        return {}
    out = {}
    for k, v in values.items():
        text = (
            v
            if isinstance(v, str)
            else yaml.safe_dump(v, default_flow_style=True, allow_unicode=True, width=10**6)
            .strip()
            .removesuffix("\n...")
        )
        out[str(k)] = text[:_MAX_PARAM]
    return out


def _metrics(run_dir: Path, start_ms: int) -> tuple[list, list]:
    """([(key, value, timestamp ms, step)] of metrics.json at step 0, stamped with the file's mtime;
    [...] of every history*.csv row, stamped start + row index so that a repeated point is the same)."""
    flat, history = [], []
    path = run_dir / "metrics.json"
    if path.exists():
        ts = int(path.stat().st_mtime * 1000)
        flat = [(_metric_key(k), float(v), ts, 0) for k, v in runs.read_json(path).items() if _finite(v)]
    for hist in sorted(run_dir.glob("history*.csv")):
        prefix = hist.stem.removeprefix("history").strip("_-")
        prefix = f"{prefix}/" if prefix else ""
        with contextlib.suppress(OSError, csv.Error, UnicodeDecodeError), open(hist, newline="", encoding="utf-8") as f:
            for i, row in enumerate(csv.DictReader(f)):
                step = _int(row.get("step"), i)
                history += [
                    (_metric_key(prefix + k), float(v), start_ms + i, step)
                    for k, v in row.items()
                    if k and k != "step" and _finite(v)
                ]
    return flat, history


def _metric_key(key: str) -> str:
    """MLflow keys allow letters, digits, _ - . space / : keep everything else out."""
    return re.sub(r"[^\w\-. /]", "_", key)


def _finite(v: Any) -> bool:
    if isinstance(v, bool) or v is None or v == "":
        return False
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _int(v: Any, default: int) -> int:
    try:
        return int(float(v))
    except (TypeError, ValueError):
        return default


def _tags(run_dir: Path, status: dict) -> dict[str, str]:
    env = runs.read_json(run_dir / "env.json")
    state = _state(status)
    tags = {
        "mlflow.runName": run_dir.name,
        "mlflow.source.name": status.get("notebook") or run_dir.parent.name,
        "mlflow.source.type": "NOTEBOOK",
        TAG + "notebook": status.get("notebook") or run_dir.parent.name,
        TAG + "run_id": run_dir.name,
        TAG + "run_dir": str(run_dir.absolute()),
        TAG + "status": state,
    }
    if env.get("commit"):
        tags["mlflow.source.git.commit"] = tags[TAG + "git_commit"] = str(env["commit"])
    if env.get("dirty") is not None:
        tags[TAG + "git_dirty"] = str(bool(env["dirty"])).lower()
    for key in ("profile", "sweep", "study", "trial", "host", "error", "message", "cell", "pruned_at_step"):
        if status.get(key) not in (None, ""):
            tags[TAG + key] = str(status[key])[:_MAX_TAG]
    return tags


def _state(status: dict) -> str:
    """status.json's state, or `died` for a queued/running run whose process is gone."""
    state = status.get("state") or "unknown"
    pid = status.get("kernel_pid") if state == "running" else status.get("executor_pid")
    if state in ("queued", "running") and pid is not None and not os.path.exists(f"/proc/{pid}"):
        return "died"
    return state


def _set_state(client, run_id: str, status: dict) -> None:
    """The MLflow run's status follows status.json (terminal states get the run's end time)."""
    target = STATES.get(_state(status), "RUNNING")
    info = client.get_run(run_id).info
    if info.status == target:
        return
    if target == "RUNNING":
        client.update_run(run_id, status="RUNNING")
    else:
        client.set_terminated(run_id, status=target, end_time=_ms(status.get("end")) or int(time.time() * 1000))


def _log_artifacts(client, run_id: str, run_dir: Path) -> None:
    """notebook.html, params.yaml, env.json and figures/*: uploaded when missing or changed in size."""
    have = {f.path: f.file_size for f in client.list_artifacts(run_id)}
    have |= {f.path: f.file_size for f in client.list_artifacts(run_id, "figures")} if "figures" in have else {}
    for name in ARTIFACTS:
        p = run_dir / name
        if p.is_file() and have.get(name) != p.stat().st_size:
            client.log_artifact(run_id, str(p))
    figures = run_dir / "figures"
    for p in sorted(figures.glob("*")) if figures.is_dir() else []:
        if p.is_file() and have.get(f"figures/{p.name}") != p.stat().st_size:
            client.log_artifact(run_id, str(p), "figures")


# ---- whole outputs folder, dashboard ----


def backfill(
    outputs: Path | str | None = None, uri: str | None = None, progress: bool = True
) -> list[tuple[Path, str | None]]:
    """Mirror every run folder under `outputs` not yet mirrored to this store -> [(folder, run id or None)].

    `polarkit track --backfill`; one session for all of them, so a dead tracker stops after one warning."""
    outputs = Path(outputs or runs.outputs_dir())
    uri = uri or (os.environ.get("MLFLOW_TRACKING_URI") or local_uri(outputs))
    todo = [d for d in run_folders(outputs) if not _mirrored(d, uri)]
    done: list[tuple[Path, str | None]] = []
    if not todo:
        return done
    try:
        with session(uri) as client:
            for i, d in enumerate(todo, 1):
                try:
                    done.append((d, _mirror(client, d, uri)))
                except Exception as e:  # noqa: BLE001 - one broken folder does not stop the rest
                    warn(f"MLflow tracking skipped for {d.name}", e)
                    done.append((d, None))
                if progress:
                    print(f"  [{i}/{len(todo)}] {d.parent.name}/{d.name} -> {done[-1][1] or 'skipped'}", flush=True)
    except Exception as e:  # noqa: BLE001 - the tracker itself is unreachable
        warn("MLflow backfill stopped", e)
    return done


def run_folders(outputs: Path) -> list[Path]:
    """outputs/<stem>/<run>/ folders holding a status.json (sweeps/ and mlartifacts/ hold none)."""
    return sorted(p.parent for p in Path(outputs).glob("*/*/status.json"))


def _mirrored(run_dir: Path, uri: str) -> bool:
    st = runs.read_json(run_dir / "status.json")
    return bool(st.get("mlflow_run_id")) and st.get("mlflow_tracking_uri") == redact(uri)


def mlflow_ui(outputs: Path | str | None = None, port: int = 5000) -> list[str]:
    """The command that serves the MLflow dashboard on the local store, on 127.0.0.1 only."""
    outputs = Path(outputs or runs.outputs_dir())
    exe = Path(sys.executable).with_name("mlflow")
    return [
        str(exe) if exe.exists() else "mlflow",
        "ui",
        "--backend-store-uri",
        local_uri(outputs),
        "--artifacts-destination",
        str(outputs / "mlartifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
