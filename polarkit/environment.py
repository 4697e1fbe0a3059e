"""What this process runs on: the repository and its git state, package versions, device, data folder.

    environment.capture()        # the env.json fields: git commit + dirty flag, versions, device, cores, ...
    environment.device()         # "cuda" | "mps" | "cpu" (torch imported only here, lazily)
    environment.data_root()      # $POLARKIT_DATA, else ../shared/data beside the repo when it exists, else None

Standard library only at import: `runs` (written before any kernel work) and the CLI use it.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]  # the repository (holds notebooks/, params/, outputs/)
DATA_ENV = "POLARKIT_DATA"
DEFAULT_DATA = ROOT.parent / "shared" / "data"  # the shared data folder beside the repository
PACKAGES = (
    "polarkit",
    "torch",
    "transformers",
    "datasets",
    "tokenizers",
    "numpy",
    "pandas",
    "scikit-learn",
    "scipy",
    "papermill",
    "nbconvert",
    "bertviz",
    "optuna",
)


def git_state(root: Path = ROOT) -> dict[str, Any]:
    """{'commit': sha or None, 'dirty': bool or None} of the repository holding polarkit."""

    def git(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode:
            return {"commit": None, "dirty": None}
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip())
        return {"commit": head.stdout.strip(), "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def versions(packages=PACKAGES) -> dict[str, str | None]:
    """{'python': x.y.z, package: installed version or None} for `packages`."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def device(choice: str = "auto") -> str:
    """`choice` unless "auto"; then 'cuda', 'mps' or 'cpu' as torch sees it ('unknown' without torch)."""
    if choice != "auto":
        return choice
    try:
        import torch  # lazy: env.json is written before anything else needs torch
    except ImportError:
        return "unknown"
    return "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")


def capture() -> dict[str, Any]:
    """The env.json record: git state, versions, platform, device, cores, pid, data folder.
    Seed and threads are added by `polarkit.train.setup` once the notebook chooses them."""
    return {
        **git_state(),
        "versions": versions(),
        "platform": platform.platform(),
        "device": device(),
        "cores": os.cpu_count(),
        "pid": os.getpid(),
        "data": os.environ.get(DATA_ENV),
    }


def data_root() -> Path | None:
    """$POLARKIT_DATA if set, else <repo>/../shared/data if it exists, else None (loaders use the hub)."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    return DEFAULT_DATA if DEFAULT_DATA.is_dir() else None


def default_to_shared_data() -> None:
    """Point $POLARKIT_DATA at the shared data folder when unset and that folder exists, and go offline
    (HF_HUB_OFFLINE=1, unless already set) when there is local data: what the CLI does before a run."""
    if not os.environ.get(DATA_ENV) and DEFAULT_DATA.is_dir():
        os.environ[DATA_ENV] = str(DEFAULT_DATA)
    os.environ.setdefault("HF_HUB_OFFLINE", "1" if os.environ.get(DATA_ENV) else "0")
