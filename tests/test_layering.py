"""polarkit modules import in one direction only (DESIGN.md, Layering)."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "polarkit"
# Lower layers never import higher ones; same-layer imports are allowed.
LAYER = {"score": 0, "params": 1, "runs": 1, "data": 2, "models": 3,
         "train": 4, "embed": 4, "text": 4, "vision": 4, "sts": 5, "mlm": 5, "jd": 5, "reviews": 5,
         "viz": 6, "report": 6, "executor": 7, "sweep": 7, "cli": 8, "trial": 4}


def _module(path: Path) -> str:
    return path.relative_to(PKG).parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("polarkit"):
            parts = node.module.split(".")
            found |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("polarkit.")}
    return found


def test_every_module_has_a_layer():
    mods = {_module(p) for p in PKG.rglob("*.py")} - {"__init__", "__main__"}
    assert mods <= set(LAYER), f"add to LAYER: {mods - set(LAYER)}"


def test_imports_flow_one_way():
    bad = []
    for path in PKG.rglob("*.py"):
        me = _module(path)
        if me in ("__init__", "__main__"):
            continue
        for dep in _imports(path) - {me, "__version__"}:
            if dep in LAYER and LAYER[dep] > LAYER[me]:
                bad.append(f"{path.relative_to(PKG)} imports {dep}")
    assert not bad, bad
