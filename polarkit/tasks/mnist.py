"""MNIST pieces for notebooks 01 (CNN) and 02 (ViT): a torch Dataset, a small CNN, a ViT builder.

Both models take `pixel_values` [B, 1, 28, 28] (+ optional `labels` [B]) and return `loss` and
`logits` [B, 10], so `polarkit.train.fit` (i.e. `transformers.Trainer`) trains either one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from transformers import ViTConfig, ViTForImageClassification

from polarkit import models, score
from polarkit.tasks import classifier

MEAN, STD = 0.1307, 0.3081  # MNIST train-set pixel statistics (of x / 255)
CLASSES = [str(d) for d in range(10)]


def normalise(images) -> torch.Tensor:
    """uint8 images [N, 28, 28] -> float32 [N, 1, 28, 28], (x / 255 - MEAN) / STD."""
    x = torch.as_tensor(np.asarray(images), dtype=torch.float32).unsqueeze(1)
    return (x / 255.0 - MEAN) / STD


class MnistDataset(torch.utils.data.Dataset):
    """Items {"pixel_values": float [1, 28, 28] normalised, "labels": int64 []}; optional random shifts."""

    def __init__(self, images, labels, shift: int = 0):
        self.shift = shift  # max translation in pixels; 0 = no augmentation (val/test)
        x = normalise(images)  # normalised once up front: ~3 KB per image
        # a shift = a crop of the image padded once with background: half the data time of padding every item
        self.padded = F.pad(x, (shift,) * 4, value=-MEAN / STD) if shift else x
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)

    @property
    def pixels(self) -> torch.Tensor:
        """All images, unshifted: float [N, 1, 28, 28]."""
        s = self.shift
        return self.padded[..., s : s + 28, s : s + 28]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        dy, dx = torch.randint(0, 2 * self.shift + 1, (2,)).tolist() if self.shift else (0, 0)
        return {"pixel_values": self.padded[i, :, dy : dy + 28, dx : dx + 28], "labels": self.labels[i]}


def conv_block(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    """Conv (same padding) -> 2x2 max-pool -> BatchNorm -> ReLU: [B, c_in, H, W] -> [B, c_out, H/2, W/2]."""
    # pooling before BatchNorm/ReLU runs them on a quarter of the pixels: ~30% faster steps on CPU
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
        nn.MaxPool2d(2),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """Three conv blocks (28 -> 14 -> 7 -> 3) and a two-layer head; ~225k parameters at the defaults."""

    def __init__(self, channels=(32, 64, 128), hidden: int = 112, dropout: float = 0.25, num_labels: int = 10):
        super().__init__()
        c1, c2, c3 = channels
        # 5x5 first: wide receptive field at full resolution is cheap with one input channel
        self.features = nn.Sequential(conv_block(1, c1, 5), conv_block(c1, c2, 3), conv_block(c2, c3, 3))
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(c3 * 3 * 3, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_labels),
        )

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
        """pixel_values [B, 1, 28, 28], labels [B] -> {"loss": scalar (with labels), "logits": [B, 10]}."""
        logits = self.head(self.features(pixel_values))
        out = {"logits": logits}
        if labels is not None:
            out = {"loss": F.cross_entropy(logits, labels), **out}
        return out


def vit(
    patch_size: int = 7,
    depth: int = 6,
    width: int = 128,
    heads: int = 4,
    mlp_ratio: float = 2.0,
    dropout: float = 0.0,
    num_labels: int = 10,
    **config,
) -> ViTForImageClassification:
    """A randomly initialised `ViTForImageClassification` for [B, 1, 28, 28] digits (28 / patch_size)^2 tokens."""
    if 28 % patch_size:
        raise ValueError(f"patch_size must divide 28 (2, 4, 7, 14), got {patch_size}")
    if width % heads:
        raise ValueError(f"width {width} must be a multiple of heads {heads}")
    cfg = ViTConfig(
        image_size=28,
        num_channels=1,
        patch_size=patch_size,
        hidden_size=width,
        num_hidden_layers=depth,
        num_attention_heads=heads,
        intermediate_size=int(width * mlp_ratio),
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        num_labels=num_labels,
        id2label=dict(enumerate(CLASSES)),
        label2id={c: i for i, c in enumerate(CLASSES)},
        **config,
    )
    return ViTForImageClassification(cfg)


def position_similarity(model: ViTForImageClassification) -> np.ndarray:
    """Cosine similarity of each patch's learned position embedding to all others -> [P, g, g], g = 28 / patch."""
    pos = model.vit.embeddings.position_embeddings[0, 1:].detach()  # drop [CLS]: [P, width]
    pos = F.normalize(pos, dim=-1)
    g = int(len(pos) ** 0.5)
    return (pos @ pos.T).reshape(-1, g, g).numpy()


def param_table(model: nn.Module) -> pd.DataFrame:
    """Trainable parameters per top-level child module, plus a total row -> DataFrame[module, params]."""
    rows = [(name, models.n_params(child, trainable=True)) for name, child in model.named_children()]
    return pd.DataFrame(rows + [("total", models.n_params(model, trainable=True))], columns=["module", "params"])


# Trainer hook: (logits [N, 10], labels [N]) -> {"accuracy", "mcc", "f1"}, F1 macro over the ten digits
compute_metrics = classifier.compute_metrics_for("classification", average="macro")


def predictions_frame(logits, labels) -> pd.DataFrame:
    """Logits [N, 10] and labels [N] -> DataFrame[index, label, pred, confidence, correct]."""
    prob = score.softmax(logits)
    pred = prob.argmax(axis=1)
    return pd.DataFrame(
        {
            "index": np.arange(len(pred)),
            "label": np.asarray(labels),
            "pred": pred,
            "confidence": prob.max(axis=1).round(4),
            "correct": pred == np.asarray(labels),
        }
    )


def mistakes(images, preds: pd.DataFrame, k: int = 24) -> tuple[np.ndarray, list[str]]:
    """The `k` most confident errors: (images [k, 28, 28], titles "pred p / true t")."""
    wrong = preds[~preds["correct"]].sort_values("confidence", ascending=False).head(k)
    titles = [f"pred {p} / true {t}" for p, t in zip(wrong["pred"], wrong["label"])]
    return np.asarray(images)[wrong["index"].to_numpy()], titles
