"""`polarkit` command line: run, run-all, check, compare, models, data, kernel."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from polarkit import runs

NOTEBOOKS = runs.ROOT / "notebooks"
PARAMS = runs.ROOT / "params"


def _default_data() -> None:
    """Point POLARKIT_DATA at ../shared/data when unset and that folder exists (offline default)."""
    shared = runs.ROOT.parent / "shared" / "data"
    if not os.environ.get("POLARKIT_DATA") and shared.is_dir():
        os.environ["POLARKIT_DATA"] = str(shared)
    os.environ.setdefault("HF_HUB_OFFLINE", "1" if os.environ.get("POLARKIT_DATA") else "0")


def _jobs(targets: list[str], profile: str | None) -> list[tuple[Path, Path | None]]:
    """(notebook, yaml) pairs from YAML paths, or notebooks (+ --profile), or notebook stems."""
    from polarkit.params import ParamError, notebook_for
    jobs = []
    for t in targets:
        p = Path(t)
        if p.suffix in (".yaml", ".yml"):
            jobs.append((notebook_for(p), p))
            continue
        nb = p if p.suffix == ".ipynb" else NOTEBOOKS / f"{p.stem}.ipynb"
        if not nb.is_file():
            matches = sorted(NOTEBOOKS.glob(f"{t}*.ipynb"))
            if len(matches) != 1:
                raise ParamError(f"{t}: no such notebook (have: {', '.join(n.stem for n in sorted(NOTEBOOKS.glob('*.ipynb')))})")
            nb = matches[0]
        y = PARAMS / profile / f"{nb.stem}.yaml" if profile else None
        if y is not None and not y.is_file():
            raise ParamError(f"{y}: no {profile!r} parameter file for {nb.stem}")
        jobs.append((nb.resolve(), y))
    return jobs


def _check_all(jobs, overrides: dict | None = None) -> dict:
    """Check every YAML (+ -p overrides) before any kernel starts; returns {yaml: values}."""
    from polarkit.params import check, declared, load_yaml
    overrides = overrides or {}
    return {y: check({**(load_yaml(y) if y else {}), **overrides}, declared(nb),
                     source=f"{y or nb}{' with -p ' + ', '.join(overrides) if overrides else ''}")
            for nb, y in jobs}


def cmd_run(args) -> int:
    from polarkit import executor, report
    from polarkit.params import parse_overrides
    jobs = _jobs(args.targets, args.profile)
    values = _check_all(jobs, parse_overrides(args.param))
    failed = 0
    for i, (nb, y) in enumerate(jobs, 1):
        profile = args.profile or (y.parent.name if y else None)
        print(f"[{i}/{len(jobs)}] {nb.stem} ({profile or 'defaults'}) ...", flush=True)
        t0 = time.monotonic()
        run_dir = executor.execute(nb, values[y], profile=profile, log_output=args.log_output)
        st = runs.read_json(run_dir / "status.json")
        failed += st.get("state") != "succeeded"
        msg = "" if st.get("state") == "succeeded" else f" — cell {st.get('cell')}: {st.get('error')}: {st.get('message')}"
        print(f"[{i}/{len(jobs)}] {nb.stem}: {st.get('state')} in {time.monotonic() - t0:.0f}s → {run_dir}{msg}",
              flush=True)
    index = report.write_index()
    names = sorted({nb.stem for nb, _ in jobs})
    board = report.load_runs().query("notebook in @names").groupby("notebook").tail(1)
    cols = [c for c in ("notebook", "status", "duration_s") if c in board] + _key_metrics(board)
    print("\n" + board[cols].to_string(index=False))
    print(f"\nrun folders: {runs.outputs_dir()}\nindex: {index}")
    return 1 if failed else 0


def _key_metrics(board) -> list[str]:
    return [c for c in board.columns if c.startswith(("test_", "dev_", "val_")) and board[c].notna().any()][:8]


def cmd_run_all(args) -> int:
    nbs = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    have = [str(nb) for nb in nbs if (PARAMS / args.profile / f"{nb.stem}.yaml").is_file()]
    for nb in nbs:
        if str(nb) not in have:
            print(f"skipping {nb.stem}: no params/{args.profile}/{nb.stem}.yaml", file=sys.stderr)
    args.targets, args.param = have, []
    return cmd_run(args)


def cmd_check(args) -> int:
    files = [Path(t) for t in args.targets] or sorted(PARAMS.glob("*/*.yaml"))
    for y in files:
        from polarkit.params import check_file
        check_file(y)
        print(f"ok  {y}")
    return 0


def cmd_compare(args) -> int:
    from polarkit import report
    board = report.leaderboard(Path(args.outputs) if args.outputs else None, args.notebook, args.metric,
                               ascending=args.ascending)
    if board.empty:
        print("no runs found")
        return 0
    print(board.drop(columns=["start"], errors="ignore").to_string(index=False))
    return 0


def cmd_models(args) -> int:
    from polarkit import models
    for spec, desc in models.SPECS.items():
        print(f"{spec:14s} {desc}")
    print("scratch:<tiny|small|base>  randomly initialised BERT; any hub id or local directory also works")
    for spec in args.prepare:
        t0 = time.monotonic()
        print(f"prepared {spec}: {models.prepare(spec)} ({time.monotonic() - t0:.1f}s)")
    return 0


def cmd_data(args) -> int:
    from polarkit import data
    table = data.check(args.names or None)
    print(f"POLARKIT_DATA={os.environ.get('POLARKIT_DATA')}")
    print(table.to_string(index=False))
    return 0 if bool(table["present"].all()) else 1


def cmd_kernel(args) -> int:
    from polarkit import executor
    print(f"kernel {executor.ensure_kernel()!r} -> {sys.executable}")
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="polarkit", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run notebooks: YAML files, or notebooks/stems with --profile")
    r.add_argument("targets", nargs="+")
    r.add_argument("--profile", choices=("smoke", "quick", "full"))
    r.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="override one parameter (value read as YAML: -p lr=1e-4 -p 'channels=[16, 32]'); "
                        "checked like the YAML")
    r.add_argument("--log-output", action="store_true", help="stream cell output to the terminal")
    r.set_defaults(fn=cmd_run)
    a = sub.add_parser("run-all", help="run every notebook that has a YAML for --profile")
    a.add_argument("--profile", default="quick", choices=("smoke", "quick", "full"))
    a.add_argument("--log-output", action="store_true")
    a.set_defaults(fn=cmd_run_all)
    c = sub.add_parser("check", help="check parameter YAMLs against their notebooks (default: all)")
    c.add_argument("targets", nargs="*")
    c.set_defaults(fn=cmd_check)
    m = sub.add_parser("compare", help="leaderboard of run folders")
    m.add_argument("notebook", nargs="?", default="*", help="notebook stem or glob (default: all)")
    m.add_argument("--metric", help="sort by this metric")
    m.add_argument("--ascending", action="store_true", help="lower is better (losses)")
    m.add_argument("--outputs", help="outputs folder (default: the repo's outputs/)")
    m.set_defaults(fn=cmd_compare)
    s = sub.add_parser("models", help="list model specs; --prepare converts offline ones")
    s.add_argument("--prepare", nargs="*", default=[], metavar="SPEC")
    s.set_defaults(fn=cmd_models)
    d = sub.add_parser("data", help="check the data files each notebook needs")
    d.add_argument("names", nargs="*")
    d.set_defaults(fn=cmd_data)
    k = sub.add_parser("kernel", help="register the Jupyter kernel for this environment")
    k.set_defaults(fn=cmd_kernel)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _default_data()
    from polarkit.params import ParamError
    try:
        return args.fn(args)
    except (ParamError, ValueError, FileNotFoundError) as e:
        print(f"polarkit {args.cmd}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
