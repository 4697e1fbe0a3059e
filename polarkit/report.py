"""Reading run folders back: a leaderboard DataFrame, the params that differ, outputs/index.html.

Reads only run folders; a failed, running or half-written run shows as such instead of breaking.
"""

from __future__ import annotations

import difflib
import html
import os
from pathlib import Path

import pandas as pd
import yaml

from polarkit import runs, score

_BASE = {"notebook", "run", "status", "profile", "start", "duration_s", "error"}


def _is_number(v) -> bool:
    """A real, non-NaN number (bools are not metrics)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


def _number(v) -> str:
    """4 significant digits; 'n/a' for null (log_metrics writes nan/inf as null)."""
    return f"{v:.4g}" if _is_number(v) else "n/a" if v is None else str(v)


def _text(v) -> str:
    """A table cell: '' for None and NaN (pandas turns a missing None into NaN), else str(v)."""
    return "" if v is None or (isinstance(v, float) and v != v) else str(v)


def run_dirs(outputs: Path | None = None, pattern: str = "*") -> list[Path]:
    """Run folders under outputs/<notebook>/<run>/ whose notebook stem matches `pattern` (glob)."""
    outputs = Path(outputs or runs.outputs_dir())
    return sorted(
        p
        for p in outputs.glob(f"{pattern}/*")
        if p.is_dir() and (p / "status.json").exists() or p.is_dir() and (p / "params.yaml").exists()
    )


def _params(run_dir: Path) -> dict:
    """The run's params.yaml; {} when missing, half-written or not a mapping."""
    try:
        data = yaml.safe_load((run_dir / "params.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _alive(status: dict) -> bool:
    """Is the process that owns this run still there? `running`: the kernel; `queued`: the executor."""
    pid = status.get("kernel_pid") if status.get("state") == "running" else status.get("executor_pid")
    return pid is None or os.path.exists(f"/proc/{pid}")


def _read_object(path: Path) -> tuple[dict, str | None]:
    """(JSON object at `path`, None); ({}, why) when the file holds a list, a string or a number."""
    data = runs.read_json(path)
    return (data, None) if isinstance(data, dict) else ({}, f"{path.name} is not an object")


def _run_row(d: Path) -> dict:
    """One run folder -> notebook, run, status, profile, start, duration_s, error, then its metrics."""
    st, bad_status = _read_object(d / "status.json")
    metrics, bad_metrics = _read_object(d / "metrics.json")
    state = st.get("state", "unknown")
    if state in ("running", "queued") and not _alive(st):
        state = "died"
    error = ": ".join(str(x) for x in (st.get("error"), st.get("message")) if x)
    error = "; ".join(x for x in (error, bad_status, bad_metrics) if x) or None
    return {
        "notebook": d.parent.name,
        "run": d.name,
        "status": state,
        "profile": st.get("profile"),
        "start": st.get("start"),
        "duration_s": st.get("duration_s"),
        "error": error,
        **{k: v for k, v in metrics.items() if k not in _BASE},
    }


def load_runs(outputs: Path | None = None, pattern: str = "*") -> pd.DataFrame:
    """One row per run: notebook, run, status, start, duration_s, error, metrics (metric columns).

    A status.json or metrics.json that is not a JSON object counts as empty, and `error` says so."""
    return pd.DataFrame([_run_row(d) for d in run_dirs(outputs, pattern)])


def metric_columns(board: pd.DataFrame) -> list[str]:
    """The columns of `load_runs` that came from metrics.json."""
    return [c for c in board.columns if c not in _BASE]


def differing_params(run_dirs_: list[Path]) -> pd.DataFrame:
    """Parameters whose values differ across the given runs (one row per run)."""
    table = pd.DataFrame(
        [{k: repr(v) if isinstance(v, (list, dict)) else v for k, v in _params(d).items()} for d in run_dirs_],
        index=[d.name for d in run_dirs_],
    )
    keep = [c for c in table.columns if table[c].astype(str).nunique(dropna=False) > 1]
    return table[keep]


def leaderboard(
    outputs: Path | None = None, pattern: str = "*", metric: str | None = None, ascending: bool | None = None
) -> pd.DataFrame:
    """Runs sorted by `metric` (succeeded first, best first); with one notebook, the differing params are added.

    `ascending` None: by the metric's direction (`score.greater_is_better`: losses ascending, accuracies
    descending); True or False forces the order. A `metric` no run reported raises ValueError naming the
    metrics there are."""
    df = load_runs(outputs, pattern)
    if df.empty:
        return df
    if metric:
        _check_metric(df, metric, pattern)
        if ascending is None:
            ascending = not score.greater_is_better(metric)
        df = df.sort_values(["status", metric], ascending=[True, ascending], key=_status_first)
    metrics = metric_columns(df)
    if df["notebook"].nunique() == 1:
        diff = differing_params(run_dirs(outputs, pattern))
        df = df.merge(diff, left_on="run", right_index=True, how="left")
    df = df.reset_index(drop=True)
    df.attrs["metrics"] = metrics  # which columns are metrics once params (e.g. val_frac) sit beside them
    return df


def _check_metric(board: pd.DataFrame, metric: str, pattern: str) -> None:
    have = metric_columns(board)
    if metric not in have:
        close = difflib.get_close_matches(metric, have, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown metric {metric!r}{hint}; metrics of the runs matching {pattern!r}: "
            f"{', '.join(sorted(have)) or 'none'}"
        )


def _status_first(col: pd.Series) -> pd.Series:
    """Sort key: succeeded runs first; metric values as numbers (a stray string sorts last, not a crash)."""
    if col.name == "status":
        return col.map(lambda s: s != "succeeded")
    return pd.to_numeric(col, errors="coerce")


def write_index(outputs: Path | None = None) -> Path:
    """Rebuild outputs/index.html: one row per run with status, duration, metrics and links."""
    outputs = Path(outputs or runs.outputs_dir())
    df = load_runs(outputs)
    rows = []
    for r in df.to_dict("records"):
        d = outputs / r["notebook"] / r["run"]
        links = [
            f'<a href="{html.escape(str(p.relative_to(outputs)))}">{html.escape(p.name)}</a>'
            for p in [d / "notebook.html", *sorted(d.glob("figures/*.png")), *sorted(d.glob("attention/*.html"))]
            if p.exists()
        ]
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in r.items() if k not in _BASE and _is_number(v))
        cells = [
            r["notebook"],
            r["run"],
            r["status"],
            _text(r.get("profile")),
            _text(r.get("duration_s")),
            metrics,
            _text(r.get("error")),
            " ".join(links),
        ]
        rows.append(
            "<tr>" + "".join(f"<td>{c if i == 7 else html.escape(str(c))}</td>" for i, c in enumerate(cells)) + "</tr>"
        )
    head = "".join(
        f"<th>{h}</th>" for h in ("notebook", "run", "status", "profile", "seconds", "metrics", "error", "files")
    )
    page = (
        f"<!doctype html><meta charset='utf-8'><title>polarkit runs</title>"
        f"<style>{_CSS}</style><h1>polarkit runs</h1><table><tr>{head}</tr>{''.join(rows)}</table>"
    )
    path = outputs / "index.html"
    outputs.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


_CSS = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px;vertical-align:top}"
)


# ---- closing table of `polarkit run` ------------------------------------------------------

# Each notebook's headline metrics: the figures its README row quotes ("What the profiles reach").
# 07's depend on its `task` parameter; a notebook not listed shows its first test_/dev_/val_ metric.
HEADLINES: dict[str, tuple[str, ...] | dict[str, tuple[str, ...]]] = {
    "01_mnist_cnn": ("test_accuracy",),
    "02_mnist_vit": ("test_accuracy",),
    "03_nlp_cola": ("val_mcc",),
    "04_bert_embedding": ("heldout_initial_loss", "heldout_adapted_loss", "heldout_control_loss"),
    "05_cosine_jd": ("testsheet_auc", "testsheet_seed_gap"),
    "06_sts": ("dev_pearson", "dev_f1", "zeroshot_pearson"),
    "07_review_classifier": {
        "sentiment": ("test_accuracy", "test_tfidf_accuracy"),
        "keywords": ("valid_micro_f1", "valid_tuned_micro_f1", "valid_tfidf_tuned_micro_f1"),
        "keyword_sentiment": ("dev_pair_f1", "dev_tfidf_pair_f1"),
    },
    "08_compare_runs": (),
}


def headline_keys(notebook: str, metrics: dict, params: dict | None = None) -> tuple[str, ...]:
    """The metric keys a run's headline shows: HEADLINES[notebook] (by `task` when the entry is a dict),
    else the first test_/dev_/val_ metric it reported."""
    spec = HEADLINES.get(notebook)
    if isinstance(spec, dict):
        spec = spec.get((params or {}).get("task"))
    if spec is not None:
        return spec
    first = next(
        (
            k
            for prefix in ("test_", "dev_", "val_")
            for k, v in metrics.items()
            if k.startswith(prefix) and _is_number(v)
        ),
        None,
    )
    return (first,) if first else ()


def headline(notebook: str, metrics: dict, params: dict | None = None) -> str:
    """'val_mcc=0.228' (several joined by ', ', 07 prefixed by its task); '' when none was reported."""
    keys = headline_keys(notebook, metrics, params)
    text = ", ".join(f"{k}={_number(metrics[k])}" for k in keys if k in metrics)
    task = (params or {}).get("task") if isinstance(HEADLINES.get(notebook), dict) else None
    return f"{task}: {text}" if task and text else text


def closing_table(dirs: list[Path]) -> pd.DataFrame:
    """One row per given run folder, in order: notebook, run, status, duration, headline (a string per
    row, so notebooks with different metrics never show NaN; a run without them shows its error)."""
    rows = []
    for d in map(Path, dirs):
        r = _run_row(d)
        metrics = {k: v for k, v in r.items() if k not in _BASE}
        seconds = r["duration_s"]
        rows.append(
            {
                "notebook": r["notebook"],
                "run": r["run"],
                "status": r["status"],
                "duration": f"{seconds:.0f} s" if _is_number(seconds) else "",
                "headline": headline(r["notebook"], metrics, _params(d)) or _text(r["error"]),
            }
        )
    return pd.DataFrame(rows, columns=["notebook", "run", "status", "duration", "headline"])


def default_metric(board: pd.DataFrame) -> str | None:
    """The first test_/dev_/val_ metric column with values, for sorting when none is named
    (a leaderboard's parameter columns, such as val_frac, are never picked); `leaderboard` sorts it
    in its own direction (`score.greater_is_better`), so a loss picked here ranks lowest first."""
    metrics = board.attrs.get("metrics", list(board.columns))
    for prefix in ("test_", "dev_", "val_"):
        for c in board.columns:
            if c.startswith(prefix) and c in metrics and board[c].notna().any():
                return c
    return None


def plot_metric(board: pd.DataFrame, metric: str):
    """Bar chart of `metric` per run (succeeded runs only), labelled notebook/run."""
    from polarkit.viz import plots

    ok = board[(board["status"] == "succeeded") & board[metric].notna()] if metric in board else board.iloc[:0]
    fig, ax = plots.figure(size=(8, 0.4 * max(3, len(ok)) + 1))
    if ok.empty:
        ax.text(0.5, 0.5, f"no succeeded run has {metric or 'a metric'}", ha="center", va="center")
        ax.set_axis_off()
        return fig
    ax.barh([f"{r.notebook}/{r.run}" for r in ok.itertuples()], ok[metric])
    ax.set_xlabel(metric)
    ax.invert_yaxis()
    return fig


def plot_histories(dirs: list[Path], column: str = "eval_loss", name: str = "history.csv"):
    """Training curves (`column` vs epoch) of every run that saved a history, overlaid."""
    from polarkit.viz import plots

    fig, ax = plots.figure(size=(8, 4))
    for d in dirs:
        try:
            h = pd.read_csv(d / name)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError):
            continue
        if column in h and "epoch" in h:
            ax.plot(h["epoch"], h[column], marker=".", label=f"{d.parent.name}/{d.name}")
    ax.set_xlabel("epoch")
    ax.set_ylabel(column)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return fig
