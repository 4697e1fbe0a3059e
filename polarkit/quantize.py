"""int8 dynamic quantisation of Linear layers for CPU inference, on ONNX Runtime's int8 kernels.

    q = quantize_linear(model)          # a copy whose nn.Linear layers are Int8Linear; `model` is untouched
    q(**batch)                          # same call, same outputs up to int8 rounding

Each exact `nn.Linear` becomes an `Int8Linear`: the weight is stored as int8, symmetric per output
channel (scale = max|w| / 127); at every call ONNX Runtime's `DynamicQuantizeMatMul` kernel (MLAS:
AVX-512 VNNI / AMX on this CPU) quantises the activations to uint8 (per tensor, asymmetric), multiplies
in int8 and returns fp32, to which the fp32 bias is added. Everything else (embeddings, LayerNorm,
attention softmax, pooling, heads that are not plain Linear) stays fp32 and is shared with `model`, not
copied. Inference only (no gradients), CPU only.

Why this path (benchmarks/compare_int8.py; e5-small-ko, 1,000 NSMC test reviews, batch 32, max_length 64,
1 thread, median of 5 interleaved rounds; shared 2-core machine, load 2-3):

    method                                      x fp32   cosine to fp32 (mean / min)
    this module (ORT DynamicQuantizeMatMul)     2.26x    0.9959 / 0.9884
    ORT whole graph (torch.onnx export +        2.11x    0.9958 / 0.9884   (+12 s export, ~1 GB of files)
      onnxruntime.quantization, per channel)
    torch.ao quantize_dynamic (deprecated)      1.87x    0.9770 / 0.9470
    torchao Int8DynamicActivationInt8Weight     1.09x    0.9992 / 0.9984   (eager; 0.3x at 2 threads; no
                                                                            faster than fp32 under torch.compile)

Task metrics, fp32 -> this module: NSMC sentiment (a quick 07 model, 5,000 test reviews) accuracy 0.7982 ->
0.8002 (paired bootstrap 95% CI of the change [-0.0030, +0.0066], McNemar p = 0.47: within noise), yet 3.1% of
the labels flip (both ways) and a probability moves by up to 0.59; zero-shot KLUE-STS dev Pearson 0.7762 ->
0.7785 ([-0.0055, +0.0097]). torch.ao loses 0.016 accuracy and 0.037 Pearson (both outside noise). On longer
inputs the gain is smaller (JD sections, max_length 128: 1.5x; attention stays fp32). Per-row activation scales
(rows normalised before the kernel) would keep cosine 0.9993 and flip 1.1% of labels, at 1.6x instead of 2.3x.

So int8 stays opt-in everywhere (`polarkit.load(..., quantize=True)`, `polarkit predict --quantize`,
`polarkit serve --quantize`, `embed.encode(..., quantize=True)`): the measured metrics stay within noise, the
individual answers do not all stay the same.

Without onnxruntime installed this falls back to torch.ao's `quantize_dynamic` with a warning.
On x86 CPUs without VNNI the weights use 7 bits (ORT's `reduce_range`: the u8 x s8 kernels there can
saturate 16-bit intermediates).
"""

from __future__ import annotations

import copy
import functools
import platform
import warnings

import numpy as np
import torch
from torch import nn

ORT_HINT = "pip install onnxruntime onnx (polarkit's `int8` extra)"


class Int8Linear(nn.Module):
    """An nn.Linear's inference on int8 weights (see module doc). Buffers: `qweight` int8 [in, out]
    (transposed: the kernel's layout), `scale` fp32 [out], `zero_point` int8 [out] (zeros), `bias` fp32 [out]
    or None."""

    def __init__(self, linear: nn.Linear, reduce_range: bool = False):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        w = linear.weight.detach().to("cpu", torch.float32).numpy().T  # [in, out]
        qmax = 63.0 if reduce_range else 127.0
        amax = np.abs(w).max(axis=0) if w.size else np.zeros(self.out_features, np.float32)
        scale = np.where(amax > 0, amax / qmax, 1.0).astype(np.float32)
        q = np.clip(np.rint(w / scale), -qmax, qmax).astype(np.int8)
        self.register_buffer("qweight", torch.from_numpy(np.ascontiguousarray(q)))
        self.register_buffer("scale", torch.from_numpy(scale))
        self.register_buffer("zero_point", torch.zeros(self.out_features, dtype=torch.int8))
        bias = None if linear.bias is None else linear.bias.detach().to("cpu", torch.float32).clone()
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad and torch.is_grad_enabled():
            raise RuntimeError("Int8Linear is for inference only (no gradients): run under torch.inference_mode()")
        if x.device.type != "cpu":
            raise RuntimeError(f"Int8Linear runs on the CPU; got an input on {x.device}")
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.in_features).to(torch.float32).contiguous()
        if flat.shape[0] == 0:
            return x.new_zeros(*lead, self.out_features)
        feed = {
            "X": flat.numpy(),
            "B": self.qweight.numpy(),
            "b_scale": self.scale.numpy(),
            "b_zp": self.zero_point.numpy(),
        }
        if self.bias is not None:
            feed["bias"] = self.bias.numpy()
        y = _session(torch.get_num_threads(), self.bias is not None).run(None, feed)[0]
        return torch.from_numpy(y).reshape(*lead, self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, int8"


@functools.cache
def _session(threads: int, bias: bool):
    """One ORT session per (threads, bias) shared by every Int8Linear: a single DynamicQuantizeMatMul node
    whose weight, scales and bias are inputs (one thread pool for the whole model; on this CPU this is also
    faster than one session per layer with constant, pre-packed weights: 2.4x vs 2.0x fp32 on 1 thread)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    names = ["X", "B", "b_scale", "b_zp"] + (["bias"] if bias else [])
    types = {
        "X": (TensorProto.FLOAT, ["M", "K"]),
        "B": (TensorProto.INT8, ["K", "N"]),
        "b_scale": (TensorProto.FLOAT, ["N"]),
        "b_zp": (TensorProto.INT8, ["N"]),
        "bias": (TensorProto.FLOAT, ["N"]),
    }
    graph = helper.make_graph(
        [helper.make_node("DynamicQuantizeMatMul", names, ["Y"], domain="com.microsoft")],
        "int8_linear",
        [helper.make_tensor_value_info(n, *types[n]) for n in names],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", "N"])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = max(1, threads), 1
    # no busy-waiting between calls: spinning ORT threads would take the cores from torch's ops in between
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def has_onnxruntime() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def needs_reduce_range() -> bool:
    """True on x86 CPUs without VNNI (AVX-512 VNNI, AVX-VNNI or AMX-INT8), where ORT's u8s8 kernels can saturate."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return True  # cannot tell: the safe choice
    return not {"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags)


def linear_layers(model: nn.Module) -> list[str]:
    """Names of the exact nn.Linear modules of `model` (what `quantize_linear` swaps; subclasses such as
    nn.MultiheadAttention's out_proj, whose weight is read directly, are left alone)."""
    return [name for name, m in model.named_modules() if type(m) is nn.Linear]


def quantize_linear(model: nn.Module) -> nn.Module:
    """A copy of `model` whose exact nn.Linear layers are `Int8Linear` (see module doc); `model` is untouched.

    The copy shares every other parameter and buffer with `model` (no second copy of the embeddings);
    it is put in eval mode. A model without Linear layers comes back as such a copy, unchanged."""
    if any(t.device.type != "cpu" for t in [*model.parameters(), *model.buffers()]):
        raise ValueError("quantize_linear: int8 inference runs on the CPU; move the model there first (model.cpu())")
    if not has_onnxruntime():
        warnings.warn(
            f"onnxruntime not installed: int8 falls back to torch.ao.quantization.quantize_dynamic "
            f"(deprecated; embeddings drift more: cosine ~0.98 vs ~0.996). {ORT_HINT}",
            stacklevel=2,
        )
        return _quantize_torch_ao(model)
    targets = set(linear_layers(model))
    memo = {id(t): t for t in [*model.parameters(), *model.buffers()]}  # share tensors, copy the modules
    for name, m in model.named_modules():
        if name in targets:
            memo[id(m)] = None  # replaced below: not worth copying
    q = copy.deepcopy(model, memo)
    reduce_range = needs_reduce_range()
    src = dict(model.named_modules())
    for name in sorted(targets, key=lambda n: -n.count(".")):
        parent_name, _, attr = name.rpartition(".")
        parent = q.get_submodule(parent_name) if parent_name else q
        setattr(parent, attr, Int8Linear(src[name], reduce_range))
    return q.eval()


def _quantize_torch_ao(model: nn.Module) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8).eval()
