"""Sentence embeddings from any encoder: pooling choices, length-sorted batches, cosine and top-k.

    model, tok = embed.load_encoder("e5-small-ko")
    emb = embed.encode(model, tok, texts, pooling="mean", prefix="query: ")   # float32 [N, H]
    sims = embed.cos_sim(emb[:3], emb)                                          # [3, N]
    scores, idx = embed.top_k(query_emb, corpus_emb, k=5)                      # [Q, k] each

Pooling choices (the seed team compared the first two):
    pooler    BERT's pooler output, tanh(W h_[CLS] + b) ("from_pretrained"); only meaningful when
              the checkpoint carries pooler weights -- `pooler_source` says whether it does
    tanh_cls  tanh of the [CLS] hidden state, no dense layer ("layer_deletion")
    cls       the [CLS] hidden state
    mean      mean of the token hidden states over the attention mask (e5's recipe)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from polarkit import runs

POOLINGS = ("pooler", "tanh_cls", "cls", "mean")


def load_encoder(spec: str, **config_overrides):
    """(encoder model in eval mode, tokenizer) for a spec or a local directory (see polarkit.models)."""
    from polarkit import models

    parsed = models.parse_spec(spec)
    model = models.load_model(parsed, head="encoder", **config_overrides)
    return model.eval(), models.load_tokenizer(parsed)


def pooler_source(model) -> str:
    """'pretrained' if the checkpoint behind `model` holds pooler weights, 'random-init' if the
    model has a pooler that was freshly initialised on loading, 'none' if it has no pooler."""
    if getattr(model, "pooler", None) is None:
        return "none"
    path = Path(str(getattr(model.config, "_name_or_path", "") or ""))
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else []
    if not files:
        return "unknown"
    from safetensors import safe_open

    for f in files:
        with safe_open(str(f), "pt") as st:
            if any(".pooler." in f".{k}" for k in st.keys()):
                return "pretrained"
    return "random-init"


def pool(
    hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str, pooler_output: torch.Tensor | None = None
) -> torch.Tensor:
    """Sentence vectors [B, H] from token states [B, T, H] and mask [B, T] by one of POOLINGS."""
    if pooling == "mean":
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "tanh_cls":
        return torch.tanh(hidden[:, 0])
    if pooling == "pooler":
        if pooler_output is None:
            raise ValueError(
                "pooling='pooler' needs a model with a pooler layer (this one has none); "
                "use 'tanh_cls', 'cls' or 'mean'"
            )
        return pooler_output
    raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


def token_ids(tokenizer, texts, prefix: str = "", max_length: int = 256) -> list[list[int]]:
    """Token ids per text [N] (`prefix` + text, truncated at max_length, with special tokens, no padding)."""
    texts = [prefix + str(t) for t in texts]
    return tokenizer(texts, truncation=True, max_length=max_length, add_special_tokens=True)["input_ids"]


def length_batches(lengths, batch_size: int) -> list[np.ndarray]:
    """Index batches over [N] lengths, longest first, so each batch pads to similar lengths."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def pad(ids: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids [B, T], attention_mask [B, T]) right-padded to the longest of `ids`."""
    width = max(len(x) for x in ids)
    out = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for i, x in enumerate(ids):
        out[i, : len(x)], mask[i, : len(x)] = x, 1
    return torch.from_numpy(out), torch.from_numpy(mask)


def _bar(total: int, desc: str, enabled: bool):
    """A tqdm.auto bar: a widget in Jupyter, a sparse line (every 15 s) in batch logs."""
    from tqdm.auto import tqdm

    sparse = "ipykernel" not in sys.modules
    return tqdm(
        total=total, desc=desc, disable=not enabled, mininterval=15 if sparse else 0.2, file=sys.stderr, unit="text"
    )


def encode(model, tokenizer, texts, *, pooling: str = "mean", quantize: bool = False, **options) -> np.ndarray:
    """Embed texts [N] -> float32 [N, H], in length-sorted batches; order of `texts` kept.

    `options` are `encode_poolings`'s: `prefix` prepended to every text (e5: "query: "), `batch_size`
    (32), `max_length` (256), `normalize` (L2-normalise rows), `progress`, `desc`.
    `quantize`: int8 Linear layers for this call (CPU; `model` untouched; polarkit.quantize: 1.5-2.3x
    faster on e5-small-ko, cosine to fp32 ~0.996). To encode repeatedly, quantize once with
    `polarkit.quantize.quantize_linear(model)` and pass that model instead.
    """
    if quantize:
        from polarkit.quantize import quantize_linear

        model = quantize_linear(model)
    return encode_poolings(model, tokenizer, texts, poolings=(pooling,), **options)[pooling]


@torch.inference_mode()
def encode_poolings(
    model,
    tokenizer,
    texts,
    *,
    poolings=POOLINGS,
    prefix: str = "",
    batch_size: int = 32,
    max_length: int = 256,
    normalize: bool = False,
    progress: bool = True,
    desc: str = "encode",
) -> dict[str, np.ndarray]:
    """Like `encode`, but one forward pass gives every pooling in `poolings` -> {pooling: [N, H]}."""
    bad = [p for p in poolings if p not in POOLINGS]
    if bad or not poolings:
        raise ValueError(f"poolings must be among {POOLINGS}, got {list(poolings)}")
    texts, was_training = list(texts), model.training
    model.eval()
    ids = token_ids(tokenizer, texts, prefix, max_length)
    out = {p: np.zeros((len(texts), model.config.hidden_size), dtype=np.float32) for p in poolings}
    device, run, done = next(model.parameters()).device, runs.current(), 0
    with _bar(len(texts), desc, progress) as bar:
        for idx in length_batches([len(x) for x in ids], batch_size):
            input_ids, mask = pad([ids[i] for i in idx], tokenizer.pad_token_id)
            o = model(input_ids=input_ids.to(device), attention_mask=mask.to(device))
            for p in poolings:
                vec = pool(o.last_hidden_state, mask.to(device), p, getattr(o, "pooler_output", None))
                out[p][idx] = vec.float().cpu().numpy()
            done += len(idx)
            bar.update(len(idx))
            if run is not None:
                run.heartbeat(step=done, total=len(texts), phase=desc)
    model.train(was_training)
    return {p: _normalized(v) if normalize else v for p, v in out.items()}


def _normalized(x: np.ndarray) -> np.ndarray:
    return x / np.clip(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12, None)


def cos_sim(a, b) -> np.ndarray:
    """Cosine similarity matrix [N, M] of rows of a [N, H] and b [M, H] (1-D inputs = one row)."""
    a, b = np.atleast_2d(np.asarray(a, np.float32)), np.atleast_2d(np.asarray(b, np.float32))
    return _normalized(a) @ _normalized(b).T


def pairwise_cos_sim(a, b) -> np.ndarray:
    """Cosine similarity [N] of row i of a [N, H] with row i of b [N, H]."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    if a.shape != b.shape:
        raise ValueError(f"pairwise_cos_sim needs equal shapes, got {a.shape} and {b.shape}")
    return np.sum(_normalized(a) * _normalized(b), axis=-1)


def top_k(query_emb, corpus_emb, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(scores [Q, k], indices [Q, k]) of the k corpus rows most cosine-similar to each query row,
    best first; one matrix product over the whole corpus."""
    sims = cos_sim(query_emb, corpus_emb)
    k = min(k, sims.shape[1])
    part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1, kind="stable")
    idx = np.take_along_axis(part, order, axis=1)
    return np.take_along_axis(sims, idx, axis=1), idx


def save_embeddings(emb: np.ndarray, index: pd.DataFrame, path: str | Path) -> tuple[Path, Path]:
    """Write emb [N, H] to <path>.npy and its row index (a DataFrame of N rows) to <path>.csv."""
    if len(index) != len(emb):
        raise ValueError(f"index has {len(index)} rows but emb has {len(emb)}")
    path = Path(path).with_suffix("")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path.with_suffix(".npy"), np.asarray(emb, np.float32))
    index.to_csv(path.with_suffix(".csv"), index=False)
    return path.with_suffix(".npy"), path.with_suffix(".csv")


def load_embeddings(path: str | Path) -> tuple[np.ndarray, pd.DataFrame]:
    """(emb [N, H] float32, index DataFrame [N]) written by `save_embeddings`."""
    path = Path(path).with_suffix("")
    emb, index = np.load(path.with_suffix(".npy")), pd.read_csv(path.with_suffix(".csv"), keep_default_na=False)
    if len(index) != len(emb):
        raise ValueError(f"{path}: {len(emb)} embeddings but {len(index)} index rows")
    return emb, index


def copy_pooler(src, dst) -> str:
    """Give `dst` the pooler weights of `src` (the seed's "from_pretrained" variant copied the original
    model's pooler into the fine-tuned encoder) -> pooler_source(src), i.e. what was copied."""
    if getattr(src, "pooler", None) is None or getattr(dst, "pooler", None) is None:
        raise ValueError("both models need a pooler layer to copy one into the other")
    dst.pooler.load_state_dict(src.pooler.state_dict())
    return pooler_source(src)
