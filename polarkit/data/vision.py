"""MNIST: train images from mnist/train-images.npz, test from the IDX .gz files (MANIFEST §10)."""

from __future__ import annotations

import functools
import gzip
import struct
from pathlib import Path

import numpy as np

from polarkit.data._io import check_split, data_root, hub_dataset, locate, sample_index

IDX_IMAGES, IDX_LABELS = 2051, 2049  # magic numbers: 0x08 (ubyte) << 8 | ndim
_FILES = {
    "train": ("mnist/train-images.npz", "mnist/train-labels-idx1-ubyte.gz"),
    "test": ("mnist/t10k-images-idx3-ubyte.gz", "mnist/t10k-labels-idx1-ubyte.gz"),
}
_SIZES = {"train": 60_000, "test": 10_000}


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse a gzipped big-endian IDX file of uint8 -> array of its declared shape."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    (found,) = struct.unpack(">I", raw[:4])
    if found != magic:
        raise ValueError(
            f"{path}: IDX magic number {found}, expected {magic} ({IDX_IMAGES} = images, {IDX_LABELS} = labels)"
        )
    ndim = found & 0xFF
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} = {int(np.prod(dims))} values, file holds {data.size}")
    return data.reshape(dims)


@functools.lru_cache(maxsize=4)
def _read_local(split: str, root: str) -> tuple[np.ndarray, np.ndarray]:
    # `root` is only the cache key: a different POLARKIT_DATA must not hit a stale entry
    images_rel, labels_rel = _FILES[split]
    idx_labels = read_idx(locate("mnist", labels_rel), IDX_LABELS)
    if split == "train":
        npz_path = locate("mnist", images_rel)
        with np.load(npz_path) as z:
            if "images" not in z.files or "labels" not in z.files:
                raise ValueError(f"{npz_path}: missing array(s) among ['images', 'labels']; arrays found: {z.files}")
            images, npz_labels = z["images"], z["labels"]
        # the npz was decoded from PNGs; its labels must agree with the canonical IDX order
        if not np.array_equal(npz_labels, idx_labels):
            raise ValueError(f"{npz_path}: labels differ from {labels_rel} (images not in original MNIST order?)")
    else:
        images = read_idx(locate("mnist", images_rel), IDX_IMAGES)
    if images.shape != (_SIZES[split], 28, 28) or len(idx_labels) != _SIZES[split]:
        raise ValueError(
            f"mnist {split}: expected {_SIZES[split]:,} x 28 x 28 images and "
            f"labels, got {images.shape} and {idx_labels.shape}"
        )
    return images, idx_labels.astype(np.int64)


def _read_hub(split: str) -> tuple[np.ndarray, np.ndarray]:
    ds = hub_dataset("mnist", split, _FILES[split][0])
    images = np.stack([np.asarray(im, dtype=np.uint8) for im in ds["image"]])
    return images, np.asarray(ds["label"], dtype=np.int64)


def load_mnist(split: str = "train", n: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """MNIST `split` ("train" | "test") -> (images uint8 [N, 28, 28], labels int64 [N])."""
    check_split(split, ("train", "test"))
    root = data_root()
    images, labels = _read_hub(split) if root is None else _read_local(split, str(root))
    idx = sample_index(len(labels), n, seed)
    return images[idx], labels[idx]  # fancy indexing copies, so the cache stays intact
