"""Which int8 path for CPU inference? torch.ao (deprecated) vs torchao vs ONNX Runtime, on one encoder.

Every method runs the same texts through `polarkit.embed.encode` (the same length-sorted batches, mean
pooling); methods are timed in interleaved rounds (A B C ... A B C ...) in one process, so the ratios to
fp32 survive a shared, loaded machine better than the absolute figures. Quality: cosine of each method's
embeddings to the fp32 ones (mean, min); with `--classifier DIR` (a `save_classifier` folder, e.g. a
quick 07 run's models/sentiment) also the accuracy on `--n-eval` NSMC test reviews and whether the change
is within noise (exact McNemar test on the reviews where the two disagree, paired-bootstrap 95% CI).

    python benchmarks/compare_int8.py [--n 1000] [--rounds 3] [--classifier outputs/07_.../models/sentiment]
        [--methods fp32,torch.ao,torchao,torchao+compile,ort-fp32,ort-int8,ort-int8-pc]

A study script (not run by `make bench`): it exports the encoder to ONNX (~0.5 GB per file, in a
temporary folder), and torch.compile takes minutes here. Needs torchao, onnxruntime, onnx, onnxscript.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from polarkit import data, embed, score

PREFIX = "query: "


# ---------- methods: each takes an fp32 encoder and returns something embed.encode can call ----------


def m_torch_ao(encoder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(copy.deepcopy(encoder), {nn.Linear}, dtype=torch.qint8)


def m_torchao(encoder, compile_: bool = False):
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    q = copy.deepcopy(encoder)
    quantize_(q, Int8DynamicActivationInt8WeightConfig())
    return _compiled(q) if compile_ else q


def _compiled(model):
    import torch._inductor.config as ic

    ic.freezing = True  # constant weights folded / prepacked (torchao's CPU recipe)
    c = torch.compile(model, dynamic=True)
    return _Delegate(c, model)


class _Delegate(nn.Module):
    """A compiled module that still answers .config, .parameters(), .eval() like the original."""

    def __init__(self, fn, orig):
        super().__init__()
        self.orig, self.fn, self.config = orig, fn, orig.config

    def forward(self, **kw):
        return self.fn(**kw)


class OrtEncoder(nn.Module):
    """An ONNX Runtime session behind the HF encoder call shape: (input_ids, attention_mask) -> .last_hidden_state."""

    def __init__(self, path: str, config, threads: int):
        super().__init__()
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        # no busy-waiting after a run: spinning ORT threads would steal the cores from the next (torch) step
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.config = config
        self._device = nn.Parameter(torch.zeros(1), requires_grad=False)  # for next(model.parameters()).device

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        feed = {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()}
        out = self.session.run(["last_hidden_state"], {k: v for k, v in feed.items() if k in self.inputs})[0]
        return SimpleNamespace(last_hidden_state=torch.from_numpy(out))


class _Hidden(nn.Module):
    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids, attention_mask):
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def export_onnx(encoder, folder: Path) -> Path:
    """The encoder as an ONNX graph with dynamic batch and sequence axes (torch.onnx, dynamo exporter)."""
    path = folder / "encoder.onnx"
    ids = torch.randint(5, 1000, (2, 16))
    batch, seq = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("seq", min=2, max=512)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Hidden(encoder).eval(),
            (ids, torch.ones_like(ids)),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
            dynamo=True,
            external_data=True,
        )
    return path


def quantize_onnx(src: Path, per_channel: bool) -> Path:
    """ORT's dynamic int8 quantisation of the MatMul weights (the Linear layers; embeddings stay fp32)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = src.with_name(f"encoder-int8{'-pc' if per_channel else ''}.onnx")
    quantize_dynamic(
        str(src),
        str(dst),
        op_types_to_quantize=["MatMul"],
        per_channel=per_channel,
        weight_type=QuantType.QInt8,
        use_external_data_format=True,
    )
    return dst


class Methods:
    """Builds each method's encoder once (ONNX files are cached in `folder`)."""

    def __init__(self, folder: Path, threads: int):
        self.folder, self.threads, self.onnx = folder, threads, {}

    def build(self, name: str, encoder, tag: str = "enc"):
        t0 = time.perf_counter()
        if name == "fp32":
            m = encoder
        elif name == "fp32+compile":
            m = _compiled(encoder)
        elif name == "polarkit":
            from polarkit import quantize

            m = quantize.quantize_linear(encoder)
        elif name == "torch.ao":
            m = m_torch_ao(encoder)
        elif name == "torchao":
            m = m_torchao(encoder)
        elif name == "torchao+compile":
            m = m_torchao(encoder, compile_=True)
        elif name.startswith("ort"):
            d = self.folder / tag
            d.mkdir(exist_ok=True)
            if (tag, "fp32") not in self.onnx:
                self.onnx[tag, "fp32"] = export_onnx(encoder, d)
            variant = name.removeprefix("ort-")
            if (tag, variant) not in self.onnx:
                self.onnx[tag, variant] = quantize_onnx(self.onnx[tag, "fp32"], per_channel=variant.endswith("-pc"))
            m = OrtEncoder(str(self.onnx[tag, variant]), encoder.config, self.threads)
        else:
            raise ValueError(f"unknown method {name!r}")
        return m, time.perf_counter() - t0


# ---------- statistics ----------


def mcnemar_exact(a_correct: np.ndarray, b_correct: np.ndarray) -> tuple[int, int, float]:
    """(b01: a right b wrong, b10: a wrong b right, two-sided exact p) on paired correctness."""
    from scipy.stats import binomtest

    b01 = int(np.sum(a_correct & ~b_correct))
    b10 = int(np.sum(~a_correct & b_correct))
    p = 1.0 if b01 + b10 == 0 else binomtest(b01, b01 + b10, 0.5).pvalue
    return b01, b10, float(p)


def warm(model, tok, texts, max_length):
    embed.encode(model, tok, texts[:64], prefix=PREFIX, max_length=max_length, progress=False)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="e5-small-ko")
    ap.add_argument("--n", type=int, default=1000, help="NSMC test reviews timed for encode")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--methods", default="fp32,polarkit,torch.ao,torchao,torchao+compile,ort-fp32,ort-int8,ort-int8-pc")
    ap.add_argument("--threads", type=int, default=0, help="torch (and ORT) threads; 0: every core")
    ap.add_argument("--sts", action="store_true", help="also zero-shot KLUE-STS dev Pearson (bi-encoder cosine)")
    ap.add_argument("--classifier", default="", help="a save_classifier folder (e.g. 07's models/sentiment)")
    ap.add_argument("--n-eval", type=int, default=5000, help="NSMC test reviews for the accuracy comparison")
    ap.add_argument("--workdir", default="", help="where the ONNX files go (default: a temporary folder)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    tmp = None if args.workdir else tempfile.TemporaryDirectory(prefix="int8-")
    folder = Path(args.workdir or tmp.name)
    folder.mkdir(parents=True, exist_ok=True)
    methods = Methods(folder, threads)
    print(
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; torch {torch.__version__}, {threads} threads"
    )

    texts = data.load_nsmc("test", n=args.n, seed=args.seed)["text"].tolist()
    encoder, tok = embed.load_encoder(args.model)
    built = {}
    for name in names:
        try:
            built[name] = methods.build(name, encoder)
            warm(built[name][0], tok, texts, args.max_length)
        except Exception as e:  # noqa: BLE001 -- a study: report and go on
            print(f"{name}: failed to build ({type(e).__name__}: {e})")
    kw = dict(prefix=PREFIX, batch_size=args.batch_size, max_length=args.max_length, progress=False)
    speeds = {n: [] for n in built}
    embs = {}
    for _ in range(args.rounds):
        for name, (m, _) in built.items():
            t0 = time.perf_counter()
            embs[name] = embed.encode(m, tok, texts, **kw)
            speeds[name].append(len(texts) / (time.perf_counter() - t0))
    ref = embs.get("fp32")
    print(
        f"\n{args.model}: {len(texts)} NSMC test reviews, batch {args.batch_size}, max_length {args.max_length}, "
        f"median of {args.rounds} interleaved rounds; load average now {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'method':18s} {'sent/s':>8s} {'x fp32':>7s} {'x fp32 per round':>22s} {'cos mean':>9s} "
        f"{'cos min':>8s} {'build s':>8s}"
    )
    for name, s in speeds.items():
        ratios = [a / b for a, b in zip(s, speeds["fp32"])] if "fp32" in speeds else []
        cos = embed.pairwise_cos_sim(ref, embs[name]) if ref is not None else np.array([np.nan])
        print(
            f"{name:18s} {statistics.median(s):8.1f} {statistics.median(ratios) if ratios else float('nan'):6.2f}x "
            f"{' '.join(f'{x:.2f}' for x in ratios):>22s} {cos.mean():9.4f} {cos.min():8.4f} {built[name][1]:8.1f}"
        )

    if args.sts:
        evaluate_sts(args, built, tok)
    if args.classifier:
        evaluate_classifier(args, names, methods, threads)
    if tmp is not None:
        tmp.cleanup()


def evaluate_sts(args, built, tok) -> None:
    """Zero-shot KLUE-STS dev Pearson of each method's embeddings (cosine of the pair), with a paired
    bootstrap 95% CI of the difference to fp32."""
    from scipy.stats import pearsonr

    df = data.load_klue_sts("dev")
    gold = df["score"].to_numpy(float)
    kw = dict(prefix=PREFIX, batch_size=args.batch_size, max_length=128, progress=False)
    sims = {}
    for name, (m, _) in built.items():
        a, b = (
            embed.encode(m, tok, df["sentence1"].tolist(), **kw),
            embed.encode(m, tok, df["sentence2"].tolist(), **kw),
        )
        sims[name] = embed.pairwise_cos_sim(a, b)
    print(f"\nzero-shot KLUE-STS dev ({len(gold)} pairs), Pearson of cosine; Δ vs fp32 with a paired bootstrap 95% CI")
    ref = sims.get("fp32")
    for name, s in sims.items():
        r = pearsonr(gold, s)[0]
        if ref is None or name == "fp32":
            print(f"{name:18s} {r:.4f}")
            continue

        def change(i, s=s):
            return pearsonr(gold[i], s[i])[0] - pearsonr(gold[i], ref[i])[0]

        lo, hi = score.paired_bootstrap(change, len(gold))
        print(f"{name:18s} {r:.4f} {r - pearsonr(gold, ref)[0]:+.4f} [{lo:+.4f}, {hi:+.4f}]")


def evaluate_classifier(args, names, methods: Methods, threads: int) -> None:
    """Accuracy of the classifier under each method on n-eval NSMC test reviews, vs fp32, with McNemar."""
    from polarkit.tasks import classifier

    df = data.load_nsmc("test", n=args.n_eval, seed=args.seed + 1)
    texts, y = df["text"].tolist(), df["label"].to_numpy()
    base = classifier.Predictor.load(args.classifier)
    fp32_encoder = base.model.encoder
    rows, correct = [], {}
    for name in names:
        p = classifier.Predictor.load(args.classifier)
        try:
            p.model.encoder, build_s = methods.build(name, fp32_encoder, tag="clf")
        except Exception as e:  # noqa: BLE001
            print(f"{name}: failed to build ({type(e).__name__}: {e})")
            continue
        p.scores(texts[:64], batch_size=64)  # warm-up
        t0 = time.perf_counter()
        probs = p.scores(texts, batch_size=64)
        speed = len(texts) / (time.perf_counter() - t0)
        correct[name] = probs.argmax(1) == y
        rows.append((name, speed, correct[name].mean(), probs))
    ref = correct.get("fp32")
    ref_probs = rows[0][3] if rows and rows[0][0] == "fp32" else None
    print(
        f"\nclassifier {args.classifier}: {len(texts)} NSMC test reviews (seed {args.seed + 1}), batch 64, "
        f"one pass each; load average now {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'method':18s} {'rev/s':>7s} {'accuracy':>9s} {'Δ acc':>8s} {'95% CI (bootstrap)':>20s} "
        f"{'flips -/+':>10s} {'McNemar p':>10s} {'label agree':>12s} {'max |Δp|':>9s}"
    )
    for name, speed, acc, probs in rows:
        if ref is None:
            print(f"{name:18s} {speed:7.1f} {acc:9.4f}")
            continue
        lo, hi = score.paired_bootstrap(lambda i, c=correct[name]: c[i].mean() - ref[i].mean(), len(ref))
        b01, b10, p = mcnemar_exact(ref, correct[name])
        agree = (probs.argmax(1) == ref_probs.argmax(1)).mean()
        dp = np.abs(probs[:, 1] - ref_probs[:, 1]).max()
        print(
            f"{name:18s} {speed:7.1f} {acc:9.4f} {acc - ref.mean():+8.4f} [{lo:+.4f}, {hi:+.4f}] "
            f"{b01:4d}/{b10:<4d} {p:10.3f} {agree:12.4f} {dp:9.4f}"
        )


if __name__ == "__main__":
    main()
