"""Datasets and data loaders for lipnb experiments.

All inputs are float tensors in [0, 1] with no mean/std normalization, so that a
Lipschitz bound on the network is a bound with respect to the raw pixel scale.

Supported names (see :data:`DATASETS`): ``"digits"`` (scikit-learn's bundled
8x8 digits, always available offline), ``"mnist"``, ``"fashion-mnist"``,
``"cifar10"`` and ``"stl10"`` (torchvision datasets read from a data root).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset, random_split
from torchvision import datasets, transforms

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


def _digits(train: bool) -> TensorDataset:
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
    return TensorDataset(torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y))


def _transform(source: _Source, augment: bool) -> transforms.Compose:
    steps = []
    if augment:
        size = source.info.input_shape[1]
        steps = [transforms.RandomCrop(size, padding=CROP_PADDING), transforms.RandomHorizontalFlip()]
    return transforms.Compose([*steps, transforms.ToTensor()])


def load_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    train: bool = True,
    download: bool = False,
    *,
    augment: bool | None = None,
) -> Dataset:
    """Training or test split of dataset ``name``, inputs as float tensors in [0, 1].

    ``root`` defaults to ``$LIPNB_DATA``, else ``~/.cache/lipnb``; it and ``download``
    are ignored for ``"digits"``. ``augment`` (random crop with padding 4 and
    horizontal flip, CIFAR-10 and STL-10 only) defaults to ``train``.
    Raises :class:`DatasetNotFoundError` if the files are missing and not downloaded.
    """
    source = _source(name)
    if source.torchvision_class is None:
        return _digits(train)
    path = resolve_root(root)
    transform = _transform(source, source.augment and (train if augment is None else augment))
    if source.torchvision_class is datasets.STL10:
        kwargs = {"split": "train" if train else "test"}
    else:
        kwargs = {"train": train}
    try:
        return source.torchvision_class(str(path), transform=transform, download=download, **kwargs)
    except (RuntimeError, OSError) as exc:
        expected = path / source.subfolder
        attempt = "download failed (no internet?) and " if download else ""
        raise DatasetNotFoundError(
            f"dataset {name!r} not found: {attempt}no usable files under the data root "
            f"{path} (torchvision expects them in {expected}). Fix: set {ENV_VAR} or pass "
            f"root= to the folder that contains {source.subfolder}, or pass download=True "
            f"on a machine with internet, or use the offline dataset 'digits'."
        ) from exc


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
        train_set, val_set = random_split(
            train_set, [len(train_set) - validation, validation], generator=split_generator
        )
        if _source(name).augment:
            plain = load_dataset(name, root, train=True, download=download, augment=False)
            val_set = Subset(plain, val_set.indices)
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
