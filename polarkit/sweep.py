"""Hyper-parameter sweeps over any notebook with Optuna: `polarkit sweep params/sweeps/NAME.yaml`.

Each trial is an ordinary run folder (`executor.execute`): its params.yaml holds the sampled values
and status.json names the sweep, study, trial number and storage. The study lives in an Optuna
storage, so a sweep resumes after a crash and many workers (and machines) share one study. Optuna
does the scheduling, sampling, pruning, heartbeat and retry; this module only checks the sweep
file, runs trials and reads them back.

Sweep file (`params/sweeps/<name>.yaml`; the study is named after the file's stem)::

    notebook: 01_mnist_cnn            # a stem under notebooks/, or a path (relative: to the repo root)
    base: params/quick/01_mnist_cnn.yaml   # parameter YAML every trial starts from (optional)
    fixed: {epochs: 1.0}              # parameters fixed for every trial, over the base (optional)
    metric: val_accuracy              # a *validation* metric the notebook writes
    direction: maximize               # or minimize (default: from the name, *loss -> minimize)
    sampler: tpe                      # tpe | random | grid, or {type: tpe, n_startup_trials: 5, ...}
    pruner: hyperband                 # hyperband | median | none, or {type: hyperband, min_resource: 200}
    trials: 15                        # finished (complete + pruned) trials wanted (grid: default = grid size)
    seed: 0                           # the sampler's seed (the notebook's own `seed` is a parameter)
    prune_metric: accuracy            # train.fit eval metric reported for pruning (default: fit's `metric`)
    prune_step: step                  # step (global_step) | examples (training examples seen)
    description: free text
    space:
      lr: {low: 1.0e-4, high: 3.0e-2, log: true}   # a range: float or int, as the parameter is declared
      hidden: {low: 32, high: 256, step: 32}        # int range with a step
      batch_size: [32, 64, 128]                     # a list: categorical choices
      pooling: {choices: [cls, mean]}               # the same, long form (`type:` may be given too)

Every space name must be a parameter of the notebook's `parameters` cell (did-you-mean), every
range must fit the parameter's declared type (a float range on an int parameter is refused; a
`type:` that disagrees is refused), each categorical choice is type-checked like a YAML value,
the base YAML is checked against the notebook, and unknown keys are refused. Sampler and pruner
mappings pass their other keys to the Optuna class (TPESampler, RandomSampler, GridSampler,
HyperbandPruner, MedianPruner). Choices that are lists or mappings are sampled by their JSON text.

The metric. Sweeps optimise a *validation* metric. Its name starts with the split: `val_`,
`valid_`, `validation_`, `held_`/`heldout_`/`holdout_`, or `eval_`; `test_` and `dev_` are test
sets here and are refused (choosing on the test set makes its figure an optimistic estimate), and
so is any other prefix (`train_seconds`, `zeroshot_...`). A notebook whose split names mean
something else says so in its metadata, e.g. `{"polarkit": {"test_splits": ["val"]}}` when its
`val_*` figures are on the benchmark's validation set used as the test set. Values are read from
the run's metrics.json; an `eval_<m>` name not in metrics.json is read from history.csv (train.fit's
evaluations on its eval set, the notebook's validation / held-out data): the best value over the
evaluations, which is the checkpoint's value when the fit's checkpoint metric is `<m>`.
Whether the notebook writes the metric is checked *statically*, without running it: the name must
appear in the notebook's code as a string literal (e.g. a `run.finish({...})` key), or start with a
`prefix="val_"` argument or an f-string head the code passes to a scorer, or be `eval_<m>` with
`<m>` mentioned in a notebook that calls `fit`, or be in an earlier run folder's metrics.json.
This catches typos and test-set names; a name that is mentioned but never logged is only caught
when the first trial finishes (the sweep then stops with that message).

Storage (`--storage`; default $POLARKIT_SWEEP_STORAGE, else a SQLite file
`outputs/sweeps/<name>/study.db`): any Optuna RDB URL
(`postgresql://user:pass@host/db`, needs psycopg2); or a journal file (`journal:///path.log` or a
path ending .log). The storage is reached once before any trial (unreachable -> refused within
seconds). RDB storages (SQLite included) get Optuna's heartbeat: a trial whose worker stops beating
for `grace` seconds (SIGKILL, power loss) is marked FAIL by the next worker and retried once; its
run folder is then marked failed ("worker died"). Defaults 10 s / 20 s; `POLARKIT_SWEEP_HEARTBEAT=
interval,grace` changes them (the tests use 1,2). Journal files have no heartbeat in Optuna: a dead
worker's trial stays RUNNING there; use SQLite or PostgreSQL when crash recovery matters.

Totals. A sweep runs until the study holds exactly `trials` finished (COMPLETE + PRUNED) trials:
`MaxTrialsCallback` counts finished, running and queued trials, so a worker does not start a trial
another worker is already running towards the total; a worker that finds the rest running elsewhere
waits for them (or for their heartbeat to go stale). Two workers that ask at the same instant can
still both start; the later-numbered one is then ended at once as FAIL with user attr
`surplus=True` (no run folder, never retried), so the finished total stays exact. A worker stops
after 3 consecutive failed trials (a broken notebook or space).

Workers. `--workers K` starts K processes (`python -m polarkit.sweep FILE --workers 1 ...`) on this
machine that load the same study; more machines join with the same command and `--storage
postgresql://...`. SQLite is fine for a few local workers (locks wait up to 60 s); use PostgreSQL
across machines. With `seed`, worker i seeds its sampler with seed + i, and a resumed study mixes in the
number of trials it already holds, so a restarted sampler does not repeat its earlier draws.

Reading a sweep: `report_sweep(name)` / `polarkit sweep --report NAME` -> trials table, best trial,
noise estimate, importances, plots and `outputs/sweeps/<name>/best.yaml` (base + best parameters,
accepted by `polarkit run NOTEBOOK -f best.yaml` and `papermill NOTEBOOK OUT -f best.yaml`).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import difflib
import json
import math
import os
import re
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from polarkit import executor, runs
from polarkit import params as P

# polarkit.trial (it imports transformers) is imported inside the functions that need it, so that
# building the command-line parser (`add_parser`) stays light.

KEYS = {
    "notebook",
    "base",
    "fixed",
    "metric",
    "direction",
    "sampler",
    "pruner",
    "trials",
    "seed",
    "prune_metric",
    "prune_step",
    "space",
    "description",
}
SAMPLERS = ("tpe", "random", "grid")
VALIDATION_SPLITS = {"val", "valid", "validation", "eval", "held", "heldout", "holdout"}
TEST_SPLITS = {"test", "dev"}
MAX_CONSECUTIVE_FAILURES = 3
STORAGE_ENV = "POLARKIT_SWEEP_STORAGE"  # default --storage (also how --workers hands the URL to workers)
_METRIC_RX = re.compile(r"^[A-Za-z][A-Za-z0-9]*_[A-Za-z0-9_@.]+$")
_PRIMITIVE = (type(None), bool, int, float, str)
# train.fit eval metrics offered as eval_<m> when the notebook mentions them (compute_metrics' usual names)
_EVAL_METRICS = {
    "loss",
    "accuracy",
    "f1",
    "mcc",
    "pearson",
    "spearman",
    "precision",
    "recall",
    "auc",
    "micro_f1",
    "macro_f1",
}


# --- the sweep file --------------------------------------------------------------------------------


@dataclass
class Dim:
    """One search-space dimension over a notebook parameter."""

    name: str
    kind: str  # "float" | "int" | "categorical"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: list = field(default_factory=list)

    def _labels(self) -> list:
        """Optuna takes None/bool/int/float/str choices; others (lists, dicts) go by their JSON text."""
        return [c if isinstance(c, _PRIMITIVE) else json.dumps(c) for c in self.choices]

    def grid(self) -> list:
        """The values a grid sampler walks (labels for categorical)."""
        if self.kind == "categorical":
            return self._labels()
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        n = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        return [float(f"{self.low + i * self.step:.12g}") for i in range(n)]

    def suggest(self, trial, grid: bool = False) -> Any:
        if self.kind == "categorical" or grid:
            labels = self.grid()
            value = trial.suggest_categorical(self.name, labels)
            return self.choices[labels.index(value)] if self.kind == "categorical" else value
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log, step=self.step)

    def describe(self) -> str:
        if self.kind == "categorical":
            return f"{self.name} in {self.choices}"
        extra = " log" if self.log else (f" step {self.step}" if self.step else "")
        return f"{self.name} in [{self.low}, {self.high}]{extra} ({self.kind})"


@dataclass
class Sweep:
    """A checked sweep file (see the module docstring for the syntax)."""

    name: str
    file: Path
    notebook: Path
    metric: str
    direction: str
    trials: int
    space: dict[str, Dim]
    base: Path | None = None
    base_values: dict[str, Any] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    sampler: dict[str, Any] = field(default_factory=lambda: {"type": "tpe"})
    pruner: dict[str, Any] = field(default_factory=lambda: {"type": "none"})
    seed: int | None = None
    prune_metric: str | None = None
    prune_step: str = "step"
    test_splits: set[str] = field(default_factory=set)

    @property
    def profile(self) -> str | None:
        """The base YAML's profile folder (params/<profile>/...), recorded in each run's status."""
        return self.base.parent.name if self.base and self.base.parent.parent.name == "params" else None

    def values(self, sampled: dict[str, Any]) -> dict[str, Any]:
        """What one trial runs with: base YAML, then `fixed`, then -p overrides, then the sampled values."""
        return {**self.base_values, **self.fixed, **self.overrides, **sampled}


def _root_for(path: Path) -> Path:
    """The repository holding a sweep file at <root>/params/sweeps/x.yaml, else the file's folder."""
    p = path.resolve()
    return p.parents[2] if p.parent.parent.name == "params" else p.parent


def _resolve(text: str, root: Path) -> Path:
    p = Path(text).expanduser()
    return p if p.is_absolute() else (root / p)


def _notebook_path(text: str, root: Path) -> Path:
    p = Path(text)
    if p.suffix != ".ipynb" and len(p.parts) == 1:  # a stem: notebooks/<stem>.ipynb
        for base in (root, runs.ROOT):
            if (base / "notebooks" / f"{text}.ipynb").is_file():
                return (base / "notebooks" / f"{text}.ipynb").resolve()
        matches = sorted((root / "notebooks").glob(f"{text}*.ipynb"))
        return matches[0].resolve() if len(matches) == 1 else root / "notebooks" / f"{text}.ipynb"
    return _resolve(text, root).resolve()


def load(
    path: str | Path, base: str | Path | None = None, overrides: dict[str, Any] | None = None, trials: int | None = None
) -> Sweep:
    """Read and check a sweep file (and a --base / -p / --trials given on the command line).

    Raises ParamError naming the file and every problem key; nothing has started when it does.
    """
    from polarkit import trial as T

    path = Path(path)
    data = P.load_yaml(path)
    src, root = str(path), _root_for(path)
    problems: list[str] = []

    unknown = sorted(set(data) - KEYS)
    for key in unknown:
        near = difflib.get_close_matches(key, sorted(KEYS), n=1, cutoff=0.6)
        problems.append(
            f"{key}: unknown key{'; did you mean ' + repr(near[0]) + '?' if near else ''} "
            f"(keys: {', '.join(sorted(KEYS))})"
        )
    for key in ("notebook", "metric", "space"):
        if key not in data:
            problems.append(f"{key}: missing")
    if problems and ("notebook" not in data or not isinstance(data.get("notebook"), str)):
        raise P.ParamError(f"{src}:\n  " + "\n  ".join(problems))
    if not isinstance(data["notebook"], str):
        raise P.ParamError(f"{src}:\n  notebook: expected a notebook stem or path, got {data['notebook']!r}")
    nb = _notebook_path(data["notebook"], root)
    if not nb.is_file():
        raise P.ParamError(f"{src}:\n  notebook: no such notebook {nb}")
    declared = P.declared(nb)

    # base YAML, fixed values, -p overrides
    base_text = base if base is not None else data.get("base")
    base_path = base_values = None
    if base_text is not None:
        base_path = Path(base_text) if base is not None else _resolve(str(base_text), root)
        if base is not None and not base_path.is_file():
            base_path = _resolve(str(base_text), runs.ROOT) if not base_path.is_absolute() else base_path
        try:
            base_values = P.check_file(base_path, nb)
        except P.ParamError as e:
            problems.append(f"base: {e}".replace("\n", "\n  "))
    fixed = data.get("fixed") or {}
    if not isinstance(fixed, dict):
        problems.append(f"fixed: expected a mapping of parameter names to values, got {fixed!r}")
        fixed = {}
    for what, vals in (("fixed", fixed), ("-p", overrides or {})):
        try:
            P.check(vals, declared, source=what)
        except P.ParamError as e:
            problems.append(str(e).replace("\n", "\n  "))

    # the space
    space: dict[str, Dim] = {}
    raw_space = data.get("space")
    if "space" in data and not isinstance(raw_space, dict):
        problems.append(f"space: expected a mapping of parameter names to ranges or choices, got {raw_space!r}")
    elif isinstance(raw_space, dict) and not raw_space:
        problems.append("space: empty; give at least one parameter to search (a sweep over nothing is one run)")
    for name, entry in (raw_space or {}).items() if isinstance(raw_space, dict) else ():
        dim, why = _dim(str(name), entry, declared)
        if why:
            problems.append(f"space.{name}: {why}")
        else:
            space[str(name)] = dim
            for what, vals in (("fixed", fixed), ("-p", overrides or {})):
                if name in vals:
                    problems.append(f"space.{name}: also fixed by {what}; a parameter is either searched or fixed")

    # sampler, pruner, seed, trials, direction
    sampler = data.get("sampler", "tpe")
    sampler = {"type": sampler} if isinstance(sampler, str) else sampler
    if not (isinstance(sampler, dict) and sampler.get("type") in SAMPLERS):
        problems.append(
            f"sampler: expected one of {', '.join(SAMPLERS)} or {{type: tpe, <TPESampler arguments>}}, "
            f"got {data.get('sampler')!r}"
        )
        sampler = {"type": "tpe"}
    try:
        pruner = T.pruner_spec(data.get("pruner", "none"))
        T.make_pruner(pruner)
    except (ValueError, TypeError) as e:
        problems.append(f"pruner: {e}")
        pruner = {"type": "none"}
    seed = data.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        problems.append(f"seed: expected an int (the sampler's seed), got {seed!r}")
        seed = None
    grid_size = None
    if sampler["type"] == "grid" and space:
        bad = [d.name for d in space.values() if d.kind == "float" and not d.step]
        if bad:
            problems.append(f"sampler: grid needs enumerable dimensions: give {', '.join(bad)} a `step` or choices")
        else:
            grid_size = math.prod(len(d.grid()) for d in space.values())
    n = trials if trials is not None else data.get("trials", grid_size)
    if n is None:
        problems.append("trials: missing (how many finished trials the sweep should reach)")
    elif not isinstance(n, int) or isinstance(n, bool) or n < 1:
        problems.append(f"trials: expected a positive int, got {n!r}")
    elif grid_size is not None and n > grid_size:
        problems.append(f"trials: {n} is more than the grid's {grid_size} points")
    if not problems:  # the sampler's own arguments (it needs a valid space)
        try:
            _make_sampler(sampler, space, seed)
        except (ValueError, TypeError) as e:
            problems.append(f"sampler: {e}")

    # metric, direction, prune metric
    metric = data.get("metric")
    meta = notebook_metrics(nb)
    if not isinstance(metric, str):
        problems.append(f"metric: expected a metric name such as val_accuracy, got {metric!r}")
    else:
        why = _metric_problem(metric, nb, meta)
        if why:
            problems.append(f"metric: {why}")
    direction = data.get("direction") or (T.metric_direction(metric) if isinstance(metric, str) else "maximize")
    if direction not in ("maximize", "minimize"):
        problems.append(f"direction: expected maximize or minimize, got {direction!r}")
    elif isinstance(metric, str) and T.metric_direction(metric) == "minimize" and direction == "maximize":
        problems.append(f"direction: maximize on {metric}, a loss-like metric; did you mean minimize?")
    prune_metric = data.get("prune_metric")
    if prune_metric is not None:
        m = str(prune_metric).removeprefix("eval_")
        if not isinstance(prune_metric, str) or not (m == "loss" or m in meta.literals):
            problems.append(
                f"prune_metric: {prune_metric!r} is not an evaluation metric {nb.name} mentions "
                "(a train.fit eval metric such as loss, accuracy, mcc, pearson)"
            )
    if pruner["type"] != "none" and not meta.reports:
        print(
            f"polarkit sweep: note: {src}: pruner {pruner['type']!r}, but {nb.name} calls neither train.fit nor "
            "polarkit.trial.Reporter: nothing will report to the pruner",
            file=sys.stderr,
        )
    prune_step = data.get("prune_step", "step")
    if prune_step not in ("step", "examples"):
        problems.append(f"prune_step: expected step or examples, got {prune_step!r}")
    if problems:
        raise P.ParamError(f"{src}:\n  " + "\n  ".join(problems))
    return Sweep(
        name=path.stem,
        file=path.resolve(),
        notebook=nb,
        metric=metric,
        direction=direction,
        trials=n,
        space=space,
        base=base_path.resolve() if base_path else None,
        base_values=base_values or {},
        fixed=P.check(fixed, declared),
        overrides=P.check(overrides or {}, declared),
        sampler=sampler,
        pruner=pruner,
        seed=seed,
        prune_metric=prune_metric,
        prune_step=prune_step,
        test_splits=(TEST_SPLITS | meta.test_splits) - meta.validation_splits,
    )


def _dim(name: str, entry: Any, declared: dict[str, P.Param]) -> tuple[Dim | None, str | None]:
    """(Dim, None) or (None, why) for one space entry against the declared parameter."""
    if name not in declared:
        near = difflib.get_close_matches(name, list(declared), n=1, cutoff=0.6)
        return None, (
            f"unknown parameter{'; did you mean ' + repr(near[0]) + '?' if near else ''} "
            f"(declared: {', '.join(declared)})"
        )
    p = declared[name]
    if isinstance(entry, list):
        entry = {"choices": entry}
    if not isinstance(entry, dict):
        return None, (
            f"expected a range {{low: ..., high: ...}} or a list of choices, got {entry!r} "
            "(to fix one value for every trial use `fixed:` or -p)"
        )
    allowed = {"type", "low", "high", "log", "step", "choices"}
    if set(entry) - allowed:
        return None, f"unknown key(s) {sorted(set(entry) - allowed)} (a dimension has {', '.join(sorted(allowed))})"
    kind = entry.get("type")
    if kind not in (None, "float", "int", "categorical"):
        return None, f"type: expected float, int or categorical, got {kind!r}"
    if "choices" in entry or kind == "categorical":
        if kind not in (None, "categorical") or {"low", "high", "log", "step"} & set(entry):
            return None, "choices go with type: categorical and no low/high/log/step"
        choices = entry.get("choices")
        if not isinstance(choices, list) or not choices:
            return None, "choices: expected a non-empty list"
        bad = []
        for c in choices:
            try:
                P.check({name: c}, declared)
            except P.ParamError as e:
                bad.append(str(e).split("\n  ", 1)[-1])
        if bad:
            return None, "; ".join(bad)
        if len({json.dumps(c, sort_keys=True) for c in choices}) != len(choices):
            return None, f"choices: repeated values in {choices}"
        if len(choices) == 1:
            return None, f"a single choice {choices[0]!r}: fix it with `fixed:` or -p instead"
        return Dim(name, "categorical", choices=list(choices)), None
    if "low" not in entry or "high" not in entry:
        return None, "a range needs low and high (or give choices)"
    low, high, log, step = entry["low"], entry["high"], entry.get("log", False), entry.get("step")
    declared_kind = {"float": "float", "int": "int"}.get(p.type)
    if p.type not in ("float", "int", "None"):
        return None, (
            f"{name} is declared {p.type} (default {p.default!r}): a range needs an int or float "
            "parameter; give choices"
        )
    numbers = [v for v in (low, high, step) if v is not None]
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in numbers):
        return None, f"low/high/step must be numbers, got low={low!r} high={high!r} step={step!r}"
    literal_kind = "int" if all(isinstance(v, int) for v in numbers) else "float"
    range_kind = kind or declared_kind or literal_kind
    if declared_kind and range_kind != declared_kind:
        return None, (
            f"a {range_kind} range on the {declared_kind} parameter {name} (default {p.default!r}); "
            f"the notebook declares it {declared_kind}"
        )
    if range_kind == "int" and literal_kind == "float":
        return None, (
            f"a float range on the int parameter {name} (default {p.default!r}): low/high/step must be "
            f"ints, got low={low!r} high={high!r} step={step!r}"
        )
    if not isinstance(log, bool):
        return None, f"log: expected true or false, got {log!r}"
    if not low < high:
        return None, f"low ({low}) must be below high ({high})"
    if log and low <= 0:
        return None, f"log: needs low > 0, got {low}"
    if step is not None and step <= 0:
        return None, f"step: must be positive, got {step}"
    if log and step is not None and not (range_kind == "int" and step == 1):
        return None, "log and step do not go together (Optuna samples a log range continuously)"
    for end, v in (("low", low), ("high", high)):  # the declared valid values, e.g. `# ... (0, 1)`
        try:
            P.check({name: float(v) if range_kind == "float" else v}, declared)
        except P.ParamError as e:
            return None, f"{end}: {str(e).split(chr(10) + '  ', 1)[-1]}"
    return Dim(name, range_kind, low=low, high=high, log=log, step=step), None


def _make_sampler(spec: dict[str, Any], space: dict[str, Dim], seed: int | None):
    import optuna

    kwargs = {k: v for k, v in spec.items() if k != "type"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental-argument warnings (constant_liar, multivariate)
        if spec["type"] == "tpe":
            return optuna.samplers.TPESampler(**{"seed": seed, "constant_liar": True, **kwargs})
        if spec["type"] == "random":
            return optuna.samplers.RandomSampler(**{"seed": seed, **kwargs})
        return optuna.samplers.GridSampler({d.name: d.grid() for d in space.values()}, **{"seed": seed, **kwargs})


# --- which metrics a notebook writes (static) ------------------------------------------------------


@dataclass
class NotebookMetrics:
    names: set[str]  # metric-like string literals (split_metric)
    prefixes: set[str]  # (key_)prefix="val_" arguments and f-string heads such as f"dev_{...}"
    literals: set[str]  # every string literal (an eval_<m> name needs <m> among them)
    fits: bool  # the notebook calls some .fit(...) (train.fit writes history.csv with eval_* columns)
    reports: bool  # it calls fit(...) or polarkit.trial.Reporter(...): something reports to a pruner
    test_splits: set[str]  # from the notebook's metadata {"polarkit": {"test_splits": [...]}}
    validation_splits: set[str]


def notebook_metrics(nb: Path) -> NotebookMetrics:
    """Scan the notebook's code (never running it) for the metric names it can write."""
    import nbformat

    book = nbformat.read(nb, as_version=4)
    names, prefixes, literals, fits, reports = set(), set(), set(), False, False
    for cell in book.cells:
        if cell.cell_type != "code":
            continue
        src = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in cell.source.splitlines())
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                literals.add(node.value)
                if _METRIC_RX.match(node.value):
                    names.add(node.value)
            elif (
                isinstance(node, ast.keyword)
                and (node.arg or "").endswith("prefix")
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
                and re.match(r"^[A-Za-z][A-Za-z0-9]*_$", node.value.value)
            ):  # prefix="val_", key_prefix=...
                prefixes.add(node.value.value)
            elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
                head = str(node.values[0].value)
                if re.match(r"^[A-Za-z][A-Za-z0-9]*_", head):
                    prefixes.add(head)
            elif isinstance(node, ast.Call):
                f = node.func
                called = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
                fits |= called == "fit"
                reports |= called in ("fit", "Reporter")
    meta = book.metadata.get("polarkit", {}) or {}
    return NotebookMetrics(
        names,
        prefixes,
        literals,
        fits,
        reports,
        {str(s) for s in meta.get("test_splits", [])},
        {str(s) for s in meta.get("validation_splits", [])},
    )


def _earlier_metrics(stem: str, limit: int = 20) -> set[str]:
    """Metric names in the metrics.json of this notebook's latest succeeded run folders."""
    found: set[str] = set()
    dirs = sorted((runs.outputs_dir() / stem).glob("*/metrics.json"))[-limit:]
    for m in dirs:
        if runs.read_json(m.parent / "status.json").get("state") == "succeeded":
            found |= set(runs.read_json(m))
    return found


def _metric_problem(metric: str, nb: Path, meta: NotebookMetrics) -> str | None:
    """Why `metric` cannot be a sweep's objective for notebook `nb`, or None."""
    test = (TEST_SPLITS | meta.test_splits) - meta.validation_splits
    valid = (VALIDATION_SPLITS | meta.validation_splits) - meta.test_splits
    split = metric.split("_", 1)[0].lower()
    evals = {f"eval_{m}" for m in _EVAL_METRICS & meta.literals | {"loss"}} if meta.fits else set()
    candidates = sorted(
        {n for n in meta.names | _earlier_metrics(nb.stem) if n.split("_", 1)[0].lower() in valid} | evals
    )
    offer = f"; validation metrics {nb.name} writes: {', '.join(candidates)}" if candidates else ""
    if split in test:
        why = (
            "which this notebook declares a test split"
            if split in meta.test_splits
            else "a test split (here `dev` is a benchmark's evaluation set, scored once like a test set)"
        )
        return (
            f"{metric} is measured on the {split!r} split, {why}: choosing hyper-parameters on the test set "
            f"makes its figure an optimistic, biased estimate (the test set is read once, after the choice); "
            f"optimise a validation metric instead{offer}"
        )
    if split not in valid:
        return (
            f"{metric} is not a validation metric (its prefix {split + '_'!r} is none of "
            f"{', '.join(s + '_' for s in sorted(valid))}); a sweep optimises a validation figure{offer}"
        )
    written = (
        metric in meta.names
        or metric in _earlier_metrics(nb.stem)
        or any(metric.startswith(p) and len(metric) > len(p) for p in meta.prefixes)
    )
    if not written and metric.startswith("eval_"):
        m = metric[len("eval_") :]
        written = meta.fits and (m == "loss" or m in meta.literals)
    if not written:
        near = difflib.get_close_matches(metric, sorted(meta.names), n=1, cutoff=0.6)
        return f"{metric} is not written by {nb.name}{'; did you mean ' + repr(near[0]) + '?' if near else ''}{offer}"
    return None


# --- storage ---------------------------------------------------------------------------------------


def sweep_dir(name: str) -> Path:
    """outputs/sweeps/<name>/: the default SQLite study, the report's plots and best.yaml."""
    return runs.outputs_dir() / "sweeps" / name


def resolve_storage(url: str | None, name: str) -> str:
    """A storage URL: `url`, else $POLARKIT_SWEEP_STORAGE, else sqlite:///outputs/sweeps/<name>/study.db;
    bare paths by suffix (.db -> SQLite, .log -> journal)."""
    from polarkit import trial as T

    url = url or os.environ.get(STORAGE_ENV) or None
    if url is None:
        return f"sqlite:///{(sweep_dir(name) / 'study.db').resolve()}"
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if "://" not in url and not url.startswith("journal:"):
        p = Path(url).expanduser().resolve()
        if p.suffix in (".db", ".sqlite", ".sqlite3"):
            return f"sqlite:///{p}"
        if p.suffix in (".log", ".journal", ".jsonl"):
            return f"journal:///{p}"
        raise P.ParamError(
            f"--storage {url}: not a storage URL (sqlite:///path/study.db, "
            "postgresql://user@host/db, journal:///path/study.log, or a path ending .db or .log)"
        )
    scheme = url.split(":", 1)[0]
    if scheme == "postgresql":  # no driver named: the installed one (SQLAlchemy's default differs by version)
        import importlib.util

        driver = next((d for d in ("psycopg2", "psycopg") if importlib.util.find_spec(d)), None)
        url = f"postgresql+{driver}:" + url.split(":", 1)[1] if driver else url
    if not (T.is_journal(url) or scheme.startswith(("sqlite", "postgresql", "mysql"))):
        raise P.ParamError(
            f"--storage {T.redact(url)}: unsupported scheme {scheme!r} (sqlite, postgresql, mysql, or journal)"
        )
    return url


def check_storage(url: str) -> None:
    """Reach the storage once, before any trial: an unreachable server is refused within seconds."""
    from polarkit import trial as T

    if T.is_journal(url):
        path = T.journal_path(url)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "ab"):
                pass
        except OSError as e:
            raise P.ParamError(f"--storage {url}: cannot write the journal file: {e}") from None
        return
    import sqlalchemy

    if url.startswith("sqlite:///"):
        try:
            Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise P.ParamError(f"--storage {url}: cannot create its folder: {e}") from None
    try:
        kwargs = {k: v for k, v in T.engine_kwargs(url).items() if k != "pool_pre_ping"}
        engine = sqlalchemy.create_engine(url, **kwargs)
    except ImportError as e:
        raise P.ParamError(
            f"--storage {T.redact(url)}: no database driver for it ({e}); for PostgreSQL: pip install psycopg2-binary"
        ) from None
    except Exception as e:  # noqa: BLE001 - a malformed URL
        raise P.ParamError(f"--storage {T.redact(url)}: not a valid database URL: {e}") from None
    try:
        with engine.connect():
            pass
    except Exception as e:  # noqa: BLE001
        first = (str(getattr(e, "orig", None) or e).strip().splitlines() or [type(e).__name__])[0]
        raise P.ParamError(
            f"--storage {T.redact(url)}: cannot connect (timeout {T.CONNECT_TIMEOUT_S} s): {first}"
        ) from None
    finally:
        engine.dispose()


def _heartbeat() -> tuple[int, int]:
    """(interval, grace) in seconds: 10, 20, or $POLARKIT_SWEEP_HEARTBEAT=interval,grace."""
    text = os.environ.get("POLARKIT_SWEEP_HEARTBEAT", "")
    try:
        parts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        parts = []
    interval = parts[0] if parts else 10
    return interval, parts[1] if len(parts) > 1 else 2 * interval


def _open(url: str):
    from polarkit import trial as T

    interval, grace = _heartbeat()
    if T.is_journal(url):
        return T.open_storage(url)
    return T.open_storage(url, heartbeat_interval=interval, grace_period=grace, retry=1)


# --- running a sweep -------------------------------------------------------------------------------


class TrialFailed(RuntimeError):
    """The trial's notebook failed; the trial is FAIL (error in user_attrs), the sweep goes on."""


class Surplus(RuntimeError):
    """Another worker started the last trial at the same instant: this one ends at once, unrun."""


def _states():
    from optuna.trial import TrialState

    return TrialState


def _counts(study) -> dict[str, int]:
    out = {"COMPLETE": 0, "PRUNED": 0, "RUNNING": 0, "WAITING": 0, "FAIL": 0}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    out["finished"] = out["COMPLETE"] + out["PRUNED"]
    return out


def _fmt(values: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


class _Objective:
    """One trial = one run folder: sample, run the notebook, read the metric back."""

    def __init__(self, sw: Sweep, url: str, total: int, tag: str = "", profile: str | None = None):
        self.sw, self.url, self.total, self.tag = sw, url, total, tag
        self.profile = profile or sw.profile
        self.declared = P.declared(sw.notebook)
        self.grid = sw.sampler["type"] == "grid"

    def __call__(self, trial) -> float:
        from polarkit import trial as T

        TS = _states()
        ahead = [
            t
            for t in trial.study.get_trials(deepcopy=False, states=(TS.COMPLETE, TS.PRUNED, TS.RUNNING))
            if t.number < trial.number
        ]
        if len(ahead) >= self.total:  # two workers asked at once for the last trial: the later one yields
            trial.set_user_attr("surplus", True)
            raise Surplus(f"trial {trial.number}: {self.total} trials were already finished or running")
        sampled = {name: dim.suggest(trial, self.grid) for name, dim in self.sw.space.items()}
        values = P.check(self.sw.values(sampled), self.declared, source=f"{self.sw.file} trial {trial.number}")
        host = socket.gethostname()
        trial.set_user_attr("host", host)
        trial.set_user_attr("worker_pid", os.getpid())
        trial.set_user_attr("values", values)
        env = {
            T.ENV_STUDY: self.sw.name,
            T.ENV_STORAGE: self.url,
            T.ENV_TRIAL_ID: str(trial._trial_id),
            T.ENV_TRIAL_NUMBER: str(trial.number),
            T.ENV_PRUNER: json.dumps(self.sw.pruner),
            T.ENV_PRUNE_METRIC: self.sw.prune_metric or "",
            T.ENV_PRUNE_STEP: self.sw.prune_step,
        }
        status = {
            "sweep": self.sw.name,
            "study": self.sw.name,
            "trial": trial.number,
            "storage": T.redact(self.url),
            "host": host,
        }
        retry = trial.study._storage.get_trial_system_attrs(trial._trial_id).get("failed_trial")
        # Optuna failed a dead worker's stale trial as this one started: settle its run folder now.
        for d in settle_dead_runs(trial.study, self.sw.notebook.stem, self.url):
            print(f"[{self.sw.name}{self.tag}] run folder of a dead worker's trial marked failed: {d}", flush=True)
        print(
            f"[{self.sw.name}{self.tag}] trial {trial.number}{f' (retry of {retry})' if retry is not None else ''}: "
            f"{_fmt(sampled)} ...",
            flush=True,
        )
        t0 = time.monotonic()
        try:
            run_dir = executor.execute(self.sw.notebook, values, profile=self.profile, env=env, status=status)
        except Exception as e:  # e.g. executor.Interrupted (Ctrl-C, SIGTERM): the trial FAILs, the sweep stops
            trial.set_user_attr("error", f"{type(e).__name__}: {e}"[:2000])
            trial.set_user_attr("run_dir", str(getattr(e, "run_dir", "")) or None)
            raise
        trial.set_user_attr("run_dir", str(run_dir))
        st = runs.read_json(run_dir / "status.json")
        took = f"{time.monotonic() - t0:.0f}s"
        if st.get("state") == "pruned" or (st.get("state") == "failed" and st.get("error") == "Pruned"):
            step = st.get("pruned_at_step")
            trial.set_user_attr("pruned_at_step", step)
            print(
                f"[{self.sw.name}{self.tag}] trial {trial.number}: pruned at step {step} ({took}) -> {run_dir}",
                flush=True,
            )
            import optuna

            raise optuna.TrialPruned(f"pruned at step {step}")
        if st.get("state") != "succeeded":
            err = f"cell {st.get('cell')}: {st.get('error')}: {st.get('message')}"
            trial.set_user_attr("error", err[:2000])
            print(f"[{self.sw.name}{self.tag}] trial {trial.number}: failed ({took}) {err} -> {run_dir}", flush=True)
            raise TrialFailed(err)
        value = read_metric(run_dir, self.sw.metric, self.sw.direction)
        if value is None:
            have = ", ".join(sorted(runs.read_json(run_dir / "metrics.json")))
            msg = (
                f"{self.sw.file}: metric: {self.sw.metric} is not in {run_dir / 'metrics.json'} "
                f"(it has: {have}){' nor in history.csv' if self.sw.metric.startswith('eval_') else ''}; "
                "the sweep stops: fix the metric name"
            )
            trial.set_user_attr("error", msg)
            raise P.ParamError(msg)
        if not math.isfinite(value):
            trial.set_user_attr("error", f"{self.sw.metric} = {value}")
            raise TrialFailed(f"{self.sw.metric} = {value}")
        print(
            f"[{self.sw.name}{self.tag}] trial {trial.number}: {self.sw.metric}={value:.6g} ({took}) -> {run_dir}",
            flush=True,
        )
        return value


def read_metric(run_dir: Path, metric: str, direction: str = "maximize") -> float | None:
    """`metric` from metrics.json; an eval_* name missing there: the best value in history.csv."""
    metrics = runs.read_json(Path(run_dir) / "metrics.json")
    if metric in metrics:
        return float(metrics[metric])
    hist = Path(run_dir) / "history.csv"
    if metric.startswith("eval_") and hist.is_file():
        import pandas as pd

        col = pd.read_csv(hist).get(metric)
        if col is not None and col.notna().any():
            return float(col.max() if direction == "maximize" else col.min())
    return None


class _FailStreak:
    """Stops this worker after `limit` consecutive failed trials of its own (surplus ones aside)."""

    def __init__(self, limit: int = MAX_CONSECUTIVE_FAILURES):
        self.limit, self.count, self.tripped = limit, 0, False

    def __call__(self, study, trial) -> None:
        if trial.state.name == "FAIL" and not trial.user_attrs.get("surplus"):
            self.count += 1
            if self.count >= self.limit:
                self.tripped = True
                print(
                    f"[{study.study_name}] {self.count} trials in a row failed; this worker stops "
                    f"(last error: {trial.user_attrs.get('error')})",
                    file=sys.stderr,
                    flush=True,
                )
                study.stop()
        elif trial.state.name in ("COMPLETE", "PRUNED"):
            self.count = 0


def settle_dead_runs(study, notebook_stem: str, url: str | None = None) -> list[Path]:
    """Mark failed ("worker died") the run folders on this host of trials the study has as FAIL
    while their status.json still says queued/running and their kernel is gone. Returns them."""
    from polarkit import trial as T

    TS = _states()
    failed = {t.number for t in study.get_trials(deepcopy=False, states=(TS.FAIL,))}
    if not failed:
        return []
    host, done = socket.gethostname(), []
    for path in (runs.outputs_dir() / notebook_stem).glob("*/status.json"):
        st = runs.read_json(path)
        if (
            st.get("study") != study.study_name
            or st.get("trial") not in failed
            or st.get("state") not in ("queued", "running")
            or st.get("host", host) != host
            or (url is not None and st.get("storage") not in (None, T.redact(url)))
            or _kernel_alive(st)
        ):
            continue
        runs.Run(path.parent).set_status(
            "failed",
            end=runs.now(),
            duration_s=runs._duration(st),
            error="worker died",
            cell=None,
            message=(
                f"trial {st['trial']} of study {study.study_name}: its worker stopped mid-trial (killed, "
                "crashed or lost power); the study marked the trial failed (Optuna heartbeat) and "
                "retries it once"
            ),
        )
        done.append(path.parent)
    return done


def _kernel_alive(status: dict) -> bool:
    pid = status.get("kernel_pid")
    try:
        return bool(pid) and "ipykernel" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def _study(sw: Sweep, url: str, worker_index: int = 0):
    import optuna

    from polarkit import trial as T

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(
            study_name=sw.name,
            storage=_open(url),
            direction=sw.direction,
            pruner=T.make_pruner(sw.pruner),
            load_if_exists=True,
        )
        seed = sw.seed
        if seed is not None:  # worker i: seed + i; a resumed study: mixed with its size, so no draw repeats
            seed += worker_index
            if n := len(study.get_trials(deepcopy=False)):
                seed = (seed * 1_000_003 + n) % 2**31
        study.sampler = _make_sampler(sw.sampler, sw.space, seed)
    if study.direction.name.lower() != sw.direction:
        raise P.ParamError(
            f"{sw.file}: direction: the study {sw.name!r} in {T.redact(url)} was created to "
            f"{study.direction.name.lower()}; use another sweep name or storage"
        )
    attrs = study.user_attrs
    for key, mine in (("notebook", sw.notebook.stem), ("metric", sw.metric)):
        if attrs.get(key) not in (None, mine):
            raise P.ParamError(
                f"{sw.file}: {key}: the study {sw.name!r} in {T.redact(url)} optimises "
                f"{attrs[key]!r}, not {mine!r}; use another sweep name or storage"
            )
    return study


def _record(study, sw: Sweep, url: str) -> None:
    """What the report needs, in the study itself (readable on any machine that reaches the storage)."""
    from polarkit import trial as T

    for key, value in {
        "notebook": sw.notebook.stem,
        "notebook_path": str(sw.notebook),
        "metric": sw.metric,
        "direction": sw.direction,
        "sweep_file": str(sw.file),
        "base": str(sw.base) if sw.base else None,
        "base_values": sw.base_values,
        "fixed": sw.fixed,
        "overrides": sw.overrides,
        "space": {d.name: d.describe() for d in sw.space.values()},
        "sampler": sw.sampler,
        "pruner": sw.pruner,
        "prune_metric": sw.prune_metric,
        "prune_step": sw.prune_step,
        "test_splits": sorted(sw.test_splits),
        "storage": T.redact(url),
    }.items():
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)


def run_sweep(
    spec: str | Path | Sweep,
    trials: int | None = None,
    storage: str | None = None,
    workers: int = 1,
    base: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    profile: str | None = None,
    worker_index: int = 0,
):
    """Create or load the study and run trials until it holds exactly `trials` finished ones.

    `spec`: a sweep file (or a loaded Sweep); `storage`: URL (default: the SQLite file in
    outputs/sweeps/<name>/); `workers`: processes on this machine; `base`/`overrides`: as
    `--base`/`-p`; `profile`: the label recorded in each run's status (default: the base's folder).
    Returns the optuna Study.
    """
    import optuna

    from polarkit import trial as T

    if isinstance(spec, Sweep):
        sw = (
            spec
            if base is None and overrides is None and trials is None
            else load(
                spec.file,
                base=base if base is not None else spec.base,
                overrides={**spec.overrides, **(overrides or {})},
                trials=trials if trials is not None else spec.trials,
            )
        )
    else:
        sw = load(spec, base=base, overrides=overrides, trials=trials)
    url = resolve_storage(storage, sw.name)
    check_storage(url)
    label = profile or sw.profile
    study = _study(sw, url, worker_index)
    _record(study, sw, url)
    if T.is_journal(url) and worker_index <= 1:
        print(
            f"[{sw.name}] note: journal storage has no heartbeat in Optuna; a worker killed mid-trial leaves "
            "its trial RUNNING (use SQLite or PostgreSQL for crash recovery)",
            file=sys.stderr,
        )
    if workers > 1:
        return _run_workers(sw, url, workers, label)
    _work(sw, study, url, label, tag=f" w{worker_index}" if worker_index else "")
    return optuna.load_study(study_name=sw.name, storage=_open(url))


def _work(sw: Sweep, study, url: str, profile: str | None, tag: str = "") -> None:
    """One worker's loop (see "Totals" in the module docstring)."""
    import optuna
    from optuna.study import MaxTrialsCallback

    TS = _states()
    objective = _Objective(sw, url, sw.trials, tag, profile)
    streak = _FailStreak()
    stop_at = MaxTrialsCallback(sw.trials, states=(TS.COMPLETE, TS.PRUNED, TS.RUNNING, TS.WAITING))
    heartbeat = optuna.storages._heartbeat.is_heartbeat_enabled(study._storage)
    interval, grace = _heartbeat()
    waiting_said = False
    while True:
        if heartbeat:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                optuna.storages.fail_stale_trials(study)
        for d in settle_dead_runs(study, sw.notebook.stem, url):
            print(f"[{sw.name}{tag}] run folder of a dead worker's trial marked failed: {d}", flush=True)
        c = _counts(study)
        if c["finished"] >= sw.trials or streak.tripped:
            break
        if c["finished"] + c["RUNNING"] >= sw.trials and not c["WAITING"]:
            if not heartbeat:
                print(
                    f"[{sw.name}{tag}] {c['RUNNING']} trial(s) still RUNNING elsewhere (or dead: journal storage "
                    "cannot tell); stopping",
                    file=sys.stderr,
                )
                break
            if not waiting_said:
                print(
                    f"[{sw.name}{tag}] waiting for {c['RUNNING']} running trial(s) to finish (a dead worker's "
                    f"trial is failed {grace} s after its last heartbeat, then retried)",
                    flush=True,
                )
                waiting_said = True
            time.sleep(interval)
            continue
        waiting_said = False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=optuna.exceptions.ExperimentalWarning)
                study.optimize(objective, callbacks=[stop_at, streak], catch=(TrialFailed, Surplus))
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError) as e:
            if "Cannot tell a" not in str(e) and not isinstance(e, optuna.exceptions.UpdateFinishedTrialError):
                raise
            # another worker failed this worker's trial: its heartbeat looked stale (an overloaded machine?)
            print(
                f"[{sw.name}{tag}] a trial of this worker was marked failed by another worker (no heartbeat for "
                f"{grace} s); it is retried; going on: {e}",
                file=sys.stderr,
                flush=True,
            )
    settle_dead_runs(study, sw.notebook.stem, url)


def _run_workers(sw: Sweep, url: str, k: int, profile: str | None):
    """K worker processes on this machine sharing the study; returns the study once all have exited."""
    import optuna

    if url.startswith("sqlite"):
        print(
            f"[{sw.name}] {k} workers on one SQLite file: fine on one machine (writes wait for the lock); "
            "use --storage postgresql://... to share a study across machines",
            file=sys.stderr,
        )
    args = [str(sw.file), "--trials", str(sw.trials), "--workers", "1"]  # the URL goes by env: no password in ps
    if sw.base:
        args += ["--base", str(sw.base)]
    for key, value in sw.overrides.items():
        args += ["-p", f"{key}={json.dumps(value)}"]
    if profile:
        args += ["--profile", profile]
    env = {**os.environ, STORAGE_ENV: url}
    procs = [
        subprocess.Popen([sys.executable, "-m", "polarkit.sweep", *args, "--worker-index", str(i)], env=env)
        for i in range(1, k + 1)
    ]
    codes = [p.wait() for p in procs]
    bad = [(i, c) for i, c in enumerate(codes) if c not in (0, 1)]
    if bad:
        print(f"[{sw.name}] worker(s) exited abnormally: {bad}", file=sys.stderr)
    study = optuna.load_study(study_name=sw.name, storage=_open(url))
    settle_dead_runs(study, sw.notebook.stem, url)
    return study


# --- reading a sweep -------------------------------------------------------------------------------


def _load_study(name: str, storage: str | None):
    import optuna

    from polarkit import trial as T

    url = resolve_storage(storage, name)
    if not (storage or os.environ.get(STORAGE_ENV)) and not (sweep_dir(name) / "study.db").is_file():
        have = sorted(p.name for p in (runs.outputs_dir() / "sweeps").glob("*") if (p / "study.db").is_file())
        raise P.ParamError(
            f"sweep {name!r}: no study at {url} (sweeps with a default SQLite study: "
            f"{', '.join(have) or 'none'}; give --storage for another storage)"
        )
    check_storage(url)
    storage_obj = _open(url)
    try:
        return optuna.load_study(study_name=name, storage=storage_obj)
    except KeyError:
        names = optuna.get_all_study_names(storage_obj)
        raise P.ParamError(
            f"sweep {name!r}: no such study in {T.redact(url)} (studies: {', '.join(names) or 'none'})"
        ) from None


def _find_run_dir(study, t, stem: str | None) -> str | None:
    if t.user_attrs.get("run_dir"):
        return t.user_attrs["run_dir"]
    if not stem:
        return None
    for path in (runs.outputs_dir() / stem).glob("*/status.json"):
        st = runs.read_json(path)
        if st.get("study") == study.study_name and st.get("trial") == t.number:
            return str(path.parent)
    return None


def _save(ax, path: Path) -> Path:
    import matplotlib.pyplot as plt
    import numpy as np

    fig = ax.figure if hasattr(ax, "figure") else np.ravel(ax)[0].figure
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def trials_table(study):
    """One row per trial: number, state, value, parameters, pruned-at step, duration, run folder, note."""
    import pandas as pd

    TS = _states()
    stem = study.user_attrs.get("notebook")
    rows = []
    for t in study.get_trials(deepcopy=False):
        note = t.user_attrs.get("error")
        if t.user_attrs.get("surplus"):
            note = "surplus: another worker started the last trial at the same time; not run"
        retry = t.system_attrs.get("failed_trial")
        if retry is not None:
            note = f"retry of trial {retry}" + (f"; {note}" if note else "")
        run_dir = _find_run_dir(study, t, stem)
        died = run_dir and runs.read_json(Path(run_dir) / "status.json").get("error") == "worker died"
        if t.state == TS.FAIL and died:
            note = "worker died" + (f"; {note}" if note else "")
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value if t.state == TS.COMPLETE else None,
                **t.params,
                "pruned_at_step": t.last_step if t.state == TS.PRUNED else None,
                "duration_s": round(t.duration.total_seconds(), 1) if t.duration else None,
                "host": t.user_attrs.get("host"),
                "run_dir": run_dir,
                "note": note,
            }
        )
    table = pd.DataFrame(rows)
    if len(table):
        table["pruned_at_step"] = table["pruned_at_step"].astype("Int64")
    return table


def noise(values: list[float], direction: str, k: int = 5) -> dict[str, Any]:
    """Spread of the metric over the top-k complete trials: differences below it are not resolved."""
    import numpy as np

    if not values:
        return {}
    top = sorted(values, reverse=direction == "maximize")[: min(k, max(2, len(values) // 3))]
    out = {"k": len(top), "best": top[0]}
    if len(top) >= 2:
        out |= {"std": float(np.std(top, ddof=1)), "spread": float(max(top) - min(top))}
        out["text"] = (
            f"best {top[0]:.4g}; the top {len(top)} of {len(values)} complete trials lie within "
            f"{out['spread']:.2g} (std {out['std']:.2g}): one run per configuration does not tell "
            "configurations that close apart; re-run the best parameters with other seeds to "
            "measure the seed-to-seed noise"
        )
    else:
        out["text"] = f"best {top[0]:.4g}; one complete trial: no noise estimate yet"
    return out


def report_sweep(
    name_or_study, storage: str | None = None, out_dir: str | Path | None = None, top_k: int = 5, plots: bool = True
) -> dict[str, Any]:
    """Read a sweep back: trials table, best trial, noise, importances, plots (PNG) and best.yaml.

    `name_or_study`: a sweep name (file stem), a sweep file path, or an optuna Study. Files go to
    `out_dir` (default outputs/sweeps/<name>/): history.png, intermediate.png, importances.png,
    slice.png, parallel.png, trials.csv, best.yaml.
    """
    import optuna

    if isinstance(name_or_study, optuna.Study):
        study = name_or_study
    else:
        text = str(name_or_study)
        study = _load_study(Path(text).stem if text.endswith((".yaml", ".yml")) else text, storage)
    TS = _states()
    name, attrs = study.study_name, study.user_attrs
    direction = study.direction.name.lower()
    out = Path(out_dir) if out_dir else sweep_dir(name)
    out.mkdir(parents=True, exist_ok=True)
    table = trials_table(study)
    table.to_csv(out / "trials.csv", index=False)
    complete = [t for t in study.get_trials(deepcopy=False, states=(TS.COMPLETE,))]
    c = _counts(study)
    rep: dict[str, Any] = {
        "name": name,
        "notebook": attrs.get("notebook"),
        "metric": attrs.get("metric"),
        "direction": direction,
        "storage": attrs.get("storage"),
        "trials": table,
        "counts": c,
        "best": None,
        "noise": {},
        "importances": {},
        "figures": {},
        "best_yaml": None,
        "best_test": {},
        "dir": out,
    }
    if complete:
        best = study.best_trial
        run_dir = _find_run_dir(study, best, attrs.get("notebook"))
        rep["best"] = {"number": best.number, "value": best.value, "params": best.params, "run_dir": run_dir}
        rep["noise"] = noise([t.value for t in complete], direction, top_k)
        if run_dir:
            tests = set(attrs.get("test_splits") or TEST_SPLITS)
            rep["best_test"] = {
                k: v for k, v in runs.read_json(Path(run_dir) / "metrics.json").items() if k.split("_", 1)[0] in tests
            }
        rep["best_yaml"] = _write_best_yaml(study, best, out, rep)
    if len(complete) >= 2:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rep["importances"] = dict(optuna.importance.get_param_importances(study))
        except Exception as e:  # noqa: BLE001 - e.g. every trial had the same values
            rep["importances"] = {"error": f"{type(e).__name__}: {e}"}
    if plots and complete:
        rep["figures"] = _plots(study, out, len(complete), len(study.best_trial.params))
    return rep


def _plots(study, out: Path, n_complete: int, n_params: int) -> dict[str, Path]:
    import functools

    from optuna.visualization import matplotlib as vm

    named = functools.partial  # every plot but the intermediate values names the metric on its axis
    target = study.user_attrs.get("metric") or "Objective Value"
    figures: dict[str, Path] = {}
    todo = [
        ("history", named(vm.plot_optimization_history, target_name=target), True),
        ("slice", named(vm.plot_slice, target_name=target), True),
        (
            "intermediate",
            vm.plot_intermediate_values,
            any(t.intermediate_values for t in study.get_trials(deepcopy=False)),
        ),
        ("importances", named(vm.plot_param_importances, target_name=target), n_complete >= 2),
        ("parallel", named(vm.plot_parallel_coordinate, target_name=target), n_complete >= 2 and n_params >= 2),
    ]
    for key, fn, wanted in todo:
        if not wanted:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                figures[key] = _save(fn(study), out / f"{key}.png")
        except Exception as e:  # noqa: BLE001 - one plot failing never fails the report
            print(f"sweep report: {key} plot skipped: {type(e).__name__}: {e}", file=sys.stderr)
    return figures


def _write_best_yaml(study, best, out: Path, rep: dict[str, Any]) -> Path:
    """Base values + fixed + overrides + the best trial's parameters, accepted by `polarkit run` as is."""
    attrs = study.user_attrs
    values = best.user_attrs.get("values") or {
        **(attrs.get("base_values") or {}),
        **(attrs.get("fixed") or {}),
        **(attrs.get("overrides") or {}),
        **best.params,
    }
    nb = attrs.get("notebook") or "NOTEBOOK"
    path = out / "best.yaml"
    head = [
        f"# best trial {best.number} of sweep {study.study_name} ({attrs.get('storage')}): "
        f"{attrs.get('metric')} = {best.value:.6g} ({study.direction.name.lower()})",
        f"# noise: {rep['noise'].get('text', '-')}",
        f"# searched: {', '.join(best.params)}; the rest from {attrs.get('base') or 'the notebook defaults'}"
        f"{' + fixed ' + ', '.join(attrs['fixed']) if attrs.get('fixed') else ''}"
        f"{' + -p ' + ', '.join(attrs['overrides']) if attrs.get('overrides') else ''}",
        f"# run it: polarkit run {nb} -f {path}",
        f"#     or: papermill {attrs.get('notebook_path') or nb} out.ipynb -f {path}",
    ]
    path.write_text(
        "\n".join(head) + "\n" + yaml.safe_dump(values, allow_unicode=True, sort_keys=False), encoding="utf-8"
    )
    return path


def format_report(rep: dict[str, Any]) -> str:
    """The report as text for the terminal."""
    c = rep["counts"]
    lines = [
        f"sweep {rep['name']}: notebook {rep['notebook']}, {rep['direction']} {rep['metric']}, "
        f"storage {rep['storage']}",
        f"trials: {c['finished']} finished ({c['COMPLETE']} complete, {c['PRUNED']} pruned), {c['FAIL']} failed, "
        f"{c['RUNNING']} running, {c['WAITING']} waiting",
    ]
    table = rep["trials"]
    if len(table):
        shown = table.assign(run_dir=table["run_dir"].map(lambda d: Path(d).name if d else None))
        lines += ["", shown.to_string(index=False, max_colwidth=60)]
    if rep["best"]:
        b = rep["best"]
        lines += [
            "",
            f"best: trial {b['number']}, {rep['metric']} = {b['value']:.6g}  {_fmt(b['params'])}",
            f"noise: {rep['noise'].get('text')}",
            f"run folder: {b['run_dir']}",
        ]
        if rep["best_test"]:
            lines.append(
                "best trial's test figures (read once, after the sweep; never used to choose): "
                + _fmt(rep["best_test"])
            )
    if rep["importances"]:
        lines.append(
            "importances: "
            + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in rep["importances"].items())
        )
    for key, path in rep["figures"].items():
        lines.append(f"{key}: {path}")
    if rep["best_yaml"]:
        lines.append(f"best parameters: {rep['best_yaml']}  (polarkit run {rep['notebook']} -f {rep['best_yaml']})")
    return "\n".join(lines)


# --- command line ----------------------------------------------------------------------------------


def add_parser(subparsers) -> argparse.ArgumentParser:
    """`polarkit sweep FILE [--trials N] [--storage URL] [--workers K] [--base YAML] [-p NAME=VALUE]`
    and `polarkit sweep --report NAME [--storage URL]`."""
    s = subparsers.add_parser(
        "sweep",
        help="hyper-parameter sweep of a notebook with Optuna (params/sweeps/*.yaml)",
        description=__doc__.split("\n\n")[0],
    )
    s.add_argument("file", nargs="?", help="sweep file, e.g. params/sweeps/01_mnist_cnn_lr.yaml")
    s.add_argument("--trials", type=int, help="finished trials the study should hold (default: the file's)")
    s.add_argument(
        "--storage",
        help="Optuna storage URL (default sqlite:///outputs/sweeps/NAME/study.db; "
        "postgresql://user:pass@host/db; journal:///path.log)",
    )
    s.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default 1)")
    s.add_argument("--base", help="parameter YAML to start every trial from, instead of the file's `base`")
    s.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fix a parameter for every trial (value read as YAML), as with polarkit run",
    )
    s.add_argument("--profile", help=argparse.SUPPRESS)
    s.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    s.add_argument(
        "--report", metavar="NAME", help="report a sweep (name or sweep file): trials, best, plots, best.yaml"
    )
    s.set_defaults(fn=cmd_sweep)
    return s


def cmd_sweep(args) -> int:
    """Run (or report) a sweep; 0 when the study holds the requested finished trials, 2 on a bad file."""
    from polarkit import trial as T

    if args.report:
        print(format_report(report_sweep(args.report, storage=args.storage)))
        return 0
    if not args.file:
        raise P.ParamError("sweep: give a sweep file (params/sweeps/NAME.yaml) or --report NAME")
    if args.workers < 1:
        raise P.ParamError(f"--workers: expected a positive number, got {args.workers}")
    sw = load(args.file, base=args.base, overrides=P.parse_overrides(args.param), trials=args.trials)
    url = resolve_storage(args.storage, sw.name)
    check_storage(url)
    if args.worker_index == 0:
        print(
            f"[{sw.name}] {sw.notebook.name}: {sw.direction} {sw.metric} over "
            f"{'; '.join(d.describe() for d in sw.space.values())}; {sw.trials} trials, "
            f"sampler {sw.sampler['type']}, pruner {sw.pruner['type']}, storage {T.redact(url)}",
            flush=True,
        )
    stopping = getattr(executor, "signals_as_exceptions", contextlib.nullcontext)  # Ctrl-C/SIGTERM stop kernels
    with stopping():
        study = run_sweep(sw, storage=url, workers=args.workers, profile=args.profile, worker_index=args.worker_index)
    finished = _counts(study)["finished"]
    if args.worker_index == 0:
        rep = report_sweep(study)
        print("\n" + format_report(rep), flush=True)
    return 0 if finished >= sw.trials else 1


def main(argv: list[str] | None = None) -> int:
    """`python -m polarkit.sweep FILE ...` (what --workers starts; the same as `polarkit sweep`)."""
    ap = argparse.ArgumentParser(prog="python -m polarkit.sweep")
    sub = ap.add_subparsers(dest="cmd")
    add_parser(sub)
    args = ap.parse_args(["sweep", *(sys.argv[1:] if argv is None else argv)])
    from polarkit import environment

    environment.default_to_shared_data()
    runs.absolute_env()
    try:
        return cmd_sweep(args)
    except P.ParamError as e:
        print(f"polarkit sweep: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # executor.Interrupted: the run folder says `interrupted`
        if hasattr(e, "code") and hasattr(e, "run_dir"):
            print(f"polarkit sweep: {e}", file=sys.stderr)
            return int(e.code)
        raise


if __name__ == "__main__":
    sys.exit(main())
