"""Encoding throughput: polarkit.embed fp32 and int8 vs sentence-transformers vs a naive batch loop, one process.

The same JD sections (a seeded sample of `--n`), the same model, mean pooling, the same max length
and batch size. Prints sentences/s per method, the ratios to sentence-transformers and to polarkit's
fp32 encode, and each method's cosine to polarkit's fp32 embeddings (mean and min): the int8 row's
quality change. Methods run in interleaved rounds (A B C D, A B C D, ...), best round kept, so their
ratios survive a shared machine better than the absolute figures. The int8 row is
`embed.encode(..., quantize=True)` (polarkit.quantize: ONNX Runtime int8 Linear layers), its one-off
quantisation of the model included in every timed call.

    python benchmarks/bench_encode.py [--model e5-small-ko] [--n 2000] [--batch-size 32] [--max-length 128]
        [--rounds 2] [--threads 0]

sentence-transformers is a benchmark-only dependency: `pip install --no-deps sentence-transformers`
(its requirements are already in the venv; --no-deps keeps torch as it is). Without it that line
is skipped with a message; without onnxruntime (polarkit's `int8` extra) the int8 row uses torch.ao's
deprecated fallback, with a warning.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from polarkit import data, embed, models
from polarkit.quantize import quantize_linear


def jd_sections(n: int, seed: int) -> list[str]:
    """n JD section texts (자격요건 / 우대조건 / 주요업무 of the corpus), seeded, in random order."""
    corpus = data.load_jd_corpus()
    texts = [t.strip() for s in ("자격요건", "우대조건", "주요업무") for t in corpus[s] if len(t.strip()) > 10]
    rng = np.random.default_rng(seed)
    return [texts[i] for i in rng.choice(len(texts), size=min(n, len(texts)), replace=False)]


@torch.inference_mode()
def naive(model, tok, texts, batch_size, max_length):
    """Fixed-size batches in the given (unsorted) order, each padded to its longest text."""
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tok(texts[i : i + batch_size], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        h = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        out.append(embed.pool(h, enc["attention_mask"], "mean").numpy())
    return np.concatenate(out)


def sentence_transformers_encoder(path: str, max_length: int):
    """A SentenceTransformer over the same HF directory (mean pooling), or None if not installed."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        print("sentence-transformers not installed: skipped (pip install --no-deps sentence-transformers)")
        return None
    st = SentenceTransformer(path, device="cpu")
    st.max_seq_length = max_length
    return st


def timed(methods: dict, n: int, rounds: int) -> dict:
    """{name: (best sentences/s over rounds, last result)}, the methods interleaved round by round."""
    best, result = dict.fromkeys(methods, 0.0), {}
    for _ in range(rounds):
        for name, fn in methods.items():
            t0 = time.perf_counter()
            result[name] = fn()
            best[name] = max(best[name], n / (time.perf_counter() - t0))
    return {name: (best[name], result[name]) for name in methods}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="e5-small-ko")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--prefix", default="query: ")
    ap.add_argument("--rounds", type=int, default=2, help="best of this many interleaved timed runs per method")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: every core)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    load_before = os.getloadavg()[0]
    texts = [args.prefix + t for t in jd_sections(args.n, args.seed)]
    path = models.resolve(args.model)
    model, tok = embed.load_encoder(path)
    st = sentence_transformers_encoder(path, args.max_length)
    kw = dict(batch_size=args.batch_size, max_length=args.max_length)
    methods = {
        "polarkit embed.encode": lambda: embed.encode(model, tok, texts, progress=False, **kw),
        "polarkit embed.encode int8": lambda: embed.encode(model, tok, texts, progress=False, quantize=True, **kw),
        "naive unsorted loop": lambda: naive(model, tok, texts, **kw),
    }
    if st is not None:
        methods["sentence-transformers encode"] = lambda: st.encode(
            texts, batch_size=args.batch_size, convert_to_numpy=True, show_progress_bar=False
        )
    embed.encode(model, tok, texts[:64], progress=False, **kw)  # warm-up: first-call allocations
    embed.encode(model, tok, texts[:64], progress=False, quantize=True, **kw)
    t0 = time.perf_counter()
    quantize_linear(model)
    quantize_s = time.perf_counter() - t0
    results = timed(methods, len(texts), args.rounds)
    ref = results["polarkit embed.encode"]
    st_speed = results["sentence-transformers encode"][0] if st is not None else float("nan")
    print(
        f"\n{args.model}: {len(texts)} JD sections, batch {args.batch_size}, max_length {args.max_length}, "
        f"{torch.get_num_threads()} threads, best of {args.rounds} interleaved rounds; "
        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    print(
        f"{'method':30s} {'sentences/s':>12s} {'x sent.-transf.':>16s} {'fp32 ÷ this':>12s} "
        f"{'cos to fp32 mean':>17s} {'min':>8s}"
    )
    for name, (speed, emb) in results.items():
        cos = embed.pairwise_cos_sim(ref[1], emb)
        print(
            f"{name:30s} {speed:12.1f} {speed / st_speed:15.2f}x {ref[0] / speed:11.2f}x "
            f"{cos.mean():17.5f} {cos.min():8.5f}"
        )
    print(f"(int8: quantising the model takes {quantize_s:.2f} s, inside each int8 timing above)")


if __name__ == "__main__":
    main()
