"""polarkit.embed: pooling, cosine helpers against sklearn, length-sorted encoding, saving."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics.pairwise import cosine_similarity

from polarkit import embed


def test_pool_choices():
    h = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(0))  # own RNG: no order dependence
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    assert torch.allclose(embed.pool(h, mask, "mean")[0], h[0, :2].mean(0))
    assert torch.allclose(embed.pool(h, mask, "cls"), h[:, 0])
    assert torch.allclose(embed.pool(h, mask, "tanh_cls"), torch.tanh(h[:, 0]))
    assert torch.equal(embed.pool(h, mask, "pooler", pooler_output=h[:, 1]), h[:, 1])
    with pytest.raises(ValueError, match="pooler layer"):
        embed.pool(h, mask, "pooler")
    with pytest.raises(ValueError, match="pooling must be"):
        embed.pool(h, mask, "max")


def test_cosine_helpers_match_sklearn():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 8)), rng.normal(size=(7, 8))  # polarkit: float32; sklearn: float64 (~1e-7 apart)
    np.testing.assert_allclose(embed.cos_sim(a, b), cosine_similarity(a, b), atol=1e-5)
    np.testing.assert_allclose(embed.pairwise_cos_sim(a, a[::-1]), np.diag(cosine_similarity(a, a[::-1])), atol=1e-5)
    assert embed.cos_sim(a[0], b).shape == (1, 7)
    with pytest.raises(ValueError, match="equal shapes"):
        embed.pairwise_cos_sim(a, b)


def test_top_k_is_sorted_argsort():
    rng = np.random.default_rng(1)
    q, c = rng.normal(size=(3, 6)), rng.normal(size=(50, 6))
    scores, idx = embed.top_k(q, c, k=4)
    ref = np.argsort(-cosine_similarity(q, c), axis=1)[:, :4]
    np.testing.assert_array_equal(idx, ref)
    assert np.all(np.diff(scores, axis=1) <= 0)
    assert embed.top_k(q, c[:2], k=5)[1].shape == (3, 2)  # k larger than the corpus


def test_length_batches_cover_everything_longest_first():
    lengths = [3, 9, 1, 7, 7, 2, 5]
    batches = embed.length_batches(lengths, 3)
    flat = np.concatenate(batches)
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)


def test_save_load_roundtrip(tmp_path):
    emb = np.random.default_rng(2).normal(size=(4, 3)).astype(np.float32)
    index = pd.DataFrame({"id": range(4), "name": ["a", "b", "", "d"]})
    npy, csv = embed.save_embeddings(emb, index, tmp_path / "sub" / "e")
    assert npy.name == "e.npy" and csv.name == "e.csv"
    got, got_index = embed.load_embeddings(tmp_path / "sub" / "e")
    np.testing.assert_array_equal(got, emb)
    pd.testing.assert_frame_equal(got_index, index)
    with pytest.raises(ValueError, match="index has 3 rows"):
        embed.save_embeddings(emb, index.head(3), tmp_path / "x")


@pytest.fixture(scope="module")
def minilm():
    """Read-only here: every test only encodes (the model stays in eval mode, weights untouched)."""
    return embed.load_encoder("minilm-l6")


# Batched vs unbatched float32 encoder outputs: another batch shape changes the summation order of
# every matmul / softmax / LayerNorm reduction (float32 eps 1.2e-7, 6 layers x a few reductions of
# length <= 1536), which moves MiniLM's mean-pooled components (|x| ~ 0.25, up to ~1.3) by ~1e-6.
# rtol=1e-4/atol=1e-5 leaves ~10x headroom; letting the padding into the mean moves them by ~3.
BATCHING_TOL = {"rtol": 1e-4, "atol": 1e-5}


def test_encode_keeps_order_and_ignores_padding(minilm):
    model, tok = minilm
    texts = [
        "a short one",
        "a much longer sentence about backend development with python and aws",
        "mid length text here",
        "x",
    ]
    together = embed.encode(model, tok, texts, batch_size=2, progress=False)
    alone = np.concatenate([embed.encode(model, tok, [t], progress=False) for t in texts])
    assert together.shape == (4, model.config.hidden_size) and together.dtype == np.float32
    np.testing.assert_allclose(together, alone, **BATCHING_TOL)
    multi = embed.encode_poolings(model, tok, texts, poolings=("cls", "mean"), progress=False)  # one batch of 4
    np.testing.assert_allclose(multi["mean"], together, **BATCHING_TOL)
    unit = embed.encode(model, tok, texts, pooling="cls", normalize=True, progress=False)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1, atol=1e-5)  # float32 norm over 384 dims: ~1e-6
    np.testing.assert_allclose(unit, multi["cls"] / np.linalg.norm(multi["cls"], axis=1, keepdims=True), atol=1e-5)


def test_encode_prefix_changes_vectors(minilm):
    model, tok = minilm
    plain = embed.encode(model, tok, ["backend developer"], progress=False)
    prefixed = embed.encode(model, tok, ["backend developer"], prefix="query: ", progress=False)
    assert not np.allclose(plain, prefixed)


def test_pooler_source_reads_the_checkpoint(tmp_path):
    from transformers import AutoModel, BertConfig, BertModel

    cfg = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
    BertModel(cfg).save_pretrained(tmp_path / "with")
    BertModel(cfg, add_pooling_layer=False).save_pretrained(tmp_path / "without")
    assert embed.pooler_source(AutoModel.from_pretrained(tmp_path / "with")) == "pretrained"
    fresh = AutoModel.from_pretrained(tmp_path / "without")
    assert embed.pooler_source(fresh) == "random-init"
    assert embed.pooler_source(BertModel(cfg, add_pooling_layer=False)) == "none"
    src = AutoModel.from_pretrained(tmp_path / "with")
    assert embed.copy_pooler(src, fresh) == "pretrained"
    assert torch.equal(fresh.pooler.dense.weight, src.pooler.dense.weight)
