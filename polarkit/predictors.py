"""One predictor API for every task: `polarkit.load(spec).predict(inputs) -> list[dict]`.

    p = polarkit.load("sts@champion")          # registry alias -> that version's model folder (cached)
    p = polarkit.load("cola/3")                # registry version
    p = polarkit.load("outputs/03_nlp_cola/<run>")   # a run folder: its one model under models/
    p = polarkit.load("outputs/03_nlp_cola/<run>/models/best")   # a model folder
    p.predict(["The cat sat on the mat."])     # [{"label", "confidence", "probs"}]

A model folder holds the task's own files (safetensors weights, tokenizer, config) plus
`polarkit_model.json`: {"task", "kind", "loader", "labels", ...}. `loader` is a dotted path
("polarkit.tasks.predict:TextClassifier.load") resolved with importlib when the folder is loaded, so
this core module never imports the task modules. Only loaders inside the `polarkit` package are
accepted: a model card from a registry cannot name an arbitrary callable.

Output per kind (one dict per input, input order): classification `label`, `confidence`, `probs`;
multilabel `labels` (the labels at or above their threshold, with their probabilities) and `probs`;
sts `score` 0-5 for a pair; keyword_sentiment `pairs` [(keyword, polarity)]; encoder `embedding`.
Registry models are downloaded once to `$POLARKIT_MODELS/registry/` (default ~/.cache/polarkit/models).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

CARD = "polarkit_model.json"
KINDS = ("classification", "sts", "multilabel", "keyword_sentiment", "encoder")
PAIR_KINDS = ("sts",)  # kinds whose inputs are (text, text) pairs
_ALIAS = re.compile(r"^(?P<task>[A-Za-z][\w.-]*)@(?P<alias>[A-Za-z][\w-]*)$")
_VERSION = re.compile(r"^(?P<task>[A-Za-z][\w.-]*)/(?P<version>\d+)$")
_LOADER = re.compile(r"^(?P<module>polarkit(\.\w+)*):(?P<attr>\w+(\.\w+)*)$")


def save_model_card(model_dir: Path | str, task: str, loader: str, kind: str, **meta: Any) -> Path:
    """Write `polarkit_model.json` into `model_dir` (which already holds the weights) -> its path.

    loader: "polarkit.tasks.predict:TextClassifier.load" (called with the folder); kind: one of KINDS;
    meta: labels, thresholds, max_length, prefix, metric, ... (JSON values)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not _LOADER.match(loader):
        raise ValueError(f"loader must be 'polarkit.module:Name.attr' inside polarkit, got {loader!r}")
    d = Path(model_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: no such model folder (save the weights first)")
    from polarkit import runs

    card = {
        "task": task,
        "kind": kind,
        "loader": loader,
        **meta,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    runs.write_json(d / CARD, card)
    return d / CARD


def read_card(model_dir: Path | str) -> dict:
    """The folder's polarkit_model.json; ValueError when the folder holds none (not a saved model)."""
    path = Path(model_dir) / CARD
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(
            f"{Path(model_dir)}: no saved model here (no {CARD}; save one with "
            "polarkit.tasks.predict.save_* or the notebook's `register` parameter)"
        ) from None
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: unreadable model card: {e}") from None
    missing = [k for k in ("task", "kind", "loader") if k not in card]
    if missing:
        raise ValueError(f"{path}: model card lacks {missing}")
    return card


def update_card(model_dir: Path | str, **fields: Any) -> dict:
    """Merge `fields` into the folder's model card; returns the card."""
    from polarkit import runs

    card = {**read_card(model_dir), **fields}
    runs.write_json(Path(model_dir) / CARD, card)
    return card


def load(spec: str | Path, quantize: bool = False):
    """The predictor for `spec`: TASK@ALIAS, TASK/VERSION, a run folder or a model folder (see module doc).

    quantize: int8 dynamic quantisation of the Linear layers (CPU inference; see `quantize_linear`)."""
    return load_model_dir(resolve(spec), quantize=quantize)


def load_model_dir(model_dir: Path | str, quantize: bool = False):
    """Load a model folder through the loader its card names (imported here, at load time)."""
    card = read_card(model_dir)
    fn = _loader(card["loader"])
    return fn(Path(model_dir), quantize=quantize) if quantize else fn(Path(model_dir))


def _loader(dotted: str):
    m = _LOADER.match(dotted)
    if not m:
        raise ValueError(f"model card loader {dotted!r} refused: only 'polarkit.<module>:<Name>[.attr]' loaders run")
    try:
        obj = importlib.import_module(m["module"])
        for part in m["attr"].split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ValueError(
            f"model card loader {dotted!r} not found in this polarkit ({e}); "
            "is the model newer than the installed polarkit?"
        ) from None
    return obj


def parse_spec(spec: str | Path) -> tuple[str, ...]:
    """("path", folder) | ("alias", task, alias) | ("version", task, version). An existing folder wins."""
    text = str(spec)
    p = Path(text).expanduser()
    if p.exists():
        return ("path", str(p.absolute()))
    if m := _ALIAS.match(text):
        return ("alias", m["task"], m["alias"])
    if m := _VERSION.match(text):
        return ("version", m["task"], m["version"])
    raise ValueError(
        f"{text!r}: no such folder, and not a registry spec (TASK@ALIAS such as sts@champion, "
        "or TASK/VERSION such as cola/3)"
    )


def is_registry_spec(spec: str | Path) -> bool:
    """True for TASK@ALIAS / TASK/VERSION strings that name no existing folder (hub ids such as
    klue/roberta-base are not registry specs: their second part is not a number)."""
    try:
        return parse_spec(spec)[0] != "path"
    except ValueError:
        return False


def resolve(spec: str | Path, uri: str | None = None) -> Path:
    """The local model folder for `spec` (a registry model is downloaded to the cache first)."""
    kind, *rest = parse_spec(spec)
    if kind == "path":
        return model_dir_in(Path(rest[0]))
    from polarkit import registry

    task, ref = rest
    version = registry.version_of(
        task, alias=ref if kind == "alias" else None, version=ref if kind == "version" else None, uri=uri
    )
    return download(task, version, uri)


def model_dir_in(path: Path) -> Path:
    """`path` if it is a model folder; a run folder's one model under models/ (a clear error for none or several)."""
    if (path / CARD).is_file():
        return path
    found = sorted({p.parent for pattern in (f"models/*/{CARD}", f"*/{CARD}") for p in path.glob(pattern)})
    if len(found) == 1:
        return found[0]
    if not found:
        what = "run folder" if (path / "status.json").exists() else "folder"
        raise ValueError(
            f"{path}: this {what} holds no saved model (no {CARD} here or under models/*/); "
            "run the notebook with register=True (or save_model=True)"
        )
    raise ValueError(f"{path} holds several models; name one: " + ", ".join(str(p) for p in found))


def cache_dir() -> Path:
    """Where registry models are downloaded: $POLARKIT_MODELS/registry (default ~/.cache/polarkit/models/registry)."""
    return Path(os.environ.get("POLARKIT_MODELS") or "~/.cache/polarkit/models").expanduser().absolute() / "registry"


def download(task: str, version: int | str, uri: str | None = None) -> Path:
    """The model folder of registered version `task`/`version`, downloaded once into `cache_dir()`."""
    from polarkit import tracking

    uri = uri or tracking.tracking_uri()
    with tracking.session(uri, quick=False, fluent=True) as client:
        mv = client.get_model_version(task, str(version))
        key = hashlib.sha1(f"{tracking.redact(uri)}|{mv.source}".encode()).hexdigest()[:10]
        target = cache_dir() / task / f"{version}-{key}"  # by store + source: a reset store never hits old files
        if not (target / "MLmodel").is_file():
            import mlflow

            tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            try:
                mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{task}/{version}", dst_path=str(tmp))
                try:
                    os.replace(tmp, target)
                except OSError:  # another process finished first: use its copy
                    if not (target / "MLmodel").is_file():
                        raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return target / _artifact_path(target)


def _artifact_path(mlflow_model_dir: Path) -> str:
    """The polarkit model folder inside a downloaded MLflow model (the pyfunc's "model" artifact)."""
    import yaml

    meta = yaml.safe_load((mlflow_model_dir / "MLmodel").read_text(encoding="utf-8"))
    arts = meta.get("flavors", {}).get("python_function", {}).get("artifacts", {})
    path = (arts.get("model") or {}).get("path")
    if not path or not (mlflow_model_dir / path / CARD).is_file():
        raise ValueError(f"{mlflow_model_dir}: not a polarkit model (no 'model' artifact holding {CARD})")
    return path


# ---- inputs ----


def as_texts(inputs: Any) -> list[str]:
    """A str, a sequence of str, a Series or a DataFrame (its `text` column, else its only column) -> [str]."""
    if isinstance(inputs, str):
        return [inputs]
    if hasattr(inputs, "columns"):  # a DataFrame
        cols = list(inputs.columns)
        col = "text" if "text" in cols else cols[0] if len(cols) == 1 else None
        if col is None:
            raise ValueError(f"which column holds the texts? name it 'text' (columns: {cols})")
        inputs = inputs[col]
    texts = [inputs] if isinstance(inputs, str) else list(inputs)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise ValueError(f"expected texts, got {type(texts[bad[0]]).__name__} at position {bad[0]}")
    return texts


PAIR_COLUMNS = (("sentence1", "sentence2"), ("text", "text_pair"), ("text", "keyword"), ("text1", "text2"))


def as_pairs(inputs: Any) -> tuple[list[str], list[str]]:
    """(first texts, second texts) from [(a, b), ...], one (a, b) pair, or a DataFrame with
    sentence1/sentence2 (or text/text_pair, text/keyword, text1/text2, or exactly two) columns."""
    if hasattr(inputs, "columns"):
        cols = list(inputs.columns)
        pair = next((p for p in PAIR_COLUMNS if set(p) <= set(cols)), tuple(cols) if len(cols) == 2 else None)
        if pair is None:
            raise ValueError(f"pair inputs need columns sentence1 and sentence2 (or exactly two columns); got {cols}")
        return inputs[pair[0]].astype(str).tolist(), inputs[pair[1]].astype(str).tolist()
    items = list(inputs)
    if len(items) == 2 and all(isinstance(x, str) for x in items):
        items = [tuple(items)]  # one pair given bare
    bad = [i for i, x in enumerate(items) if isinstance(x, str) or len(x) != 2]
    if bad:
        raise ValueError(f"expected (text, text) pairs, got {items[bad[0]]!r} at position {bad[0]}")
    return [str(a) for a, _ in items], [str(b) for _, b in items]


def quantize_linear(model):
    """A copy of `model` whose nn.Linear layers run in int8 (dynamic quantisation; CPU inference only).

    ONNX Runtime's int8 kernels through `polarkit.quantize` (weights int8 per output channel, activations
    quantised per call); without onnxruntime, torch's deprecated `torch.ao` path with a warning. Measured on
    e5-small-ko (benchmarks/compare_int8.py, bench_predict.py): ~2.1-2.3x the fp32 throughput on NSMC reviews
    (1.5x on 128-token texts), embeddings' cosine to fp32 mean 0.996; NSMC accuracy change within noise, but
    3% of the labels flip: opt-in (`load(..., quantize=True)`, `polarkit predict --quantize`)."""
    from polarkit import quantize

    return quantize.quantize_linear(model)


def chunks(items: Sequence, size: int):
    """Consecutive slices of `items` of at most `size` (for progress over a long input)."""
    for i in range(0, len(items), size):
        yield items[i : i + size]
