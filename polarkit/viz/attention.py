"""Attention views: bertviz head/model views as standalone, offline HTML plus a static PNG grid.

bertviz's HTML pulls require.js, d3 v5 and jQuery from a CDN; here d3 5.7.0 and jQuery 3.7.1
(slim) are inlined from `assets/` and a two-line stand-in replaces require.js, so the files
open anywhere without network. bertviz's data grows with layers x heads x tokens^2, so
tokens are capped, weights rounded to 3 decimals and bertviz's duplicate copy of the data dropped:
64 tokens of a 12-layer x 12-head model take ~3 MB per view instead of bertviz's ~27 MB.
"""

from __future__ import annotations

import html
import io
import json
import re
import unicodedata
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from polarkit.viz import plots

ASSETS = Path(__file__).parent / "assets"
SCRIPTS = ("d3.v5.7.0.min.js", "jquery.slim.v3.7.1.min.js")
DECIMALS = 3  # attention weights drawn as line opacity: 0.001 steps are invisible
# bertviz's scripts call `requirejs(['jquery', 'd3'], cb)`; both libraries are inlined above as
# globals, so this stand-in hands them over instead of loading require.js from a CDN.
REQUIRE_SHIM = """window.requirejs = window.require = function (deps, cb) {
  cb.apply(null, deps.map(function (d) { return {jquery: window.jQuery, d3: window.d3}[d]; }));
};
window.require.config = function () {};"""
# bertviz fills PYTHON_PARAMS with str.replace, which also pastes a second copy of the data
# into the comment after it ("// HACK: PYTHON_PARAMS is a template marker ..."): match both.
_PARAMS = re.compile(
    r"const params = (.*?); // HACK: .*? is a template marker that is replaced by actual params\.", re.S
)


def attention_views(
    model,
    tokenizer,
    text: str,
    text_pair: str | None = None,
    *,
    name: str = "example",
    max_tokens: int = 64,
    layers=None,
    heads=None,
    out_dir=None,
) -> dict:
    """Run `model` once on `text` (+ `text_pair`) and save its attention as HTML views and a PNG grid.

    Writes `<run>/attention/<name>_{head,model}_view.html` and `<run>/figures/attention_<name>.png`
    (all three into `out_dir` if given; nothing is written with neither). layers/heads pick the
    PNG panels (default: last layer, first 4 heads); the HTML views hold every layer and head.
    Returns {"head_view", "model_view", "png": Path | None, "n_tokens": shown, "n_total": before
    the cut, "truncated": bool, "figure": the PNG's Figure for inline display}.
    """
    tokens, attn, n_total, b_start = run_attention(model, tokenizer, text, text_pair, max_tokens=max_tokens)
    return save_views(
        attn,
        tokens,
        sentence_b_start=b_start,
        n_total=n_total,
        name=name,
        layers=layers,
        heads=heads,
        out_dir=out_dir,
        subtitle=_shorten(f"{type(model).__name__}: {' / '.join(t for t in (text, text_pair) if t)}"),
    )


def _shorten(s: str, limit: int = 300) -> str:
    return s if len(s) <= limit else s[: limit - 1] + "…"


def run_attention(model, tokenizer, text: str, text_pair: str | None = None, *, max_tokens: int = 64):
    """Tokenize (cut to max_tokens) and run one forward pass with eager attention.

    Returns (tokens (T,), attention (L,H,T,T) float array, n_total tokens before the cut,
    index of sentence B's first token or None).
    """
    import torch

    limit = min(max_tokens, tokenizer.model_max_length)
    n_total = len(tokenizer(text, text_pair, verbose=False)["input_ids"])
    enc = tokenizer(text, text_pair, truncation=True, max_length=limit, return_tensors="pt")
    inputs = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    if getattr(model.config, "type_vocab_size", 2) < 2:  # e.g. RoBERTa-style: one segment only
        inputs.pop("token_type_ids", None)
    device = next(model.parameters()).device
    impl, training = model.config._attn_implementation, model.training
    try:
        if impl != "eager":  # sdpa/flash kernels never materialise the attention matrix
            model.set_attn_implementation("eager")
        model.eval()
        with torch.inference_mode():
            out = model(**{k: v.to(device) for k, v in inputs.items()}, output_attentions=True)
    finally:
        if impl != "eager":
            model.set_attn_implementation(impl)
        model.train(training)
    if not out.attentions:
        raise ValueError(f"{type(model).__name__} returned no attentions; load it with attn_implementation='eager'")
    attn = torch.cat([a.float().cpu() for a in out.attentions]).numpy()  # L x (1,H,T,T) -> (L,H,T,T)
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist())
    return tokens, attn, n_total, _sentence_b_start(enc, text_pair)


def _sentence_b_start(enc, text_pair) -> int | None:
    if text_pair is None:
        return None
    ids = enc.sequence_ids(0) if enc.is_fast else None
    if ids is None:  # slow tokenizer: fall back to segment ids
        ids = [int(t) or None for t in enc["token_type_ids"][0]] if "token_type_ids" in enc else []
    return ids.index(1) if 1 in ids else None


def save_views(
    attn,
    tokens,
    *,
    sentence_b_start=None,
    n_total=None,
    name="example",
    layers=None,
    heads=None,
    out_dir=None,
    subtitle="",
) -> dict:
    """Save head view, model view and PNG grid of one (L,H,T,T) attention array; see attention_views."""
    attn = np.asarray(attn, dtype=float)
    n = len(tokens)
    n_total = n_total or n
    shown = f"showing {n} of {n_total} tokens" if n_total > n else ""
    note = f"{shown} (text cut at max_tokens)" if shown else ""
    html_dir = Path(out_dir) if out_dir is not None else plots._run_dir("attention_dir")
    paths = {}
    for kind in ("head", "model"):
        page = view_html(
            kind,
            attn,
            tokens,
            sentence_b_start=sentence_b_start,
            title=f"{name}: {kind} view",
            note="\n".join(t for t in (subtitle, note) if t),
        )
        paths[f"{kind}_view"] = _write(html_dir, f"{plots.safe_name(name)}_{kind}_view.html", page)
    title = f"{name}: attention" + (f" ({shown})" if shown else "")
    fig = heatmap_grid(attn, tokens, layers=layers, heads=heads, title=title)
    png = plots.write_png(fig, f"attention_{name}", out_dir=out_dir, dpi=150, tight=False)  # margins are fixed
    return AttentionViews(**paths, png=png, n_tokens=n, n_total=n_total, truncated=n_total > n, figure=fig)


class AttentionViews(dict):
    """The dict `attention_views` returns; as a notebook cell's last expression it shows the PNG grid."""

    def _repr_png_(self) -> bytes:
        if self["png"] is not None:
            return Path(self["png"]).read_bytes()
        buffer = io.BytesIO()
        self["figure"].savefig(buffer, format="png", dpi=100, facecolor="white")
        return buffer.getvalue()


def _write(folder: Path | None, filename: str, text: str) -> Path | None:
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    (folder / filename).write_text(text, encoding="utf-8")
    return folder / filename


def view_html(kind: str, attn, tokens, *, sentence_b_start=None, title="attention", note="") -> str:
    """A standalone HTML page (no network needed) with bertviz's "head" or "model" view of (L,H,T,T) attn."""
    import bertviz
    import torch

    # float64 so the rounded weights print as 0.123, not float32's 0.12300000339746475
    layers = [t.unsqueeze(0) for t in torch.from_numpy(np.round(np.asarray(attn, dtype=np.float64), DECIMALS))]
    if kind == "head":
        view = bertviz.head_view(layers, list(tokens), sentence_b_start, html_action="return")
    elif kind == "model":
        view = bertviz.model_view(layers, list(tokens), sentence_b_start, display_mode="light", html_action="return")
    else:
        raise ValueError(f"kind must be 'head' or 'model', not {kind!r}")
    return standalone(view.data, title=title, note=note)


def standalone(fragment: str, *, title: str, note: str = "") -> str:
    """Turn bertviz's notebook HTML fragment into a full page with its scripts inlined."""
    fragment = re.sub(r'<script src="https?://[^"]*"></script>', "", fragment)  # the require.js CDN tag
    fragment = re.sub(r"require\.config\(\{.*?\}\);", "", fragment, count=1, flags=re.S)  # CDN paths
    fragment = _PARAMS.sub(lambda m: f"const params = {_compact(m.group(1))};", fragment, count=1)
    libs = "\n".join(f"<script>\n{(ASSETS / f).read_text(encoding='utf-8')}\n</script>" for f in SCRIPTS)
    notes = "".join(f'<p class="note">{html.escape(line)}</p>' for line in note.splitlines())
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1em}} .note{{color:#555;margin:.2em 0}}</style>
{libs}
<script>
{REQUIRE_SHIM}
</script></head>
<body><h3>{html.escape(title)}</h3>
{notes}
{fragment}
</body></html>
"""


def _compact(params_json: str) -> str:
    """bertviz's params JSON without spaces; '</' escaped so a token can't close the <script>."""
    compact = json.dumps(json.loads(params_json), separators=(",", ":"), ensure_ascii=False)
    return compact.replace("</", "<\\/")


def heatmap_grid(attn, tokens, *, layers=None, heads=None, title=None):
    """Figure of (L,H,T,T) attention heatmaps (seaborn, via plots.draw_heatmap), one panel per chosen
    (layer, head); rows query, columns key.

    Defaults: last layer, first 4 heads. Negative layer indices count from the end.
    """
    attn = np.asarray(attn)
    n_layers, n_heads, n, _ = attn.shape
    layers = [l % n_layers for l in (layers if layers is not None else [-1])]
    heads = list(heads) if heads is not None else list(range(min(4, n_heads)))
    panels = [(l, h) for l in layers for h in heads]
    ncols = min(len(panels), 4 if n <= 24 else 2)
    nrows = -(-len(panels) // ncols)
    labels = _display_tokens(tokens)
    fontsize = max(4.0, min(9.0, 320 / n))
    # Fixed margins instead of constrained layout: with 4 x 128 tick labels the layout engine
    # re-measures every label several times and triples the time to save the PNG.
    side = max(2.5, 0.085 * n)  # inches of heatmap per panel: one label row per token
    gap = _label_inches(labels, fontsize)  # room for a rotated/left tick-label column
    width, height = ncols * (side + gap) + 0.3, nrows * (side + gap + 0.35) + 0.5
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(
        nrows,
        ncols,
        squeeze=False,
        gridspec_kw=dict(
            left=gap / width,
            right=1 - 0.3 / width,
            bottom=gap / height,
            top=1 - 0.85 / height,
            wspace=gap / side,
            hspace=(gap + 0.35) / side,
        ),
    )
    for ax, (l, h) in zip(axes.flat, panels):
        plots.draw_heatmap(ax, attn[l, h], labels, labels, cmap="Blues", fontsize=fontsize, vmin=0)
        ax.set_title(f"layer {l} · head {h}", fontsize=10)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title, y=1 - 0.25 / height, va="top")
    return fig


def _label_inches(labels, fontsize) -> float:
    def em(t):  # Hangul/CJK glyphs are about twice as wide as Latin ones
        return sum(1.0 if unicodedata.east_asian_width(c) in "WF" else 0.65 for c in t)

    return max(map(em, labels), default=1) * fontsize / 72 + 0.3  # + tick and padding


def _display_tokens(tokens) -> list[str]:
    # same clean-up bertviz applies: BPE/SentencePiece word markers become a visible space
    return [t.replace("Ġ", " ").replace("▁", " ").replace("</w>", "") for t in tokens]
