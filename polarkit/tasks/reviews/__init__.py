"""Korean review classification (notebook 07): sentiment, keyword multi-label, per-keyword
sentiment with a `(review, keyword)` pair input, masked-word highlights, active-learning picks,
and a char n-gram TF-IDF + logistic-regression baseline beside every model.

    stages    load_task / check_task / validate: checked train/val/test/pool frames per stage
    baseline  fit_tfidf / tfidf_proba
    training  stage_datasets / build / train_stage (on polarkit.tasks.classifier + polarkit.train)
    evaluate  evaluate / compare / class_table / ReviewPredictor / score_pipeline
    explain   highlights / highlight_html / highlight_figure / active_learning_picks / label_names
"""

from polarkit.tasks.reviews.baseline import fit_tfidf, tfidf_proba, tfidf_scorer
from polarkit.tasks.reviews.evaluate import (
    ReviewPredictor,
    class_table,
    compare,
    errors,
    evaluate,
    flat_metrics,
    pipeline_pairs,
    pipeline_scores,
    predicted,
    prediction_frame,
    score_pipeline,
    stage_probs,
)
from polarkit.tasks.reviews.explain import (
    Highlight,
    active_learning_picks,
    highlight_examples,
    highlight_figure,
    highlight_html,
    highlight_table,
    highlights,
    label_names,
    masked_variants,
    pick_error_rates,
    rare_token_scores,
    uncertainty,
)
from polarkit.tasks.reviews.stages import (
    POLARITIES,
    TASKS,
    Stage,
    TaskData,
    check_task,
    label_counts,
    load_task,
    validate,
)
from polarkit.tasks.reviews.training import build, stage_datasets, train_stage

__all__ = [
    "POLARITIES",
    "TASKS",
    "Highlight",
    "ReviewPredictor",
    "Stage",
    "TaskData",
    "active_learning_picks",
    "build",
    "check_task",
    "class_table",
    "compare",
    "errors",
    "evaluate",
    "fit_tfidf",
    "flat_metrics",
    "highlight_examples",
    "highlight_figure",
    "highlight_html",
    "highlight_table",
    "highlights",
    "label_counts",
    "label_names",
    "load_task",
    "masked_variants",
    "pick_error_rates",
    "pipeline_pairs",
    "pipeline_scores",
    "predicted",
    "prediction_frame",
    "rare_token_scores",
    "score_pipeline",
    "stage_datasets",
    "stage_probs",
    "tfidf_proba",
    "tfidf_scorer",
    "train_stage",
    "uncertainty",
    "validate",
]
