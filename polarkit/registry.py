"""Models worth keeping, in MLflow's model registry: registered above a threshold, promoted when better.

    registry.register(run.dir, "cola", model_dir, "heldout_mcc", threshold=0.25)  # -> candidate, or None
    registry.promote("cola")                    # champion <- candidate, only if it beats the champion
    registry.promote("cola", version=3, force=True)
    registry.list_models()                      # task, version, aliases, metric, value, run, created

Registered model names are the task names (TASKS). A version is the run's model folder (written by the
task's save function: safetensors + polarkit_model.json) logged to the run's MLflow run as a pyfunc
*from code* (`polarkit/pyfunc_model.py`; nothing pickled), tagged with the run and its validation metric.
`register` makes it the `candidate`; `promote` moves `champion`. Refusals are ValueErrors with the
reason; an unreachable tracker during `register` is one warning (the run goes on).
"""

from __future__ import annotations

import difflib
import math
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from polarkit import predictors, runs, score, tracking

TASKS = ("cola", "sts", "sentiment", "keywords", "keyword_sentiment", "jd-encoder")
CANDIDATE, CHAMPION = "candidate", "champion"
T = "polarkit."  # version tag prefix
PYFUNC = Path(__file__).with_name("pyfunc_model.py")
_REQUIREMENTS = ("mlflow", "torch", "transformers", "tokenizers", "safetensors", "numpy", "pandas")


def check_task(task: str) -> str:
    """`task` if it is one of TASKS; else a ValueError with a did-you-mean."""
    if task in TASKS:
        return task
    near = difflib.get_close_matches(str(task), TASKS, n=1, cutoff=0.5)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    raise ValueError(f"unknown task {task!r}{hint} (tasks: {', '.join(TASKS)})")


def check_run(run_dir: Path, allow_current: bool = False) -> None:
    """ValueError unless the run succeeded (or, with allow_current, is this process's running run)."""
    if not (run_dir / "status.json").is_file():
        raise ValueError(f"{run_dir}: not a run folder (no status.json)")
    status = runs.read_json(run_dir / "status.json")
    state = tracking._state(status)
    current = runs.current()
    if state == "succeeded" or (
        allow_current and state == "running" and current is not None and current.dir.resolve() == run_dir.resolve()
    ):
        return
    if state in ("running", "queued"):
        raise ValueError(f"run {run_dir.name} is still {state}: wait until it has finished")
    why = ": ".join(str(x) for x in (status.get("error"), status.get("message")) if x)
    raise ValueError(
        f"run {run_dir.name} {state}{f' ({why})' if why else ''}: only a succeeded run's model can be "
        "registered or promoted"
    )


def _direction(metric: str, greater_is_better: bool | None) -> bool:
    return score.greater_is_better(metric) if greater_is_better is None else bool(greater_is_better)


def _beats(a: float, b: float, greater: bool) -> bool:
    return a > b if greater else a < b


def register(
    run_dir: Path | str,
    task: str,
    model_dir: Path | str,
    metric_name: str,
    threshold: float,
    greater_is_better: bool | None = None,
    uri: str | None = None,
) -> dict | None:
    """Register the run's saved model under `task` when its validation metric clears `threshold`.

    Logs `model_dir` to the run's MLflow run (pyfunc from code + the folder as its "model" artifact),
    registers it, sets alias `candidate`, tags the version (run, metric, value, direction). Returns
    {"task", "version", "metric", "value", ...}, or None: below the threshold, metric null, or the
    tracker failed (one warning). greater_is_better: None takes the metric's direction from
    `polarkit.score.greater_is_better` (losses are lower-is-better; "clears" then means <= threshold).
    Raises ValueError for an unknown task, a failed run, a folder without a saved model, a metric the
    run did not write, or a model card of another task."""
    task, run_dir, model_dir = check_task(task), Path(run_dir), Path(model_dir)
    check_run(run_dir, allow_current=True)
    card = predictors.read_card(model_dir)
    if card["task"] != task:
        raise ValueError(f"{model_dir} holds a {card['task']!r} model, not {task!r}")
    value = _metric(run_dir, metric_name)
    greater = _direction(metric_name, greater_is_better)
    if value is None or not (value >= threshold if greater else value <= threshold):
        shown = "null" if value is None else f"{value:.4g}"
        print(
            f"polarkit: {task} not registered: {metric_name} {shown} does not clear the threshold "
            f"{threshold:.4g} ({'higher' if greater else 'lower'} is better)",
            file=sys.stderr,
        )
        return None
    predictors.update_card(
        model_dir,
        metric=metric_name,
        value=value,
        greater_is_better=greater,
        run_id=run_dir.name,
        run_dir=str(run_dir.absolute()),
    )
    tags = {
        T + "run_id": run_dir.name,
        T + "run_dir": str(run_dir.absolute()),
        T + "metric": metric_name,
        T + "value": repr(value),
        T + "greater_is_better": str(greater).lower(),
        T + "threshold": repr(threshold),
        T + "notebook": runs.read_json(run_dir / "status.json").get("notebook") or run_dir.parent.name,
    }
    try:
        with tracking.session(uri, quick=False, fluent=True) as client:
            mv = _log_and_register(client, run_dir, task, model_dir, tags, uri or tracking.tracking_uri())
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 - the tracker failing must not fail the run that asked
        tracking.warn(f"{task} not registered for {run_dir.name}", e)
        return None
    print(
        f"polarkit: registered {task} version {mv.version} ({metric_name} {value:.4g}, threshold "
        f"{threshold:.4g}) as {CANDIDATE}; `polarkit promote {task}` makes it the {CHAMPION} if it is better"
    )
    return {
        "task": task,
        "version": int(mv.version),
        "alias": CANDIDATE,
        "metric": metric_name,
        "value": value,
        "run_id": run_dir.name,
        "mlflow_run_id": mv.run_id,
    }


def _metric(run_dir: Path, name: str) -> float | None:
    """metrics.json[name] (None when null); ValueError with a did-you-mean when the run never wrote it."""
    metrics = runs.read_json(run_dir / "metrics.json")
    if name not in metrics:
        near = difflib.get_close_matches(name, list(metrics), n=1)
        raise ValueError(
            f"run {run_dir.name} wrote no metric {name!r}"
            f"{f'; did you mean {near[0]!r}?' if near else ''} (metrics.json: {sorted(metrics)})"
        )
    v = metrics[name]
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _log_and_register(client, run_dir: Path, task: str, model_dir: Path, tags: dict, uri: str):
    """Mirror the run, log the pyfunc-from-code model into it, register it, alias it `candidate`."""
    import warnings

    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    run_id = tracking._mirror(client, run_dir, uri)
    # the logged model lives in the run's experiment (left to MLflow, it would go to the active one: "0")
    logged = client.create_logged_model(
        client.get_run(run_id).info.experiment_id, name=task, source_run_id=run_id, tags={"polarkit.task": task}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = Model.log(
            artifact_path=None,
            name=task,
            flavor=mlflow.pyfunc,
            run_id=run_id,
            model_id=logged.model_id,
            python_model=str(PYFUNC),
            artifacts={"model": str(model_dir)},
            pip_requirements=requirements(),
            metadata={"polarkit_task": task},
        )
    try:
        client.create_registered_model(task, tags={"polarkit.task": task})
    except MlflowException as e:
        if e.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    mv = client.create_model_version(task, info.model_uri, run_id=run_id, tags=tags, model_id=info.model_id)
    client.set_registered_model_alias(task, CANDIDATE, mv.version)
    return mv


def requirements() -> list[str]:
    """Pinned pip requirements of a logged model: this environment's versions (nothing is inferred)."""
    out = []
    for name in _REQUIREMENTS:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    try:
        out.append(f"polarkit=={metadata.version('polarkit')}")
    except metadata.PackageNotFoundError:
        out.append("polarkit")
    return out


# ---- reading the registry ----


def _registered(client) -> list[str]:
    return sorted(m.name for m in client.search_registered_models())


def _require_registered(client, task: str) -> None:
    names = _registered(client)
    if task in names:
        return
    if task not in TASKS:
        check_task(task)
    raise ValueError(
        f"no model registered under {task!r} yet (registered: {', '.join(names) or 'none'}); "
        "run its notebook with register=True"
    )


def version_of(task: str, alias: str | None = None, version: int | str | None = None, uri: str | None = None) -> str:
    """The version number (str) behind `task@alias` or `task/version`, with clear errors."""
    from mlflow.exceptions import MlflowException

    with tracking.session(uri, quick=False) as client:
        _require_registered(client, task)
        try:
            if alias is not None:
                return str(client.get_model_version_by_alias(task, alias).version)
            return str(client.get_model_version(task, str(version)).version)
        except MlflowException:
            have = _versions(client, task)
            aliases = ", ".join(f"{a} -> v{v}" for v, names in _aliases(client, task).items() for a in names) or "none"
            what = f"alias {alias!r}" if alias is not None else f"version {version}"
            raise ValueError(
                f"{task} has no {what} (versions: {', '.join(str(v.version) for v in have) or 'none'}; "
                f"aliases: {aliases})"
            ) from None


def _aliases(client, task: str) -> dict[str, list[str]]:
    """{version: [aliases]} of a registered model (search results do not carry aliases)."""
    out: dict[str, list[str]] = {}
    for alias, version in (client.get_registered_model(task).aliases or {}).items():
        out.setdefault(str(version), []).append(alias)
    return out


def _versions(client, task: str) -> list:
    return sorted(client.search_model_versions(f"name='{task}'"), key=lambda v: int(v.version))


def _version_metric(mv) -> tuple[str | None, float | None, bool]:
    t = mv.tags or {}
    value = t.get(T + "value")
    metric = t.get(T + "metric")
    greater = t.get(T + "greater_is_better")
    return (
        metric,
        (float(value) if value not in (None, "") else None),
        (greater == "true") if greater in ("true", "false") else _direction(metric or "", None),
    )


def list_models(uri: str | None = None):
    """DataFrame: task, version, aliases, metric, value, run_id, run_dir, created, mlflow_run_id."""
    import pandas as pd

    rows = []
    with tracking.session(uri, quick=False) as client:
        for name in _registered(client):
            aliases = _aliases(client, name)
            for mv in _versions(client, name):
                metric, value, _ = _version_metric(mv)
                names = ", ".join(sorted(aliases.get(str(mv.version), [])))
                rows.append(
                    {
                        "task": name,
                        "version": int(mv.version),
                        "aliases": names,
                        "metric": metric,
                        "value": value,
                        "run_id": (mv.tags or {}).get(T + "run_id"),
                        "run_dir": (mv.tags or {}).get(T + "run_dir"),
                        "created": pd.to_datetime(mv.creation_timestamp, unit="ms", utc=True),
                        "mlflow_run_id": mv.run_id,
                    }
                )
    cols = ["task", "version", "aliases", "metric", "value", "run_id", "run_dir", "created", "mlflow_run_id"]
    return pd.DataFrame(rows, columns=cols)


# ---- promotion ----


def promote(
    task: str,
    version: int | str | None = None,
    run: str | Path | None = None,
    force: bool = False,
    uri: str | None = None,
) -> dict:
    """Move alias `champion` of `task` to `version`, to the version registered from `run` (a run folder
    or its id), or to the `candidate` -> {"task", "version", "replaced", "message"}.

    Refused (ValueError): unknown task or none registered, no such version / no candidate, a run that
    failed or is running, a run without a saved (registered) model, a metric that cannot be compared,
    a model that does not beat the champion (unless `force`; the message says what it replaced)."""
    check_task(task)
    if version is not None and run is not None:
        raise ValueError("give --version or --run, not both")
    with tracking.session(uri, quick=False) as client:
        _require_registered(client, task)
        target = _target(client, task, version, run)
        _check_version_run(client, target)
        champion = _alias(client, task, CHAMPION)
        if champion is not None and str(champion.version) == str(target.version):
            return {
                "task": task,
                "version": int(target.version),
                "replaced": None,
                "message": f"{task} v{target.version} already is the {CHAMPION}",
            }
        note = _compare(task, target, champion, force)
        client.set_registered_model_alias(task, CHAMPION, target.version)  # the candidate alias stays where it is
    replaced = int(champion.version) if champion is not None else None
    msg = f"{task}: {CHAMPION} is now v{target.version}" + (
        f" (replaced v{replaced}{note})" if replaced is not None else " (there was no champion)"
    )
    return {"task": task, "version": int(target.version), "replaced": replaced, "message": msg}


def _alias(client, task: str, alias: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(task, alias)
    except MlflowException:
        return None


def _target(client, task: str, version, run):
    """The model version promote is asked about."""
    have = _versions(client, task)
    if version is not None:
        found = [v for v in have if str(v.version) == str(version)]
        if not found:
            raise ValueError(f"{task} has no version {version} (versions: {', '.join(str(v.version) for v in have)})")
        return found[0]
    if run is not None:
        run_name = Path(str(run)).name
        found = [v for v in have if (v.tags or {}).get(T + "run_id") == run_name]
        if found:
            return found[-1]
        _explain_unregistered_run(Path(str(run)), task)
    candidate = _alias(client, task, CANDIDATE)
    if candidate is None:
        raise ValueError(f"{task} has no {CANDIDATE} (register a run above its threshold, or name --version / --run)")
    return candidate


def _explain_unregistered_run(run: Path, task: str) -> None:
    """Raise the reason a run has no registered version of `task`."""
    if run.is_dir():
        check_run(run)
        try:
            predictors.model_dir_in(run)
        except ValueError:
            raise ValueError(
                f"run {run.name} has no saved model (nothing under models/ with a "
                f"{predictors.CARD}); run the notebook with register=True"
            ) from None
        raise ValueError(
            f"run {run.name} has a saved model but no registered {task} version "
            "(its metric did not clear the threshold, or the tracker was unreachable)"
        )
    raise ValueError(f"no {task} version was registered from run {run.name!r}")


def _check_version_run(client, mv) -> None:
    """The version's run must have succeeded: its run folder's status when here, else the MLflow run's."""
    run_dir = Path((mv.tags or {}).get(T + "run_dir") or "")
    if run_dir.name and (run_dir / "status.json").is_file():
        check_run(run_dir)
        return
    if mv.run_id:
        state = client.get_run(mv.run_id).info.status
        if state != "FINISHED":
            word = "is still running" if state in ("RUNNING", "SCHEDULED") else f"ended {state}"
            raise ValueError(f"the run of {mv.name} v{mv.version} {word}: only a succeeded run's model can be promoted")


def _compare(task: str, target, champion, force: bool) -> str:
    """'' or a note when `target` may replace `champion`; ValueError when it may not (without force)."""
    if champion is None:
        return ""
    m_new, v_new, greater = _version_metric(target)
    m_old, v_old, _ = _version_metric(champion)
    shown = f"v{target.version} {m_new} {_fmt(v_new)} vs champion v{champion.version} {m_old} {_fmt(v_old)}"
    if force:
        return f"; forced: {shown}"
    if m_new != m_old or v_new is None or v_old is None:
        raise ValueError(f"{task}: cannot compare {shown}; use force to promote anyway")
    if not _beats(v_new, v_old, greater):
        raise ValueError(
            f"{task}: v{target.version} does not beat the champion ({shown}, "
            f"{'higher' if greater else 'lower'} is better); use force to promote anyway"
        )
    return f"; {shown}"


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.4g}"
