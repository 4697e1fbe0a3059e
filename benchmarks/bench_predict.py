"""`polarkit predict` throughput, fp32 vs int8 (`--quantize`), on NSMC test reviews; prints figures, never pass/fail.

Two measurements per mode, fp32 and int8 in turn in one process (the ratio is the figure to trust on a
shared machine):
  in process  `polarkit.load(spec, quantize=...)` then the CLI's own predict loop (chunks, progress off),
              best of `--rounds`, interleaved fp32 / int8; plus the load time
  CLI         `polarkit predict SPEC --input reviews.csv --output out.csv [--quantize]` as a subprocess:
              wall time including Python start, model load and writing the CSV (once per mode; --no-cli skips)
and, for int8, how far its answers are from fp32's: label agreement, max |Δ probability|, and the accuracy
of each against NSMC's labels when the model is a 2-label sentiment model (the default one is untrained:
its accuracy means nothing, its speed is the trained model's: same architecture and lengths).

    python benchmarks/bench_predict.py                               # an untrained e5-small-ko sentiment head
    python benchmarks/bench_predict.py --spec sentiment@champion     # or a run folder / model folder
    python benchmarks/bench_predict.py --n 5000 --batch-size 64 --rounds 2 --threads 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from polarkit import data, predictors
from polarkit.cli_models import _predict


def untrained_sentiment(folder: Path, model: str) -> Path:
    """An e5-small-ko (or `model`) sentiment classifier with a fresh head, saved with its model card."""
    from polarkit import models
    from polarkit.tasks import classifier, predict

    enc = models.load_model(model, head="encoder")
    clf = classifier.EncoderClassifier(enc, 2, pooling="mean")
    tok = models.load_tokenizer(model)
    return predict.save_classifier_model(
        folder / "sentiment", clf, tok, ["negative", "positive"], "sentiment", max_length=64, prefix="query: "
    )


def cli_seconds(spec: str, csv: Path, out: Path, batch_size: int, quantize: bool, threads: int) -> float:
    cmd = [sys.executable, "-m", "polarkit.cli", "predict", spec, "--input", str(csv), "--output", str(out)]
    cmd += ["--batch-size", str(batch_size)] + (["--quantize"] if quantize else [])
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default="", help="model to serve (default: an untrained e5-small-ko sentiment head)")
    ap.add_argument("--model", default="e5-small-ko", help="encoder of the default untrained model")
    ap.add_argument("--n", type=int, default=5000, help="NSMC test reviews")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2, help="in-process passes per mode (best kept)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: every core)")
    ap.add_argument("--no-cli", action="store_true", help="skip the CLI subprocess timing")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        tmp = Path(tmp)
        spec = args.spec or str(untrained_sentiment(tmp, args.model))
        card = predictors.read_card(predictors.resolve(spec))
        df = data.load_nsmc("test", n=args.n, seed=args.seed)
        texts, y = df["text"].tolist(), df["label"].to_numpy()

        loaded, load_s = {}, {}
        for mode, q in (("fp32", False), ("int8", True)):
            t0 = time.perf_counter()
            loaded[mode] = predictors.load(spec, quantize=q)
            load_s[mode] = time.perf_counter() - t0
            _predict(loaded[mode], texts[:64], args.batch_size, progress=False)  # warm-up
        best, rows = {"fp32": 0.0, "int8": 0.0}, {}
        per_round = []
        for _ in range(args.rounds):
            speeds = {}
            for mode, p in loaded.items():
                t0 = time.perf_counter()
                rows[mode] = _predict(p, texts, args.batch_size, progress=False)
                speeds[mode] = len(texts) / (time.perf_counter() - t0)
                best[mode] = max(best[mode], speeds[mode])
            per_round.append(speeds["int8"] / speeds["fp32"])

        cli = {}
        if not args.no_cli:
            csv = tmp / "reviews.csv"
            df[["id", "text"]].to_csv(csv, index=False)
            for mode, q in (("fp32", False), ("int8", True)):
                cli[mode] = cli_seconds(spec, csv, tmp / f"out-{mode}.csv", args.batch_size, q, threads)
            written = pd.read_csv(tmp / "out-int8.csv")
            assert len(written) == len(texts), "the CLI wrote a different number of rows"

    shown = spec if args.spec else f"(untrained {args.model} head)"
    print(f"\npolarkit predict, {card['task']} ({card['kind']}) model {shown}")
    print(
        f"{len(texts)} NSMC test reviews, batch {args.batch_size}, {threads} threads, best of {args.rounds} "
        f"interleaved rounds; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    print(f"{'mode':6s} {'load s':>7s} {'reviews/s':>10s} {'x fp32':>7s} {'CLI wall s':>11s} {'CLI reviews/s':>14s}")
    for mode in ("fp32", "int8"):
        c = cli.get(mode)
        print(
            f"{mode:6s} {load_s[mode]:7.1f} {best[mode]:10.1f} {best[mode] / best['fp32']:6.2f}x "
            f"{c if c else float('nan'):11.1f} {len(texts) / c if c else float('nan'):14.1f}"
        )
    print(f"int8 / fp32 per round: {' '.join(f'{r:.2f}' for r in per_round)}")
    if card["kind"] == "classification":
        labels = list(rows["fp32"][0]["probs"])
        pf = np.array([[r["probs"][k] for k in labels] for r in rows["fp32"]])
        pq = np.array([[r["probs"][k] for k in labels] for r in rows["int8"]])
        agree = (pf.argmax(1) == pq.argmax(1)).mean()
        print(f"int8 vs fp32: label agreement {agree:.4f}, max |Δ probability| {np.abs(pf - pq).max():.4f}")
        if args.spec and len(labels) == 2:
            acc = {m: (p.argmax(1) == y).mean() for m, p in (("fp32", pf), ("int8", pq))}
            print(
                f"accuracy on the NSMC labels: fp32 {acc['fp32']:.4f}, int8 {acc['int8']:.4f} "
                f"(Δ {acc['int8'] - acc['fp32']:+.4f}; label order {labels} taken as negative, positive)"
            )


if __name__ == "__main__":
    main()
