"""Find a Hangul-capable font and make it matplotlib's default, with DejaVu Sans as fallback.

Search order: the NanumGothic TTFs shipped by the PyPI package `koreanize-matplotlib`
(located, not imported: importing it rewrites rcParams and uses the removed `distutils`),
then fonts matplotlib already knows (e.g. Debian `fonts-nanum`, `fonts-noto-cjk`), then
fontconfig (`fc-list :lang=ko`) for fonts installed after matplotlib built its cache.
"""

from __future__ import annotations

import functools
import importlib.util
import shutil
import subprocess
import warnings
from pathlib import Path

import matplotlib
from matplotlib import font_manager
from matplotlib.ft2font import FT2Font

PROBE = "한글가힣"  # a font counts as Hangul-capable only if it has all of these glyphs
KNOWN_FAMILIES = (  # preferred system families, best first
    "NanumGothic",
    "NanumBarunGothic",
    "Noto Sans CJK KR",
    "Noto Sans KR",
    "Source Han Sans KR",
    "Malgun Gothic",
    "Apple SD Gothic Neo",
    "AppleGothic",
    "UnDotum",
    "Baekmuk Gulim",
)
LATIN_FALLBACK = "DejaVu Sans"  # ships with matplotlib; covers the U+2212 minus, math symbols
_warned = False


def has_hangul(path: str | Path) -> bool:
    """True if the font file at `path` has glyphs for every character of PROBE."""
    try:
        font = FT2Font(str(path))
    except (OSError, RuntimeError, ValueError):
        return False
    return all(font.get_char_index(ord(ch)) for ch in PROBE)


def _packaged_fonts() -> list[Path]:
    spec = importlib.util.find_spec("koreanize_matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(list(spec.submodule_search_locations)[0]) / "fonts"
    return sorted(folder.glob("NanumGothic*.ttf"))  # NanumGothic.ttf first, then the Bold etc.


def _system_fonts() -> list[Path]:
    def distance_from_regular(f):
        w = f.weight if isinstance(f.weight, int) else font_manager.weight_dict.get(f.weight, 400)
        return -abs(w - 400)  # sorted ascending, so the regular weight is written to `known` last

    entries = sorted((f for f in font_manager.fontManager.ttflist if f.style == "normal"), key=distance_from_regular)
    known = {f.name: Path(f.fname) for f in entries}
    paths = [known[name] for name in KNOWN_FAMILIES if name in known]
    if shutil.which("fc-list"):  # fonts installed after matplotlib cached its font list
        out = subprocess.run(["fc-list", ":lang=ko", "file", "family"], capture_output=True, text=True).stdout
        found = [line.split(": ", 1) + [""] for line in out.splitlines() if line.strip()]
        rank = {name: i for i, name in enumerate(KNOWN_FAMILIES)}
        found.sort(
            key=lambda f: (
                min([rank[n] for n in f[1].split(",") if n in rank] or [len(rank)]),
                "bold" in f[0].lower(),
                f[0],
            )
        )  # known families first, regular weight first
        paths += [Path(f[0].rstrip(":")) for f in found]
    return paths


@functools.cache
def hangul_font() -> str | None:
    """Register the first Hangul-capable font with matplotlib; return its family name or None."""
    packaged = [p for p in _packaged_fonts() if has_hangul(p)]
    for path in packaged:  # register every weight so fontweight="bold" works too
        font_manager.fontManager.addfont(str(path))
    if packaged:
        return font_manager.FontProperties(fname=str(packaged[0])).get_name()
    for path in _system_fonts():
        if path.suffix.lower() in {".ttf", ".otf", ".ttc"} and has_hangul(path):
            font_manager.fontManager.addfont(str(path))
            return font_manager.FontProperties(fname=str(path)).get_name()
    return None


def setup() -> str | None:
    """Make the Hangul font matplotlib's default (Latin falls back to DejaVu Sans); warn once if none."""
    global _warned
    name = hangul_font()
    if name is None:
        if not _warned:
            _warned = True
            warnings.warn(
                "polarkit.viz: no Hangul-capable font found, Korean text in plots will show as "
                "empty boxes. Install one: `pip install koreanize-matplotlib` or "
                "`apt-get install -y fonts-nanum`.",
                stacklevel=2,
            )
        return None
    matplotlib.rcParams.update(rc())
    return name


def rc() -> dict:
    """The rcParams that put the Hangul font first ({} when there is none): pass as `rc=` or `rc_context`.

    Apply them after any seaborn theme: `sns.set_theme` sets font.family to "sans-serif"
    (Arial, DejaVu Sans, ...), which has no Hangul glyphs.
    """
    name = hangul_font()
    if name is None:
        return {}
    # Per-glyph fallback goes along font.family (matplotlib >= 3.6): Hangul from `name`,
    # anything it lacks (e.g. U+2212 minus, ✓) from DejaVu Sans.
    return {"font.family": [name, LATIN_FALLBACK], "axes.unicode_minus": False}  # Hangul fonts often lack U+2212
