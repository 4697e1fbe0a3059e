"""Load test of `polarkit serve` on loopback: latency and throughput for single short reviews.

Starts the real server (`python -m polarkit.serve`, 127.0.0.1, a free port) on a packaged encoder with a
freshly initialised 2-class head (the speed of a sentiment model does not depend on its head's training),
then keeps 1, 8 and 32 clients busy for `--duration` seconds each: every client sends one NSMC test
review per request (`{"inputs": [review]}`) and sends the next as soon as the answer arrives. Done with
dynamic batching on, then off (a server restarted with --no-batching). Prints, per setting, requests/s,
p50/p95/p99 latency, errors, the mean number of inputs per model call, the client's own CPU share and
the machine's load average and the server's CPU time per request (which a busy machine inflates much
less than latency), then the figures against the goal (p50 <= 50 ms at 1 client; at 32 clients
>= 3x the requests/s of 1 client). Never pass/fail.

    python benchmarks/bench_serve.py                          # e5-small-ko, 30 s per setting (~4 min)
    python benchmarks/bench_serve.py --duration 5 --clients 1 32 --modes on
    python benchmarks/bench_serve.py --model minilm-l6 --window-ms 2 --threads 2 --json serve.json

The client is asyncio + httpx (one connection per client) in this process; on a 2-core machine it takes
CPU from the server, so its CPU share is printed beside each setting. Needs the serve extra
(fastapi, uvicorn, httpx).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from serve_helpers import start_server, stop_server  # noqa: E402  (the tests' real-server start/stop)


def build_model(spec: str, folder: Path, max_length: int, seed: int = 0) -> Path:
    """A sentiment classifier folder: `spec`'s encoder + a fresh seeded head, saved as polarkit.load reads it."""
    import torch

    from polarkit import models
    from polarkit.tasks import classifier, predict

    torch.manual_seed(seed)
    tok = models.load_tokenizer(spec)
    clf = classifier.EncoderClassifier(models.load_model(spec, head="encoder"), 2)
    prefix = "query: " if spec.startswith("e5") else ""
    return predict.save_classifier_model(
        folder, clf, tok, ["negative", "positive"], "sentiment", max_length=max_length, prefix=prefix
    )


def reviews(n: int, max_chars: int, seed: int = 0) -> list[str]:
    """Short NSMC test reviews (at most `max_chars` characters), seeded order."""
    from polarkit import data

    df = data.load_nsmc("test", seed=seed)
    texts = [t for t in df.text if t.strip() and len(t) <= max_chars]
    rng = np.random.default_rng(seed)
    return [texts[i] for i in rng.permutation(len(texts))[:n]]


SERVER_OPTIONS = ("window_ms", "max_batch", "micro_batch", "workers", "threads")


def server_options(args) -> list[str]:
    """The server flags this run sets (the others keep `polarkit serve`'s defaults)."""
    out = []
    for name in SERVER_OPTIONS:
        value = getattr(args, name)
        if value is not None:
            out += ["--batch-window-ms" if name == "window_ms" else "--" + name.replace("_", "-"), str(value)]
    return out + (["--quantize"] if args.quantize else [])


def start(folder: Path, args, batching: bool, log_dir: Path):
    """The server process (own session) and its URL, once /health answers (tests/serve_helpers)."""
    options = [str(folder), "--no-access-log", "--log-level", "warning", *server_options(args)]
    return start_server(options + ([] if batching else ["--no-batching"]), log_dir, timeout=600, name="bench-serve")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` and its threads so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(url: str, texts: list[str], clients: int, duration: float, pid: int | None = None) -> dict:
    """`clients` closed-loop clients for `duration` s -> figures (with the server's CPU time when `pid`)."""
    import httpx

    latencies, batches, errors = [], [], []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as c:
        end = time.perf_counter() + duration

        async def client(k: int):
            i = k
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                try:
                    r = await c.post("/predict/sentiment", json={"inputs": [texts[i % len(texts)]]})
                    if r.status_code == 200:
                        latencies.append(time.perf_counter() - t0)
                        batches.append(r.json()["batch"])
                    else:
                        errors.append(f"{r.status_code}: {r.text[:200]}")
                except Exception as e:  # noqa: BLE001 - counted, the load goes on
                    errors.append(f"{type(e).__name__}: {e}")
                i += clients

        server0 = cpu_seconds(pid) if pid else None
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(clients)))
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        server_cpu = cpu_seconds(pid) - server0 if pid else None
    ms = np.array(latencies) * 1000
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": len(errors),
        "error_examples": errors[:3],
        "seconds": round(wall, 2),
        "rps": len(latencies) / wall,
        "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
        "p95_ms": float(np.percentile(ms, 95)) if len(ms) else None,
        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
        "mean_batch": statistics.fmean(batches) if batches else None,
        "client_cpu": cpu / wall,
        "load_avg": os.getloadavg()[0],
        # CPU time the server spent per answered request: what the machine's load does not inflate much
        "server_cpu_ms": 1000 * server_cpu / len(latencies) if server_cpu is not None and latencies else None,
    }


def run(args, texts: list[str], work: Path) -> list[dict]:
    """Build (or reuse) the model, then every batching mode x client count -> figures."""
    folder = args.model_dir or work / "model"
    if not (folder / "polarkit_model.json").is_file():
        t0 = time.perf_counter()
        build_model(args.model, folder, args.max_length)
        print(f"model: {args.model} + fresh head -> {folder} ({time.perf_counter() - t0:.0f} s)")
    print(
        f"{len(texts)} NSMC test reviews of <= {args.review_chars} characters (mean "
        f"{statistics.fmean(map(len, texts)):.0f}); {args.duration:g} s per setting; server options: "
        f"{' '.join(server_options(args)) or 'the defaults'}; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start",
        flush=True,
    )
    results = []
    for mode in args.modes:
        proc, url = start(folder, args, mode == "on", work)
        try:
            import httpx

            h = httpx.get(f"{url}/health").json()
            print(
                f"server (batching {mode}): "
                + ", ".join(
                    f"{k} {h[k]}"
                    for k in ("batch_window_ms", "max_batch", "micro_batch", "workers", "torch_threads")
                    if k in h
                ),
                flush=True,
            )
            asyncio.run(load(url, texts, max(args.clients), args.warmup))  # warm-up: first calls, allocator
            for n in args.clients:
                r = asyncio.run(load(url, texts, n, args.duration, proc.pid))
                r["batching"] = mode
                results.append(r)
                print(
                    f"batching {mode:>3} | {n:>2} clients | {r['rps']:7.1f} req/s | p50 {fmt(r['p50_ms']):>6} ms | "
                    f"p95 {fmt(r['p95_ms']):>6} ms | p99 {fmt(r['p99_ms']):>6} ms | errors {r['errors']} | "
                    f"inputs/call {fmt(r['mean_batch'], '.1f')} | server CPU {fmt(r['server_cpu_ms'])} ms/req | "
                    f"client CPU {100 * r['client_cpu']:.0f}% | "
                    f"load {r['load_avg']:.1f}",
                    flush=True,
                )
                for e in r["error_examples"]:
                    print(f"    error: {e}")
        finally:
            stop_server(proc, timeout=30)
    return results


def fmt(v, spec=".1f") -> str:
    return "-" if v is None else format(v, spec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="e5-small-ko", help="encoder spec (default e5-small-ko)")
    ap.add_argument("--model-dir", type=Path, help="reuse (or create) the model folder here")
    ap.add_argument("--duration", type=float, default=30, help="seconds per setting (default 30)")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--modes", nargs="+", choices=["on", "off"], default=["on", "off"], help="batching on / off")
    ap.add_argument("--window-ms", type=float, help="server --batch-window-ms (default the server's)")
    ap.add_argument("--max-batch", type=int, help="server --max-batch (default the server's)")
    ap.add_argument("--workers", type=int, help="server --workers (model calls at once; default the server's)")
    ap.add_argument("--threads", type=int, help="server --threads (torch threads; default the server's)")
    ap.add_argument("--micro-batch", type=int, help="server --micro-batch (inputs per pass; default the server's)")
    ap.add_argument("--quantize", action="store_true", help="server --quantize (int8 Linear layers)")
    ap.add_argument("--max-length", type=int, default=64, help="tokens per review the model sees")
    ap.add_argument("--review-chars", type=int, default=80, help="only reviews this short (characters)")
    ap.add_argument("--warmup", type=float, default=3, help="seconds of load before each server's figures")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from polarkit import environment

    environment.default_to_shared_data()

    texts = reviews(5000, args.review_chars)
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))  # the model (~470 MB for e5-small-ko) and server logs
    try:
        results = run(args, texts, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        "\n| batching | clients | req/s | p50 ms | p95 ms | errors | inputs/call | server CPU ms/req |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    for r in results:
        print(
            f"| {r['batching']} | {r['clients']} | {r['rps']:.1f} | {fmt(r['p50_ms'])} | {fmt(r['p95_ms'])} | "
            f"{r['errors']} | {fmt(r['mean_batch'])} | {fmt(r['server_cpu_ms'])} |"
        )
    by = {(r["batching"], r["clients"]): r for r in results}
    one, many = by.get(("on", 1)), by.get(("on", max(args.clients)))
    if one and many and one["rps"]:
        print(
            f"\ngoal p50 <= 50 ms at 1 client: {fmt(one['p50_ms'])} ms; goal {max(args.clients)} clients >= 3x "
            f"the req/s of 1 (batching on): {many['rps'] / one['rps']:.2f}x"
        )
    off = by.get(("off", max(args.clients)))
    if many and off and off["rps"]:
        print(f"batching on vs off at {max(args.clients)} clients: {many['rps'] / off['rps']:.2f}x the req/s")
    print(
        f"errors: {sum(r['errors'] for r in results)}; load average now {os.getloadavg()[0]:.2f} "
        f"(other work on the machine inflates latency)"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
