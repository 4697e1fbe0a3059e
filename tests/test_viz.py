"""polarkit.viz: Hangul fonts, plot helpers, offline attention views (tiny random BERT, no downloads)."""
from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from polarkit.viz import attention, fonts, plots

KOREAN = "주의 집중 시각화는 재미있다 영화가 정말 좋았다 배우 연기도 훌륭했다"
ENGLISH = "the quick brown fox jumps over the lazy dog"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def missing_glyphs(fig) -> list[str]:
    """Draw `fig` and return matplotlib's "Glyph ... missing from font" warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # a pyplot-free Figure's canvas.draw() is a no-op; rendering a PNG really lays out the glyphs
        fig.savefig(io.BytesIO(), format="png")
    return [str(w.message) for w in caught if "missing from font" in str(w.message)]


def korean_figure():
    fig, ax = plots.figure()
    ax.plot([-2, 0, 3], [1, -1, 2], label="검증 손실")
    ax.set_xticks([-2, 0, 3], ["부정", "중립", "긍정"])
    ax.set(title="한글 제목: 학습 곡선 (loss −1.5)", xlabel="에폭 epoch", ylabel="손실")
    ax.legend()
    return fig


# ---- fonts --------------------------------------------------------------------------------

def test_hangul_font_found_and_default():
    name = fonts.hangul_font()
    assert name, "no Hangul font: pip install koreanize-matplotlib (or apt-get install fonts-nanum)"
    assert list(matplotlib.rcParams["font.family"]) == [name, fonts.LATIN_FALLBACK]
    assert matplotlib.rcParams["axes.unicode_minus"] is False


def test_korean_text_has_no_missing_glyphs(tmp_path):
    fig = korean_figure()
    assert missing_glyphs(fig) == []
    path = plots.write_png(fig, "한글", out_dir=tmp_path)
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_missing_glyph_check_is_live():
    # reference: with matplotlib's stock font the same figure must trip the check
    with matplotlib.rc_context({"font.family": ["DejaVu Sans"]}):
        assert any("missing from font" in m for m in missing_glyphs(korean_figure()))


def test_system_font_fallback(monkeypatch):
    if not subprocess.run(["sh", "-c", "fc-list :lang=ko"], capture_output=True, text=True).stdout.strip():
        pytest.skip("no system Hangul font (apt-get install fonts-nanum)")
    monkeypatch.setattr(fonts, "_packaged_fonts", lambda: [])
    fonts.hangul_font.cache_clear()
    try:
        assert fonts.hangul_font()
    finally:  # back to the packaged font for the other tests
        monkeypatch.undo()
        fonts.hangul_font.cache_clear()
        fonts.setup()


def test_warns_once_without_font(monkeypatch):
    monkeypatch.setattr(fonts, "hangul_font", lambda: None)
    monkeypatch.setattr(fonts, "_warned", False)
    with pytest.warns(UserWarning, match="no Hangul-capable font") as record:
        assert fonts.setup() is None
        assert fonts.setup() is None
    assert len([w for w in record if "Hangul" in str(w.message)]) == 1


# ---- plots --------------------------------------------------------------------------------

@pytest.fixture
def history():
    """Shaped like pd.DataFrame(trainer.state.log_history): train and eval rows interleaved."""
    rows = []
    for epoch in (1, 2, 3):
        rows.append({"epoch": epoch, "step": 10 * epoch, "loss": 1.0 / epoch})
        rows.append({"epoch": epoch, "step": 10 * epoch, "eval_loss": 1.2 / epoch, "eval_accuracy": 0.5 + 0.1 * epoch})
    return pd.DataFrame(rows)


def test_curves_plot_train_and_eval(history):
    fig = plots.curves(history, metrics=("loss", "accuracy"))
    loss_ax, acc_ax = fig.axes
    lines = {l.get_label(): l.get_ydata() for l in loss_ax.lines}
    assert list(lines) == ["train", "eval"]
    np.testing.assert_allclose(lines["train"], [1.0, 0.5, 1 / 3])
    np.testing.assert_allclose(lines["eval"], [1.2, 0.6, 0.4])
    assert [l.get_label() for l in acc_ax.lines] == ["eval"]


def test_confusion_matches_sklearn():
    from sklearn.metrics import confusion_matrix

    y_true, y_pred = [0, 1, 1, 2, 2, 2], [0, 1, 2, 2, 2, 0]
    fig = plots.confusion(y_true, y_pred, labels=["부정", "중립", "긍정"])
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), confusion_matrix(y_true, y_pred))
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["부정", "중립", "긍정"]
    assert missing_glyphs(fig) == []


def test_every_helper_writes_a_png(tmp_path, history):
    rng = np.random.default_rng(0)
    figs = {
        "curves": plots.curves(history),
        "confusion": plots.confusion(["a", "b", "b"], ["a", "b", "a"], labels=["a", "b"]),
        "digits": plots.image_grid(rng.random((10, 1, 28, 28)), titles=[f"정답 {i}" for i in range(10)], ncols=5),
        "scatter": plots.scatter_pred(rng.random(50) * 5, rng.random(50) * 5, title="STS 예측"),
        "hist": plots.hist({"학습": rng.integers(5, 60, 200), "검증": rng.integers(5, 60, 50)}, bins=20, title="토큰 길이"),
        "heatmap": plots.heatmap(rng.random((3, 4)), ["가", "나", "다"], ["일", "이", "삼", "사"], title="유사도"),
    }
    for name, fig in figs.items():
        assert missing_glyphs(fig) == [], name
        assert plots.save(fig, name, out_dir=tmp_path) is fig
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == PNG_MAGIC
        assert (tmp_path / f"{name}.png").stat().st_size > 5_000, name


def test_save_goes_to_the_active_run(tmp_path, monkeypatch):
    runs = pytest.importorskip("polarkit.runs")

    class FakeRun:
        figures_dir = tmp_path / "figures"

    monkeypatch.setattr(runs, "current", lambda: FakeRun())
    assert plots.write_png(plots.hist([1, 2, 2, 3]), "길이 분포") == tmp_path / "figures" / "길이_분포.png"
    monkeypatch.setattr(runs, "current", lambda: None)
    assert plots.write_png(plots.hist([1, 2, 2, 3]), "nowhere") is None


# ---- attention ----------------------------------------------------------------------------

@pytest.fixture
def tiny():
    """A 2-layer, 2-head random BERT and a WordPiece tokenizer trained on a few Korean/English lines.

    Per test (milliseconds to build): tests switch its train/eval mode and attention implementation.
    Seeded inside fork_rng, so the weights are fixed and the global torch RNG is left alone."""
    import torch
    from tokenizers.implementations import BertWordPieceTokenizer
    from transformers import BertConfig, BertModel, BertTokenizer

    wordpiece = BertWordPieceTokenizer(lowercase=False, strip_accents=False)
    wordpiece.train_from_iterator([KOREAN, ENGLISH, "한국어 문장을 토큰으로 나눕니다"] * 3, vocab_size=300)
    tokenizer = BertTokenizer(vocab=wordpiece.get_vocab(), do_lower_case=False, strip_accents=False)
    config = BertConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=2, intermediate_size=128,
                        vocab_size=len(tokenizer), max_position_embeddings=128)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return BertModel(config), tokenizer


def params_of(html: str) -> dict:
    return json.loads(re.search(r"const params = (.*?);\n", html).group(1))


def test_attention_views_writes_offline_files(tiny, tmp_path):
    model, tokenizer = tiny
    text = " ".join([KOREAN] * 3)
    views = attention.attention_views(model, tokenizer, text, name="리뷰 1", max_tokens=16, out_dir=tmp_path)
    n_total = len(tokenizer(text)["input_ids"])
    assert (views["n_tokens"], views["n_total"], views["truncated"]) == (16, n_total, True)
    for key in ("head_view", "model_view"):
        page = views[key].read_text(encoding="utf-8")
        assert f"showing 16 of {n_total} tokens" in page
        assert '<meta charset="utf-8">' in page
        assert not re.search(r"<script[^>]+src=[\"']?(https?:)?//", page), "remote script"
        assert "cdnjs" not in page and "PYTHON_PARAMS" not in page
        assert params_of(page)["attention"][0]["left_text"][:2] == ["[CLS]", tokenizer.tokenize(KOREAN)[0]]
    assert views["png"] == tmp_path / "attention_리뷰_1.png" and views["png"].stat().st_size > 10_000
    assert missing_glyphs(views["figure"]) == []
    assert "showing 16 of" in views["figure"]._suptitle.get_text()
    assert views._repr_png_() == views["png"].read_bytes()  # a notebook cell ending in the call shows the grid


def test_attention_matches_model_and_model_is_restored(tiny):
    import torch

    model, tokenizer = tiny
    model.train()
    tokens, attn, n_total, b_start = attention.run_attention(model, tokenizer, KOREAN, ENGLISH, max_tokens=64)
    assert model.training and model.config._attn_implementation == "sdpa"  # put back as it was
    assert attn.shape == (2, 2, len(tokens), len(tokens)) and n_total == len(tokens)
    np.testing.assert_allclose(attn.sum(-1), 1, atol=1e-5)  # rows are softmax distributions
    assert tokens[b_start - 1] == "[SEP]" and tokens[b_start] == "the"
    # reference: the same forward pass done by hand with eager attention
    model.eval()
    model.set_attn_implementation("eager")
    with torch.no_grad():
        ref = model(**tokenizer(KOREAN, ENGLISH, return_tensors="pt"), output_attentions=True).attentions
    model.set_attn_implementation("sdpa")
    # run_attention computes with eager attention too (same float32 ops): equal up to a few ulps of 1
    np.testing.assert_allclose(attn, torch.cat(ref).numpy(), atol=1e-6)


def test_pair_view_offers_both_sentences(tiny, tmp_path):
    model, tokenizer = tiny
    views = attention.attention_views(model, tokenizer, KOREAN, ENGLISH, name="pair", out_dir=tmp_path)
    page = views["head_view"].read_text(encoding="utf-8")
    assert not views["truncated"] and "showing" not in page
    assert "Sentence A -&gt; Sentence B" in page or "Sentence A -> Sentence B" in page
    assert [d["right_text"][0] for d in params_of(page)["attention"]][1:3] == ["[CLS]", "the"]


def test_html_is_compact(tmp_path):
    rng = np.random.default_rng(0)
    attn = rng.dirichlet(np.full(32, 0.3), size=(2, 4, 32))  # (L,H,T,T)
    page = attention.view_html("head", attn, [f"t{i}" for i in range(32)])
    libs = sum((attention.ASSETS / f).stat().st_size for f in attention.SCRIPTS)
    assert len(page.encode()) - libs < 8 * attn.size  # ~6 bytes a weight; bertviz alone writes ~45
    # weights are written rounded to DECIMALS: off by at most half a step (+ float64 slack for exact halves)
    half_step = 0.5 * 10.0 ** -attention.DECIMALS
    np.testing.assert_allclose(params_of(page)["attention"][0]["attn"], attn, rtol=0, atol=half_step + 1e-12)
    assert not np.allclose(params_of(page)["attention"][0]["attn"], attn, rtol=0, atol=half_step / 10)  # rounded


def test_nothing_written_without_run_or_out_dir(tiny, monkeypatch):
    runs = pytest.importorskip("polarkit.runs")
    monkeypatch.setattr(runs, "current", lambda: None)
    views = attention.attention_views(*tiny, ENGLISH, max_tokens=8)
    assert views["head_view"] is views["model_view"] is views["png"] is None
    assert views["figure"].axes and views["truncated"]


def test_viz_imports_no_torch():
    code = "import sys, polarkit.viz; bad = {'torch', 'transformers'} & set(sys.modules); assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
