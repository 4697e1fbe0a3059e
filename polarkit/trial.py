"""The kernel side of a sweep trial: which Optuna trial this notebook runs as, and pruning.

`polarkit.sweep` runs every trial as an ordinary notebook run and tells the kernel which trial it
is through environment variables (study name, storage URL, trial id, pruner, prune metric).
`current()` rebuilds that `optuna.trial.Trial` from them, or returns None in an ordinary run.

Pruning reaches the training loop through `train.fit`, with no per-notebook code:
`pruning_callback(metric)` gives the `transformers.TrainerCallback` that reports every evaluation
to the trial and stops training at once when the pruner says so; `raise_if_pruned(callback)`, at
the end of `fit`, marks the run folder `pruned` (with the step) and raises `Pruned`, which ends
the notebook; the executor then keeps `pruned` as the run's final state. A notebook with its own
loop uses `Reporter` the same way (`if rep.report(value, step): break`, then `raise_if_pruned(rep)`).

What is reported: the sweep file's `prune_metric` (a `train.fit` eval metric, with or without the
`eval_` prefix; default: the fit's own checkpoint `metric`). Its direction comes from its name
(`score.greater_is_better`: losses are minimised, anything else maximised); when that differs from
the study's direction (e.g. pruning on the held-out loss in a study that maximises accuracy) the
value is reported negated, because Optuna's pruners compare intermediate values in the study's
direction. The step
is `global_step` (default), or with `prune_step: examples` the training examples seen, which keeps
rungs comparable when the batch size is part of the search space. Several `fit` calls in one
notebook continue the step count instead of restarting it.

Optuna is imported inside the functions that use it; transformers (for `TrainerCallback`) at import.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from polarkit import runs, score

ENV_STUDY = "POLARKIT_STUDY"  # study name
ENV_STORAGE = "POLARKIT_STORAGE"  # storage URL (sqlite:///…, postgresql://…, journal:///…)
ENV_TRIAL_ID = "POLARKIT_TRIAL_ID"  # the storage's trial id
ENV_TRIAL_NUMBER = "POLARKIT_TRIAL_NUMBER"  # the trial's number in its study (for messages)
ENV_PRUNER = "POLARKIT_PRUNER"  # JSON: {"type": "hyperband" | "median" | "none", **arguments}
ENV_PRUNE_METRIC = "POLARKIT_PRUNE_METRIC"  # train.fit eval metric to report ("" -> the fit's metric)
ENV_PRUNE_STEP = "POLARKIT_PRUNE_STEP"  # "step" (global_step) or "examples" (training examples seen)

PRUNERS = ("hyperband", "median", "none")
SQLITE_TIMEOUT_S = 60  # SQLite waits this long for a lock held by another worker or kernel
CONNECT_TIMEOUT_S = 5  # a server that does not answer is refused within seconds

_CACHE: dict[tuple, Any] = {}
_STEP_BASE = [0]  # steps (or examples) of earlier fits in this kernel: the next fit continues from here


class Pruned(Exception):
    """Raised at the end of a pruned `train.fit`: the notebook stops; its run folder says `pruned`."""

    def _render_traceback_(self) -> list[str]:  # IPython shows this one line instead of a traceback
        return [f"Pruned: {self}"]


# --- storages and pruners, shared with polarkit.sweep -------------------------------------------


def is_journal(url: str) -> bool:
    return url.startswith("journal:")


def journal_path(url: str) -> Path:
    """journal:///abs/path.log or journal:relative/path.log -> the file."""
    rest = url[len("journal:") :]
    return Path(rest[2:] if rest.startswith("//") else rest)


def redact(url: str) -> str:
    """The URL without its password (for status.json, logs and reports)."""
    if is_journal(url) or "://" not in url:
        return url
    try:
        from sqlalchemy.engine import URL, make_url

        u = make_url(url)
        if not u.password:
            return url
        return URL.create(
            u.drivername, username=u.username, host=u.host, port=u.port, database=u.database, query=u.query
        ).render_as_string(hide_password=False)
    except Exception:  # noqa: BLE001 - an unparsable URL: cut everything between :// and @
        head, _, tail = url.partition("://")
        return f"{head}://{tail.rpartition('@')[2]}"


def engine_kwargs(url: str) -> dict[str, Any]:
    """SQLAlchemy engine arguments: SQLite waits for locks; servers time out on connect."""
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    if url.startswith(("postgresql", "mysql")):
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
    return {}


def open_storage(
    url: str, heartbeat_interval: int | None = None, grace_period: int | None = None, retry: int | None = None
):
    """An Optuna storage for `url`: RDBStorage (SQLite, PostgreSQL, MySQL) or a JournalStorage file.

    With `heartbeat_interval` (RDB only), each running trial beats; one silent for `grace_period`
    seconds is marked FAIL by the next worker that asks for a trial and, with `retry`, re-queued
    (Optuna's RetryFailedTrialCallback / RetryHeartbeatStaleTrialCallback).
    """
    import optuna

    if is_journal(url):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = journal_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    kwargs: dict[str, Any] = {}
    if heartbeat_interval:
        retry_cb = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental / deprecated-alias warnings
            if retry_cb is not None:  # optuna >= 4.9
                kwargs = {"heartbeat_stale_trial_callback": retry_cb(max_retry=retry) if retry else None}
            else:
                kwargs = {
                    "failed_trial_callback": (
                        optuna.storages.RetryFailedTrialCallback(max_retry=retry) if retry else None
                    )
                }
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs(url),
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                **kwargs,
            )
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs(url))


def pruner_spec(spec: str | dict | None) -> dict[str, Any]:
    """'hyperband' | {'type': 'hyperband', 'min_resource': 100} | None -> {'type': ..., **arguments}."""
    if spec is None:
        return {"type": "none"}
    if isinstance(spec, str):
        return {"type": spec}
    if isinstance(spec, dict) and isinstance(spec.get("type"), str):
        return dict(spec)
    raise ValueError(
        f"expected one of {', '.join(PRUNERS)} or a mapping with `type:` and the pruner's arguments, got {spec!r}"
    )


def make_pruner(spec: str | dict | None):
    """Optuna pruner from a spec: hyperband (HyperbandPruner), median (MedianPruner), none (NopPruner)."""
    import optuna

    spec = pruner_spec(spec)
    kind, kwargs = spec["type"], {k: v for k, v in spec.items() if k != "type"}
    classes = {
        "hyperband": optuna.pruners.HyperbandPruner,
        "median": optuna.pruners.MedianPruner,
        "none": optuna.pruners.NopPruner,
    }
    if kind not in classes:
        raise ValueError(f"unknown pruner {kind!r}: choose {', '.join(PRUNERS)}")
    return classes[kind](**kwargs)


def metric_direction(name: str) -> str:
    """'minimize' for lower-is-better names (score.LOWER_IS_BETTER: loss, eval_loss, ...), else 'maximize'."""
    return "maximize" if score.greater_is_better(name) else "minimize"


# --- the trial this kernel runs as ---------------------------------------------------------------


def current():
    """The `optuna.trial.Trial` this kernel runs as (set by `polarkit sweep`), or None.

    A storage that cannot be opened is a warning, never a failed run: the trial then runs unpruned.
    """
    study_name, url, trial_id = (os.environ.get(k) for k in (ENV_STUDY, ENV_STORAGE, ENV_TRIAL_ID))
    if not (study_name and url and trial_id):
        return None
    key = (study_name, url, trial_id, os.environ.get(ENV_PRUNER))
    if key not in _CACHE:
        try:
            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                study = optuna.load_study(
                    study_name=study_name,
                    storage=open_storage(url),
                    sampler=optuna.samplers.RandomSampler(),  # never samples here
                    pruner=make_pruner(json.loads(os.environ.get(ENV_PRUNER) or "null")),
                )
                _CACHE[key] = optuna.trial.Trial(study, int(trial_id))
        except Exception as e:  # noqa: BLE001
            print(
                f"polarkit.trial: cannot reach trial {trial_id} of study {study_name!r} in {redact(url)}: "
                f"{type(e).__name__}: {e}; this run is not pruned",
                file=sys.stderr,
            )
            _CACHE[key] = None
    return _CACHE[key]


def prune_metric(fit_metric: str = "loss") -> str:
    """The eval metric to report (with its `eval_` prefix): the sweep's `prune_metric` or the fit's."""
    name = os.environ.get(ENV_PRUNE_METRIC) or fit_metric
    return name if name.startswith("eval_") else f"eval_{name}"


class Reporter:
    """Reports (value, step) of one metric to the current trial; `report` returns True when pruned.

    Values are sign-adjusted to the study's direction (see the module docstring); the raw value and
    the step where the pruner stopped the run are kept in `value` and `pruned_at_step`.
    """

    def __init__(self, metric: str, direction: str | None = None, trial=None):
        self.metric = metric
        self.direction = direction or metric_direction(metric)
        self._trial = trial
        self.pruned_at_step: int | None = None
        self.value: float | None = None
        self.last_step: int | None = None
        self.disabled = False

    @property
    def trial(self):
        return self._trial if self._trial is not None else current()

    def report(self, value: float, step: int) -> bool:
        """Report `value` at `step`; True (and remember the step) when the pruner says stop."""
        trial = self.trial
        if trial is None or self.disabled or self.pruned_at_step is not None:
            return self.pruned_at_step is not None
        study_max = trial.study.direction.name == "MAXIMIZE"
        sign = 1.0 if (self.direction == "maximize") == study_max else -1.0
        try:
            trial.report(sign * float(value), int(step))
            prune = trial.should_prune()
        except Exception as e:  # noqa: BLE001 - a storage hiccup or a trial already failed: train on, unpruned
            print(
                f"polarkit.trial: reporting {self.metric} to trial {trial.number} failed "
                f"({type(e).__name__}: {e}); pruning is off for this run",
                file=sys.stderr,
            )
            self.disabled = True
            return False
        self.last_step = int(step)
        if prune:
            self.pruned_at_step, self.value = int(step), float(value)
        return prune


def raise_if_pruned(reporter: Reporter | None) -> None:
    """If `reporter` was pruned: mark the run folder `pruned` (step, metric, value) and raise `Pruned`.

    `train.fit` calls this after training (and after writing history.csv); the exception ends the
    notebook, and `executor.finalize` keeps `pruned` as the final state instead of `failed`.
    """
    if reporter is None or reporter.pruned_at_step is None:
        return
    trial = reporter.trial
    number = trial.number if trial is not None else os.environ.get(ENV_TRIAL_NUMBER)
    info = {
        "pruned_at_step": reporter.pruned_at_step,
        "metric": reporter.metric,
        "value": reporter.value,
        "step_unit": os.environ.get(ENV_PRUNE_STEP) or "step",
    }
    if (run := runs.current()) is not None:
        run.set_status("pruned", **info)
    raise Pruned(
        f"trial {number} pruned at step {reporter.pruned_at_step} "
        f"({reporter.metric} = {reporter.value:.4g}); the rest of the notebook is skipped"
    )


def pruning_callback(fit_metric: str = "loss"):
    """A `PruningCallback` for `train.fit` when this kernel runs as a sweep trial, else None."""
    if current() is None:
        return None
    name = prune_metric(fit_metric)
    return PruningCallback(name, metric_direction(name), step_unit=os.environ.get(ENV_PRUNE_STEP) or "step")


class PruningCallback(TrainerCallback, Reporter):
    """Reports `eval_<metric>` after each evaluation of `transformers.Trainer` to the current trial
    (step = state.global_step, or training examples seen); stops training when the trial is pruned."""

    def __init__(self, metric_name: str, direction: str | None = None, trial=None, step_unit: str = "step"):
        name = metric_name if metric_name.startswith("eval_") else f"eval_{metric_name}"
        Reporter.__init__(self, name, direction or metric_direction(name), trial)
        if step_unit not in ("step", "examples"):
            raise ValueError(f"step_unit: expected 'step' or 'examples', got {step_unit!r}")
        self.step_unit, self._base, self._warned = step_unit, 0, False

    def _count(self, args, state) -> int:
        if self.step_unit == "step":
            return state.global_step
        return state.global_step * args.train_batch_size * args.gradient_accumulation_steps * args.world_size

    def on_train_begin(self, args, state, control, **kw):
        self._base = _STEP_BASE[0]

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        if self.pruned_at_step is not None:
            return
        value = (metrics or {}).get(self.metric)
        if value is None:
            if not self._warned and self.trial is not None:
                self._warned = True
                print(
                    f"polarkit.trial: {self.metric} is not among this evaluation's metrics "
                    f"({', '.join(sorted(metrics or {}))}); nothing reported",
                    file=sys.stderr,
                )
            return
        if self.report(value, self._base + self._count(args, state)):
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kw):
        _STEP_BASE[0] = self._base + self._count(args, state) + 1
