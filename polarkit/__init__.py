"""polarkit: a notebook-first research kit (papermill runs, run records, offline encoders).

Import-light on purpose: submodules (`polarkit.data`, `polarkit.models`, `polarkit.train`, ...)
pull in torch/transformers only when imported.
"""

__version__ = "0.1.0"

from polarkit.predictors import load  # noqa: E402,F401  (light: MLflow/torch load on call)
from polarkit.runs import current, start_run  # noqa: E402,F401  (light: stdlib + yaml only)
