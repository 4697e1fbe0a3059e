"""polarkit.quantize / predictors.quantize_linear: int8 Linear layers stay close to fp32, really swap the
layers, leave the original model alone, and `polarkit.load(..., quantize=True)` serves a saved model."""

import copy
import pickle

import numpy as np
import pytest
import torch
from mlflow_store import tiny_classifier, tiny_parts  # noqa: F401  (fixtures)
from torch import nn

from polarkit import embed, predictors, quantize
from polarkit.tasks import classifier

TEXTS = ["The cat sat on the mat.", "Cat the on sat.", "A much longer sentence, with many more words, comes here."]

needs_ort = pytest.mark.skipif(not quantize.has_onnxruntime(), reason="onnxruntime not installed (int8 extra)")


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 32, bias=False), nn.LayerNorm(32)).eval()


def _cos(a, b):
    a, b = np.asarray(a, np.float64).reshape(len(a), -1), np.asarray(b, np.float64).reshape(len(b), -1)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@needs_ort
def test_int8_linear_matches_the_kernel_arithmetic():
    """Int8Linear = (per-tensor uint8 activations) x (per-channel int8 weights), rescaled, + bias: the same
    numbers as doing that arithmetic by hand in numpy (so the ORT kernel is fed the right layout)."""
    torch.manual_seed(0)
    lin = nn.Linear(48, 20)
    x = torch.randn(7, 48)
    q = quantize.Int8Linear(lin)
    assert q.qweight.dtype == torch.int8 and q.qweight.shape == (48, 20)  # [in, out]: the kernel's layout
    w = lin.weight.detach().numpy().T
    np.testing.assert_allclose(q.scale.numpy(), np.abs(w).max(0) / 127, rtol=1e-6)
    xs = x.numpy()
    lo, hi = min(xs.min(), 0.0), max(xs.max(), 0.0)  # ONNX DynamicQuantizeLinear: uint8, range includes 0
    a_scale = (hi - lo) / 255
    a_zp = np.clip(np.rint(-lo / a_scale), 0, 255)
    xq = np.clip(np.rint(xs / a_scale) + a_zp, 0, 255)
    ref = ((xq - a_zp) @ q.qweight.numpy().astype(np.float64)) * a_scale * q.scale.numpy() + lin.bias.detach().numpy()
    with torch.inference_mode():
        np.testing.assert_allclose(q(x).numpy(), ref, rtol=1e-4, atol=1e-4)


@needs_ort
def test_quantize_linear_keeps_outputs_close_and_swaps_every_linear():
    m = _mlp()
    x = torch.randn(5, 9, 64)  # any leading dims
    q = predictors.quantize_linear(m)
    assert quantize.linear_layers(q) == [] and [type(q[i]) for i in (0, 2)] == [quantize.Int8Linear] * 2
    assert type(m[0]) is nn.Linear and type(m[2]) is nn.Linear  # the original is untouched
    assert q[3].weight is m[3].weight  # other parameters are shared, not copied
    assert q[2].bias is None and q[0].bias is not None
    with torch.inference_mode():
        ref, got = m(x), q(x)
    assert got.shape == ref.shape and got.dtype == ref.dtype
    # int8 per-channel weights x uint8 per-tensor activations over K=64..256: ~1% relative error per output
    assert _cos(got, ref).min() > 0.99
    assert not torch.equal(got, ref)  # it really ran in int8
    with torch.inference_mode():
        assert q(torch.zeros(0, 64)).shape == (0, 32)  # an empty batch


@needs_ort
def test_quantized_model_is_inference_only_copyable_and_picklable():
    q = predictors.quantize_linear(_mlp())
    x = torch.randn(3, 64)
    with pytest.raises(RuntimeError, match="inference only"):
        q(x.requires_grad_())
    with torch.inference_mode():
        y = q(x.detach())
        torch.testing.assert_close(copy.deepcopy(q)(x.detach()), y)
        torch.testing.assert_close(pickle.loads(pickle.dumps(q))(x.detach()), y)


@needs_ort
def test_leaves_linear_subclasses_such_as_attention_out_proj_alone():
    mha = nn.MultiheadAttention(16, 2, batch_first=True).eval()
    q = quantize.quantize_linear(mha)
    assert type(q.out_proj) is type(mha.out_proj)  # read by weight inside F.multi_head_attention_forward
    x = torch.randn(2, 5, 16)
    with torch.inference_mode():
        torch.testing.assert_close(q(x, x, x)[0], mha(x, x, x)[0])


def test_falls_back_to_torch_ao_with_a_warning_without_onnxruntime(monkeypatch):
    monkeypatch.setattr(quantize, "has_onnxruntime", lambda: False)
    m = _mlp()
    with pytest.warns(UserWarning, match="onnxruntime not installed"):
        q = predictors.quantize_linear(m)
    assert "quantized" in type(q[0]).__module__ and type(m[0]) is nn.Linear
    x = torch.randn(4, 64)
    with torch.inference_mode():
        assert _cos(q(x), m(x)).min() > 0.98


@needs_ort
def test_encode_quantize_option_is_close_and_leaves_the_model_fp32(tiny_parts):
    tok, encoder = tiny_parts
    enc = encoder(1).eval()
    ref = embed.encode(enc, tok, TEXTS, pooling="mean", max_length=32, progress=False)
    got = embed.encode(enc, tok, TEXTS, pooling="mean", max_length=32, progress=False, quantize=True)
    assert got.shape == ref.shape and _cos(got, ref).min() > 0.99
    assert quantize.linear_layers(enc)  # still fp32 Linear layers


@needs_ort
def test_load_quantize_true_on_a_saved_model(tiny_classifier, tmp_path):
    d = tiny_classifier(tmp_path / "m")
    fp32, int8 = predictors.load(d), predictors.load(d, quantize=True)
    assert quantize.linear_layers(fp32.predictor.model) and not quantize.linear_layers(int8.predictor.model)
    assert any(isinstance(m, quantize.Int8Linear) for m in int8.predictor.model.modules())
    a, b = fp32.predict(TEXTS), int8.predict(TEXTS)
    assert [set(r) for r in b] == [{"label", "confidence", "probs"}] * 3
    pa = np.array([list(r["probs"].values()) for r in a])
    pb = np.array([list(r["probs"].values()) for r in b])
    np.testing.assert_allclose(pb, pa, atol=0.02)
    ref = classifier.Predictor.load(d).logits(TEXTS)
    np.testing.assert_allclose(int8.predictor.logits(TEXTS), ref, atol=0.05 * max(1.0, np.abs(ref).max()))


@needs_ort
def test_refuses_a_model_off_the_cpu():
    with pytest.raises(ValueError, match="runs on the CPU"):
        quantize.quantize_linear(nn.Sequential(nn.Linear(4, 4, device="meta")))
