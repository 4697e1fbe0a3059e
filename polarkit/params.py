"""Check a parameter YAML against a notebook's own `parameters` cell, before any kernel starts.

The notebook is the single source of truth: its `parameters` cell declares each name with a type
annotation and a default (`lr: float = 3e-5  # why`), which papermill's `inspect_notebook` reads.

Valid values may be declared at the end of the comment, in interval notation (never `>=`:
papermill skips a line with a second `=`); `inf` is infinity, `[`/`]` include the bound, `(`/`)`
do not; `{a, b}` is a set of choices:

    batch_size: int = 32  # nuisance: sentences per step [1, inf)
    dropout: float = 0.1  # nuisance: dropout before the head [0, 1)
    lr: float = 1e-4  # scientific: peak learning rate (0, inf)
    pooling: str = "mean"  # scientific: sentence vector under the head {cls, mean}
    channels: list = [32, 64, 128]  # scientific: conv widths, 3 ints in [1, inf)
    poolings: list = ["cls", "mean"]  # scientific: vectors compared, items in {pooler, cls, mean}

A list rule is `[COUNT] ints|numbers|items in RULE`: every item must fit RULE (and be an int for
`ints`); with COUNT the list has exactly that many items. `check` refuses a value outside its rule
before any kernel starts; `declared` refuses a notebook whose own default breaks its rule.

YAML is read as YAML 1.2 (core schema), in files and in `-p NAME=VALUE` alike: `010` is 10 (`0o10`
is octal), `1:04` and `2024-01-31` stay strings, `no`/`off` stay strings, `1e-3` is a float. A
duplicate key and a file without any parameter are refused.
"""

from __future__ import annotations

import ast
import difflib
import math
import re
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

TYPES: dict[str, type | tuple[type, ...]] = {
    "int": int,
    "float": (float, int),
    "str": str,
    "bool": bool,
    "list": list,
    "dict": dict,
}
# YAML 1.1 reads these as booleans; in YAML 1.2 (and in polarkit) only true/false are.
_YAML11_BOOLS = {"y", "yes", "n", "no", "on", "off"}


class ParamError(ValueError):
    """A parameter file does not match its notebook; the message names file, key and expectation."""


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, first: int, again: int):
        super().__init__(f"duplicate key {key!r} (lines {first} and {again}); each name may appear once")


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema scalars (`1e-3` a float, `no` a string, `010` decimal,
    no sexagesimal numbers or timestamps) that refuses duplicate keys."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = None if key_node.tag.endswith(":merge") else self.construct_object(key_node, deep=True)
                if not isinstance(key, Hashable) or key is None:
                    continue
                if key in seen:
                    raise _DuplicateKey(key, seen[key], key_node.start_mark.line + 1)
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


_YAML11_ONLY = ("bool", "float", "int", "timestamp", "value")  # re-added below as YAML 1.2, or gone
_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag.rsplit(":", 1)[-1] not in _YAML11_ONLY]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(  # before float, whose pattern also matches "10"
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _yaml12_int(loader, node) -> int:
    """`010` -> 10 (YAML 1.1 said 8), `0o10` -> 8, `0x1f` -> 31."""
    text = loader.construct_scalar(node)
    base = {"0o": 8, "0x": 16}.get(text[:2], 10)
    return int(text if base == 10 else text[2:], base)


_Loader.add_constructor("tag:yaml.org,2002:int", _yaml12_int)
_Loader.add_constructor(
    "tag:yaml.org,2002:float",
    lambda loader, node: float(loader.construct_scalar(node).lower().replace(".inf", "inf").replace(".nan", "nan")),
)

_NUM = r"-?(?:inf|[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)"
_RULE = re.compile(
    rf"(?:\b(?P<count>[0-9]+) )?(?:\b(?P<kind>ints|numbers|items) in )?"
    rf"(?P<rule>[\[(]\s*{_NUM}\s*,\s*{_NUM}\s*[\])]|\{{[^{{}},]+(?:,[^{{}},]+)+\}})"
)


@dataclass(frozen=True)
class Rule:
    """Valid values declared in a parameter's comment: an interval or a set; for lists, per item."""

    text: str  # as written in the notebook, for messages
    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple | None = None
    kind: str | None = None  # lists only: "ints", "numbers" or "items"
    count: int | None = None  # lists only: exact length

    def fits(self, x: Any) -> bool:
        """True if one scalar `x` is in the interval (or the set)."""
        if self.choices is not None:
            return x in self.choices and not isinstance(x, bool)
        if isinstance(x, bool) or not isinstance(x, int if self.kind == "ints" else (int, float)):
            return False
        return (self.lo < x if self.lo_open else self.lo <= x) and (x < self.hi if self.hi_open else x <= self.hi)

    def problem(self, value: Any) -> str | None:
        """Why `value` breaks the rule (e.g. "0 is not in [1, inf)"), or None."""
        if self.kind is None:
            return None if self.fits(value) else f"{value!r} is not in {self.text}"
        if not isinstance(value, list):
            return f"expected a list of {self.text}, got {value!r}"
        if self.count is not None and len(value) != self.count:
            return f"expected {self.text}, got {len(value)} item(s): {value!r}"
        bad = [f"item {i} ({x!r})" for i, x in enumerate(value, 1) if not self.fits(x)]
        return f"{', '.join(bad)} of {value!r}: expected {self.text}" if bad else None


def parse_rule(help_text: str) -> Rule | None:
    """The valid-values rule in a parameter comment (the last one; see the module docstring), or None."""
    found = list(_RULE.finditer(help_text))
    if not found:
        return None
    m = found[-1]
    rule, kind = m.group("rule"), m.group("kind")
    text, count = (m.group(0), int(m.group("count")) if m.group("count") else None) if kind else (rule, None)
    if rule.startswith("{"):
        choices = tuple(yaml.load(c.strip(), Loader=_Loader) for c in rule[1:-1].split(","))
        return Rule(text, choices=choices, kind=kind, count=count)
    lo, hi = (float(x) for x in rule[1:-1].split(","))
    return Rule(text, lo, hi, rule[0] == "(", rule[-1] == ")", kind=kind, count=count)


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # "int", "float", "str", "bool", "list", "dict" or "None" (anything goes)
    default: Any
    help: str
    rule: Rule | None = None  # valid values declared at the end of the comment


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a parameter YAML (YAML 1.2 scalars); top level must be a non-empty mapping (`{}` on purpose)."""
    path = Path(path)
    if not path.is_file():
        raise ParamError(f"{path}: no such parameter file")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except UnicodeDecodeError as e:
        raise ParamError(
            f"{path}: not UTF-8 text (byte {e.object[e.start : e.start + 1]!r} at offset {e.start}); save it as UTF-8"
        ) from None
    except _DuplicateKey as e:
        raise ParamError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise ParamError(f"{path}: not valid YAML: {e}") from None
    if data is None:
        raise ParamError(
            f"{path}: empty parameter file (no parameters, only comments or nothing), so the "
            "notebook's full-size defaults would run; set the parameters, or write `{}` to run "
            "the defaults on purpose"
        )
    if not isinstance(data, dict):
        raise ParamError(f"{path}: expected a mapping of parameter names to values, got {type(data).__name__}")
    return data


def declared(notebook: str | Path) -> dict[str, Param]:
    """Parameters declared in the notebook's `parameters` cell: name -> Param."""
    import papermill  # heavy-ish; only needed here

    nb = Path(notebook)
    if not nb.is_file():
        raise ParamError(f"{nb}: no such notebook")
    found = papermill.inspect_notebook(str(nb))
    if not found:
        raise ParamError(f"{nb}: has no cell tagged 'parameters'")
    missed = _assigned_names(nb) - set(found)
    if missed:  # papermill skips lines it cannot parse (e.g. quotes inside the comment)
        raise ParamError(
            f"{nb}: papermill cannot parse the parameters line(s) for {sorted(missed)}; "
            "write `name: type = value  # comment` without quotes or `=` in the comment"
        )
    out = {}
    for name, p in found.items():
        try:
            default = ast.literal_eval(p["default"])
        except (ValueError, SyntaxError):
            default = p["default"]
        out[name] = Param(
            name, p["inferred_type_name"] or "None", default, p["help"] or "", parse_rule(p["help"] or "")
        )
    bad = [
        f"{k}: default {p.default!r} breaks its own rule {p.rule.text}"
        for k, p in out.items()
        if p.rule and p.default is not None and p.rule.problem(p.default)
    ]
    if bad:
        raise ParamError(f"{nb}: parameters cell:\n  " + "\n  ".join(bad))
    return out


def _assigned_names(nb: Path) -> set[str]:
    """Names assigned at top level of the notebook's `parameters` cell (parsed with ast)."""
    import nbformat

    cell = next(c for c in nbformat.read(nb, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
    names = set()
    for node in ast.parse(cell.source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def _problem(key: str, value: Any, p: Param) -> str | None:
    """Why `value` does not fit `p` (type, then declared rule), or None when it fits."""
    want = TYPES.get(p.type)
    if want is None or value is None and p.default is None:
        return None
    if isinstance(value, bool) and p.type != "bool":
        hint = " (YAML 1.1 reads yes/no/on/off as booleans: quote it)" if p.type == "str" else ""
        return f"{key}: expected {p.type}, got the boolean {value!r}{hint}"
    if isinstance(value, want):
        why = p.rule.problem(value) if p.rule else None
        return f"{key}: {why} (default {p.default!r})" if why else None
    hint = ""
    if p.type in ("float", "int") and isinstance(value, str) and _is_number(value):
        hint = " (write it as a number, e.g. 1.0e-3, not quoted)"
    return f"{key}: expected {p.type} (default {p.default!r}), got {type(value).__name__} {value!r}{hint}"


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def check(values: dict[str, Any], params: dict[str, Param], source: str = "<parameters>") -> dict[str, Any]:
    """Validate `values` against declared `params`; return them with ints widened to floats where declared.

    Raises ParamError listing every problem (unknown names with a did-you-mean, wrong types, values
    outside the declared rule).
    """
    problems = []
    for key, value in values.items():
        if key not in params:
            near = difflib.get_close_matches(key, list(params), n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            problems.append(f"{key}: unknown parameter{hint} (declared: {', '.join(params)})")
        elif (why := _problem(key, value, params[key])) is not None:
            problems.append(why)
    if problems:
        raise ParamError(f"{source}:\n  " + "\n  ".join(problems))
    return {k: float(v) if params[k].type == "float" and isinstance(v, int) else v for k, v in values.items()}


def repair(values: dict[str, Any], params: dict[str, Param]) -> tuple[dict[str, Any], list[str]]:
    """Undo what a YAML 1.1 reader (plain papermill) did to values: '1e-3' -> 0.001. Returns (fixed, notes)."""
    fixed, notes = {}, []
    for key, value in values.items():
        p = params.get(key)
        if p and p.type == "float" and isinstance(value, str) and _is_number(value):
            fixed[key] = float(value)
            notes.append(f"{key}: {value!r} read as a string by YAML 1.1; using {float(value)!r}")
        elif p and p.type == "str" and isinstance(value, bool):
            raise ParamError(
                f"{key}: expected str, got the boolean {value!r} (YAML 1.1 reads yes/no/on/off "
                "as booleans: quote the value in the YAML)"
            )
    return fixed, notes


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`["lr=1e-4", "channels=[16, 32]"]` -> {"lr": 0.0001, "channels": [16, 32]} (values read as YAML 1.2)."""
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ParamError(f"-p {item!r}: expected NAME=VALUE, e.g. -p lr=1e-4")
        if key in out:
            raise ParamError(f"-p {key}: given twice ({out[key]!r}, then {item!r}); give each name once")
        try:
            out[key] = yaml.load(text, Loader=_Loader) if text.strip() else ""
        except yaml.YAMLError as e:
            raise ParamError(f"-p {item!r}: value is not valid YAML: {e}") from None
    return out


def check_file(yaml_path: str | Path, notebook: str | Path | None = None) -> dict[str, Any]:
    """Check one YAML against its notebook (found from the file name when not given); return the values."""
    values = load_yaml(yaml_path)  # the file's own problems (encoding, syntax, empty) first
    nb = Path(notebook) if notebook else notebook_for(yaml_path)
    return check(values, declared(nb), source=str(yaml_path))


def notebook_for(yaml_path: str | Path) -> Path:
    """params/<profile>/<NN>_<name>.yaml -> notebooks/<NN>_<name>.ipynb (next to params/)."""
    p = Path(yaml_path).resolve()
    nb = p.parents[min(2, len(p.parents) - 1)] / "notebooks" / f"{p.stem}.ipynb"
    if not nb.is_file():
        raise ParamError(
            f"{yaml_path}: no notebook {nb} for this parameter file (expected "
            "params/<profile>/<notebook-stem>.yaml; to pair any YAML with a notebook: "
            "polarkit run NOTEBOOK -f YAML)"
        )
    return nb
