"""Reading run folders back: a leaderboard DataFrame, the params that differ, outputs/index.html.

Reads only run folders; a failed, running or half-written run shows as such instead of breaking.
"""
from __future__ import annotations

import html
import os
from pathlib import Path

import pandas as pd
import yaml

from polarkit import runs


def run_dirs(outputs: Path | None = None, pattern: str = "*") -> list[Path]:
    """Run folders under outputs/<notebook>/<run>/ whose notebook stem matches `pattern` (glob)."""
    outputs = Path(outputs or runs.outputs_dir())
    return sorted(p for p in outputs.glob(f"{pattern}/*") if p.is_dir() and (p / "status.json").exists()
                  or p.is_dir() and (p / "params.yaml").exists())


def _params(run_dir: Path) -> dict:
    try:
        return yaml.safe_load((run_dir / "params.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}


def _alive(status: dict) -> bool:
    """A 'running' run whose kernel process is gone is reported as 'died'."""
    pid = status.get("kernel_pid")
    return pid is None or os.path.exists(f"/proc/{pid}")


def load_runs(outputs: Path | None = None, pattern: str = "*") -> pd.DataFrame:
    """One row per run: notebook, run, status, start, duration_s, error, metrics (metric columns)."""
    rows = []
    for d in run_dirs(outputs, pattern):
        st = runs.read_json(d / "status.json")
        state = st.get("state", "unknown")
        if state == "running" and not _alive(st):
            state = "died"
        rows.append({"notebook": d.parent.name, "run": d.name, "status": state, "profile": st.get("profile"),
                     "start": st.get("start"), "duration_s": st.get("duration_s"),
                     "error": ": ".join(str(x) for x in (st.get("error"), st.get("message")) if x) or None,
                     **runs.read_json(d / "metrics.json")})
    return pd.DataFrame(rows)


def differing_params(run_dirs_: list[Path]) -> pd.DataFrame:
    """Parameters whose values differ across the given runs (one row per run)."""
    table = pd.DataFrame([{k: repr(v) if isinstance(v, (list, dict)) else v for k, v in _params(d).items()}
                          for d in run_dirs_], index=[d.name for d in run_dirs_])
    keep = [c for c in table.columns if table[c].astype(str).nunique(dropna=False) > 1]
    return table[keep]


def leaderboard(outputs: Path | None = None, pattern: str = "*", metric: str | None = None,
                ascending: bool = False) -> pd.DataFrame:
    """Runs sorted by `metric` (succeeded first); with one notebook, the differing params are added."""
    df = load_runs(outputs, pattern)
    if df.empty:
        return df
    if metric and metric in df:
        df = df.sort_values(["status", metric], ascending=[True, ascending], key=_status_first)
    if df["notebook"].nunique() == 1:
        diff = differing_params(run_dirs(outputs, pattern))
        df = df.merge(diff, left_on="run", right_index=True, how="left")
    return df.reset_index(drop=True)


def _status_first(col: pd.Series) -> pd.Series:
    return col.map(lambda s: s != "succeeded") if col.name == "status" else col


def write_index(outputs: Path | None = None) -> Path:
    """Rebuild outputs/index.html: one row per run with status, duration, metrics and links."""
    outputs = Path(outputs or runs.outputs_dir())
    df = load_runs(outputs)
    rows = []
    for r in df.to_dict("records"):
        d = outputs / r["notebook"] / r["run"]
        links = [f'<a href="{html.escape(str(p.relative_to(outputs)))}">{html.escape(p.name)}</a>'
                 for p in [d / "notebook.html", *sorted(d.glob("figures/*.png")), *sorted(d.glob("attention/*.html"))]
                 if p.exists()]
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in r.items()
                            if k not in _BASE and isinstance(v, float) and v == v)
        cells = [r["notebook"], r["run"], r["status"], r.get("profile") or "", r.get("duration_s") or "",
                 metrics, r.get("error") or "", " ".join(links)]
        rows.append("<tr>" + "".join(f"<td>{c if i == 7 else html.escape(str(c))}</td>"
                                     for i, c in enumerate(cells)) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in
                   ("notebook", "run", "status", "profile", "seconds", "metrics", "error", "files"))
    page = (f"<!doctype html><meta charset='utf-8'><title>polarkit runs</title>"
            f"<style>{_CSS}</style><h1>polarkit runs</h1><table><tr>{head}</tr>{''.join(rows)}</table>")
    path = outputs / "index.html"
    outputs.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


_BASE = {"notebook", "run", "status", "profile", "start", "duration_s", "error"}
_CSS = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px;vertical-align:top}")


def default_metric(board: pd.DataFrame) -> str | None:
    """The first test_/dev_/val_ metric column with values, for sorting when none is named."""
    for prefix in ("test_", "dev_", "val_"):
        for c in board.columns:
            if c.startswith(prefix) and board[c].notna().any():
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
