"""Shared plumbing for the loaders: where the data lives, clear errors, seeded sampling.

Every loader goes through `locate` (missing file -> FileNotFoundError naming the path),
`read_table` / `read_text` / `read_json` (an empty, non-UTF-8 or unparsable file -> ValueError
naming the file and the cause), `require_columns` (missing column -> ValueError naming file and
columns) and `sample` (seeded `n`), so the error messages are the same everywhere. `probe`
is the cheap version of the same checks that `polarkit data` runs over every file.
`require_columns`, `sample` and `train_val_split` are also what the task modules call on their own
frames (`polarkit.data.<name>`): one check, one random-draw convention in the whole package.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from polarkit.data.registry import DATASETS
from polarkit.environment import DATA_ENV, data_root


def _hub_hint(name: str) -> str:
    hub = DATASETS[name].hub
    if hub is None:
        return f"'{name}' has no Hugging Face hub fallback, so the local file is required"
    return (
        f"hub fallback {format_hub(hub)} is only tried when no data root exists "
        f"(unset {DATA_ENV} and no ../shared/data)"
    )


def format_hub(hub: tuple[str, str | None]) -> str:
    path, config = hub
    return f"load_dataset({path!r}, {config!r})" if config else f"load_dataset({path!r})"


def locate(name: str, rel: str) -> Path:
    """Absolute path of `rel` under the data root; FileNotFoundError says what is missing."""
    root = data_root()
    env = os.environ.get(DATA_ENV)
    if root is None:
        raise FileNotFoundError(
            f"dataset '{name}': no data root ({DATA_ENV} is not set and ../shared/data does "
            f"not exist), so {rel} cannot be read; {_hub_hint(name)}"
        )
    path = root / rel
    if not path.is_file():
        raise FileNotFoundError(
            f"dataset '{name}': missing file {path} ({DATA_ENV}={env!r}; expected layout: "
            f"shared/data/MANIFEST.md); {_hub_hint(name)}"
        )
    return path


def require_columns(df: pd.DataFrame, required, source) -> pd.DataFrame:
    """`df` if it has every column of `required`; else a ValueError naming `source` (a file, a split,
    a function's input), the missing and the found columns (never a bare KeyError later on)."""
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; columns found: {list(df.columns)}")
    return df


def check_rows(df: pd.DataFrame, expected: int | None, source) -> pd.DataFrame:
    """ValueError if `df` does not have the row count the MANIFEST states for `source`."""
    if expected is not None and len(df) != expected:
        raise ValueError(
            f"{source}: expected {expected:,} rows, read {len(df):,} (wrong file, or parsed with the wrong quoting?)"
        )
    return df


def decode_problem(path: Path, encoding: str = "utf-8") -> str | None:
    """Why `path` is not `encoding` text (the first bad byte, its offset and line), or None.
    Streams the file in 1 MiB blocks: cheap even for the largest data file."""
    decoder, offset, line = codecs.getincrementaldecoder(encoding)(), 0, 1
    with open(path, "rb") as f:
        while True:
            block, pending = f.read(1 << 20), len(decoder.getstate()[0])
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as e:  # e.object = the pending bytes of the last block + this one
                at, line = offset - pending + e.start, line + e.object[: e.start].count(b"\n")
                return (
                    f"not {encoding} text: byte {e.object[e.start : e.start + 1]!r} at offset {at:,} "
                    f"(line {line:,}); re-save it as UTF-8"
                )
            if not block:
                return None
            offset, line = offset + len(block), line + block.count(b"\n")


def _unreadable(path: Path, encoding: str = "utf-8") -> str:
    """The cause when a reader failed on `path`: empty file, bad encoding, or '' if neither."""
    if path.stat().st_size == 0:
        return "empty file (0 bytes); copy it again from the source (shared/data/MANIFEST.md)"
    return decode_problem(path, encoding) or ""


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """path.read_text(encoding); ValueError naming the file when it is empty or not `encoding` text."""
    try:
        text = path.read_text(encoding=encoding)
    except UnicodeDecodeError:
        raise ValueError(f"{path}: {_unreadable(path, encoding)}") from None
    if not text.strip():
        raise ValueError(f"{path}: {_unreadable(path, encoding) or 'blank file (whitespace only)'}")
    return text


def read_json(path: Path, encoding: str = "utf-8", lines: bool = False):
    """One JSON document (or, with `lines`, a list of one per non-blank line); errors name file and line."""
    text = read_text(path, encoding)
    docs = [(i, t) for i, t in enumerate(text.split("\n"), 1) if t.strip()] if lines else [(1, text)]
    out = []
    for line, doc in docs:
        try:
            out.append(json.loads(doc))
        except json.JSONDecodeError as e:
            raise ValueError(
                f"{path}: not valid JSON at line {line + e.lineno - 1}, column {e.colno}: {e.msg}"
            ) from None
    return out if lines else out[0]


def read_table(path: Path, required_columns=(), expected_rows: int | None = None, **read_kw) -> pd.DataFrame:
    """pd.read_csv(path, **read_kw) plus the column and row-count checks; an empty, non-UTF-8 or
    unparsable file is a ValueError naming the file and the cause (never pandas' bare error)."""
    encoding = read_kw.get("encoding") or "utf-8"
    if path.stat().st_size == 0:  # with names= given, pandas would return an empty frame instead
        raise ValueError(f"{path}: {_unreadable(path, encoding)}")
    try:
        df = pd.read_csv(path, **read_kw)
    except (UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise ValueError(f"{path}: {_unreadable(path, encoding) or e}") from None
    except pd.errors.ParserError as e:
        raise ValueError(f"{path}: cannot be parsed as a table: {e}") from None
    require_columns(df, required_columns, path)
    return check_rows(df, expected_rows, path)


def probe(path: Path) -> str | None:
    """Why the data file `path` cannot be read, or None: empty, not UTF-8, a broken gzip or npz,
    or (CSV/TSV) a header and first rows pandas cannot parse. Cheap: never builds the full table."""
    try:
        if path.stat().st_size == 0:
            return _unreadable(path)
        if path.suffix == ".gz":
            with gzip.open(path) as f:
                while f.read(1 << 20):  # a truncated stream fails at its end
                    pass
        elif path.suffix == ".npz":
            with np.load(path) as z:
                _ = z.files  # the zip directory sits at the end: a truncated file fails here
        elif (bad := decode_problem(path, "utf-8")) is not None:
            return bad
        elif path.suffix in (".csv", ".tsv", ".txt"):
            tab = path.suffix != ".csv"  # tab-separated files are read with QUOTE_NONE by their loaders
            pd.read_csv(
                path,
                nrows=5,
                sep="\t" if tab else ",",
                encoding="utf-8-sig",
                quoting=csv.QUOTE_NONE if tab else csv.QUOTE_MINIMAL,
            )
        elif path.suffix == ".jsonl":
            with open(path, encoding="utf-8") as f:
                json.loads(next(line for line in f if line.strip()))
    except StopIteration:
        return "no JSON line in the file"
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:  # pandas' and json's errors are ValueErrors
        return f"{type(e).__name__}: {e}"
    return None


def check_split(split: str, allowed: tuple[str, ...]) -> None:
    if split not in allowed:
        raise ValueError(f"split must be one of {allowed}, got {split!r}")


def sample_index(size: int, n: int | None, seed: int, keep_order: bool = True) -> np.ndarray:
    """Positions of a seeded sample of n of `size` rows, without replacement; all positions (in order)
    if n is None or n >= size. The package's one convention for sub-samples: the rows pandas'
    `df.sample(n, random_state=seed)` picks (numpy `RandomState(seed).choice`), sorted back into the
    original order unless `keep_order` is False (then in the order drawn, as `df.sample` returns them)."""
    if n is None or n >= size:
        return np.arange(size)
    if n < 0:
        raise ValueError(f"n must be >= 0 or None, got {n}")
    # RandomState, not default_rng: the draws the committed quick figures were measured with (06, 04, 05)
    idx = np.random.RandomState(seed).choice(size, size=n, replace=False)
    return np.sort(idx) if keep_order else idx


def sample(df: pd.DataFrame, n: int | None = None, seed: int = 0, keep_order: bool = True) -> pd.DataFrame:
    """Seeded sample of n rows (a copy, index reset), in their original order or (`keep_order=False`) in
    the order drawn; the whole frame if n is None or too big. Every seeded sub-sample in polarkit goes
    through here (see `sample_index`)."""
    return df.iloc[sample_index(len(df), n, seed, keep_order)].reset_index(drop=True)


def hub_dataset(name: str, split: str, rel: str):
    """datasets.load_dataset(<hub id of name>, split=split); failure names the local file too."""
    hub = DATASETS[name].hub
    if hub is None:
        locate(name, rel)  # raises: no root and no hub fallback
    path, config = hub
    try:
        import datasets  # lazy: heavy import, only needed without local data

        return datasets.load_dataset(path, config, split=split)
    except Exception as exc:  # offline, renamed repo, script datasets no longer supported ...
        raise FileNotFoundError(
            f"dataset '{name}': no local data root ({DATA_ENV} unset and no ../shared/data, "
            f"so {rel} was not read) and the hub fallback "
            f"{format_hub(hub)}, split={split!r} failed: {type(exc).__name__}: {exc}"
        ) from exc


def hub_frame(name: str, split: str, rel: str, required=(), rename=None) -> pd.DataFrame:
    """hub_dataset(...).to_pandas() with columns renamed and checked like a local file."""
    df = hub_dataset(name, split, rel).to_pandas().rename(columns=rename or {})
    return require_columns(df, required, f"{format_hub(DATASETS[name].hub)} split {split!r}")


def train_val_split(df: pd.DataFrame, frac: float = 0.1, seed: int = 0):
    """Seeded split of a frame into (train, val) with round(frac * len) rows in val, both in the frame's
    order. The val rows are drawn with numpy's `default_rng(seed)`, not `sample`'s RandomState: the
    committed 03 and 06 figures rest on this split (the one draw that keeps its own generator)."""
    val_idx = np.random.default_rng(seed).choice(len(df), size=int(round(frac * len(df))), replace=False)
    mask = np.zeros(len(df), dtype=bool)
    mask[val_idx] = True
    return df[~mask].reset_index(drop=True), df[mask].reset_index(drop=True)
