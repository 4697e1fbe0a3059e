"""Which words carry a prediction (masking one word at a time) and which reviews to label next.

    proba = Predictor(model, tok, labels, max_length).scores      # (texts, pairs) -> [N, C]
    h = highlights(proba, "배우 연기가 최고였다", mask_token=tok.mask_token)
    html = highlight_html([h]); fig = highlight_figure([h])       # coloured views of the sentence
    picks = active_learning_picks(pool_df, pool_probs, labels, kind, tok)

A highlight masks each whitespace word in turn, scores the original and all masked variants in
one batched forward pass, and reports drop = p(target | original) - p(target | word masked),
where target is the predicted class (multi-label: the most confident class).
"""

from __future__ import annotations

import html as _html
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from polarkit import data, viz


@dataclass
class Highlight:
    """Words of one text, each word's probability drop when masked, the target class and its p."""

    text: str
    words: list[str]
    drops: np.ndarray
    target: str
    prob: float
    pair: str | None = None

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The k words whose masking lowers p(target) most, with the drop."""
        order = np.argsort(-self.drops, kind="stable")[:k]
        return [(self.words[i], float(self.drops[i])) for i in order]


def masked_variants(text: str, mask_token: str) -> tuple[list[str], list[str]]:
    """(words [W], variants [W]): variant i is the text with whitespace word i replaced by mask_token."""
    words = str(text).split()
    return words, [" ".join(words[:i] + [mask_token] + words[i + 1 :]) for i in range(len(words))]


def highlights(
    proba, text: str, pair: str | None = None, labels=None, mask_token: str = "<mask>", target: int | None = None
) -> Highlight:
    """Mask each word of `text` once; `proba(texts, pairs, batch_size)` -> [N, C] is called once on
    the original + every variant (one batch). target: a class id, default the predicted class."""
    words, variants = masked_variants(text, mask_token)
    batch = [str(text)] + variants
    pairs = None if pair is None else [pair] * len(batch)
    p = np.asarray(proba(batch, pairs, batch_size=len(batch)))
    t = int(np.argmax(p[0])) if target is None else int(target)
    name = str(labels[t]) if labels is not None else str(t)
    return Highlight(str(text), words, p[0, t] - p[1:, t], name, float(p[0, t]), pair)


def _scale(h: Highlight) -> float:
    """Shade relative to the text's own largest change, so a long review's words stay readable."""
    return max(float(np.abs(h.drops).max()) if len(h.drops) else 0.0, 1e-6)


def highlight_html(items: list[Highlight], title: str = "word highlights") -> str:
    """A standalone HTML page: one line per text, words shaded by their drop (hover shows the value)."""
    rows = []
    for h in items:
        scale = _scale(h)
        spans = " ".join(
            f'<span title="drop {d:+.3f}" style="background:rgba({int(c[0] * 255)},{int(c[1] * 255)},'
            f'{int(c[2] * 255)},{c[3]:.2f});padding:1px 2px;border-radius:3px">{_html.escape(w)}</span>'
            for w, d in zip(h.words, h.drops)
            for c in [viz.signed_colour(d, scale)]
        )
        head = f"<b>{_html.escape(h.target)}</b> p={h.prob:.2f}" + (
            f" · keyword <i>{_html.escape(h.pair)}</i>" if h.pair else ""
        )
        rows.append(f'<div style="margin:6px 0"><div style="font-size:80%;color:#555">{head}</div>{spans}</div>')
    legend = (
        "<p style='font-size:80%;color:#555'>red: masking the word lowers the predicted "
        "probability (evidence for it); blue: masking raises it. Darker = larger change, relative to "
        "the text's largest; hover a word for its value.</p>"
    )
    return (
        f"<!doctype html><meta charset='utf-8'><title>{_html.escape(title)}</title>"
        f"<div style='font-family:sans-serif;line-height:1.8'><h3>{_html.escape(title)}</h3>"
        f"{legend}{''.join(rows)}</div>"
    )


def highlight_figure(items: list[Highlight], width: float = 9.0, fontsize: int = 11) -> Figure:
    """The same view as a matplotlib Figure: words drawn left to right in shaded boxes, wrapped."""
    headers = [f"{h.target} p={h.prob:.2f}" + (f"  [{h.pair}]" if h.pair else "") for h in items]
    return viz.shaded_words([(h.words, h.drops) for h in items], headers, width=width, fontsize=fontsize)


# ---- active learning ----------------------------------------------------------------------


def uncertainty(probs, multilabel: bool = False) -> np.ndarray:
    """[N, C] probabilities -> [N] in [0, 1]: softmax rows (1 - max p) * C / (C - 1);
    sigmoid rows (multi-label) max over classes of 1 - |2p - 1| (1 when some p = 0.5)."""
    probs = np.asarray(probs, dtype=float)
    if multilabel:
        return (1.0 - np.abs(2.0 * probs - 1.0)).max(axis=1)
    c = probs.shape[1]
    return (1.0 - probs.max(axis=1)) * c / (c - 1)


def rare_token_scores(texts, tokenizer, late_frac: float = 0.5) -> np.ndarray:
    """[N] share of each text's tokens (specials excluded) that are unknown or have an id in the
    last (1 - late_frac) of the vocabulary (sentencepiece/BPE vocabularies put rare pieces late)."""
    ids = tokenizer([str(t) for t in texts], add_special_tokens=False)["input_ids"]
    late, unk = late_frac * len(tokenizer), tokenizer.unk_token_id
    return np.array([np.mean([(i == unk) or (i >= late) for i in row]) if row else 0.0 for row in ids])


def active_learning_picks(
    pool: pd.DataFrame,
    probs,
    labels,
    kind: str,
    tokenizer,
    k: int = 20,
    k_rare: int = 10,
    threshold=0.5,
    late_frac: float = 0.5,
) -> pd.DataFrame:
    """Reviews to label next from an unlabelled pool [N] with model probabilities [N, C]:
    the k most uncertain, then the k_rare with the most rare tokens among the rest.
    -> DataFrame[reason, text, (keyword), uncertainty, rare_share, predicted, confidence, (gold)]."""
    probs = np.asarray(probs, dtype=float)
    u = uncertainty(probs, multilabel=kind == "multi")
    rare = rare_token_scores(pool["text"], tokenizer, late_frac)
    first = np.argsort(-u, kind="stable")[:k]
    rest = np.setdiff1d(np.arange(len(pool)), first)
    second = rest[np.argsort(-rare[rest], kind="stable")[:k_rare]]
    table = pd.DataFrame({"reason": ["uncertain"] * len(first) + ["rare_tokens"] * len(second)})
    idx = np.concatenate([first, second]).astype(int)
    cols = ["text"] + (["keyword"] if "keyword" in pool else [])
    table[cols] = pool.iloc[idx][cols].to_numpy()
    table["uncertainty"], table["rare_share"] = u[idx], rare[idx]
    table["predicted"] = label_names(probs[idx], labels, kind, threshold)
    table["confidence"] = probs[idx].max(axis=1)
    if "label" in pool:  # a labelled pool (held out from training): keep the gold to check the picks
        table["gold"] = [_name(v, labels, kind) for v in pool["label"].iloc[idx]]
    return table.assign(pool_index=idx)


def label_names(probs, labels, kind: str, threshold=0.5) -> list[str]:
    """Label names per row of [N, C] probabilities (or 0/1 targets): the argmax class, or for
    multi-label ("multi") the classes at or above `threshold` (scalar or [C]) joined as "a, b"."""
    probs = np.asarray(probs)
    if kind == "multi":
        return [", ".join(labels[j] for j in np.flatnonzero(r >= np.asarray(threshold))) for r in probs]
    return [labels[int(j)] for j in probs.argmax(axis=1)]


def _name(v, labels, kind: str) -> str:
    if kind == "multi":
        return ", ".join(labels[j] for j in np.flatnonzero(np.asarray(v)))
    return labels[int(v)]


def pick_error_rates(picks: pd.DataFrame, pool_errors: np.ndarray) -> dict[str, float]:
    """Error rate of the model on the whole pool vs on each group of picks (pool_errors: [N] 0/1),
    so a reader sees whether the picks find the reviews the model gets wrong."""
    out = {"pool_error_rate": float(np.mean(pool_errors))}
    for reason, grp in picks.groupby("reason"):
        out[f"pool_{reason}_picks_error_rate"] = float(np.mean(pool_errors[grp["pool_index"].to_numpy()]))
    return out


def highlight_examples(
    proba, stage, split: str = "test", n: int = 6, seed: int = 0, mask_token: str = "<mask>"
) -> list[Highlight]:
    """Highlights for n seeded examples of a split (reviews of 3 to 40 words read best)."""
    df = getattr(stage, split)
    words = df["text"].str.split().str.len()
    pick = df[(words >= 3) & (words <= 40)]
    pick = data.sample(pick if len(pick) >= n else df, n, seed, keep_order=False)
    return [
        highlights(proba, t, k, stage.labels, mask_token)
        for t, k in zip(pick["text"], pick["keyword"] if "keyword" in pick else [None] * len(pick))
    ]


def highlight_table(items: list[Highlight], k: int = 3) -> pd.DataFrame:
    """One row per text: target, p, and the k words whose masking drops p most (with the drop)."""
    return pd.DataFrame(
        [
            {
                "text": h.text[:80],
                "keyword": h.pair,
                "target": h.target,
                "p": round(h.prob, 3),
                "top_words": ", ".join(f"{w} ({d:+.2f})" for w, d in h.top(k)),
            }
            for h in items
        ]
    )
