"""Compile a per-codepoint normalisation table into a sentencepiece "precompiled charsmap".

`tokenizers.normalizers.Precompiled` reads the format sentencepiece writes: a u32 byte size,
a darts-clone double-array trie over the UTF-8 keys, then the NUL-terminated replacement
strings; a trie value is the byte offset of its replacement. sentencepiece is not a
dependency of polarkit, so the trie is built here (a few thousand keys: ~30 ms). A module of
its own because it is a file-format writer with nothing e5-specific in it.

Known limit of `Precompiled` itself (tokenizers 0.23): it looks whole grapheme clusters of
under 6 bytes up first and uses the shortest key that prefixes one, so a mapped character
directly followed by a combining mark (e.g. full-width "Ａ" + U+0301) loses the mark.
"""

from __future__ import annotations

import struct

_HAS_LEAF = 1 << 8
_IS_LEAF = 1 << 31
_MAX_OFFSET = 1 << 21  # larger offsets need darts-clone's extension bit; never reached here


def _trie(keys: dict[bytes, int]) -> dict:
    """Nested dict byte -> child; label 0 holds a key's value (darts-clone's leaf)."""
    root: dict = {}
    for key, value in keys.items():
        node = root
        for byte in key:
            node = node.setdefault(byte, {})
        node[0] = value
    return root


def double_array(keys: dict[bytes, int]) -> list[int]:
    """darts-clone unit array for `keys` (non-empty byte strings without NUL) -> values."""
    size = 1 << 12
    units, used, bases = [0] * size, bytearray(size), set()
    used[0] = 1  # the root
    stack = [(_trie(keys), 0)]
    while stack:
        node, pos = stack.pop()
        labels = sorted(node)
        free = used.find(0, 1)
        while True:  # first base whose child slots are all free; a base serves one node only
            base = free ^ labels[0]
            if base not in bases and all(base ^ lab < size and not used[base ^ lab] for lab in labels):
                break
            free = used.find(0, free + 1)
            if free < 0:
                free, units, used, size = size, units + [0] * size, used + bytearray(size), 2 * size
        bases.add(base)
        if pos ^ base >= _MAX_OFFSET:
            raise ValueError("charsmap trie too large for plain darts offsets")
        units[pos] |= ((pos ^ base) << 10) | (_HAS_LEAF if 0 in node else 0)
        for lab in labels:
            used[base ^ lab] = 1
            if lab == 0:
                units[base] = node[0] | _IS_LEAF
            else:
                units[base ^ lab] = lab
                stack.append((node[lab], base ^ lab))
    n = len(used.rstrip(b"\0"))
    return units[: (n + 255) // 256 * 256]  # lookups XOR inside a 256-unit block: keep whole blocks


def compile_charsmap(table: dict[int, str]) -> bytes:
    """Precompiled charsmap bytes mapping each codepoint in `table` to its replacement string."""
    blob, where, keys = bytearray(b"\0"), {"": 0}, {}
    for cp, out in sorted(table.items()):
        if out not in where:
            where[out] = len(blob)
            blob += out.encode("utf-8") + b"\0"
        keys[chr(cp).encode("utf-8", "surrogatepass")] = where[out]
    units = double_array(keys)
    return struct.pack(f"<I{len(units)}I", 4 * len(units), *units) + bytes(blob)
