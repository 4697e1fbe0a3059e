"""polarkit's layers (DESIGN.md, Layering): the core imports in one direction only, and never `tasks`.

Core modules sit at the top of the package; task modules live under `polarkit/tasks/` and may
import any core module (and each other), never the other way round.
"""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "polarkit"
# Lower layers never import higher ones; same-layer imports are allowed.
LAYER = {
    "score": 0,
    "params": 1,
    "runs": 1,
    "environment": 1,
    "data": 2,
    "models": 3,
    "quantize": 3,  # int8 Linear layers (ONNX Runtime); embed and predictors use it
    "train": 4,
    "trial": 4,
    "embed": 4,
    "viz": 5,
    "report": 6,
    "executor": 7,
    "scaffold": 7,
    "sweep": 7,
    "cli": 8,
    "tracking": 1,
    "registry": 6,
    "predictors": 6,
    "pyfunc_model": 6,
    "serve": 7,
    "cli_models": 8,
}


def _module(path: Path) -> str:
    return path.relative_to(PKG).parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    """Top-level polarkit modules (or `tasks`) that `path` imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("polarkit"):
            parts = node.module.split(".")
            found |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("polarkit.")}
    return found


def _core_files():
    return [p for p in PKG.rglob("*.py") if _module(p) not in ("tasks", "__init__", "__main__")]


def test_every_core_module_has_a_layer():
    mods = {_module(p) for p in _core_files()}
    assert mods <= set(LAYER), f"add to LAYER (or move under polarkit/tasks/): {mods - set(LAYER)}"


def test_core_never_imports_tasks():
    bad = [str(p.relative_to(PKG)) for p in _core_files() if "tasks" in _imports(p)]
    assert not bad, f"core modules importing polarkit.tasks: {bad}"


def test_core_imports_flow_one_way():
    bad = []
    for path in _core_files():
        me = _module(path)
        for dep in _imports(path) - {me, "__version__"}:
            if dep in LAYER and LAYER[dep] > LAYER[me]:
                bad.append(f"{path.relative_to(PKG)} imports {dep}")
    assert not bad, bad


def test_the_rule_catches_a_core_module_importing_a_task(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from polarkit.tasks import mnist\nfrom polarkit import tasks\n")
    assert "tasks" in _imports(bad)


def test_no_lazy_module_getattr():
    """PEP 562 `__getattr__` imports break go-to-definition and hide import errors until first use."""
    lazy = [
        str(p.relative_to(PKG))
        for p in PKG.rglob("*.py")
        if any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in ast.parse(p.read_text()).body)
    ]
    assert not lazy, lazy
