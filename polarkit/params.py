"""Check a parameter YAML against a notebook's own `parameters` cell, before any kernel starts.

The notebook is the single source of truth: its `parameters` cell declares each name with a type
annotation and a default (`lr: float = 3e-5  # why`), which papermill's `inspect_notebook` reads.
"""
from __future__ import annotations

import ast
import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

TYPES: dict[str, type | tuple[type, ...]] = {
    "int": int, "float": (float, int), "str": str, "bool": bool, "list": list, "dict": dict,
}
# YAML 1.1 reads these as booleans; in YAML 1.2 (and in polarkit) only true/false are.
_YAML11_BOOLS = {"y", "yes", "n", "no", "on", "off"}


class ParamError(ValueError):
    """A parameter file does not match its notebook; the message names file, key and expectation."""


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # "int", "float", "str", "bool", "list", "dict" or "None" (anything goes)
    default: Any
    help: str


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema scalars: `1e-3` is a float, `no` stays a string."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:float")]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


_Loader.add_constructor("tag:yaml.org,2002:float", lambda loader, node: float(
    loader.construct_scalar(node).lower().replace(".inf", "inf").replace(".nan", "nan")))


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a parameter YAML (YAML 1.2 scalars); top level must be a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ParamError(f"{path}: no such parameter file")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except yaml.YAMLError as e:
        raise ParamError(f"{path}: not valid YAML: {e}") from None
    if data is None:
        return {}
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
        raise ParamError(f"{nb}: papermill cannot parse the parameters line(s) for {sorted(missed)}; "
                         "write `name: type = value  # comment` without quotes in the comment")
    out = {}
    for name, p in found.items():
        try:
            default = ast.literal_eval(p["default"])
        except (ValueError, SyntaxError):
            default = p["default"]
        out[name] = Param(name, p["inferred_type_name"] or "None", default, p["help"] or "")
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
    """Why `value` does not fit `p`, or None when it fits."""
    want = TYPES.get(p.type)
    if want is None or value is None and p.default is None:
        return None
    if isinstance(value, bool) and p.type != "bool":
        hint = " (YAML 1.1 reads yes/no/on/off as booleans: quote it)" if p.type == "str" else ""
        return f"{key}: expected {p.type}, got the boolean {value!r}{hint}"
    if isinstance(value, want):
        return None
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

    Raises ParamError listing every problem (unknown names with a did-you-mean, wrong types).
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
            raise ParamError(f"{key}: expected str, got the boolean {value!r} (YAML 1.1 reads yes/no/on/off "
                             "as booleans: quote the value in the YAML)")
    return fixed, notes


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`["lr=1e-4", "channels=[16, 32]"]` -> {"lr": 0.0001, "channels": [16, 32]} (values read as YAML 1.2)."""
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ParamError(f"-p {item!r}: expected NAME=VALUE, e.g. -p lr=1e-4")
        try:
            out[key.strip()] = yaml.load(text, Loader=_Loader) if text.strip() else ""
        except yaml.YAMLError as e:
            raise ParamError(f"-p {item!r}: value is not valid YAML: {e}") from None
    return out


def check_file(yaml_path: str | Path, notebook: str | Path | None = None) -> dict[str, Any]:
    """Check one YAML against its notebook (found from the file name when not given); return the values."""
    nb = Path(notebook) if notebook else notebook_for(yaml_path)
    return check(load_yaml(yaml_path), declared(nb), source=str(yaml_path))


def notebook_for(yaml_path: str | Path) -> Path:
    """params/<profile>/<NN>_<name>.yaml -> notebooks/<NN>_<name>.ipynb (next to params/)."""
    p = Path(yaml_path).resolve()
    nb = p.parents[2] / "notebooks" / f"{p.stem}.ipynb"
    if not nb.is_file():
        raise ParamError(f"{yaml_path}: no notebook {nb} for this parameter file "
                         "(expected params/<profile>/<notebook-stem>.yaml)")
    return nb
