"""int8 (`polarkit.load(..., quantize=True)`) against fp32 on each task's validation set; prints, never pass/fail.

For each run folder holding a saved predictor (03 cola, 06 sts, 07 sentiment / keywords / keyword_sentiment),
the validation frame the run itself chose its checkpoint on is rebuilt from the run's params.yaml (never a
test or dev split: this is what decides whether int8 could be a default), then the fp32 and the int8
predictor each score it:

    metric     the task's validation metric (cola MCC, sts Pearson, sentiment accuracy, keywords and
               keyword_sentiment's keyword stage micro-F1), fp32 and int8, and their difference with a
               paired-bootstrap 95% interval (1,000 resamples of the same examples): "within noise"
               when the interval holds 0
    agreement  share of examples with the same label (set) / mean |score difference| for sts
    speed      examples per second of `predict` on the whole frame, best of `--rounds`, fp32 and int8
               interleaved in one process (the ratio survives a shared machine better than the figures)

    python benchmarks/int8_tasks.py outputs/03_nlp_cola/<run> outputs/06_sts/<run> ... [--rounds 2] [--threads 2]
    python benchmarks/int8_tasks.py --latest      # the newest succeeded run of each task that saved a model
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from polarkit import data, predictors, runs, score


def validation_frame(run_dir: Path) -> tuple[str, pd.DataFrame, list[str] | None]:
    """(task, the run's validation frame, label names or None) rebuilt from params.yaml."""
    p = yaml.safe_load((run_dir / "params.yaml").read_text(encoding="utf-8"))
    stem = run_dir.parent.name
    if stem == "03_nlp_cola":
        pool = data.load_cola("train", n=p["n_train"] or None, seed=p["seed"])
        return "cola", data.train_val_split(pool, p["holdout_frac"], p["seed"])[1], None
    if stem == "06_sts":
        from polarkit.tasks import sts

        splits, _ = sts.load_splits(p["clean_text"], p["dedup"], p["val_frac"], p["korsts"], None, None, 5, p["seed"])
        return "sts", splits["val"], None
    if stem == "07_review_classifier":
        from polarkit.tasks import reviews

        task = reviews.load_task(
            p["task"],
            p["dataset"],
            n_train=p["n_train"] or None,
            n_test=5,
            n_pool=p["n_pool"],
            val_frac=p["val_frac"],
            seed=p["seed"],
        )
        stage = task.stages["keywords"] if p["task"] == "keyword_sentiment" else task.main  # its registry metric
        return p["task"], stage.val, stage.labels
    raise ValueError(f"{run_dir}: not a run of 03_nlp_cola, 06_sts or 07_review_classifier")


def inputs_of(task: str, frame: pd.DataFrame):
    if task == "sts":
        return list(zip(frame.sentence1, frame.sentence2))
    if "keyword" in frame.columns and task != "keyword_sentiment":
        return list(zip(frame.text, frame.keyword))
    return frame.text.tolist()


def task_metric(task: str, frame: pd.DataFrame, labels: list[str] | None):
    """(metric name, as_array(outputs) -> array, value(array, idx) -> the metric on those examples (polarkit.score),
    agreement(array_a, array_b), agreement name) for this task; outputs are turned into arrays once."""
    if task == "sts":
        gold = frame.score.to_numpy(float)
        return (
            "pearson",
            lambda out: np.array([o["score"] for o in out]),
            lambda x, idx: score.similarity(gold[idx], x[idx])["pearson"],
            lambda x, y: float(np.mean(np.abs(x - y))),
            "mean |Δscore|",
        )
    if task in ("keywords", "keyword_sentiment"):
        gold, key = np.stack(frame.label.to_numpy()).astype(int), "labels" if task == "keywords" else "keywords"
        return (
            "micro_f1",
            lambda out: np.array([[int(name in o[key]) for name in labels] for o in out]),
            lambda x, idx: score.multilabel(gold[idx], x[idx])["micro_f1"],
            lambda x, y: float(np.mean((x == y).all(axis=1))),
            "same label set",
        )
    gold, names = frame.label.to_numpy(int), labels or ["unacceptable", "acceptable"]
    name = "mcc" if task == "cola" else "accuracy"
    return (
        name,
        lambda out: np.array([names.index(o["label"]) for o in out]),
        lambda x, idx: score.classification(gold[idx], x[idx])[name],
        lambda x, y: float(np.mean(x == y)),
        "same label",
    )


def measure(run_dir: Path, rounds: int) -> dict:
    task, frame, labels = validation_frame(run_dir)
    xs = inputs_of(task, frame)
    preds = {q: predictors.load(run_dir, quantize=q) for q in (False, True)}
    seconds, outs = {False: [], True: []}, {}
    for _ in range(rounds):
        for q, p in preds.items():
            t0 = time.perf_counter()
            outs[q] = p.predict(xs)
            seconds[q].append(time.perf_counter() - t0)
    name, as_array, value, agree, agree_name = task_metric(task, frame, labels)
    fp32, int8 = as_array(outs[False]), as_array(outs[True])
    n, every = len(xs), np.arange(len(xs))
    lo, hi = score.paired_bootstrap(lambda idx: value(int8, idx) - value(fp32, idx), n, resamples=1000)
    v32, v8 = value(fp32, every), value(int8, every)
    return {
        "task": task,
        "examples": n,
        "metric": name,
        "fp32": round(v32, 4),
        "int8": round(v8, 4),
        "int8 - fp32": round(v8 - v32, 4),
        "95% interval": f"[{lo:+.4f}, {hi:+.4f}]",
        "within noise": lo <= 0 <= hi,
        agree_name: round(agree(fp32, int8), 4),
        "fp32 ex/s": round(n / min(seconds[False]), 1),
        "int8 ex/s": round(n / min(seconds[True]), 1),
        "speed-up": round(min(seconds[False]) / min(seconds[True]), 2),
    }


def latest_runs() -> list[Path]:
    found = {}
    for stem in ("03_nlp_cola", "06_sts", "07_review_classifier"):
        for d in sorted((runs.outputs_dir() / stem).glob("*/"), reverse=True):
            st = runs.read_json(d / "status.json") if (d / "status.json").exists() else {}
            if st.get("state") != "succeeded" or not list(d.glob(f"models/*/{predictors.CARD}")):
                continue
            task = yaml.safe_load((d / "params.yaml").read_text(encoding="utf-8")).get("task", stem)
            found.setdefault((stem, task), d)
    return list(found.values())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", type=Path, help="run folders holding a saved predictor")
    ap.add_argument("--latest", action="store_true", help="the newest succeeded run of each task with a model")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    folders = list(args.runs) + (latest_runs() if args.latest else [])
    if not folders:
        ap.error("name run folders, or --latest")
    rows = []
    for d in folders:
        print(f"[int8] {d} ...", flush=True)
        rows.append(measure(d, args.rounds) | {"run": d.name})
    print(f"\nint8 vs fp32 on validation sets, {torch.get_num_threads()} threads, best of {args.rounds} rounds")
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
