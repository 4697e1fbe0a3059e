"""Re-run the bad rows of issue 12's fault matrix against the real CLI and print one line per row.

Each row is a command a user could type (or a file they could have) and what a good kit does with
it: the exit status and a fragment of the message that names the cause. Runs in a scratch folder;
takes a couple of minutes (a few rows start real kernels at smoke size). Never pass/fail in CI:
the same faults are unit-tested in tests/test_faults.py, test_params.py, test_data.py, ...

    .venv/bin/python benchmarks/fault_matrix.py
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PK = [sys.executable, "-m", "polarkit.cli"]
SMOKE01 = ROOT / "params" / "smoke" / "01_mnist_cnn.yaml"


def main() -> int:
    scratch = Path(tempfile.mkdtemp(prefix="polarkit-faults-"))
    out = scratch / "outputs"
    env = {**os.environ, "POLARKIT_OUTPUTS": str(out), "HF_HUB_OFFLINE": "1"}
    env.setdefault("POLARKIT_DATA", str(ROOT.parent / "shared" / "data"))

    def yaml_file(name: str, text: str | bytes) -> Path:
        p = scratch / name
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        return p

    base = SMOKE01.read_text()
    rows = [
        ("lr=1e12 (diverges)", [*PK, "run", str(SMOKE01), "-p", "lr=1e12"], {}, 1, "TrainingDiverged"),
        (
            "batch_size: 010 is ten",
            [
                sys.executable,
                "-c",
                "from polarkit import params; "
                f"print(params.load_yaml({str(yaml_file('octal.yaml', 'batch_size: 010'))!r}))",
            ],
            {},
            0,
            "{'batch_size': 10}",
        ),
        (
            "n_train: 0512 is 512",
            [
                sys.executable,
                "-c",
                "from polarkit import params; "
                f"print(params.load_yaml({str(yaml_file('octal2.yaml', 'n_train: 0512'))!r}))",
            ],
            {},
            0,
            "{'n_train': 512}",
        ),
        (
            "max_length-like 1:04 stays text",
            [*PK, "run", "01_mnist_cnn", "-f", str(yaml_file("sexagesimal.yaml", "hidden: 1:04\n"))],
            {},
            2,
            "hidden: expected int",
        ),
        (
            "duplicate key",
            [*PK, "run", "01_mnist_cnn", "-f", str(yaml_file("dup.yaml", base + "hidden: 8\nhidden: 9\n"))],
            {},
            2,
            "duplicate key 'hidden'",
        ),
        (
            "empty YAML",
            [*PK, "run", "01_mnist_cnn", "-f", str(yaml_file("empty.yaml", "# nothing\n"))],
            {},
            2,
            "empty parameter file",
        ),
        (
            "non-UTF-8 YAML",
            [*PK, "run", "01_mnist_cnn", "-f", str(yaml_file("latin.yaml", b"name: caf\xe9\n"))],
            {},
            2,
            "not UTF-8",
        ),
        ("batch_size=0", [*PK, "run", str(SMOKE01), "-p", "batch_size=0"], {}, 2, "batch_size: 0 is not in [1, inf)"),
        ("epochs=-1", [*PK, "run", str(SMOKE01), "-p", "epochs=-1"], {}, 2, "epochs: -1"),
        ("channels=[8, x]", [*PK, "run", str(SMOKE01), "-p", "channels=[8, x]"], {}, 2, "channels"),
        ("unknown -p name", [*PK, "run", str(SMOKE01), "-p", "lrr=1"], {}, 2, "did you mean 'lr'"),
        ("ambiguous stem", [*PK, "run", "0", "--profile", "smoke"], {}, 2, "ambiguous"),
        ("missing YAML", [*PK, "run", "01_mnist_cnn", "-f", str(scratch / "nope.yaml")], {}, 2, "missing YAML"),
        ("unknown profile", [*PK, "run", "01_mnist_cnn", "--profile", "smok"], {}, 2, "smoke"),
        ("variant profile", [*PK, "check", str(ROOT / "params" / "full-bi" / "06_sts.yaml")], {}, 0, "ok"),
        (
            "file-valued POLARKIT_OUTPUTS",
            [*PK, "run", str(SMOKE01)],
            {"POLARKIT_OUTPUTS": str(yaml_file("a_file", "x"))},
            2,
            "not a folder",
        ),
        ("POLARKIT_DATA=../x", [*PK, "data"], {"POLARKIT_DATA": "../no-such-data"}, 1, "no-such-data"),
        (
            "relative POLARKIT_OUTPUTS",
            [*PK, "run", str(ROOT / "params" / "smoke" / "08_compare_runs.yaml")],
            {"POLARKIT_OUTPUTS": "rel_out"},
            0,
            "succeeded",
        ),
        (
            "compare --metric typo",
            [*PK, "compare", "--metric", "test_acuracy", "--outputs", str(out)],
            {},
            2,
            "test_acuracy",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    good = 0
    for name, cmd, extra, want_code, want_text in [] if "--only-concurrent" in sys.argv else rows:
        t0 = time.monotonic()
        done = subprocess.run(cmd, cwd=scratch, env={**env, **extra}, capture_output=True, text=True, timeout=900)
        said = done.stdout + done.stderr
        ok = done.returncode == want_code and want_text in said
        good += ok
        first = next(
            (line for line in done.stderr.splitlines() if line.strip()), said.strip().splitlines()[-1:] or [""]
        )
        print(
            f"{'ok ' if ok else 'BAD'} {name:<{width}}  exit {done.returncode} (want {want_code}) "
            f"{time.monotonic() - t0:5.1f}s  {str(first)[:110]}",
            flush=True,
        )
    good += _concurrent(env, scratch, width)
    if "--only-concurrent" in sys.argv:
        return 0
    good += _interrupt(env, scratch, width)
    print(f"\n{good}/{len(rows) + 2} rows handled well; scratch folder {scratch}")
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


def _concurrent(env: dict, scratch: Path, width: int) -> bool:
    """4 smoke runs of one notebook started together: all succeed, each table shows its own run."""
    t0 = time.monotonic()
    yml = ROOT / "params" / "smoke" / "01_mnist_cnn.yaml"
    procs = [
        subprocess.Popen(
            [*PK, "run", str(yml), "-p", f"seed={i}"],
            cwd=scratch,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    dirs = [line.rsplit("→ ", 1)[1].strip() for o in outs for line in o.splitlines() if "→ " in line]
    own = all(Path(d).name in o and sum(Path(x).name in o for x in dirs) == 1 for d, o in zip(dirs, outs))
    ok = [p.returncode for p in procs] == [0] * 4 and len(dirs) == 4 and own
    for o in outs if not ok else []:
        print("   ", " | ".join(line for line in o.splitlines() if "01_mnist_cnn:" in line)[:300])
    print(
        f"{'ok ' if ok else 'BAD'} {'4 runs at once':<{width}}  exits {[p.returncode for p in procs]} "
        f"{time.monotonic() - t0:5.1f}s  each closing table shows only its own run: {own}",
        flush=True,
    )
    return ok


def _interrupt(env: dict, scratch: Path, width: int) -> bool:
    """SIGTERM in the middle of training: status interrupted, exit 143, one line on stderr."""
    t0 = time.monotonic()
    out = Path(env["POLARKIT_OUTPUTS"]) / "01_mnist_cnn"
    before = set(out.glob("*")) if out.exists() else set()
    p = subprocess.Popen(
        [*PK, "run", str(ROOT / "params" / "quick" / "01_mnist_cnn.yaml")],
        cwd=scratch,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run = None
    for _ in range(600):
        new = set(out.glob("*")) - before
        if new and json.loads((run := new.pop()).joinpath("status.json").read_text() or "{}").get("heartbeat"):
            break
        time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=300)
    st = json.loads((run / "status.json").read_text()) if run else {}
    last = err.strip().splitlines()[-1:] or [""]
    ok = (
        p.returncode == 143
        and st.get("state") == "interrupted"
        and "Traceback" not in err
        and last[0].startswith("polarkit run: interrupted by SIGTERM")
    )
    print(
        f"{'ok ' if ok else 'BAD'} {'SIGTERM while training':<{width}}  exit {p.returncode} (want 143) "
        f"{time.monotonic() - t0:5.1f}s  status {st.get('state')}; last line: {last[0][:90]}",
        flush=True,
    )
    return ok


if __name__ == "__main__":
    sys.exit(main())
