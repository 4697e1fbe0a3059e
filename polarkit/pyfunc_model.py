"""The MLflow pyfunc wrapper of every polarkit model, logged as code (models-from-code: nothing pickled).

`polarkit.registry.register` logs this file with the model folder as artifact "model"; MLflow runs it
when the model is loaded (`mlflow.pyfunc.load_model("models:/sts@champion")`), and `load_context` loads
the predictor through the same loader as `polarkit.load`. `predict` takes a DataFrame, a list of
strings or a list of (text, text) pairs and returns the predictor's dicts as a DataFrame (one row per input).
"""

from __future__ import annotations

import mlflow
import pandas as pd

from polarkit import predictors


class PolarkitModel(mlflow.pyfunc.PythonModel):
    """pyfunc face of a polarkit predictor: load once, predict many."""

    def load_context(self, context) -> None:
        self.card = predictors.read_card(context.artifacts["model"])
        self.predictor = predictors.load_model_dir(context.artifacts["model"])

    # The hint is pd.DataFrame only because MLflow then neither validates the input nor warns about a
    # missing hint; lists of texts and of pairs are accepted as well (MLflow passes them through as they are).
    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """DataFrame / list of str / list of pairs -> DataFrame of the predictor's output dicts."""
        if hasattr(model_input, "tolist") and not hasattr(model_input, "columns"):  # a Series or an array
            model_input = model_input.tolist()
        if self.card["kind"] in predictors.PAIR_KINDS:
            first, second = predictors.as_pairs(model_input)
            rows = self.predictor.predict(list(zip(first, second)))
        else:
            rows = self.predictor.predict(predictors.as_texts(model_input))
        return pd.DataFrame(rows)


mlflow.models.set_model(PolarkitModel())
