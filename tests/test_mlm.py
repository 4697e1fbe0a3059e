"""polarkit.tasks.mlm: JD text prep, windows, whole-word masking, sparse MLM loss, stages, saving."""

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModel, DataCollatorForLanguageModeling

from polarkit import models
from polarkit.tasks import mlm

TEXTS = [
    "Python 백엔드 개발 경험이 있으신 분",
    "AWS 클라우드 환경에서 서비스 운영 경험",
    "Java Spring Boot 기반 API 설계 및 개발",
    "데이터 파이프라인 구축 경험 우대",
] * 4


@pytest.fixture(scope="module")
def tok():
    """Shared: the tests only tokenize with it (never change it)."""
    return models.train_wordpiece(TEXTS, vocab_size=200)


@pytest.fixture
def tiny(tok):
    """A fresh seeded model per test: tests freeze, perturb and train it (about 0.1 s to build)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return models.load_model("scratch:tiny", head="masked_lm", tokenizer=tok)


def test_jd_texts_long_format():
    df = pd.DataFrame({"출처 URL": ["u1", "u2"], "자격요건": ["a" * 30, "짧음"], "주요업무": ["b  \t c" * 10, ""]})
    out = mlm.jd_texts(df, sections=("자격요건", "주요업무"), min_chars=20)
    assert list(out.columns) == ["url", "section", "text"]
    assert set(zip(out.url, out.section)) == {("u1", "자격요건"), ("u1", "주요업무")}
    assert "  " not in out.text.iloc[1]
    with pytest.raises(ValueError, match="not JD columns"):
        mlm.jd_texts(df, sections=("복지",))


def test_windows_overlap_and_word_ids(tok):
    long = " ".join(TEXTS)
    n_tokens = len(tok(long)["input_ids"])
    chunks = mlm.windows([long], tok, max_length=16, overlap=0)
    windows = mlm.windows([long], tok, max_length=16, overlap=6, whole_word=True)
    assert len(windows) > len(chunks) >= (n_tokens - 2) // 14
    assert all(len(x) <= 16 for x in windows["input_ids"])
    assert "word_ids" in windows.column_names and "word_ids" not in chunks.column_names
    w = windows[0]
    assert all((wid == -1) == bool(s) for wid, s in zip(w["word_ids"], w["special_tokens_mask"]))
    with pytest.raises(ValueError, match="overlap"):
        mlm.windows([long], tok, max_length=16, overlap=15)


def test_word_offsets_mark_exactly_the_word_starts():
    word_ids = [[-1, 0, 0, 1, 2, 2, 2, -1], [-1, 5, 7, 7, -1]]
    special = np.array([[1, 0, 0, 0, 0, 0, 0, 1], [1, 0, 0, 0, 1, 1, 1, 1]])
    offsets = mlm.word_offsets(word_ids, 8)
    wid, _ = DataCollatorForLanguageModeling._calc_word_ids_and_prob_mask(offsets, special)
    assert wid[0].tolist() == [-1, 1, 1, 2, 3, 3, 3, -1]  # transformers numbers words from 1
    assert wid[1].tolist()[:4] == [-1, 1, 2, 2]


def test_whole_word_collator_masks_every_piece_of_a_word(tok):
    ds = mlm.windows(TEXTS, tok, max_length=32, overlap=0, whole_word=True)
    coll = mlm.collator(tok, mlm_probability=0.3, whole_word=True, seed=0)
    batch = coll([ds[i] for i in range(len(ds))])
    masked = batch["labels"] != -100
    assert masked.any() and set(batch) == {"input_ids", "attention_mask", "labels"}
    for i in range(len(ds)):
        words = np.array(ds[i]["word_ids"])
        row = masked[i, : len(words)].numpy()
        for w in set(words[row]):
            assert row[words == w].all(), "a word was masked only in part"
    assert (batch["input_ids"][masked] == tok.mask_token_id).all()  # whole-word: always the mask token
    assert not masked[batch["attention_mask"] == 0].any()


def test_token_masking_rate_near_15_percent(tok):
    ds = mlm.windows(TEXTS * 20, tok, max_length=32, overlap=0)
    batch = mlm.collator(tok, seed=1)([ds[i] for i in range(len(ds))])
    real = (batch["attention_mask"] == 1).sum().item() - 2 * len(ds)
    rate = (batch["labels"] != -100).sum().item() / real
    assert 0.11 < rate < 0.19  # 2,000 real tokens: binomial sd 0.008, so the band is +-5 sd (and seeded)


def test_sparse_loss_equals_full_loss(tok, tiny):
    ds = mlm.windows(TEXTS, tok, max_length=32, overlap=0)
    batch = mlm.collator(tok, seed=0)([ds[i] for i in range(8)])
    full = tiny(**batch).loss
    sparse = mlm.sparse_loss(tiny)
    out = sparse(**batch)
    # same tokens, same float32 ops in another order/shape: the losses (~5) differ by ~1 ulp (4.8e-7)
    assert torch.allclose(out.loss, full, atol=1e-5)
    assert out.logits.shape == ((batch["labels"] != -100).sum().item(), len(tok))
    assert sparse(input_ids=batch["input_ids"]).logits.shape[:2] == batch["input_ids"].shape  # no labels: full forward


def test_set_trainable_stages(tiny):
    words = tiny.get_input_embeddings().weight
    counts = mlm.set_trainable(tiny, "head")
    head = {id(p) for p in mlm.lm_head(tiny).parameters()}
    assert all(p.requires_grad == (id(p) in head and p is not words) for p in tiny.parameters())
    assert counts["trainable"] < mlm.set_trainable(tiny, "full")["trainable"] < counts["total"]
    assert not words.requires_grad
    assert mlm.set_trainable(tiny, "full", freeze_embeddings=False)["trainable"] == counts["total"]
    with pytest.raises(ValueError, match="stage"):
        mlm.set_trainable(tiny, "encoder")


def test_head_state_roundtrip(tiny):
    state = mlm.head_state(tiny)
    assert not any(v.data_ptr() == tiny.get_input_embeddings().weight.data_ptr() for v in state.values())
    with torch.no_grad():
        for p in mlm.lm_head(tiny).parameters():
            if p is not tiny.get_input_embeddings().weight:
                p.add_(1.0)
    mlm.load_head_state(tiny, state)
    now = dict(mlm.lm_head(tiny).named_parameters())
    assert all(torch.equal(now[k], v) for k, v in state.items())


def test_training_lowers_heldout_loss_and_saves_encoder(tok, tiny, tmp_path):
    torch.manual_seed(0)
    ds = mlm.windows(TEXTS, tok, max_length=32, overlap=0, whole_word=True)
    held = mlm.fixed_batches(ds, mlm.collator(tok, whole_word=True, seed=0), batch_size=8)
    model = mlm.sparse_loss(tiny)
    start = mlm.masked_loss(model, held)
    _, hist = mlm.train_stage(
        model,
        ds,
        mlm.collator(tok, whole_word=True),
        held,
        stage="full",
        steps=30,
        lr=3e-3,
        batch_size=8,
        evals=3,
        freeze_embeddings=False,
    )  # Trainer's folder: temporary
    end = mlm.masked_loss(model, held)
    assert end["loss"] < start["loss"] - 0.5 and end["tokens"] == start["tokens"]
    assert {"step", "train_loss", "eval_loss", "stage"} <= set(hist.columns) and hist.eval_loss.notna().sum() >= 3
    saved = mlm.save_encoder(model, tok, tmp_path / "adapted")
    enc = AutoModel.from_pretrained(saved)
    assert torch.equal(enc.embeddings.word_embeddings.weight, model.base_model.embeddings.word_embeddings.weight)
    table = mlm.fill_mask(model, tok, ["Python {mask} 개발"], top_k=2)
    assert len(table) == 1 and table.fillers.iloc[0].count("(") == 2
    with pytest.raises(ValueError, match="no {mask}"):
        mlm.fill_mask(model, tok, ["no blank here"])
