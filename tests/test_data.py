"""Tests for lipnb.data: offline digits, real MNIST (if present), a fake CIFAR-10, errors."""

from __future__ import annotations

import hashlib
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torchvision import datasets

from lipnb.data import (
    DATASETS,
    DatasetInfo,
    DatasetNotFoundError,
    dataset_info,
    load_dataset,
    make_loaders,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_mnist = pytest.mark.skipif(
    not (SHARED_DATA / "MNIST" / "raw").is_dir(),
    reason=f"real MNIST not found at {SHARED_DATA / 'MNIST' / 'raw'}",
)


def _tensors(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(xs), torch.as_tensor(ys)


# ----------------------------------------------------------------------------- digits


def test_digits_shapes_dtype_range_and_split_sizes():
    train = load_dataset("digits", train=True)
    test = load_dataset("digits", train=False)
    assert (len(train), len(test)) == (1347, 450)
    for ds in (train, test):
        x, y = ds.tensors
        assert x.shape == (len(ds), 1, 8, 8) and x.dtype == torch.float32
        assert y.shape == (len(ds),) and y.dtype == torch.int64
        assert x.min() == 0.0 and x.max() == 1.0  # 0..16 scaled by 1/16
        assert set(y.tolist()) == set(range(10))


def test_digits_is_stratified_partition_of_all_1797_images():
    train_x, train_y = load_dataset("digits", train=True).tensors
    test_x, test_y = load_dataset("digits", train=False).tensors
    full = load_digits()

    def rows(x, y):
        return Counter(zip(map(tuple, x.reshape(len(x), -1).tolist()), y.tolist()))

    # train + test is exactly the full data set as a multiset: disjoint, nothing lost
    expected = rows(torch.from_numpy(full.images / 16.0), torch.from_numpy(full.target))
    assert rows(train_x, train_y) + rows(test_x, test_y) == expected
    # stratified: each class has ~25% of its examples in the test split
    total, in_test = Counter(full.target.tolist()), Counter(test_y.tolist())
    for label, count in total.items():
        assert abs(in_test[label] - 0.25 * count) <= 1, (label, in_test[label], count)


def test_digits_is_deterministic():
    for train in (True, False):
        a, b = load_dataset("digits", train=train), load_dataset("digits", train=train)
        assert torch.equal(a.tensors[0], b.tensors[0])
        assert torch.equal(a.tensors[1], b.tensors[1])


def test_digits_ignores_root_and_download(tmp_path):
    ds = load_dataset("digits", root=tmp_path / "nowhere", download=True)
    assert len(ds) == 1347
    assert not (tmp_path / "nowhere").exists()


# ----------------------------------------------------------------------------- names


def test_dataset_info_table():
    expected = {
        "digits": (1, 8, 8),
        "mnist": (1, 28, 28),
        "fashion-mnist": (1, 28, 28),
        "cifar10": (3, 32, 32),
        "stl10": (3, 96, 96),
    }
    assert set(DATASETS) == set(expected)
    for name, shape in expected.items():
        assert dataset_info(name) == DatasetInfo(input_shape=shape, num_classes=10)
    with pytest.raises(AttributeError):
        dataset_info("mnist").num_classes = 3  # frozen


@pytest.mark.parametrize("call", [dataset_info, load_dataset, make_loaders])
def test_unknown_name_raises_value_error_listing_allowed_names(call):
    with pytest.raises(ValueError) as info:
        call("imagenet")
    message = str(info.value)
    assert "'imagenet'" in message
    for name in DATASETS:
        assert repr(name) in message


# ----------------------------------------------------------------------------- real MNIST


def _check_mnist(train, test):
    assert (len(train), len(test)) == (60000, 10000)
    for ds in (train, test):
        for i in (0, len(ds) - 1):
            x, y = ds[i]
            assert x.shape == (1, 28, 28) and x.dtype == torch.float32
            assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.5
            assert 0 <= y < 10


@needs_mnist
def test_mnist_from_root_argument():
    _check_mnist(
        load_dataset("mnist", root=SHARED_DATA, train=True),
        load_dataset("mnist", root=SHARED_DATA, train=False),
    )


@needs_mnist
def test_mnist_from_environment_variable(monkeypatch):
    monkeypatch.setenv("LIPNB_DATA", str(SHARED_DATA))
    _check_mnist(load_dataset("mnist", train=True), load_dataset("mnist", train=False))


@needs_mnist
def test_mnist_loaders_use_real_test_set():
    train, val, test = make_loaders("mnist", root=SHARED_DATA, batch_size=500, validation=5000)
    assert (len(train.dataset), len(val.dataset), len(test.dataset)) == (55000, 5000, 10000)
    x, y = next(iter(test))
    assert x.shape == (500, 1, 28, 28) and y.shape == (500,)


# ----------------------------------------------------------------------------- missing data


@pytest.mark.parametrize(
    ("name", "subfolder"),
    [
        ("mnist", "MNIST/raw"),
        ("fashion-mnist", "FashionMNIST/raw"),
        ("cifar10", "cifar-10-batches-py"),
        ("stl10", "stl10_binary"),
    ],
)
@pytest.mark.parametrize("train", [True, False])
def test_missing_data_raises_one_clear_error(tmp_path, name, subfolder, train):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(name, root=tmp_path, train=train, download=False)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert "\n" not in message
    for part in (repr(name), str(tmp_path), str(tmp_path / subfolder), "LIPNB_DATA", "download=True", "digits"):
        assert part in message
    assert list(tmp_path.iterdir()) == []  # nothing created when not downloading


def test_missing_data_names_root_from_env_and_default(tmp_path, monkeypatch):
    monkeypatch.setenv("LIPNB_DATA", str(tmp_path / "env"))
    with pytest.raises(DatasetNotFoundError, match="env"):
        load_dataset("mnist")
    monkeypatch.delenv("LIPNB_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist")
    assert str(tmp_path / "home" / ".cache" / "lipnb" / "MNIST" / "raw") in str(info.value)


# ----------------------------------------------------------------------------- fake CIFAR-10


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def fake_cifar(tmp_path, monkeypatch):
    """A tiny CIFAR-10 in torchvision's format; the class's md5 table points at its files.

    Only the expected checksums are replaced: torchvision's own integrity check,
    unpickling and HWC conversion all run. Returns (root, train images, test images)
    with images as uint8 arrays (N, 3, 32, 32).
    """
    folder = tmp_path / datasets.CIFAR10.base_folder
    folder.mkdir()
    rng = np.random.default_rng(0)
    images = {}

    def write(filename, payload):
        with open(folder / filename, "wb") as f:
            pickle.dump(payload, f)
        return [filename, _md5(folder / filename)]

    train_list = []
    for i in range(1, 6):
        data = rng.integers(0, 256, size=(2, 3 * 32 * 32), dtype=np.uint8)
        images.setdefault("train", []).append(data)
        train_list.append(write(f"data_batch_{i}", {"data": data, "labels": [i, (i + 5) % 10]}))
    test_data = rng.integers(0, 256, size=(3, 3 * 32 * 32), dtype=np.uint8)
    test_list = [write("test_batch", {"data": test_data, "labels": [0, 1, 2]})]
    _, meta_md5 = write("batches.meta", {"label_names": [f"class{i}" for i in range(10)]})

    monkeypatch.setattr(datasets.CIFAR10, "train_list", train_list)
    monkeypatch.setattr(datasets.CIFAR10, "test_list", test_list)
    monkeypatch.setattr(
        datasets.CIFAR10, "meta", {**datasets.CIFAR10.meta, "md5": meta_md5}
    )
    train = np.concatenate(images["train"]).reshape(-1, 3, 32, 32)
    return tmp_path, train, test_data.reshape(-1, 3, 32, 32)


def test_fake_cifar_test_split_is_plain_to_tensor(fake_cifar):
    root, _, test_images = fake_cifar
    test = load_dataset("cifar10", root=root, train=False)
    assert len(test) == 3
    x, y = _tensors(test)
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.float32
    assert y.tolist() == [0, 1, 2]
    # exactly pixel / 255: no normalization, no augmentation, channels in the right order
    assert torch.equal(x, torch.from_numpy(test_images).float() / 255)
    assert torch.equal(_tensors(test)[0], x)


def test_fake_cifar_train_split_is_augmented(fake_cifar):
    root, train_images, _ = fake_cifar
    train = load_dataset("cifar10", root=root, train=True)
    assert len(train) == 10
    torch.manual_seed(0)
    reads = [train[0][0] for _ in range(20)]
    for x in reads:
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32
        assert 0.0 <= x.min() and x.max() <= 1.0
    assert len({tuple(x.flatten().tolist()) for x in reads}) > 1
    assert not all(torch.equal(x, torch.from_numpy(train_images[0]).float() / 255) for x in reads)
    # augment=False gives the raw training images
    plain = load_dataset("cifar10", root=root, train=True, augment=False)
    assert torch.equal(_tensors(plain)[0], torch.from_numpy(train_images).float() / 255)


def test_fake_cifar_validation_held_out_from_train_without_augmentation(fake_cifar):
    root, train_images, _ = fake_cifar
    train, val, test = make_loaders("cifar10", root=root, batch_size=4, validation=3)
    assert (len(train.dataset), len(val.dataset), len(test.dataset)) == (7, 3, 3)
    assert not set(train.dataset.indices) & set(val.dataset.indices)
    x, _ = next(iter(val))
    expected = torch.from_numpy(train_images[val.dataset.indices]).float() / 255
    assert torch.equal(x, expected)


# ----------------------------------------------------------------------------- loaders


def test_make_loaders_digits_validation_split():
    train, val, test = make_loaders("digits", batch_size=64, validation=100, seed=1)
    assert (len(train.dataset), len(val.dataset), len(test.dataset)) == (1247, 100, 450)
    train_idx, val_idx = set(train.dataset.indices), set(val.dataset.indices)
    assert not train_idx & val_idx
    assert train_idx | val_idx == set(range(1347))  # held out of the training split only
    assert torch.equal(_tensors(test.dataset)[0], load_dataset("digits", train=False).tensors[0])
    assert sum(len(y) for _, y in train) == 1247


def test_make_loaders_is_deterministic_by_seed():
    def first_batches(seed):
        train, val, _ = make_loaders("digits", batch_size=32, validation=100, seed=seed)
        return val.dataset.indices, next(iter(train))[1]

    val_a, batch_a = first_batches(0)
    val_b, batch_b = first_batches(0)
    val_c, batch_c = first_batches(1)
    assert val_a == val_b and torch.equal(batch_a, batch_b)
    assert val_a != val_c and not torch.equal(batch_a, batch_c)


def test_train_shuffle_order_is_seeded():
    def first_batch(seed):
        return next(iter(make_loaders("digits", batch_size=32, seed=seed)[0]))[1]

    assert torch.equal(first_batch(0), first_batch(0))
    assert not torch.equal(first_batch(0), first_batch(1))


def test_make_loaders_without_validation_and_order():
    train, val, test = make_loaders("digits", batch_size=1000)
    assert val is None
    assert len(train.dataset) == 1347
    # test loader keeps dataset order; train loader shuffles
    assert torch.equal(next(iter(test))[1], load_dataset("digits", train=False).tensors[1][:450])
    assert not torch.equal(next(iter(train))[1], load_dataset("digits").tensors[1][:1000])


@pytest.mark.parametrize("validation", [-1, 1347, 5000])
def test_make_loaders_rejects_bad_validation_size(validation):
    with pytest.raises(ValueError, match="validation"):
        make_loaders("digits", validation=validation)
