"""Masked-LM domain adaptation of an encoder on job-description (JD) text.

    texts = mlm.jd_texts(corpus, sections=("자격요건", "우대조건", "주요업무"))   # long format
    ds = mlm.windows(texts["text"], tok, max_length=128, overlap=32, whole_word=True)
    model = mlm.sparse_loss(models.load_model(spec, head="masked_lm"))
    coll = mlm.collator(tok, whole_word=True)
    held = mlm.fixed_batches(heldout_ds, mlm.collator(tok, whole_word=True, seed=0))
    mlm.masked_loss(model, held)                     # {'loss', 'perplexity', 'accuracy', 'tokens'}
    trainer, hist = mlm.train_stage(model, ds, coll, held, stage="head", steps=40)

The packaged encoders carry no MLM head: `load_model(..., head="masked_lm")` initialises one and
ties its decoder to the input embeddings. A fresh head starts above the uniform-guess loss, so
domain adaptation is judged on held-out text against a head-only warm-up, not against step 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from transformers import DataCollatorForLanguageModeling, TrainerCallback
from transformers.modeling_outputs import MaskedLMOutput

from polarkit import data, models, train

STAGES = ("head", "full")


def jd_texts(df: pd.DataFrame, sections=("자격요건", "우대조건", "주요업무"), min_chars: int = 20) -> pd.DataFrame:
    """JDs [N rows, one column per section] -> DataFrame[url, section, text], one row per non-trivial section."""
    data.require_columns(df, sections, "jd_texts: sections that are not JD columns")
    long = df.melt(id_vars=["출처 URL"], value_vars=list(sections), var_name="section", value_name="text")
    long["text"] = long["text"].astype(str).str.replace(r"[ \t]+", " ", regex=True).str.strip()
    long = long[long["text"].str.len() >= min_chars].rename(columns={"출처 URL": "url"})
    return long.reset_index(drop=True)


def windows(texts, tokenizer, max_length: int = 128, overlap: int = 32, whole_word: bool = False):
    """Token windows over texts -> datasets.Dataset[input_ids, attention_mask, special_tokens_mask(, word_ids)].

    A text longer than `max_length` becomes several windows sharing `overlap` tokens (0 = plain chunks).
    `word_ids` (-1 on special tokens) marks which tokens form one word, for whole-word masking.
    """
    import datasets

    if not 0 <= overlap < max_length - 2:
        raise ValueError(f"overlap must be in [0, max_length - 2), got {overlap} for max_length {max_length}")
    enc = tokenizer(
        list(texts),
        truncation=True,
        max_length=max_length,
        stride=overlap,
        return_overflowing_tokens=True,
        return_special_tokens_mask=True,
    )
    cols = {k: enc[k] for k in ("input_ids", "attention_mask", "special_tokens_mask")}
    if whole_word:
        cols["word_ids"] = [[-1 if w is None else w for w in enc.word_ids(i)] for i in range(len(enc["input_ids"]))]
    return datasets.Dataset.from_dict(cols)


def word_offsets(word_ids, width: int) -> np.ndarray:
    """Fake offsets [B, width, 2] whose gaps sit exactly at word starts, from word ids [B][T] (-1 = special)."""
    w = np.full((len(word_ids), width), -1, dtype=np.int64)
    for i, ids in enumerate(word_ids):
        w[i, : len(ids)] = ids
    start = np.arange(width)[None, :] + np.maximum.accumulate(np.maximum(w, 0), axis=1)
    return np.stack([start, start + 1], axis=-1)  # next word id -> start jumps past the previous end


class WholeWordCollator(DataCollatorForLanguageModeling):
    """MLM collator whose whole-word masking uses the tokenizer's word ids.

    transformers finds word starts from gaps between token offsets; sentencepiece offsets include
    the leading space ("▁개발" starts where the previous token ended), so every sequence would be one
    word. The dataset's `word_ids` are turned into offsets that carry exactly the word boundaries.
    """

    def torch_call(self, examples):
        if self.seed is not None and self.generator is None:
            self.create_rng()
        examples = [dict(e) for e in examples]
        word_ids = [e.pop("word_ids") for e in examples]
        batch = self.tokenizer.pad(examples, return_tensors="pt", pad_to_multiple_of=self.pad_to_multiple_of)
        special = batch.pop("special_tokens_mask")
        offsets = word_offsets(word_ids, batch["input_ids"].shape[1])
        batch["input_ids"], batch["labels"] = self.torch_mask_tokens(
            batch["input_ids"], special_tokens_mask=special, offset_mapping=offsets
        )
        return batch


def collator(tokenizer, mlm_probability: float = 0.15, whole_word: bool = False, seed: int | None = None):
    """MLM collator: pads, masks `mlm_probability` of tokens (whole words if asked); labels -100 elsewhere.

    Token masking keeps BERT's 80/10/10 replacement; whole-word masking always uses the mask token
    (transformers' rule). A `seed` makes the masks repeatable (for a fixed held-out set).
    """
    if tokenizer.mask_token is None:
        raise ValueError("the tokenizer has no mask token, so it cannot be used for masked-LM training")
    cls = WholeWordCollator if whole_word else DataCollatorForLanguageModeling
    replace = {"mask_replace_prob": 1.0, "random_replace_prob": 0.0} if whole_word else {}
    return cls(tokenizer, mlm_probability=mlm_probability, whole_word_mask=whole_word, seed=seed, **replace)


def lm_head(model) -> torch.nn.Module:
    """The MLM head module of a *ForMaskedLM model (BERT `cls`, RoBERTa `lm_head`, ...)."""
    heads = [m for name, m in model.named_children() if name != model.base_model_prefix]
    if len(heads) != 1:
        raise ValueError(f"{type(model).__name__}: expected one head beside the encoder, found {len(heads)}")
    return heads[0]


def sparse_loss(model):
    """Make `model(**batch, labels=...)` run the LM head only at masked positions -> returns model.

    With a 250k vocabulary the head over every position dominates a step (CPU_NOTES: ~2x faster).
    The output's logits are [n_masked, V]; without labels the model's own forward runs unchanged.
    """
    full, head = model.forward, lm_head(model)

    def forward(input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        if labels is None:
            return full(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, **kwargs)
        n_items = kwargs.pop("num_items_in_batch", None)  # Trainer: masked tokens over grad-accum steps
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        sel = labels != -100
        logits = head(hidden[sel])
        loss = F.cross_entropy(logits.float(), labels[sel], reduction="sum")
        return MaskedLMOutput(loss=loss / (n_items if n_items is not None else sel.sum().clamp(min=1)), logits=logits)

    model.forward = forward  # instance attribute: save_pretrained and weight tying are untouched
    return model


def set_trainable(model, stage: str, freeze_embeddings: bool = True) -> dict[str, int]:
    """stage 'head': only the MLM head trains (its decoder weight is the tied embedding, kept frozen);
    'full': encoder + head, word embeddings (= decoder) frozen if asked. -> {trainable, total} params."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    words = model.get_input_embeddings().weight
    head_ids = {id(p) for p in lm_head(model).parameters()}
    for p in model.parameters():
        p.requires_grad = (id(p) in head_ids or stage == "full") and not (
            p is words and (stage == "head" or freeze_embeddings)
        )
    return {"trainable": models.n_params(model, trainable=True), "total": models.n_params(model)}


def head_state(model) -> dict[str, torch.Tensor]:
    """A copy of the MLM head's own weights (without the tied decoder matrix), to restore later."""
    words = model.get_input_embeddings().weight
    return {k: v.detach().clone() for k, v in lm_head(model).named_parameters() if v is not words}


def load_head_state(model, state: dict[str, torch.Tensor]) -> None:
    """Put back weights saved by `head_state`."""
    lm_head(model).load_state_dict(state, strict=False)


def fixed_batches(dataset, collate, batch_size: int = 16) -> list[dict[str, torch.Tensor]]:
    """Held-out batches masked once (give `collate` a seed), so every model is scored on the same tokens."""
    rows = [dataset[i] for i in range(len(dataset))]
    return [collate(rows[i : i + batch_size]) for i in range(0, len(rows), batch_size)]


@torch.inference_mode()
def masked_loss(model, batches) -> dict[str, float]:
    """Mean cross-entropy over the masked tokens of `batches`, its perplexity, top-1 accuracy, token count."""
    was_training, total, hits, n = model.training, 0.0, 0, 0
    model.eval()
    for b in batches:
        out = model(**b)
        gold = b["labels"][b["labels"] != -100]
        total += F.cross_entropy(out.logits.float(), gold, reduction="sum").item()
        hits += (out.logits.argmax(-1) == gold).sum().item()
        n += len(gold)
    model.train(was_training)
    if n == 0:
        raise ValueError("no masked tokens in the held-out batches")
    return {"loss": total / n, "perplexity": float(np.exp(total / n)), "accuracy": hits / n, "tokens": n}


class HeldoutCurve(TrainerCallback):
    """Scores the fixed held-out batches every `every` steps; rows of (step, eval_loss) in `.rows`."""

    def __init__(self, batches, every: int):
        self.batches, self.every, self.rows = batches, max(1, every), []

    def on_step_end(self, args, state, control, model=None, **kw):
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            self.rows.append({"step": state.global_step, "eval_loss": masked_loss(model, self.batches)["loss"]})


def train_stage(
    model,
    train_ds,
    collate,
    heldout,
    *,
    stage: str,
    steps: int,
    out_dir: str | Path | None = None,
    lr: float = 1e-4,
    batch_size: int = 16,
    evals: int = 4,
    freeze_embeddings: bool = True,
    seed: int = 0,
    **fit_kw,
):
    """Train `steps` steps of one stage ('head' | 'full') with polarkit.train.fit -> (trainer, history).

    history: DataFrame[step, train_loss, eval_loss, stage]; eval_loss on the fixed held-out batches.
    Nothing is checkpointed (no eval set): `out_dir` None gives Trainer a temporary folder, removed after.
    `trainer.train_seconds` is the stage's training time (held-out scoring included).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    set_trainable(model, stage, freeze_embeddings)
    curve = HeldoutCurve(heldout, steps // max(1, evals))
    trainer, _ = train.fit(
        model,
        train_ds,
        None,
        out_dir=out_dir,
        max_steps=steps,
        lr=lr,
        batch_size=batch_size,
        collator=collate,
        group_by_length=False,
        seed=seed,
        callbacks=[curve],
        logging_steps=max(1, steps // 20),  # ~20 training-loss points per stage
        remove_unused_columns=False,
        **fit_kw,
    )  # keep word_ids for the collator
    logged = [{"step": e["step"], "train_loss": e["loss"]} for e in trainer.state.log_history if "loss" in e]
    hist = pd.concat([pd.DataFrame(logged), pd.DataFrame(curve.rows)], ignore_index=True)
    return trainer, hist.groupby("step", as_index=False).first().assign(stage=stage)


@torch.inference_mode()
def fill_mask(model, tokenizer, texts, top_k: int = 3) -> pd.DataFrame:
    """Top-k fillers for the first "{mask}" in each text -> DataFrame[text, fillers]."""
    model.eval()
    texts = [t.replace("{mask}", tokenizer.mask_token) for t in texts]
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    logits = model(**{k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}).logits
    rows = []
    for i, text in enumerate(texts):
        pos = (enc["input_ids"][i] == tokenizer.mask_token_id).nonzero()
        if len(pos) == 0:
            raise ValueError(f"no {{mask}} in example {text!r}")
        top = torch.softmax(logits[i, pos[0, 0]], -1).topk(top_k)
        words = [tokenizer.decode([t]).strip() for t in top.indices.tolist()]
        rows.append({"text": text, "fillers": ", ".join(f"{w} ({p:.2f})" for w, p in zip(words, top.values.tolist()))})
    return pd.DataFrame(rows)


def save_encoder(model, tokenizer, out_dir: str | Path) -> Path:
    """Save the adapted encoder (no MLM head) + tokenizer as a from_pretrained directory (safetensors)."""
    out = Path(out_dir)
    model.base_model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
