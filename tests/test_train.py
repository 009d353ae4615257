import pytest
import torch
from torch.utils.data import DataLoader, Subset, TensorDataset

from lipnb.data import load_dataset
from lipnb.layers import SVCMConv2d
from lipnb.models import build_model
from lipnb.spectrum import operator_norm
from lipnb.losses import multiclass_hinge_loss
from lipnb.train import epoch_loader, train


def test_hinge_loss_by_hand():
    logits = torch.tensor([[3.0, 1.0, 2.5], [0.0, 2.0, -1.0]])
    labels = torch.tensor([0, 2])
    margin = 1.0
    # example 0: j=1: max(0, 1 - (3 - 1)) = 0;  j=2: max(0, 1 - 0.5) = 0.5      -> 0.5 / 3
    # example 1: j=0: max(0, 1 - (-1 - 0)) = 2; j=1: max(0, 1 - (-1 - 2)) = 4   -> 6 / 3
    expected = (0.5 / 3 + 6 / 3) / 2
    assert float(multiclass_hinge_loss(logits, labels, margin)) == pytest.approx(expected)
    per_example = multiclass_hinge_loss(logits, labels, margin, reduction="none")
    torch.testing.assert_close(per_example, torch.tensor([0.5 / 3, 6 / 3]))


def tiny_data(n=96):
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(n, 1, 8, 8, generator=generator)
    y = (x.mean((1, 2, 3)) > 0.5).long() + 2 * (x[:, 0, 0, 0] > 0.5).long()
    return TensorDataset(x, y)


def fit(conv, tmp_path, epochs, name="run.pt", **kwargs):
    torch.manual_seed(0)
    model = build_model("small", conv, "maxmin", (1, 8, 8), num_classes=4)
    history = train(
        model, tiny_data(), epochs=epochs, margin=0.7, batch_size=16, seed=3,
        checkpoint=tmp_path / name, progress=False, device="cpu", **kwargs,
    )
    return model, history


class ItemByItem(torch.utils.data.Dataset):
    """Serves ``data`` item by item (not in memory as far as :func:`epoch_loader` sees)."""

    def __init__(self, data):
        self.data = data

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        return self.data[index]


def test_learning_rate_drops_tenfold_every_thirty_percent_of_the_epochs(tmp_path):
    _, history = fit("bcop", tmp_path, epochs=10)
    expected = [1e-3] * 3 + [1e-4] * 3 + [1e-5] * 3 + [1e-6]
    assert [h["lr"] for h in history] == pytest.approx(expected)


def test_svcm_is_projected_during_training(tmp_path):
    model, _ = fit("svcm", tmp_path, epochs=1, svcm_every=2)
    for layer in model:
        if isinstance(layer, SVCMConv2d):
            assert operator_norm(layer, layer.input_size) <= 1 + 1e-4


def test_training_reduces_the_loss(tmp_path):
    _, history = fit("bcop", tmp_path, epochs=5)
    assert history[-1]["loss"] < 0.8 * history[0]["loss"]


def old_epoch_loader(dataset, batch_size, seed, epoch, drop_last=False):
    """epoch_loader as it was: a DataLoader shuffling with the epoch's generator."""
    order = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=drop_last, generator=order)


@pytest.mark.parametrize("drop_last", [False, True])
def test_epoch_loader_yields_the_batches_of_the_data_loader_it_replaces(drop_last):
    digits = load_dataset("digits")
    tiny = tiny_data(97)
    item_by_item = ItemByItem(tiny)
    for dataset in (digits, tiny, Subset(digits, range(5, 900)), item_by_item):
        for seed, epoch in ((0, 0), (3, 2), (12, 199)):
            batches = epoch_loader(dataset, 16, seed, epoch, drop_last=drop_last)
            expected = list(old_epoch_loader(dataset, 16, seed, epoch, drop_last=drop_last))
            assert len(batches) == len(expected) == (len(dataset) // 16 if drop_last else -(-len(dataset) // 16))
            got = list(batches)
            assert len(got) == len(expected)
            for (x, y), (x_old, y_old) in zip(got, expected):
                assert torch.equal(x, x_old) and torch.equal(y, y_old)
