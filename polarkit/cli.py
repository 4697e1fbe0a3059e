"""`polarkit` command line: run notebooks, check parameters, compare runs, sweep, track, register, promote, predict."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from polarkit import runs

NOTEBOOKS = runs.ROOT / "notebooks"
PARAMS = runs.ROOT / "params"
SWEEPS = "sweeps"  # params/sweeps/ holds sweep files, not a profile


def _default_data() -> None:
    """Point POLARKIT_DATA at ../shared/data when unset and that folder exists (offline default)."""
    from polarkit import environment

    environment.default_to_shared_data()


def _jobs(targets: list, profile: str | None) -> list[tuple[Path, Path | None]]:
    """(notebook, yaml) pairs from YAML paths, or notebooks/stems (+ --profile), or (notebook, yaml)
    tuples (`run NOTEBOOK -f YAML`; --profile is then only the label recorded)."""
    from polarkit.params import ParamError, notebook_for

    jobs = []
    for t in targets:
        if isinstance(t, tuple):
            nb, y = _notebook(t[0]), Path(t[1])
        elif Path(t).suffix in (".yaml", ".yml"):
            y = Path(t)
            nb = notebook_for(y) if y.is_file() else None
        else:
            nb = _notebook(t)
            y = PARAMS / profile / f"{nb.stem}.yaml" if profile else None
            if y is not None and not y.is_file():
                have = sorted(d.parent.name for d in PARAMS.glob(f"*/{nb.stem}.yaml") if d.parent.name != SWEEPS)
                raise ParamError(
                    f"{y}: missing: no {profile!r} parameter file for {nb.stem} "
                    f"(profiles that have one: {', '.join(have) or 'none'})"
                )
        if y is not None and not y.is_file():
            raise ParamError(f"{y}: no such parameter file (missing YAML)")
        jobs.append((nb.resolve(), y))
    return jobs


def _notebook(target: str) -> Path:
    """A notebook path, a stem, or an unambiguous stem prefix (`03`) -> the notebook's path."""
    from polarkit.params import ParamError

    p = Path(target)
    nb = p if p.suffix == ".ipynb" else NOTEBOOKS / f"{p.name}.ipynb"
    if nb.is_file():
        return nb
    have = sorted(NOTEBOOKS.glob("*.ipynb"))
    matches = [n for n in have if n.stem.startswith(p.name)] if p.suffix != ".ipynb" and p.name else []
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ParamError(f"{target}: ambiguous, matches {len(matches)} notebooks: {', '.join(n.stem for n in matches)}")
    raise ParamError(f"{target}: no such notebook (have: {', '.join(n.stem for n in have)})")


def _check_all(jobs, overrides: dict | None = None) -> dict:
    """Check every YAML (+ -p overrides) before any kernel starts; returns {yaml: values}."""
    from polarkit.params import check, declared, load_yaml

    overrides = overrides or {}
    return {
        y: check(
            {**(load_yaml(y) if y else {}), **overrides},
            declared(nb),
            source=f"{y or nb}{' with -p ' + ', '.join(overrides) if overrides else ''}",
        )
        for nb, y in jobs
    }


def cmd_run(args) -> int:
    from polarkit import executor
    from polarkit.params import parse_overrides

    jobs = _jobs(args.targets, args.profile)
    values = _check_all(jobs, parse_overrides(args.param))
    k = max(1, min(args.jobs, len(jobs)))
    threads = max(1, (os.cpu_count() or 1) // k)  # K notebooks at once share the cores
    env = {"OMP_NUM_THREADS": str(threads)} if k > 1 else {}
    done: list[Path] = []

    def one(i: int, nb: Path, y: Path | None) -> Path:
        profile = args.profile or (y.parent.name if y else None)
        print(f"[{i}/{len(jobs)}] {nb.stem} ({profile or 'defaults'}) ...", flush=True)
        t0 = time.monotonic()
        run_dir = executor.execute(nb, values[y], profile=profile, log_output=args.log_output and k == 1, env=env)
        st = runs.read_json(run_dir / "status.json")
        msg = (
            ""
            if st.get("state") == "succeeded"
            else f" — cell {st.get('cell')}: {st.get('error')}: {st.get('message')}"
        )
        print(
            f"[{i}/{len(jobs)}] {nb.stem}: {st.get('state')} in {time.monotonic() - t0:.0f}s → {run_dir}{msg}",
            flush=True,
        )
        done.append(run_dir)
        return run_dir

    if k > 1:
        print(f"running {len(jobs)} notebooks, {k} at a time, {threads} thread(s) each", flush=True)
    try:
        if k == 1:
            for i, (nb, y) in enumerate(jobs, 1):
                one(i, nb, y)
        else:
            _run_parallel(one, jobs, k)
    except executor.Interrupted as e:
        print(
            f"polarkit run: interrupted by {e.signame}; partial records: "
            f"{', '.join(str(d) for d in [*done, e.run_dir] if d)}",
            file=sys.stderr,
        )
        return e.code
    _closing_table(done)
    return 0 if all(runs.read_json(d / "status.json").get("state") == "succeeded" for d in done) else 1


def _run_parallel(one, jobs, k: int) -> None:
    """Run `one(i, nb, yaml)` for every job, `k` at a time; Ctrl-C/SIGTERM stops them all (recorded)."""
    from concurrent.futures import ThreadPoolExecutor, wait

    from polarkit import executor

    pool = ThreadPoolExecutor(max_workers=k, thread_name_prefix="polarkit-run")
    futures = [pool.submit(one, i, nb, y) for i, (nb, y) in enumerate(jobs, 1)]
    try:
        while not wait(futures, timeout=0.5).not_done == set():
            pass
    except KeyboardInterrupt as e:
        signame = "SIGTERM" if isinstance(e, executor.Terminated) else "SIGINT"
        for f in futures:
            f.cancel()
        executor.stop_all(signame)
        wait(futures)
        pool.shutdown()
        raise executor.Interrupted(signame, None) from None
    pool.shutdown()
    for f in futures:
        f.result()  # an unexpected error in a job (not a failed notebook) surfaces here


def _closing_table(run_dirs: list[Path]) -> None:
    """The runs of this invocation (never another process's), with each notebook's headline metrics."""
    from polarkit import report

    index = report.write_index()
    if run_dirs:
        print("\n" + report.closing_table(run_dirs).to_string(index=False))
    print(f"\nrun folders: {runs.outputs_dir()}\nindex: {index}")


def cmd_run_all(args) -> int:
    nbs = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    have = [str(nb) for nb in nbs if (PARAMS / args.profile / f"{nb.stem}.yaml").is_file()]
    for nb in nbs:
        if str(nb) not in have:
            print(f"skipping {nb.stem}: no params/{args.profile}/{nb.stem}.yaml", file=sys.stderr)
    args.targets, args.param = have, []
    return cmd_run(args)


def cmd_check(args) -> int:
    """Check every YAML (default: all under params/, sweep files included); report each bad one; 2 if any."""
    from polarkit import sweep
    from polarkit.params import check_file

    files = [Path(t) for t in args.targets] or sorted(PARAMS.glob("*/*.yaml"))
    bad = 0
    for y in files:
        try:
            sweep.load(y) if y.resolve().parent.name == SWEEPS else check_file(y)
        except (ValueError, OSError) as e:  # ParamError is a ValueError
            bad += 1
            print(f"FAIL {y}:\n  {str(e).removeprefix(f'{y}:').strip()}", file=sys.stderr, flush=True)
            continue
        print(f"ok  {y}", flush=True)
    if bad:
        print(f"polarkit check: {bad} of {len(files)} parameter file(s) failed", file=sys.stderr)
    return 2 if bad else 0


def cmd_compare(args) -> int:
    from polarkit import report

    board = report.leaderboard(
        Path(args.outputs) if args.outputs else None, args.notebook, args.metric, ascending=args.ascending or None
    )
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
    failed = 0
    for spec in args.prepare:  # each spec is prepared and verified; one failure does not hide the rest
        t0 = time.monotonic()
        try:
            print(f"prepared {spec}: {models.prepare(spec)} ({time.monotonic() - t0:.1f}s)", flush=True)
        except (ValueError, OSError) as e:
            failed += 1
            print(f"FAIL {spec}: {e}", file=sys.stderr, flush=True)
    return 2 if failed else 0


def cmd_data(args) -> int:
    from polarkit import data

    table = data.check(args.names or None)
    print(f"POLARKIT_DATA={os.environ.get('POLARKIT_DATA')}")
    status = table["problem"].map(lambda p: "ok" if not p else p if p in ("missing", "no data root") else "BROKEN")
    print(table.drop(columns="problem").assign(status=status).to_string(index=False))
    broken = table[(table["problem"] != "") & table["present"]]
    for _, row in broken.iterrows():
        print(f"BROKEN {data.data_root() / row['file']} ({row['dataset']}): {row['problem']}", file=sys.stderr)
    return 0 if (table["problem"] == "").all() else 1


def cmd_kernel(args) -> int:
    from polarkit import executor

    print(f"kernel {executor.ensure_kernel()!r} -> {sys.executable}")
    return 0


def cmd_new(args) -> int:
    """Scaffold notebooks/NN_name.ipynb + its YAMLs (or copy --from another notebook); 2 on a refusal."""
    from polarkit import scaffold

    for path in scaffold.new(args.name, runs.ROOT, source=args.source):
        print(f"created {path.relative_to(runs.ROOT)}")
    print(f"next: polarkit run {args.name} --profile smoke; then fill in the sections (CONTRIBUTING.md)")
    return 0


def _profile(name: str) -> str:
    """argparse type for --profile: a folder under params/ (smoke, quick, full, variants like full-bi)."""
    have = sorted(d.name for d in PARAMS.iterdir() if d.is_dir() and d.name != SWEEPS and any(d.glob("*.yaml")))
    if name not in have:
        raise argparse.ArgumentTypeError(
            f"no profile {name!r} (no folder params/{name}/ with YAMLs); profiles: {', '.join(have)}"
        )
    return name


def _run_with_file(args) -> int:
    """`run NOTEBOOK -f YAML`: pair one notebook with any YAML (recorded as its profile), then cmd_run."""
    from polarkit.params import ParamError

    if args.file:
        if len(args.targets) != 1 or args.profile or Path(args.targets[0]).suffix in (".yaml", ".yml"):
            extra = f" and --profile {args.profile}" if args.profile else ""
            raise ParamError(
                f"-f {args.file}: pairs one YAML with one notebook target, without --profile "
                f"(got targets {args.targets}{extra})"
            )
        y = Path(args.file)
        args.targets = [(args.targets[0], y)]
        under_params = y.resolve().parent.parent == PARAMS.resolve()
        args.profile = y.parent.name if under_params else str(y)
    return cmd_run(args)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="polarkit", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run notebooks: YAML files, or notebooks/stems with --profile")
    r.add_argument("targets", nargs="+", help="YAML files, or notebooks / stems / unambiguous stem prefixes")
    r.add_argument(
        "--profile",
        type=_profile,
        help="a folder under params/: smoke, quick, full or a variant "
        "such as full-bi; runs params/<profile>/<stem>.yaml",
    )
    r.add_argument(
        "-f",
        "--file",
        metavar="YAML",
        help="run the one notebook target with this parameter file (any path, as with papermill -f)",
    )
    r.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one parameter (value read as YAML: -p lr=1e-4 -p 'channels=[16, 32]'); checked like the YAML",
    )
    r.add_argument("--log-output", action="store_true", help="stream cell output to the terminal")
    r.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=1,
        metavar="K",
        help="run K notebooks at once, dividing the cores between them (default 1)",
    )
    r.set_defaults(fn=_run_with_file)
    a = sub.add_parser("run-all", help="run every notebook that has a YAML for --profile")
    a.add_argument("--profile", default="quick", type=_profile, help="a folder under params/ (default: quick)")
    a.add_argument("--log-output", action="store_true")
    a.add_argument("-j", "--jobs", type=int, default=1, metavar="K", help="run K notebooks at once")
    a.set_defaults(fn=cmd_run_all)
    c = sub.add_parser("check", help="check parameter YAMLs against their notebooks (default: all)")
    c.add_argument("targets", nargs="*")
    c.set_defaults(fn=cmd_check)
    m = sub.add_parser("compare", help="leaderboard of run folders")
    m.add_argument("notebook", nargs="?", default="*", help="notebook stem or glob (default: all)")
    m.add_argument("--metric", help="sort by this metric")
    m.add_argument(
        "--ascending",
        action="store_true",
        help="sort ascending (default: by the metric's direction: losses ascending, scores descending)",
    )
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
    w = sub.add_parser("new", help="create notebooks/NN_name.ipynb and its smoke/quick/full YAMLs")
    w.add_argument("name", help="NN_snake_case, e.g. 09_topic_model")
    w.add_argument("--from", dest="source", metavar="NN_OTHER", help="copy this notebook's cells and YAMLs")
    w.set_defaults(fn=cmd_new)
    from polarkit import cli_models, serve, sweep

    sweep.add_parser(sub)
    cli_models.add_parsers(sub)
    serve.add_parser(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _default_data()
    runs.absolute_env()  # relative folders mean the caller's folder, not the kernel's
    from polarkit import executor
    from polarkit.params import ParamError

    try:
        with executor.signals_as_exceptions():
            return args.fn(args)
    except (ParamError, ValueError, OSError) as e:
        print(f"polarkit {args.cmd}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # outside a run (e.g. while checking): nothing to record
        print(f"polarkit {args.cmd}: interrupted", file=sys.stderr)
        return 143 if isinstance(e, executor.Terminated) else 130


if __name__ == "__main__":
    sys.exit(main())
