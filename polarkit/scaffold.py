"""`polarkit new NN_name [--from NN_other]`: a new numbered notebook in the standard layout, with its YAMLs.

A fresh notebook gets the standard opening (title, a `parameters` cell of typed, commented defaults
with range rules, `start_run` + `train.setup`), the sections `## 1 Data … ## 5 Report` with short
placeholder cells that do real, tiny work through polarkit (MNIST digits stand in for the task's
data, so the smoke run trains, scores, plots and records), the closing `run.finish({...})`, and
`params/{smoke,quick,full}/NN_name.yaml`. With `source`, the other notebook's cells (outputs
stripped) and its YAMLs under params/ (not its `learn` one, nor a sweep file) are copied under the new
name instead.

A refusal (bad or taken name or number, unknown source) writes nothing; the new YAMLs are checked
against the new notebook (`params.check_file`) before `new` returns, and every file written is
removed again if that check fails.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from polarkit import params as P
from polarkit import runs

NAME_RX = re.compile(r"^(?P<number>[0-9]{2})_[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
PROFILES = ("smoke", "quick", "full")
SWEEPS = "sweeps"  # params/sweeps/ holds sweep files (polarkit.sweep), not a profile
# Not copied by --from: sweep files are no parameter files, and a `learn` YAML goes with its check in
# tests/test_learning.py (a new notebook gets its own, by hand).
NOT_COPIED = (SWEEPS, "learn")


class ScaffoldError(ValueError):
    """The new notebook cannot be created; the message says why and what to do instead."""


def check_name(name: str, root: Path) -> None:
    """Refuse a name that is not `NN_snake_case`, or whose notebook, YAMLs or number already exist."""
    if not NAME_RX.match(name):
        hint = re.sub(r"[^a-z0-9]+", "_", name.removesuffix(".ipynb").lower()).strip("_")
        example = hint if NAME_RX.match(hint) else "09_my_experiment"
        raise ScaffoldError(
            f"{name!r}: a notebook name is two digits, an underscore and snake_case words "
            f"(lower-case letters and digits, e.g. {example!r})"
        )
    nb = root / "notebooks" / f"{name}.ipynb"
    if nb.exists():
        raise ScaffoldError(f"{name}: {nb} already exists; pick another name (nothing was written)")
    yamls = sorted(p for p in (root / "params").glob(f"*/{name}.yaml") if p.parent.name != SWEEPS)
    if yamls:
        raise ScaffoldError(
            f"{name}: parameter files already exist: {', '.join(map(str, yamls))}; "
            "remove them or pick another name (nothing was written)"
        )
    number = name[:2]
    taken = [p.stem for p in _notebooks(root) if p.stem[:2] == number]
    if taken:
        last = max(int(p.stem[:2]) for p in _notebooks(root))
        free = f"; the next number is {last + 1:02d}" if last < 99 else ""
        raise ScaffoldError(
            f"{name}: number {number} is taken by {', '.join(taken)} (a stem prefix such as "
            f"`polarkit run {number}` must name one notebook){free}"
        )


def _notebooks(root: Path) -> list[Path]:
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def find_source(source: str, root: Path) -> Path:
    """`03_nlp_cola`, `03` or a path to a notebook -> the notebook to copy from."""
    have = _notebooks(root)
    path = Path(source)
    if path.suffix == ".ipynb" and path.is_file():
        return path
    matches = [p for p in have if p.stem == source] or [p for p in have if p.stem.startswith(source)]
    if len(matches) == 1:
        return matches[0]
    listing = ", ".join(p.stem for p in have) or "none"
    if matches:
        raise ScaffoldError(f"--from {source}: ambiguous, matches {', '.join(p.stem for p in matches)}")
    raise ScaffoldError(f"--from {source}: no such notebook under {root / 'notebooks'} (have: {listing})")


def new(name: str, root: str | Path = runs.ROOT, source: str | None = None) -> list[Path]:
    """Create notebooks/<name>.ipynb and its YAMLs under `root`; returns the files written.

    source: a notebook (stem, number or path) whose cells and YAMLs are copied; None: the template.
    Raises ScaffoldError (a ValueError) on a bad or taken name or an unknown source; writes nothing then.
    """
    root = Path(root)
    check_name(name, root)
    if source is None:
        nb, yamls = template_notebook(name), {p: template_yaml(name, p) for p in PROFILES}
    else:
        src = find_source(source, root)
        nb, yamls = copied_notebook(src, name), copied_yamls(src.stem, name, root)
    written = _write(root, name, nb, yamls)
    try:
        for path in written[1:]:
            P.check_file(path, written[0])
    except P.ParamError as e:
        for path in written:
            path.unlink(missing_ok=True)
        raise ScaffoldError(
            f"{name}: the new parameter files do not match the new notebook, so nothing was kept:\n{e}"
        ) from None
    return written


def _write(root: Path, name: str, nb, yamls: dict[str, str]) -> list[Path]:
    """Write the notebook and YAMLs (folders made as needed); returns [notebook, *yamls]."""
    import nbformat

    nb_path = root / "notebooks" / f"{name}.ipynb"
    nb_path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.validate(nb)
    nbformat.write(nb, nb_path)
    out = [nb_path]
    for profile, text in yamls.items():
        path = root / "params" / profile / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        out.append(path)
    return out


# --- copying another notebook ---------------------------------------------------------------------


def copied_notebook(src: Path, name: str):
    """`src` with outputs, execution counts and papermill traces removed, and `start_run` renamed."""
    import nbformat

    nb = nbformat.read(src, as_version=4)
    nb.metadata.pop("papermill", None)
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    pattern = re.compile(r"""(start_run\(\s*)(["'])""" + re.escape(src.stem) + r"\2")
    renamed = 0
    for cell in nb.cells:
        cell.id = secrets.token_hex(4)
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            cell.source, n = pattern.subn(rf'\g<1>"{name}"', cell.source)
            renamed += n
    if not renamed:
        raise ScaffoldError(
            f'--from {src.stem}: no `start_run("{src.stem}", ...)` call found to rename; is it a polarkit notebook?'
        )
    first = nb.cells[0] if nb.cells else None
    if first is not None and first.cell_type == "markdown" and first.source.startswith("# "):
        title, _, rest = first.source.partition("\n")
        first.source = f"# {_title(name)}\nStarted from `{src.stem}`.\n{rest}"
    return nb


def copied_yamls(src_stem: str, name: str, root: Path) -> dict[str, str]:
    """{profile: text} of every params/<profile>/<src_stem>.yaml (variants such as full-bi included,
    the folders in NOT_COPIED left out)."""
    found = sorted(p for p in (root / "params").glob(f"*/{src_stem}.yaml") if p.parent.name not in NOT_COPIED)
    if not found:
        raise ScaffoldError(f"--from {src_stem}: it has no parameter files under {root / 'params'} to copy")
    return {p.parent.name: p.read_text(encoding="utf-8") for p in found}


def _title(name: str) -> str:
    """'09_review_topics' -> '09 review topics'."""
    return name.replace("_", " ", 1).replace("_", " ")


# --- the template ---------------------------------------------------------------------------------

# The parameters cell: `name: type = default  # role: why [range]` (see polarkit.params for the rules).
# Defaults are the full-size run; the YAMLs shrink them. No quotes or `=` inside comments: papermill
# would skip the line.
PARAMETERS = """\
seed: int = 0  # nuisance: data sample, initialisation and batch order [0, inf)
n_train: int = 20000  # scientific: training examples, a seeded sample (replace with your task's sizes) [1, inf)
n_val: int = 2000  # fixed: held-out examples that pick the best checkpoint [10, inf)
n_test: int = 5000  # fixed: test examples scored once, at the end [1, inf)
epochs: float = 2.0  # scientific: passes over the training examples (0, inf)
lr: float = 3.0e-3  # scientific: peak learning rate (0, inf)
scheduler: str = "cosine"  # scientific: learning-rate schedule after warm-up {linear, cosine, constant_with_warmup}
batch_size: int = 64  # nuisance: examples per optimiser step [1, inf)
channels: list = [16, 32, 64]  # scientific: widths of the placeholder model's conv blocks, 3 ints in [1, inf)
hidden: int = 64  # scientific: width of the placeholder model's hidden layer [1, inf)"""

CELLS: list[tuple[str, str]] = [
    (
        "markdown",
        "## 1 Data\n"
        "Placeholder: MNIST digits stand in for your task's data (offline, seconds). Replace them "
        "with a `polarkit.data` loader that takes `n` and `seed`, and show counts and a few examples.",
    ),
    (
        "code",
        'images, labels = data.load_mnist("train", n=n_train + n_val, seed=seed)  # a seeded sample\n'
        "x_train, y_train, x_val, y_val = images[n_val:], labels[n_val:], images[:n_val], labels[:n_val]\n"
        'x_test, y_test = data.load_mnist("test", n=n_test, seed=seed)\n'
        'pd.DataFrame({"examples": [len(y_train), len(y_val), len(y_test)]}, index=["train", "val", "test"])',
    ),
    ("code", 'viz.save(viz.image_grid(x_train[:16], titles=y_train[:16], ncols=8), "samples")'),
    (
        "markdown",
        "## 2 Model\nPlaceholder: a small CNN from `polarkit.tasks.mnist`. Models and their pieces "
        "live in the package (a task module under `polarkit/tasks/`), never as a class in a cell.",
    ),
    (
        "code",
        "train_ds, val_ds, test_ds = (mnist.MnistDataset(x, y) for x, y in\n"
        "                             ((x_train, y_train), (x_val, y_val), (x_test, y_test)))\n"
        "model = mnist.SmallCNN(channels=channels, hidden=hidden)\n"
        "mnist.param_table(model)",
    ),
    (
        "markdown",
        "## 3 Train\n`transformers.Trainer` through `polarkit.train.fit`: the best checkpoint by "
        "validation accuracy is loaded at the end, and the history is saved for `compare`.",
    ),
    (
        "code",
        "trainer, history = train.fit(model, train_ds, val_ds, epochs=epochs, lr=lr, batch_size=batch_size,\n"
        '                             scheduler=scheduler, metric="accuracy", seed=seed,\n'
        "                             compute_metrics=mnist.compute_metrics, group_by_length=False)\n"
        "history",
    ),
    ("code", 'viz.save(viz.curves(history, metrics=("loss", "accuracy")), "curves")'),
    (
        "markdown",
        "## 4 Evaluate\nThe chosen checkpoint, once, on the test examples; metric keys are `{split}_{metric}`.",
    ),
    (
        "code",
        "out = trainer.predict(test_ds)\n"
        "preds = mnist.predictions_frame(out.predictions, out.label_ids)\n"
        'test_metrics = score.classification(preds["label"], preds["pred"], key_prefix="test_", average="macro")\n'
        "pd.Series(test_metrics).round(4)",
    ),
    ("code", 'viz.save(viz.confusion(preds["label"], preds["pred"], labels=list(range(10))), "confusion")'),
    ("markdown", "## 5 Report\nPer-example predictions go to `predictions.csv`; the metrics below to `metrics.json`."),
    ("code", "run.save_predictions(preds)"),
]


def template_notebook(name: str):
    """The standard opening, placeholder sections and closing `finish`, as an nbformat v4 notebook."""
    import nbformat

    v4 = nbformat.v4
    nb = v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    title = (
        f"# {_title(name)}\n"
        "What this notebook studies, on which data, and the figure a reviewer should look at first. "
        "The sections below are placeholders that already run end to end (`polarkit new`); replace "
        "their cells with calls into polarkit, a few lines each."
    )
    parameters = v4.new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]})
    opening = v4.new_code_cell(
        "import pandas as pd\n\nimport polarkit as pk\n"
        "from polarkit import data, models, score, train, viz\nfrom polarkit.tasks import mnist\n\n"
        f'run = pk.start_run("{name}", globals())\nenv = train.setup(seed)\nenv'
    )
    body = [v4.new_markdown_cell(src) if kind == "markdown" else v4.new_code_cell(src) for kind, src in CELLS]
    closing = v4.new_code_cell(
        'run.finish({**test_metrics, "val_accuracy": history["eval_accuracy"].max(),\n'
        '            "train_seconds": trainer.train_seconds, "model_params": models.n_params(model)})'
    )
    nb.cells = [v4.new_markdown_cell(title), parameters, opening, *body, closing]
    return nb


# Per profile: (header comment, {name: (value as YAML, comment)}). Each line says whether the
# parameter is scientific, nuisance or fixed, as every YAML in params/ does.
_PROFILE_TEXT = {
    "smoke": "smoke: plumbing only (seconds) - a tiny CNN on 512 / 128 / 256 images, one epoch",
    "quick": "quick: the main job - real learning visible in about a minute on 2 CPU cores",
    "full": "full: the setting the notebook's quality target is measured at (the notebook's defaults)",
}
_VALUES = {
    "smoke": {
        "seed": 0,
        "n_train": 512,
        "n_val": 128,
        "n_test": 256,
        "epochs": 1.0,
        "channels": "[8, 16, 32]",
        "hidden": 32,
    },
    "quick": {"seed": 0, "n_train": 5000, "n_val": 1000, "n_test": 2000, "epochs": 2.0},
    "full": {
        "seed": 0,
        "n_train": 20000,
        "n_val": 2000,
        "n_test": 5000,
        "epochs": 2.0,
        "lr": "3.0e-3",
        "batch_size": 64,
    },
}


def template_yaml(name: str, profile: str) -> str:
    """params/<profile>/<name>.yaml for the template: the header says what the profile is for."""
    roles = {line.split(":", 1)[0]: line.split("# ", 1)[1].split(":", 1)[0] for line in PARAMETERS.splitlines()}
    lines = [f"# {_PROFILE_TEXT[profile]}"]
    for key, value in _VALUES[profile].items():
        note = " (smoke)" if profile == "smoke" and roles[key] == "fixed" else ""
        lines.append(f"{key}: {value}  # {roles[key]}{note}")
    return "\n".join(lines) + "\n"
