"""A thin layer over `transformers.Trainer`, shared by every notebook; knows no model or dataset.

`setup` picks device and seed in one call (recorded in env.json); `fit` trains with dynamic
padding and length-grouped batches for text, keeps the best checkpoint by a chosen metric (its
direction from `score.greater_is_better`), stops early, beats the run heartbeat, times the training
(`trainer.train_seconds`), and returns the history as a DataFrame for plots.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
import transformers
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments

from polarkit import environment, runs, score
from polarkit import trial as sweep_trial


def setup(seed: int = 0, device: str = "auto", threads: int | None = None) -> dict[str, Any]:
    """Seed everything, choose the device ('auto' -> cuda, mps, cpu) and CPU threads; record them.

    threads: None -> $OMP_NUM_THREADS when set (e.g. two runs side by side with 1 each), else every core.
    """
    device = environment.device(device)
    torch.set_num_threads(threads or int(os.environ.get("OMP_NUM_THREADS") or 0) or os.cpu_count() or 1)
    transformers.set_seed(seed)
    info = {
        "device": device,
        "seed": seed,
        "threads": torch.get_num_threads(),
        "cuda_devices": torch.cuda.device_count(),
    }
    if (run := runs.current()) is not None:
        run.update_env(**info)
    return info


class _Heartbeat(TrainerCallback):
    """Beats status.json on every log; in batch logs (no notebook) prints a sparse progress line."""

    def __init__(self, every_s: float = 30.0):
        self.every_s, self._last = every_s, 0.0
        self.quiet = "ipykernel" in sys.modules  # the notebook shows Trainer's own progress widget

    def on_log(self, args, state, control, logs=None, **kw):
        progress = {"step": state.global_step, "total": state.max_steps, "epoch": round(state.epoch or 0, 3)}
        if (run := runs.current()) is not None:
            # logs carry their own float `epoch`: merge as dicts so a key given twice is not a TypeError
            run.heartbeat(**({k: v for k, v in (logs or {}).items() if isinstance(v, float)} | progress))
        if not self.quiet and time.monotonic() - self._last > self.every_s:
            self._last = time.monotonic()
            print(f"[train] step {state.global_step}/{state.max_steps} {logs}", file=sys.stderr, flush=True)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: training stopped; the run is failed, not `succeeded`."""


class _StopOnNonFinite(TrainerCallback):
    """Raises `TrainingDiverged` at the first logged loss (train or eval) that is NaN or infinite."""

    def on_log(self, args, state, control, logs=None, **kw):
        bad = {
            k: v
            for k, v in (logs or {}).items()
            if k in ("loss", "eval_loss") and isinstance(v, (int, float)) and not np.isfinite(v)
        }
        if bad:
            raise TrainingDiverged(
                f"training diverged at step {state.global_step}: {', '.join(f'{k}={v}' for k, v in bad.items())} "
                f"(learning rate {args.learning_rate:g}; a lower lr, or weights that are finite, fix this)"
            )


HEAD_PREFIXES = ("head.", "classifier.")  # polarkit's EncoderClassifier, transformers' *ForSequenceClassification


class _Trainer(Trainer):
    """Trainer whose evaluation/prediction keeps the dataset order (with group_by_length, transformers 5
    also shuffles eval batches, so `predict` rows would not match the input rows), and whose optimizer
    can give the freshly initialised head its own peak learning rate (`head_lr`)."""

    head_lr: float | None = None
    train_seconds: float | None = None  # set by `fit`: wall-clock seconds of `train()`, evaluations included

    def create_optimizer(self, model=None):
        opt = super().create_optimizer(model)
        if self.head_lr and not getattr(opt, "_polarkit_head_split", False):
            head = {id(p) for n, p in (model or self.model).named_parameters() if n.startswith(HEAD_PREFIXES)}
            if not head:
                raise ValueError(f"head_lr: the model has no parameters named {' or '.join(HEAD_PREFIXES)}*")
            for g in list(opt.param_groups):
                moved = [p for p in g["params"] if id(p) in head]
                if moved:
                    g["params"] = [p for p in g["params"] if id(p) not in head]
                    opt.add_param_group(
                        {**{k: v for k, v in g.items() if k != "params"}, "params": moved, "lr": self.head_lr}
                    )
            opt._polarkit_head_split = True  # the scheduler scales every group's own peak lr
        return opt

    def _get_eval_sampler(self, eval_dataset):
        if self.args.world_size > 1:
            return super()._get_eval_sampler(eval_dataset)
        return torch.utils.data.SequentialSampler(eval_dataset)


def history(trainer: Trainer) -> pd.DataFrame:
    """One row per evaluation: epoch, step, train_loss (mean since the last eval), eval_* columns."""
    rows, pending = [], []
    for entry in trainer.state.log_history:
        if "loss" in entry:
            pending.append(entry["loss"])
        if any(k.startswith("eval_") for k in entry):
            row = {
                "epoch": entry.get("epoch"),
                "step": entry.get("step"),
                "train_loss": float(np.mean(pending)) if pending else np.nan,
            }
            rows.append(row | {k: v for k, v in entry.items() if k.startswith("eval_")})
            pending = []
    return pd.DataFrame(rows)


def fit(
    model,
    train_dataset,
    eval_dataset=None,
    *,
    out_dir: str | Path | None = None,
    epochs: float = 1.0,
    lr: float = 5e-5,
    batch_size: int = 32,
    eval_batch_size: int | None = None,
    weight_decay: float = 0.01,
    warmup_ratio: float = 0.06,
    scheduler: str = "linear",
    metric: str = "loss",
    patience: int | None = None,
    evals_per_epoch: int = 1,
    tokenizer=None,
    collator=None,
    compute_metrics: Callable | None = None,
    group_by_length: bool = True,
    max_steps: int = -1,
    grad_accum: int = 1,
    seed: int = 0,
    callbacks: list | None = None,
    history_name: str = "history",
    head_lr: float | None = None,
    logging_steps: int | None = None,
    **extra: Any,
) -> tuple[Trainer, pd.DataFrame]:
    """Train with `transformers.Trainer`; keep the best checkpoint by `metric`; return (trainer, history).

    With a tokenizer and no collator, batches are padded dynamically (DataCollatorWithPadding);
    `group_by_length` groups similar lengths (the dataset may carry a precomputed `length` column).
    `metric` is an eval metric name without the `eval_` prefix, minimised or maximised as
    `score.greater_is_better(metric)` says (losses are minimised). When
    `compute_metrics` declares its `names`, an unknown `metric` is refused before training.
    `head_lr` (None: `lr`) is the peak learning rate of the head (`head.*` / `classifier.*` parameters):
    a fresh head under Adam moves ~lr per step, too slowly for sigmoid outputs that must leave the prior.
    The history is also saved as `<history_name>.csv` in the active run folder (for compare).
    `trainer.train_seconds` is the training time every notebook reports as `train_seconds`: the wall
    clock of `trainer.train()`, evaluations and checkpoint saves included (not the best-model reload).
    Checkpoints go to `out_dir`, or (None, the default) to a temporary folder removed afterwards, even
    when training raises. A NaN or infinite loss stops training with `TrainingDiverged` (checked at each
    log: every `logging_steps` steps, default a quarter of the evaluation interval, at most 50).
    """
    with contextlib.ExitStack() as stack:
        if out_dir is None:  # checkpoints only serve the best-model reload: a folder removed even on error
            out_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="polarkit-checkpoints-"))
        has_eval = eval_dataset is not None
        names = getattr(compute_metrics, "names", None)  # declared by classifier.compute_metrics_for and its kin
        if has_eval and metric != "loss" and names is not None and metric not in names:
            raise ValueError(
                f"metric {metric!r} is not computed on the evaluation set: choose loss or one of {list(names)}"
            )
        if collator is None and tokenizer is not None:
            collator = transformers.DataCollatorWithPadding(tokenizer)
        steps_per_epoch = max(1, -(-len(train_dataset) // (batch_size * grad_accum)))  # ceil, as Trainer counts
        eval_every = max(1, steps_per_epoch // max(1, evals_per_epoch))
        args = TrainingArguments(
            output_dir=str(out_dir),
            num_train_epochs=epochs,
            max_steps=max_steps,
            learning_rate=lr,
            per_device_train_batch_size=batch_size,
            per_device_eval_batch_size=eval_batch_size or 2 * batch_size,
            gradient_accumulation_steps=grad_accum,
            weight_decay=weight_decay,
            warmup_steps=warmup_ratio,
            lr_scheduler_type=scheduler,
            seed=seed,
            data_seed=seed,
            eval_strategy="steps" if has_eval else "no",
            eval_steps=eval_every,
            save_strategy="steps" if has_eval else "no",
            save_steps=eval_every,
            save_total_limit=1,
            save_only_model=True,
            load_best_model_at_end=has_eval,
            metric_for_best_model=metric if has_eval else None,
            greater_is_better=score.greater_is_better(metric) if has_eval else None,
            logging_steps=logging_steps or max(1, min(50, eval_every // 4)),
            report_to="none",
            train_sampling_strategy="group_by_length" if group_by_length else "random",
            optim="adamw_torch_fused" if _fused_ok() else "adamw_torch",  # fused: ~8x faster step on CPU
            dataloader_num_workers=0,
            dataloader_pin_memory=torch.cuda.is_available(),
            logging_nan_inf_filter=False,
            **extra,
        )  # the filter logs a NaN loss as 0.0: a diverged run looked fine
        cbs = [_Heartbeat(), _StopOnNonFinite(), *(callbacks or [])]
        pruning = sweep_trial.pruning_callback(metric) if has_eval else None  # a sweep trial: report each evaluation
        if pruning is not None:
            cbs.append(pruning)
        if patience and has_eval:
            cbs.append(EarlyStoppingCallback(early_stopping_patience=patience))
        trainer = _Trainer(
            model=model,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            data_collator=collator,
            processing_class=tokenizer,
            compute_metrics=compute_metrics,
            callbacks=cbs,
        )
        trainer.head_lr = head_lr
        start = time.perf_counter()
        trainer.train()
        trainer.train_seconds = time.perf_counter() - start
        _reload_best(trainer)
        hist = history(trainer)
        if (run := runs.current()) is not None and len(hist):  # no evaluations (no eval set): nothing to write
            run.save_history(hist, history_name)
        sweep_trial.raise_if_pruned(pruning)  # pruned: the run folder says `pruned`, the notebook stops here
        return trainer, hist


def _reload_best(trainer: Trainer) -> None:
    """Reload the best checkpoint through `from_pretrained`, which undoes the key renaming done on save.

    Trainer's own reload is `load_state_dict(strict=False)` on the raw file; for models whose weights
    transformers 5 renames on save (e.g. ViT attention/MLP) it only warns and keeps the last step's
    weights for those keys, silently mixing best and last (huggingface/transformers#43701).
    """
    ckpt, model = trainer.state.best_model_checkpoint, trainer.model
    if ckpt and trainer.args.load_best_model_at_end and isinstance(model, transformers.PreTrainedModel):
        model.load_state_dict(type(model).from_pretrained(ckpt).state_dict())


def _fused_ok() -> bool:
    """Fused AdamW exists for CPU tensors in torch >= 2.4."""
    return tuple(int(x) for x in torch.__version__.split(".")[:2]) >= (2, 4)


def predict(trainer: Trainer, dataset) -> tuple[np.ndarray, np.ndarray | None]:
    """(logits or predictions [N, ...], labels [N] or None) from `trainer.predict`."""
    out = trainer.predict(dataset)
    preds = out.predictions[0] if isinstance(out.predictions, tuple) else out.predictions
    return preds, out.label_ids
