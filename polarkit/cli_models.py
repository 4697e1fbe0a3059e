"""`polarkit predict | promote | registry | track | mlflow-ui`, and `polarkit models --registry`.

Hooked into `polarkit.cli.parser()` by `cli_models.add_parsers(sub)` (after the other sub-commands, so
that it can add `--registry` to the existing `models` command). Refusals raise ValueError, which the
CLI's `main` prints as `polarkit <cmd>: <message>` with exit status 2.

    polarkit predict sentiment@champion "배송이 빨라요" "별로예요"
    polarkit predict sts@champion --pair "오늘 날씨 좋다" "날씨가 맑네요"
    polarkit predict cola/3 --input sentences.csv --output scored.csv     # or .jsonl; --column NAME
    polarkit promote cola [--version 3 | --run RUN] [--force]
    polarkit registry            (= polarkit models --registry)
    polarkit track --backfill    | polarkit track RUN_DIR ...
    polarkit mlflow-ui [--port 5000] [--print]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

CHUNK = 512  # rows per predict call: length-sorted batches inside, a progress tick after each


def add_parsers(sub) -> None:
    """Add this module's sub-commands to the CLI's subparsers (and --registry to `models` when present)."""
    p = sub.add_parser("predict", help="predict with a saved or registered model (TASK@ALIAS, TASK/VERSION, folder)")
    p.add_argument("spec", help="sts@champion, cola/3, a run folder or a model folder")
    p.add_argument("texts", nargs="*", help="texts to score (pair tasks: use --pair A B)")
    p.add_argument(
        "--pair", nargs=2, action="append", default=[], metavar=("A", "B"), help="a sentence pair (repeatable)"
    )
    p.add_argument("--input", type=Path, help="a .csv/.tsv or .jsonl file of inputs")
    p.add_argument("--output", type=Path, help="write inputs + predictions here (.csv or .jsonl; default: stdout)")
    p.add_argument("--column", help="input column(s): NAME, or A,B for pairs (default: text; sentence1,sentence2)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--quantize", action="store_true", help="int8 dynamic quantisation of the Linear layers (CPU)")
    p.set_defaults(fn=cmd_predict)
    r = sub.add_parser("promote", help="move a task's champion alias to its candidate (or --version/--run) if better")
    r.add_argument("task")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--version", type=int)
    g.add_argument("--run", help="a run folder or run id whose registered version to promote")
    r.add_argument("--force", action="store_true", help="promote even if it does not beat the champion")
    r.set_defaults(fn=cmd_promote)
    g = sub.add_parser("registry", help="registered models: task, version, aliases, metric, run")
    g.set_defaults(fn=cmd_models_registry)
    t = sub.add_parser("track", help="mirror run folders into MLflow (--backfill: every run not yet mirrored)")
    t.add_argument("runs", nargs="*", type=Path, help="run folders (default with --backfill: all under outputs/)")
    t.add_argument("--backfill", action="store_true")
    t.set_defaults(fn=cmd_track)
    u = sub.add_parser("mlflow-ui", help="open the MLflow dashboard on the local store (127.0.0.1)")
    u.add_argument("--port", type=int, default=5000)
    u.add_argument("--print", action="store_true", help="only print the command")
    u.set_defaults(fn=cmd_mlflow_ui)
    if "models" in getattr(sub, "choices", {}):
        add_registry_option(sub.choices["models"])


def add_registry_option(models_parser) -> None:
    """`polarkit models --registry` lists the registry instead of the model specs."""
    models_parser.add_argument("--registry", action="store_true", help="list registered models instead")
    plain = models_parser.get_default("fn")
    models_parser.set_defaults(fn=lambda args: cmd_models_registry(args) if args.registry else plain(args))


# ---- predict ----


def cmd_predict(args) -> int:
    from polarkit import predictors

    model_dir = predictors.resolve(args.spec)
    card = predictors.read_card(model_dir)
    pair = card["kind"] in predictors.PAIR_KINDS or card.get("pair", False)
    if args.input is not None:
        if args.texts or args.pair:
            raise ValueError("give texts/--pair or --input, not both")
        table = read_inputs(args.input)
        inputs = input_columns(table, args.column, pair, args.input)
    else:
        if pair and args.texts:
            raise ValueError(f"{card['task']} scores sentence pairs: use --pair A B (repeatable)")
        inputs = [tuple(p) for p in args.pair] if pair else list(args.texts)
        if not inputs:
            raise ValueError("nothing to predict: give texts, --pair A B, or --input FILE")
        table = None
    predictor = predictors.load_model_dir(model_dir, quantize=args.quantize)
    rows = _predict(predictor, inputs, args.batch_size, progress=table is not None)
    if table is None:
        for x, row in zip(inputs, rows):
            shown = {"pair": list(x)} if pair else {"text": x}
            print(json.dumps({**shown, **row}, ensure_ascii=False, default=float))
        return 0
    write_outputs(table, rows, args.output)
    return 0


def _predict(predictor, inputs: list, batch_size: int, progress: bool) -> list[dict]:
    from tqdm.auto import tqdm

    out: list[dict] = []
    with tqdm(
        total=len(inputs), unit="row", desc="predict", disable=not progress, file=sys.stderr, mininterval=1
    ) as bar:
        for i in range(0, len(inputs), CHUNK):
            part = inputs[i : i + CHUNK]
            out += predictor.predict(part, batch_size=batch_size)
            bar.update(len(part))
    return out


def read_inputs(path: Path):
    """A .csv/.tsv/.jsonl/.json file -> DataFrame of strings; ValueError naming the file for a missing,
    empty, undecodable or malformed one."""
    import pandas as pd

    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty")
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".ndjson", ".json"):
            table = _read_jsonl(path)
        elif suffix in (".csv", ".tsv", ".txt"):
            table = pd.read_csv(
                path, sep="\t" if suffix == ".tsv" else ",", dtype=str, keep_default_na=False, encoding="utf-8"
            )
        else:
            raise ValueError(f"{path}: unknown format {suffix!r} (use .csv, .tsv or .jsonl)")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text (undecodable byte at offset {e.start}); save it as UTF-8") from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path} is empty") from None
    except pd.errors.ParserError as e:
        raise ValueError(f"{path}: not valid CSV ({str(e).strip()})") from None
    if len(table) == 0:
        raise ValueError(f"{path} has no rows{' (only a header)' if len(table.columns) else ''}")
    return table


def _read_jsonl(path: Path):
    import pandas as pd

    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        rows = json.loads(text)
    else:
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path} line {n}: not JSON ({e.msg})") from None
    bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
    if bad is not None:
        raise ValueError(f'{path}: record {bad + 1} is not a JSON object (expected {{"text": ...}} per line)')
    return pd.DataFrame(rows).astype(str) if rows else pd.DataFrame()


def input_columns(table, column: str | None, pair: bool, path: Path) -> list:
    """The input texts (or pairs) of `table`, from --column or the usual names; ValueError naming what is missing."""
    from polarkit import predictors

    cols = list(table.columns)
    if pair:
        want = (
            tuple(column.split(","))
            if column
            else next((p for p in predictors.PAIR_COLUMNS if set(p) <= set(cols)), ("sentence1", "sentence2"))
        )
        missing = [c for c in want if c not in cols]
        if len(want) != 2 or missing:
            raise ValueError(
                f"{path} has no column(s) {missing or list(want)} for the sentence pairs "
                f"(columns: {cols}); "
                "name them with --column A,B"
            )
        return list(zip(table[want[0]], table[want[1]]))
    want = column or ("text" if "text" in cols or len(cols) != 1 else cols[0])
    if want not in cols:
        raise ValueError(f"{path} has no column {want!r} (columns: {cols}); name the text column with --column")
    return table[want].tolist()


def flatten(row: dict) -> dict[str, Any]:
    """One prediction dict -> flat CSV columns: probs -> p_<label>, labels/keywords -> "a; b", pairs -> "k:pol; ..."."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if k == "probs" and isinstance(v, dict):
            out |= {f"p_{lab}": p for lab, p in v.items()}
        elif isinstance(v, dict):
            out[k] = "; ".join(v)
        elif k == "pairs":
            out[k] = "; ".join(f"{a}:{b}" for a, b in v)
        elif isinstance(v, (list, tuple)):
            out[k] = json.dumps(v)
        else:
            out[k] = v
    return out


def write_outputs(table, rows: list[dict], output: Path | None) -> None:
    """Inputs + predictions to `output` (.jsonl keeps nested values; .csv flattens them) or CSV on stdout."""
    import pandas as pd

    if output is not None and output.suffix.lower() in (".jsonl", ".ndjson"):
        with open(output, "w", encoding="utf-8") as f:
            for rec, row in zip(table.to_dict(orient="records"), rows):
                f.write(json.dumps({**rec, **row}, ensure_ascii=False, default=float) + "\n")
    else:
        pred = pd.DataFrame([flatten(r) for r in rows], index=table.index)
        both = pd.concat([table, pred.rename(columns=lambda c: f"pred_{c}" if c in table.columns else c)], axis=1)
        both.to_csv(output if output is not None else sys.stdout, index=False)
    if output is not None:
        print(f"wrote {len(rows):,} predictions to {output}", file=sys.stderr)


# ---- registry, tracking ----


def cmd_promote(args) -> int:
    from polarkit import registry

    print(registry.promote(args.task, version=args.version, run=args.run, force=args.force)["message"])
    return 0


def cmd_models_registry(args) -> int:
    from polarkit import registry, tracking

    table = registry.list_models()
    print(f"registry: {tracking.redact(tracking.tracking_uri())}")
    if table.empty:
        print("no registered models yet (run 03/06/07 with register=True, then `polarkit promote TASK`)")
        return 0
    shown = table.assign(
        created=table.created.dt.strftime("%Y-%m-%d %H:%M"),
        value=table.value.map(lambda v: "n/a" if v != v or v is None else f"{v:.4g}"),
    ).drop(columns=["run_dir", "mlflow_run_id"])
    print(shown.to_string(index=False))
    return 0


def cmd_track(args) -> int:
    from polarkit import tracking

    if not tracking.enabled():
        raise ValueError("tracking is off (POLARKIT_TRACKING); unset it to mirror runs")
    if args.backfill and not args.runs:
        done = tracking.backfill()
        ok = sum(1 for _, rid in done if rid)
        print(f"mirrored {ok} of {len(done)} run folders not yet in {tracking.redact(tracking.tracking_uri())}")
        return 0 if ok == len(done) else 1
    if not args.runs:
        raise ValueError("name run folders, or --backfill for every run not yet mirrored")
    failed = 0
    for run_dir in args.runs:
        run_id = tracking.mirror(run_dir)
        failed += run_id is None
        print(f"{run_dir} -> {run_id or 'not mirrored'}")
    return 1 if failed else 0


def cmd_mlflow_ui(args) -> int:
    from polarkit import tracking

    if os.environ.get("MLFLOW_TRACKING_URI"):
        print(
            f"note: MLFLOW_TRACKING_URI={tracking.redact(os.environ['MLFLOW_TRACKING_URI'])} is set: "
            "runs go to that server; this opens the local store",
            file=sys.stderr,
        )
    cmd = tracking.mlflow_ui(port=args.port)
    print(" ".join(cmd), flush=True)
    if args.print:
        return 0
    os.execv(cmd[0], cmd) if Path(cmd[0]).is_file() else os.execvp(cmd[0], cmd)
    return 0
