"""Datasets and data loaders for lipnb experiments.

All inputs are float tensors in [0, 1] with no mean/std normalization, so that a
Lipschitz bound on the network is a bound with respect to the raw pixel scale.

Supported names (see :data:`DATASETS`): ``"digits"`` (scikit-learn's bundled
8x8 digits, always available offline), ``"mnist"``, ``"fashion-mnist"``,
``"cifar10"`` and ``"stl10"`` (torchvision datasets read from a data root).

Every dataset is decoded once into memory (:class:`TensorImages`); :func:`iterate_batches`
serves it a whole batch at a time, augmentation included.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset, default_collate, random_split
from torchvision import datasets

from lipnb._validation import require_positive_int

ENV_VAR = "LIPNB_DATA"
DEFAULT_ROOT = Path("~/.cache/lipnb")
DIGITS_TEST_SIZE = 0.25
DIGITS_SPLIT_SEED = 0
CROP_PADDING = 4


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing from the data root and could not be downloaded."""


@dataclass(frozen=True)
class DatasetInfo:
    """Shape of one input as (channels, height, width) and the number of classes."""

    input_shape: tuple[int, int, int]
    num_classes: int


@dataclass(frozen=True)
class _Source:
    """How to obtain a dataset: torchvision class (None: built in) and on-disk layout."""

    info: DatasetInfo
    torchvision_class: type[Dataset] | None
    subfolder: str | None  # folder under the root that torchvision reads
    augment: bool  # random crop + horizontal flip on the training split


DATASETS: dict[str, _Source] = {
    "digits": _Source(DatasetInfo((1, 8, 8), 10), None, None, False),
    "mnist": _Source(DatasetInfo((1, 28, 28), 10), datasets.MNIST, "MNIST/raw", False),
    "fashion-mnist": _Source(
        DatasetInfo((1, 28, 28), 10), datasets.FashionMNIST, "FashionMNIST/raw", False
    ),
    "cifar10": _Source(DatasetInfo((3, 32, 32), 10), datasets.CIFAR10, "cifar-10-batches-py", True),
    "stl10": _Source(DatasetInfo((3, 96, 96), 10), datasets.STL10, "stl10_binary", True),
}


def _source(name: str) -> _Source:
    try:
        return DATASETS[name]
    except KeyError:
        allowed = ", ".join(repr(n) for n in DATASETS)
        raise ValueError(f"unknown dataset {name!r}; allowed names: {allowed}") from None


def dataset_info(name: str) -> DatasetInfo:
    """Input shape and number of classes of dataset ``name``."""
    return _source(name).info


def resolve_root(root: str | os.PathLike | None = None) -> Path:
    """Data root: ``root`` if given, else ``$LIPNB_DATA`` if set, else ``~/.cache/lipnb``."""
    if root is None:
        root = os.environ.get(ENV_VAR) or DEFAULT_ROOT
    return Path(root).expanduser().resolve()


def augment_images(
    images: Tensor, padding: int = CROP_PADDING, generator: torch.Generator | None = None
) -> Tensor:
    """Random crop of each zero-padded image back to its size, then a horizontal flip with probability 1/2.

    ``images`` is a batch (N, C, H, W); each image gets its own crop offsets and flip, as with
    torchvision's ``RandomCrop(size, padding)`` + ``RandomHorizontalFlip()``, all in one gather.
    The draws are made on the CPU from ``generator`` (default: torch's global generator), so a seed
    gives the same crops on every device.
    """
    n, channels, height, width = images.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    rows = offsets[0, :, None] + torch.arange(height)
    cols = offsets[1, :, None] + torch.arange(width)
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    index = rows[:, :, None] * (width + 2 * padding) + cols[:, None, :]  # (N, H, W) into the padded image
    index = index.to(images.device).reshape(n, 1, -1).expand(n, channels, -1)
    padded = F.pad(images, (padding,) * 4).reshape(n, channels, -1)
    return padded.gather(2, index).reshape(n, channels, height, width)


class TensorImages(TensorDataset):
    """Images (N, C, H, W) and int64 labels held in memory, optionally augmented as they are read.

    ``.tensors`` is ``(images, labels)``. Indexing takes an int (one example) or a slice, list or
    index tensor (a batch); with ``augment``, every image read gets :func:`augment_images`.
    """

    def __init__(self, images: Tensor, labels: Tensor, augment: bool = False) -> None:
        if images.dim() != 4 or labels.shape != images.shape[:1]:
            raise ValueError(
                f"TensorImages needs images (N, C, H, W) and labels (N,); got {tuple(images.shape)} and "
                f"{tuple(labels.shape)}"
            )
        super().__init__(images, labels)
        self.augment = augment

    def __getitem__(self, index: int | slice | list[int] | Tensor) -> tuple[Tensor, Tensor]:
        images, labels = self.tensors
        x, y = images[index], labels[index]
        if self.augment:
            x = augment_images(x) if x.dim() == 4 else augment_images(x[None])[0]
        return x, y

    def to(self, device: str | torch.device) -> TensorImages:
        """The same examples on ``device`` (this dataset's tensors when already there)."""
        images, labels = self.tensors
        return TensorImages(images.to(device), labels.to(device), augment=self.augment)


def _digits(train: bool) -> TensorImages:
    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images,
        labels,
        test_size=DIGITS_TEST_SIZE,
        stratify=labels,
        random_state=DIGITS_SPLIT_SEED,
    )
    x, y = (x_train, y_train) if train else (x_test, y_test)
    return TensorImages(torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y))


def _decode(raw: Dataset) -> tuple[Tensor, Tensor]:
    """All images of a torchvision dataset as one float tensor (N, C, H, W) in [0, 1], and int64 labels.

    Bit for bit what ``ToTensor`` gives per item: uint8 pixels divided by 255.
    """
    if isinstance(raw, datasets.STL10):
        pixels, labels = torch.from_numpy(raw.data), raw.labels  # (N, C, H, W) array
    elif isinstance(raw, datasets.CIFAR10):
        pixels, labels = torch.from_numpy(raw.data).permute(0, 3, 1, 2), raw.targets  # (N, H, W, C) array
    else:  # MNIST and Fashion-MNIST: (N, H, W) tensor
        pixels, labels = raw.data.unsqueeze(1), raw.targets
    images = pixels.contiguous().to(torch.float32).div_(255)
    return images, torch.as_tensor(labels, dtype=torch.int64)


def load_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    train: bool = True,
    download: bool = False,
    *,
    augment: bool | None = None,
) -> TensorImages:
    """Training or test split of dataset ``name``, decoded once into memory, inputs in [0, 1].

    ``root`` defaults to ``$LIPNB_DATA``, else ``~/.cache/lipnb``; it and ``download``
    are ignored for ``"digits"``. ``augment`` (random crop with padding 4 and
    horizontal flip, CIFAR-10 and STL-10 only) defaults to ``train``.
    Raises :class:`DatasetNotFoundError` if the files are missing and not downloaded.
    """
    source = _source(name)
    if source.torchvision_class is None:
        return _digits(train)
    path = resolve_root(root)
    if source.torchvision_class is datasets.STL10:
        kwargs = {"split": "train" if train else "test"}
    else:
        kwargs = {"train": train}
    try:
        raw = source.torchvision_class(str(path), download=download, **kwargs)
    except (RuntimeError, OSError) as exc:
        expected = path / source.subfolder
        attempt = "download failed (no internet?) and " if download else ""
        raise DatasetNotFoundError(
            f"dataset {name!r} not found: {attempt}no usable files under the data root "
            f"{path} (torchvision expects them in {expected}). Fix: set {ENV_VAR} or pass "
            f"root= to the folder that contains {source.subfolder}, or pass download=True "
            f"on a machine with internet, or use the offline dataset 'digits'."
        ) from exc
    return TensorImages(*_decode(raw), augment=source.augment and (train if augment is None else augment))


def shuffled_order(length: int, seed: int) -> Tensor:
    """The order in which ``DataLoader(dataset, shuffle=True, generator=Generator().manual_seed(seed))`` reads.

    ``length`` is ``len(dataset)``. The loader's iterator first draws its workers' base seed from
    the generator, then its ``RandomSampler`` draws the permutation.
    """
    generator = torch.Generator().manual_seed(seed)
    torch.empty((), dtype=torch.int64).random_(generator=generator)
    return torch.randperm(length, generator=generator)


def _in_memory(dataset: Dataset) -> tuple[TensorDataset, Tensor | None] | None:
    """``(tensor dataset, positions in it or None for all)`` behind ``dataset``; ``None`` if it has none."""
    if isinstance(dataset, TensorDataset):
        return dataset, None
    if isinstance(dataset, Subset):
        inner = _in_memory(dataset.dataset)
        if inner is not None:
            base, positions = inner
            indices = torch.as_tensor(dataset.indices, dtype=torch.int64)
            return base, indices if positions is None else positions[indices]
    return None


class Batches:
    """The batches of a dataset in a fixed order; iterable (again and again), ``len`` is the number of batches.

    Built by :func:`iterate_batches`.
    """

    def __init__(self, dataset: Dataset, batch_size: int, order: Tensor | None, drop_last: bool) -> None:
        self.dataset = dataset
        self.batch_size = require_positive_int("batch_size", batch_size)
        self.order = order
        self.drop_last = drop_last

    def __len__(self) -> int:
        items = len(self.dataset) if self.order is None else len(self.order)  # type: ignore[arg-type]
        return items // self.batch_size if self.drop_last else -(-items // self.batch_size)

    def __iter__(self) -> Iterator[Sequence[Tensor]]:
        starts = range(0, len(self) * self.batch_size, self.batch_size)
        found = _in_memory(self.dataset)
        if found is None:  # item by item, collated as a DataLoader does
            size = len(self.dataset)  # type: ignore[arg-type]
            items = range(size) if self.order is None else self.order.tolist()
            for start in starts:
                yield default_collate([self.dataset[i] for i in items[start : start + self.batch_size]])
            return
        base, positions = found
        if self.order is not None:
            positions = self.order if positions is None else positions[self.order]
        if positions is not None:
            positions = positions.to(base.tensors[0].device)
        for start in starts:
            stop = start + self.batch_size
            yield base[slice(start, stop) if positions is None else positions[start:stop]]


def iterate_batches(
    dataset: Dataset, batch_size: int, order: Tensor | None = None, drop_last: bool = False
) -> Batches:
    """Batches of ``batch_size`` examples of ``dataset``, read in ``order`` (positions; default: dataset order).

    In-memory datasets (any ``TensorDataset`` such as :class:`TensorImages`, and ``Subset`` of one)
    are indexed a whole batch at a time, on the device their tensors live on; any other dataset is
    read item by item and collated as a ``DataLoader`` does. ``drop_last`` drops a final short batch.
    """
    return Batches(dataset, batch_size, order, drop_last)


def make_loaders(
    name: str,
    root: str | os.PathLike | None = None,
    batch_size: int = 128,
    validation: int = 0,
    seed: int = 0,
    num_workers: int = 0,
    download: bool = False,
) -> tuple[DataLoader, DataLoader | None, DataLoader]:
    """(train, validation or None, test) loaders for dataset ``name``.

    ``validation`` training examples, chosen by ``seed``, are held out of the
    training set (never taken from the test set) and served without augmentation.
    The training loader shuffles with a generator seeded by ``seed``.
    """
    train_set = load_dataset(name, root, train=True, download=download)
    test_set = load_dataset(name, root, train=False, download=download)
    val_loader = None
    if validation:
        if not 0 < validation < len(train_set):
            raise ValueError(
                f"validation must be between 0 and {len(train_set) - 1} (the training set "
                f"of {name!r} has {len(train_set)} examples), got {validation}"
            )
        split_generator = torch.Generator().manual_seed(seed)
        full = train_set
        train_set, val_set = random_split(full, [len(full) - validation, validation], generator=split_generator)
        val_set = Subset(TensorImages(*full.tensors), val_set.indices)  # the same images, not augmented
        val_loader = DataLoader(val_set, batch_size=batch_size, num_workers=num_workers)
    train_loader = DataLoader(
        train_set,
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        num_workers=num_workers,
    )
    test_loader = DataLoader(test_set, batch_size=batch_size, num_workers=num_workers)
    return train_loader, val_loader, test_loader
