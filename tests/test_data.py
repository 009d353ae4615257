"""Tests for lipnb.data: offline digits, real MNIST (if present), fake CIFAR-10 and STL-10, errors, batching."""

from __future__ import annotations

import hashlib
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, Subset, TensorDataset
from torchvision import datasets, transforms
from torchvision.transforms import functional as TF

from lipnb.data import (
    CROP_PADDING,
    DATASETS,
    DatasetInfo,
    DatasetNotFoundError,
    TensorImages,
    augment_images,
    dataset_info,
    iterate_batches,
    load_dataset,
    make_loaders,
    shuffled_order,
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


# ----------------------------------------------------------------------------- decoded once, in memory


@pytest.fixture
def fake_stl(tmp_path, monkeypatch):
    """A tiny STL-10 in torchvision's binary format (column-major images, labels 1..10).

    Returns (root, train images, test images) as uint8 arrays (N, 3, 96, 96).
    """
    folder = tmp_path / datasets.STL10.base_folder
    folder.mkdir()
    rng = np.random.default_rng(1)
    images = {"train": rng.integers(0, 256, (3, 3, 96, 96), dtype=np.uint8),
              "test": rng.integers(0, 256, (2, 3, 96, 96), dtype=np.uint8)}
    files = {
        "train_X.bin": images["train"].transpose(0, 1, 3, 2),
        "train_y.bin": np.array([1, 5, 10], dtype=np.uint8),
        "unlabeled_X.bin": images["test"][:1],
        "test_X.bin": images["test"].transpose(0, 1, 3, 2),
        "test_y.bin": np.array([2, 3], dtype=np.uint8),
    }
    for filename, array in files.items():
        (folder / filename).write_bytes(np.ascontiguousarray(array).tobytes())
    md5 = {filename: _md5(folder / filename) for filename in files}
    train_files, test_files = ("train_X.bin", "train_y.bin", "unlabeled_X.bin"), ("test_X.bin", "test_y.bin")
    monkeypatch.setattr(datasets.STL10, "train_list", [[f, md5[f]] for f in train_files])
    monkeypatch.setattr(datasets.STL10, "test_list", [[f, md5[f]] for f in test_files])
    return tmp_path, images["train"], images["test"]


def _per_item_reference(name, root, train):
    """The same split read the old way: torchvision decodes each item with ``ToTensor``."""
    cls = DATASETS[name].torchvision_class
    split = {"split": "train" if train else "test"} if cls is datasets.STL10 else {"train": train}
    return cls(str(root), transform=transforms.ToTensor(), **split)


@pytest.mark.parametrize("fixture", ["fake_cifar", "fake_stl"])
@pytest.mark.parametrize("train", [True, False])
def test_decoded_once_is_bit_identical_to_per_item_to_tensor(request, fixture, train):
    name = {"fake_cifar": "cifar10", "fake_stl": "stl10"}[fixture]
    root, train_images, test_images = request.getfixturevalue(fixture)
    ds = load_dataset(name, root=root, train=train, augment=False)
    assert isinstance(ds, TensorImages) and not ds.augment
    x, y = ds.tensors
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.is_contiguous()
    assert torch.equal(x, torch.from_numpy(train_images if train else test_images).float() / 255)
    reference = _per_item_reference(name, root, train)
    assert len(ds) == len(reference)
    for i in range(len(ds)):
        image, label = reference[i]
        assert torch.equal(ds[i][0], image) and int(ds[i][1]) == label


def test_only_the_training_split_of_cifar_and_stl_augments_by_default(fake_cifar, fake_stl):
    assert load_dataset("cifar10", root=fake_cifar[0], train=True).augment
    assert not load_dataset("cifar10", root=fake_cifar[0], train=False).augment
    assert load_dataset("stl10", root=fake_stl[0], train=True).augment
    assert not load_dataset("stl10", root=fake_stl[0], train=False).augment
    assert not load_dataset("digits", train=True).augment


@needs_mnist
def test_mnist_is_decoded_once_bit_identical_to_to_tensor():
    ds = load_dataset("mnist", root=SHARED_DATA, train=False)
    x, y = ds.tensors
    assert isinstance(ds, TensorImages) and not ds.augment
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    reference = _per_item_reference("mnist", SHARED_DATA, train=False)
    for i in (0, 1, 4321, 9999):
        image, label = reference[i]
        assert torch.equal(x[i], image) and int(y[i]) == label


def test_tensor_images_indexing_and_to_device():
    x, y = load_dataset("digits", train=False).tensors
    ds = TensorImages(x, y)
    image, label = ds[3]
    assert torch.equal(image, x[3]) and label == y[3]
    index = torch.tensor([5, 0, 5, 449])
    images, labels = ds[index]
    assert torch.equal(images, x[index]) and torch.equal(labels, y[index])
    assert torch.equal(ds[10:20][0], x[10:20])
    moved = ds.to("cpu")
    assert isinstance(moved, TensorImages) and moved is not ds and moved.augment == ds.augment
    assert all(t.device.type == "cpu" for t in moved.tensors) and torch.equal(moved.tensors[0], x)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        TensorImages(x[:, 0], y)
    with pytest.raises(ValueError, match="labels"):
        TensorImages(x, y[:-1])



# ----------------------------------------------------------------------------- batched augmentation


def _crops(image: torch.Tensor) -> torch.Tensor:
    """Every output torchvision's RandomCrop(padding=4) + RandomHorizontalFlip can give: (2 * 9 * 9, C, H, W).

    Even rows are unflipped crops, odd rows their mirror images.
    """
    padded = TF.pad(image, [CROP_PADDING])
    height, width = image.shape[-2:]
    out = []
    for top in range(2 * CROP_PADDING + 1):
        for left in range(2 * CROP_PADDING + 1):
            crop = TF.crop(padded, top, left, height, width)
            out += [crop, TF.hflip(crop)]
    return torch.stack(out)


def _which_crop(candidates: torch.Tensor, image: torch.Tensor) -> int:
    matches = (candidates == image).flatten(1).all(1).nonzero().flatten().tolist()
    assert len(matches) == 1, matches  # random pixels: every crop is distinct
    return matches[0]


def test_batched_augmentation_gives_crops_of_the_zero_padded_images(fake_cifar):
    root, train_images, _ = fake_cifar
    train = load_dataset("cifar10", root=root, train=True)
    plain = torch.from_numpy(train_images).float() / 255
    candidates = [_crops(image) for image in plain]
    order = torch.arange(10).repeat(20)
    torch.manual_seed(0)
    x, y = train[order]
    assert x.shape == (200, 3, 32, 32) and x.dtype == torch.float32
    assert torch.equal(y, train.tensors[1][order])
    found = [_which_crop(candidates[i], image) for i, image in zip(order.tolist(), x)]
    flips = sum(k % 2 for k in found)
    assert 70 <= flips <= 130  # ~half of 200 (binomial sd 7)
    assert len({k // 2 for k in found}) > 50  # many of the 81 offsets, zero padding included
    # one item is augmented the same way
    torch.manual_seed(1)
    reads = [train[7][0] for _ in range(10)]
    assert len({_which_crop(candidates[7], image) for image in reads}) > 1


def test_batched_augmentation_is_deterministic_under_a_seed(fake_cifar):
    root, _, _ = fake_cifar
    plain, _ = load_dataset("cifar10", root=root, train=True, augment=False).tensors

    def augmented(seed):
        return augment_images(plain, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(augmented(0), augmented(0))
    assert not torch.equal(augmented(0), augmented(1))
    train = load_dataset("cifar10", root=root, train=True)
    batches = []
    for _ in range(2):
        torch.manual_seed(5)  # torch's global generator, as epoch_loader seeds it
        batches.append([x for x, _ in iterate_batches(train, 4)])
    assert all(torch.equal(a, b) for a, b in zip(*batches))


def test_batched_augmentation_of_stl_sized_images(fake_stl):
    root, train_images, _ = fake_stl
    train = load_dataset("stl10", root=root, train=True)
    x, _ = train[torch.tensor([2, 0])]
    assert x.shape == (2, 3, 96, 96)
    plain = torch.from_numpy(train_images).float() / 255
    _which_crop(_crops(plain[2]), x[0])
    _which_crop(_crops(plain[0]), x[1])


def test_eval_split_and_validation_are_not_augmented(fake_cifar):
    root, train_images, test_images = fake_cifar
    test = load_dataset("cifar10", root=root, train=False)
    batches = list(iterate_batches(test, 2))
    assert torch.equal(torch.cat([x for x, _ in batches]), torch.from_numpy(test_images).float() / 255)
    train, val, _ = make_loaders("cifar10", root=root, batch_size=4, validation=3)
    assert train.dataset.dataset.augment and not val.dataset.dataset.augment
    assert val.dataset.dataset.tensors[0] is train.dataset.dataset.tensors[0]  # decoded once, shared


# ----------------------------------------------------------------------------- batching by index


class _ItemByItem(torch.utils.data.Dataset):
    """A dataset that is not in memory as far as iterate_batches can tell."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        return self.dataset[index]


def _batches_equal(ours, theirs) -> bool:
    ours, theirs = list(ours), list(theirs)
    return len(ours) == len(theirs) and all(
        len(a) == len(b) and all(torch.equal(u, v) for u, v in zip(a, b)) for a, b in zip(ours, theirs)
    )


@pytest.mark.parametrize("batch_size", [1, 64, 450, 1000])
@pytest.mark.parametrize("drop_last", [False, True])
def test_iterate_batches_in_order_is_a_sequential_data_loader(batch_size, drop_last):
    test = load_dataset("digits", train=False)
    expected = DataLoader(test, batch_size=batch_size, drop_last=drop_last)
    for dataset in (test, _ItemByItem(test), Subset(test, range(450))):
        batches = iterate_batches(dataset, batch_size, drop_last=drop_last)
        assert len(batches) == len(expected)
        assert _batches_equal(batches, expected)
        assert _batches_equal(batches, expected)  # iterable again


@pytest.mark.parametrize("seed", [0, 7, 3_000_011])
def test_shuffled_order_is_the_order_a_seeded_shuffling_data_loader_reads(seed):
    train = load_dataset("digits", train=True)
    subset = Subset(Subset(train, torch.arange(1347).flip(0)), list(range(0, 1347, 2)))
    synthetic = TensorDataset(torch.randn(37, 2, 3, 3), torch.arange(37))
    for dataset in (train, subset, synthetic, _ItemByItem(synthetic)):
        for drop_last in (False, True):
            loader = DataLoader(
                dataset, batch_size=16, shuffle=True, drop_last=drop_last,
                generator=torch.Generator().manual_seed(seed),
            )
            batches = iterate_batches(dataset, 16, shuffled_order(len(dataset), seed), drop_last=drop_last)
            assert len(batches) == len(loader)
            assert _batches_equal(batches, loader)


def test_iterate_batches_rejects_a_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        iterate_batches(load_dataset("digits"), 0)
