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
    # seaborn draws the matrix as a QuadMesh (the first collection), not an image
    np.testing.assert_array_equal(fig.axes[0].collections[0].get_array(), confusion_matrix(y_true, y_pred))
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["부정", "중립", "긍정"]
    assert missing_glyphs(fig) == []


def hangul_rendered(texts) -> bool:
    """Every text is drawn with a font file that has Hangul glyphs (what findfont picks for it)."""
    from matplotlib import font_manager

    return all(fonts.has_hangul(font_manager.findfont(t.get_fontproperties())) for t in texts)


def test_confusion_annotates_every_cell_with_its_count():
    from sklearn.metrics import confusion_matrix

    y_true, y_pred = [0, 1, 1, 2, 2, 2, 3, 3], [0, 1, 2, 2, 2, 0, 3, 1]
    names = ["부정", "중립", "긍정", "혼합"]
    fig = plots.confusion(y_true, y_pred, labels=names)
    ax = fig.axes[0]
    expected = confusion_matrix(y_true, y_pred)
    assert [t.get_text() for t in ax.texts] == [str(v) for v in expected.ravel()]  # row-major, rows true
    positions = [(t.get_position()[1] - 0.5, t.get_position()[0] - 0.5) for t in ax.texts]
    assert positions == [(i, j) for i in range(4) for j in range(4)]  # text (i, j) sits in cell (i, j)
    assert [t.get_text() for t in ax.get_yticklabels()] == names
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("Predicted label", "True label")
    assert hangul_rendered(ax.get_xticklabels() + ax.get_yticklabels()) and missing_glyphs(fig) == []
    normalized = plots.confusion(y_true, y_pred, labels=names, normalize="true").axes[0]
    rows = expected / expected.sum(1, keepdims=True)
    assert [t.get_text() for t in normalized.texts] == [f"{v:.2f}" for v in rows.ravel()]
    # no labels: the values found in either array, sorted (strings too)
    auto = plots.confusion(["b", "a", "c"], ["b", "c", "c"]).axes[0]
    assert [t.get_text() for t in auto.get_xticklabels()] == ["a", "b", "c"]
    assert [t.get_text() for t in auto.texts] == ["0", "0", "1", "0", "1", "0", "0", "0", "1"]


def test_heatmap_draws_the_input_matrix():
    rng = np.random.default_rng(0)
    small = rng.random((3, 4))
    small[1, 2] = np.nan  # e.g. a missing similarity: drawn blank, never annotated
    fig = plots.heatmap(small, ["가", "나", "다"], ["일", "이", "삼", "사"], title="유사도")
    ax = fig.axes[0]
    drawn = ax.collections[0].get_array()
    np.testing.assert_array_equal(drawn.filled(np.nan), small)
    assert drawn.mask[1, 2] and drawn.mask.sum() == 1
    assert len(ax.texts) == 11 and ax.texts[0].get_text() == f"{small[0, 0]:.2g}"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["일", "이", "삼", "사"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["가", "나", "다"]
    assert len(fig.axes) == 2  # the colour bar
    assert hangul_rendered(ax.get_xticklabels() + ax.get_yticklabels()) and missing_glyphs(fig) == []
    big = plots.heatmap(rng.random((12, 12))).axes[0]  # > 100 cells: not annotated
    assert len(big.texts) == 0 and big.collections[0].get_array().shape == (12, 12)


def test_hist_counts_match_numpy():
    rng = np.random.default_rng(0)
    values = rng.integers(5, 60, 200)
    ax = plots.hist(values, bins=20, title="토큰 길이").axes[0]
    counts, edges = np.histogram(values, bins=20)
    np.testing.assert_array_equal([p.get_height() for p in ax.patches], counts)
    np.testing.assert_allclose([p.get_x() for p in ax.patches], edges[:-1])
    assert ax.get_ylabel() == "count"
    groups = {"학습": rng.normal(0, 1, 300), "검증": rng.normal(1, 1, 50)}
    ax = plots.hist(groups, bins=15).axes[0]
    edges = np.histogram_bin_edges(np.concatenate(list(groups.values())), bins=15)  # one set of bins for all
    assert len(ax.patches) == 30
    drawn = [ax.patches[k : k + 15] for k in (0, 15)]  # one run of bars per group (seaborn draws the last first)
    for bars in drawn:
        np.testing.assert_allclose([p.get_x() for p in bars], edges[:-1])
    assert sorted(tuple(p.get_height() for p in bars) for bars in drawn) == sorted(
        tuple(np.histogram(vals, edges)[0]) for vals in groups.values()
    )
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["학습", "검증"]
    assert missing_glyphs(ax.figure) == []


def test_scatter_pred_points_and_pearson():
    from scipy.stats import pearsonr

    rng = np.random.default_rng(0)
    gold = rng.random(40) * 5
    pred = gold + rng.normal(0, 1, 40)
    ax = plots.scatter_pred(gold, pred, title="STS").axes[0]
    np.testing.assert_allclose(ax.collections[0].get_offsets(), np.column_stack([gold, pred]))
    assert ax.get_title().endswith(f"(r = {pearsonr(gold, pred)[0]:.3f})")
    lo, hi = min(gold.min(), pred.min()), max(gold.max(), pred.max())
    np.testing.assert_allclose(ax.lines[-1].get_xydata(), [[lo, lo], [hi, hi]])  # the y = x line


def test_bars_keep_order_and_repeated_names():
    words = pd.Series([0.4, -0.1, 0.7, 0.2], index=["배우", "도", "최고", "도"], name="drop")
    ax = plots.bars(words, title="단어").axes[0]
    np.testing.assert_allclose([p.get_height() for p in ax.patches], words.to_numpy())  # one bar each, in order
    assert [t.get_text() for t in ax.get_xticklabels()] == ["배우", "도", "최고", "도"]
    assert ax.get_ylabel() == "drop"
    assert hangul_rendered(ax.get_xticklabels()) and missing_glyphs(ax.figure) == []
    ax = plots.bars({"a": 3, "b": 1}, horizontal=True, xlabel="reviews").axes[0]
    np.testing.assert_allclose([p.get_width() for p in ax.patches], [3, 1])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"] and ax.get_xlabel() == "reviews"
    assert ax.patches[0].get_y() < ax.patches[1].get_y()  # first name at the top (y axis inverted)
    assert ax.yaxis_inverted()
    f1 = pd.DataFrame({"transformer": [0.5, 0.7, 0.2], "tfidf": [0.4, 0.6, 0.3]}, index=["욕설", "혐오", "기타"])
    ax = plots.bars(f1).axes[0]
    bars = [p for p in ax.patches if p.get_width() > 0 and p.get_height() > 0]
    assert len(bars) == 6
    by_colour = {}
    for p in sorted(bars, key=lambda p: p.get_x()):
        by_colour.setdefault(p.get_facecolor(), []).append(p.get_height())
    assert sorted(by_colour.values()) == sorted([[0.5, 0.7, 0.2], [0.4, 0.6, 0.3]])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["transformer", "tfidf"]


def test_shaded_words_draw_every_word_with_its_shade():
    rows = [("이 영화 정말 최고".split(), [0.0, 0.1, -0.2, 0.4]), (["별로"], [0.3])]
    fig = plots.shaded_words(rows, headers=["긍정 p=0.93", None])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == ["긍정 p=0.93", "이", "영화", "정말", "최고", "별로"]
    shades = [t.get_bbox_patch().get_facecolor() for t in ax.texts[1:]]
    expected = [plots.signed_colour(w, 0.4) for w in rows[0][1]] + [plots.signed_colour(0.3, 0.3)]
    np.testing.assert_allclose(shades, expected)
    assert expected[3][3] == pytest.approx(0.85) and expected[2][:3] == (0.15, 0.35, 0.86)  # darkest red; blue
    xs = [t.get_position()[0] for t in ax.texts[1:5]]
    assert xs == sorted(xs)  # left to right, boxes placed one after another
    assert missing_glyphs(fig) == []
    long = plots.shaded_words([(["단어"] * 40, np.linspace(-1, 1, 40))], wrap=20)
    assert len({t.get_position()[1] for t in long.axes[0].texts}) > 1  # wrapped onto several lines


def test_seaborn_theme_keeps_the_hangul_font():
    import seaborn as sns

    def korean():
        return plots.confusion([0, 1], [1, 1], ["부정", "긍정"])

    name = fonts.hangul_font()
    try:
        sns.set_theme()  # reference: seaborn's own theme drops the Hangul font...
        assert name not in matplotlib.rcParams["font.family"]
        assert any("missing from font" in m for m in missing_glyphs(korean()))
        assert plots.theme(style="ticks", context="talk") == name  # ...viz.theme restyles and keeps it
        assert list(matplotlib.rcParams["font.family"]) == [name, fonts.LATIN_FALLBACK]
        assert missing_glyphs(korean()) == []
    finally:
        plots.theme()  # the import-time default, for the other tests
    assert matplotlib.rcParams["axes.grid"] and list(matplotlib.rcParams["font.family"]) == [name, fonts.LATIN_FALLBACK]


def test_every_helper_writes_a_png(tmp_path, history):
    rng = np.random.default_rng(0)
    figs = {
        "curves": plots.curves(history),
        "confusion": plots.confusion(["a", "b", "b"], ["a", "b", "a"], labels=["a", "b"]),
        "digits": plots.image_grid(rng.random((10, 1, 28, 28)), titles=[f"정답 {i}" for i in range(10)], ncols=5),
        "scatter": plots.scatter_pred(rng.random(50) * 5, rng.random(50) * 5, title="STS 예측"),
        "hist": plots.hist(
            {"학습": rng.integers(5, 60, 200), "검증": rng.integers(5, 60, 50)}, bins=20, title="토큰 길이"
        ),
        "heatmap": plots.heatmap(rng.random((3, 4)), ["가", "나", "다"], ["일", "이", "삼", "사"], title="유사도"),
        "bars": plots.bars(pd.Series([120, 40, 300], index=["부정", "중립", "긍정"]), title="학습 레이블"),
        "words": plots.shaded_words([("배우 연기가 최고였다".split(), [0.2, -0.1, 0.6])], ["긍정 p=0.91"]),
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
    config = BertConfig(
        num_hidden_layers=2,
        hidden_size=64,
        num_attention_heads=2,
        intermediate_size=128,
        vocab_size=len(tokenizer),
        max_position_embeddings=128,
    )
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


def test_heatmap_grid_draws_each_chosen_head():
    rng = np.random.default_rng(0)
    tokens = ["[CLS]", "▁영화", "##가", "Ġgreat", "[SEP]"]
    attn = rng.dirichlet(np.full(5, 0.3), size=(3, 2, 5))  # (L,H,T,T)
    fig = attention.heatmap_grid(attn, tokens, layers=[0, -1], heads=[1], title="그림")
    panels = [ax for ax in fig.axes if ax.collections]
    assert [ax.get_title() for ax in panels] == ["layer 0 · head 1", "layer 2 · head 1"]
    for ax, (l, h) in zip(panels, [(0, 1), (2, 1)]):
        np.testing.assert_array_equal(ax.collections[0].get_array(), attn[l, h])  # rows query, columns key
        assert [t.get_text() for t in ax.get_xticklabels()] == ["[CLS]", " 영화", "##가", " great", "[SEP]"]
        assert [t.get_text() for t in ax.get_yticklabels()] == [t.get_text() for t in ax.get_xticklabels()]
        assert hangul_rendered(ax.get_yticklabels())
    assert missing_glyphs(fig) == []


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
    half_step = 0.5 * 10.0**-attention.DECIMALS
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
