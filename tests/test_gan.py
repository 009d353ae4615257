"""WGAN-GP generator: shapes, the gradient penalty, and atomic, resumable, validated checkpoints."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from lipnb.gan import InfoGANDiscriminator, InfoGANGenerator, WGANSettings, load_generator, train_wgan_gp
from lipnb.losses import gradient_penalty

SHAPE = (1, 8, 8)


@pytest.fixture
def images():
    return TensorDataset(torch.rand(256, *SHAPE), torch.zeros(256))


def fresh_pair(seed: int = 0):
    torch.manual_seed(seed)
    return InfoGANGenerator(SHAPE), InfoGANDiscriminator(SHAPE)


def test_generator_images_have_the_data_shape_and_range():
    generator = InfoGANGenerator((3, 32, 32))
    images = generator.sample(5, generator=torch.Generator().manual_seed(0))
    assert images.shape == (5, 3, 32, 32) and 0 <= float(images.min()) and float(images.max()) <= 1
    assert generator.training  # sampling restores the mode it found
    assert InfoGANDiscriminator((3, 32, 32))(images).shape == (5,)
    with pytest.raises(ValueError, match="divisible by 4"):
        InfoGANGenerator((1, 30, 30))


def test_gradient_penalty_is_zero_for_unit_slope_and_one_for_slope_two():
    x, y = torch.randn(16, 1, 2, 2), torch.randn(16, 1, 2, 2)
    for slope, expected in ((1.0, 0.0), (2.0, 1.0)):
        linear = nn.Linear(4, 1, bias=False)
        with torch.no_grad():
            linear.weight.copy_(slope * nn.functional.normalize(torch.randn(1, 4)))
        critic = nn.Sequential(nn.Flatten(), linear)
        assert float(gradient_penalty(critic, x, y).mean().detach()) == pytest.approx(expected, abs=1e-5)


def test_checkpoint_round_trip_and_resume_match_an_uninterrupted_run(tmp_path, images):
    generator, discriminator = fresh_pair()
    straight = train_wgan_gp(generator, discriminator, images, epochs=2, seed=1, device="cpu", progress=False,
                             checkpoint=tmp_path / "straight.pt")
    interrupted, critic = fresh_pair()
    train_wgan_gp(interrupted, critic, images, epochs=1, seed=1, device="cpu", progress=False,
                  checkpoint=tmp_path / "resumed.pt")
    resumed, critic = fresh_pair(seed=5)  # different weights: everything must come from the checkpoint
    history = train_wgan_gp(resumed, critic, images, epochs=2, seed=1, device="cpu", progress=False,
                            checkpoint=tmp_path / "resumed.pt")
    def timeless(entries):
        return [{k: v for k, v in entry.items() if k != "seconds"} for entry in entries]

    assert timeless(history) == timeless(straight) and len(history) == 2
    for (name, a), b in zip(generator.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert not any(p.requires_grad for p in resumed.parameters())  # frozen after training
    reloaded = load_generator(tmp_path / "resumed.pt", SHAPE)
    assert not reloaded.training and not any(p.requires_grad for p in reloaded.parameters())
    z = torch.rand(4, 62)
    assert torch.equal(reloaded(z), generator(z))
    assert not (tmp_path / "resumed.pt.tmp").exists()


def test_unusable_checkpoints_fail_early_naming_the_fix(tmp_path, images):
    path = tmp_path / "gan.pt"
    train_wgan_gp(*fresh_pair(), images, epochs=2, device="cpu", progress=False, checkpoint=path)
    with pytest.raises(ValueError, match="trained for 2 epochs, more than the 1 asked for"):
        train_wgan_gp(*fresh_pair(), images, epochs=1, device="cpu", progress=False, checkpoint=path)
    with pytest.raises(ValueError, match="with penalty=50.0, not penalty=10.0"):
        train_wgan_gp(*fresh_pair(), images, epochs=3, settings=WGANSettings(penalty=10.0), device="cpu",
                      progress=False, checkpoint=path)
    with pytest.raises(ValueError, match=r"images of shape \(1, 8, 8\)"):
        load_generator(path, (1, 12, 12))
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*missing.pt; train the run first"):
        load_generator(tmp_path / "missing.pt", SHAPE)
    path.write_bytes(b"\x00 truncated")
    with pytest.raises(ValueError, match=r"gan\.pt cannot be used \(UnpicklingError.*delete it to start over") as info:
        load_generator(path, SHAPE)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="fewer than one batch"):
        train_wgan_gp(*fresh_pair(), TensorDataset(torch.rand(10, *SHAPE)), epochs=1, device="cpu", progress=False)
