"""polarkit.tasks.mnist: dataset normalisation, model shapes and sizes, and that the CNN can learn."""

import numpy as np
import pytest
import torch

from polarkit import models
from polarkit.tasks import mnist


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny batches gain nothing from 2 threads, and on a busy shared CPU 2 spinning threads run ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits():
    """(uint8 images [64, 28, 28], labels [64]) from the real MNIST train split when present, else synthetic."""
    try:
        from polarkit.data import load_mnist

        return load_mnist("train", n=64, seed=0)
    except Exception:  # noqa: BLE001 - no data root: blobs with MNIST-like statistics keep the test meaningful
        rng = np.random.default_rng(0)
        images = np.zeros((64, 28, 28), np.uint8)
        images[:, 6:22, 10:18] = rng.integers(150, 256, (64, 16, 8))
        return images, rng.integers(0, 10, 64)


def batch(images, labels):
    ds = mnist.MnistDataset(images, labels)
    return torch.utils.data.default_collate([ds[i] for i in range(len(ds))])


def test_dataset_items_and_normalisation(digits):
    ds = mnist.MnistDataset(*digits)
    item = ds[0]
    assert item["pixel_values"].shape == (1, 28, 28) and item["pixel_values"].dtype == torch.float32
    assert int(item["labels"]) == int(digits[1][0])
    x = ds.pixels
    assert abs(x.mean().item()) < 0.15 and abs(x.std().item() - 1) < 0.15  # MNIST mean/std -> ~0, ~1
    assert x.min().item() == pytest.approx(-mnist.MEAN / mnist.STD, abs=1e-5)  # black pixel


def test_random_shifts_move_the_digit_and_keep_its_ink(digits):
    torch.manual_seed(0)
    plain, shifted = mnist.MnistDataset(*digits), mnist.MnistDataset(*digits, shift=2)
    img = plain[0]["pixel_values"]
    views = [shifted[0]["pixel_values"] for _ in range(8)]
    assert torch.equal(shifted.pixels[0], img)  # the unshifted view is the plain image
    assert all(v.shape == (1, 28, 28) for v in views) and any(not torch.equal(v, img) for v in views)
    # MNIST keeps a 4 px black margin, so a 2 px shift loses no ink: same pixel sum
    assert all(v.sum().item() == pytest.approx(img.sum().item(), rel=1e-4) for v in views)
    assert all(torch.equal(plain[3]["pixel_values"], plain[3]["pixel_values"]) for _ in range(3))


def test_cnn_shapes_and_size(digits):
    model = mnist.SmallCNN()
    out = model(**batch(*digits))
    assert out["logits"].shape == (64, 10) and out["loss"].ndim == 0
    assert "loss" not in model(torch.zeros(2, 1, 28, 28))
    assert 200_000 < models.n_params(model, trainable=True) < 250_000  # "~225k" like the CNN in CPU_NOTES
    assert mnist.param_table(model)["params"].iloc[-1] == models.n_params(model, trainable=True)


@pytest.mark.parametrize("patch_size, tokens", [(7, 16), (4, 49)])
def test_vit_shapes_and_size(digits, patch_size, tokens):
    model = mnist.vit(patch_size=patch_size, depth=2, width=32, heads=2, mlp_ratio=2.0)
    out = model(**batch(*digits))
    assert out.logits.shape == (64, 10) and out.loss.ndim == 0
    assert model.config.num_channels == 1 and model.config.image_size == 28
    assert model.vit.embeddings.position_embeddings.shape == (1, tokens + 1, 32)  # + [CLS]
    assert mnist.position_similarity(model).shape == (tokens, 28 // patch_size, 28 // patch_size)
    # per layer: 4 w^2 + 4 w (attention) + 2 * 2 w^2 + 3 w (MLP, ratio 2) + 4 w (two LayerNorms)
    w = 32
    per_layer = 8 * w * w + 11 * w
    embed = patch_size**2 * w + w + w + (tokens + 1) * w  # patch projection + bias, [CLS], positions
    assert models.n_params(model, trainable=True) == embed + 2 * per_layer + 2 * w + (w * 10 + 10)


def test_vit_rejects_bad_shapes():
    with pytest.raises(ValueError, match="patch_size"):
        mnist.vit(patch_size=5)
    with pytest.raises(ValueError, match="heads"):
        mnist.vit(width=30, heads=4)


def test_cnn_overfits_one_batch(digits):
    torch.manual_seed(0)
    model = mnist.SmallCNN(dropout=0.0)
    b = batch(digits[0][:32], digits[1][:32])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = model(**b)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]


def test_compute_metrics_and_predictions_frame():
    from transformers import EvalPrediction

    logits = np.eye(10)[[1, 2, 3, 3]] * 5
    labels = np.array([1, 2, 3, 4])
    m = mnist.compute_metrics(EvalPrediction(predictions=(logits,), label_ids=labels))
    assert m["accuracy"] == pytest.approx(0.75)
    df = mnist.predictions_frame(logits, labels)
    assert df["correct"].tolist() == [True, True, True, False] and (df["confidence"] > 0.9).all()
    imgs, titles = mnist.mistakes(np.zeros((4, 28, 28)), df)
    assert imgs.shape == (1, 28, 28) and titles == ["pred 3 / true 4"]


def test_fit_restores_the_best_vit_checkpoint(digits, tmp_path):
    """transformers 5 renames ViT weights on save; the best checkpoint must still come back whole."""
    from polarkit import train

    calls = []

    def falling(_):  # every evaluation scores worse than the one before: the first checkpoint is the best
        calls.append(1)
        return {"score": -len(calls)}

    model = mnist.vit(patch_size=7, depth=1, width=32, heads=2)
    ds = mnist.MnistDataset(*digits)  # 64 images, batch 32: evaluations (and checkpoints) at steps 2 and 4
    trainer, _ = train.fit(
        model,
        ds,
        ds,
        out_dir=tmp_path,
        epochs=2,
        lr=1e-2,
        batch_size=32,
        metric="score",
        compute_metrics=falling,
        group_by_length=False,
        disable_tqdm=True,
    )
    assert trainer.state.best_model_checkpoint.endswith("checkpoint-2")
    best = type(model).from_pretrained(trainer.state.best_model_checkpoint).state_dict()
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())
