"""The one training engine: resume, settings, corrupt checkpoints, seeding, for all three experiments."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from lipnb.engine import EpochShards, epoch_seed, fit, load_modules
from lipnb.gan import InfoGANDiscriminator, InfoGANGenerator, WGANSettings, train_wgan_gp
from lipnb.models import build_model, dcgan_critic
from lipnb.wasserstein import gaussian_sampler, train_critic


class Interrupted(Exception):
    pass


class Interrupting(torch.utils.data.Dataset):
    """Serves ``data`` item by item but fails at the ``fail_at``-th item, like a run killed mid-epoch."""

    def __init__(self, data, fail_at):
        self.data, self.fail_at, self.served = data, fail_at, 0

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        self.served += 1
        if self.served == self.fail_at:
            raise Interrupted
        return self.data[index]


def interrupting_sampler(sampler, fail_at):
    calls = {"n": 0}

    def sample(n, generator):
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise Interrupted
        return sampler(n, generator)

    return sample


def tiny_data(n=96):
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(n, 1, 8, 8, generator=generator)
    y = (x.mean((1, 2, 3)) > 0.5).long() + 2 * (x[:, 0, 0, 0] > 0.5).long()
    return TensorDataset(x, y)


def margin_run(path, epochs, fail_at=None, lr=1e-3):
    from lipnb.train import train

    torch.manual_seed(0)
    model = build_model("small", "ossn", "maxmin", (1, 8, 8), num_classes=4)  # OSSN: its power vector resumes too
    data = tiny_data() if fail_at is None else Interrupting(tiny_data(), fail_at)
    history = train(model, data, epochs=epochs, margin=0.7, lr=lr, batch_size=16, seed=3, checkpoint=path,
                    svcm_every=5, progress=False, device="cpu")
    return model.state_dict(), history


def critic_run(path, epochs, fail_at=None, lr=1e-3):
    torch.manual_seed(0)
    critic = dcgan_critic("svcm", "maxmin", (1, 8, 8), width=8)  # SVCM: clipped every 5 steps
    real, fake = gaussian_sampler(torch.full((1, 8, 8), 0.1)), gaussian_sampler(torch.zeros(1, 8, 8))
    if fail_at is not None:
        real = interrupting_sampler(real, fail_at)
    history = train_critic(critic, real, fake, steps=50 * epochs, lr=lr, batch_size=16, seed=2, checkpoint=path,
                           svcm_every=5, progress=False, device="cpu")
    return critic.state_dict(), history


def gan_run(path, epochs, fail_at=None, lr=2e-4):
    torch.manual_seed(0)
    images = TensorDataset(torch.rand(48, 1, 8, 8, generator=torch.Generator().manual_seed(4)))
    data = images if fail_at is None else Interrupting(images, fail_at)
    generator, discriminator = InfoGANGenerator((1, 8, 8)), InfoGANDiscriminator((1, 8, 8))
    history = train_wgan_gp(generator, discriminator, data, epochs=epochs, settings=WGANSettings(batch_size=8, lr=lr),
                            seed=5, checkpoint=path, progress=False, device="cpu")
    return {**generator.state_dict(), **{f"d.{k}": v for k, v in discriminator.state_dict().items()}}, history


# run(path, epochs, fail_at, lr), the item (or draw) at which to interrupt epoch 3, the lr keyword's other value
EXPERIMENTS = {
    "margin": (margin_run, 96 * 2 + 40, 1e-2),
    "critic": (critic_run, 50 * 2 + 20, 1e-2),
    "wgan-gp": (gan_run, 48 * 2 + 20, 1e-3),
}


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_an_interrupted_run_resumes_to_the_uninterrupted_result(name, tmp_path):
    run, fail_at, _ = EXPERIMENTS[name]
    straight, straight_history = run(tmp_path / "straight.pt", epochs=4)
    with pytest.raises(Interrupted):  # dies in the middle of epoch 3
        run(tmp_path / "split.pt", epochs=4, fail_at=fail_at)
    assert load_modules(tmp_path / "split.pt", {})["epoch"] == 2  # at most one epoch lost
    resumed, resumed_history = run(tmp_path / "split.pt", epochs=4)
    for key, value in straight.items():
        torch.testing.assert_close(resumed[key], value, atol=0, rtol=0, msg=key)
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in straight_history]
    assert [{k: v for k, v in row.items() if k != "seconds"} for row in resumed_history] == strip
    # a finished run is reused as it is
    again, _ = run(tmp_path / "split.pt", epochs=4)
    assert all(torch.equal(again[key], value) for key, value in straight.items())


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_a_checkpoint_of_other_settings_is_refused_naming_each_difference(name, tmp_path):
    run, _, other_lr = EXPERIMENTS[name]
    run(tmp_path / "run.pt", epochs=1)
    with pytest.raises(ValueError, match=rf"run\.pt was written by a run with lr=.*, not lr={other_lr!r}.*delete") as error:
        run(tmp_path / "run.pt", epochs=1, lr=other_lr)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("name", EXPERIMENTS)
@pytest.mark.parametrize("content", [b"not a checkpoint", "pickle"])
def test_a_corrupt_checkpoint_fails_with_one_line_and_no_torch_advice(name, content, tmp_path):
    run, _, _ = EXPERIMENTS[name]
    path = tmp_path / "run.pt"
    if content == "pickle":  # a pickled object that weights_only refuses
        torch.save({"settings": {}, "model": torch.nn.Linear(2, 2)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=r"run\.pt cannot be used \(.*\); delete it to start over") as error:
        run(path, epochs=1)
    message = str(error.value)
    assert "\n" not in message and "weights_only" not in message and "trust" not in message


def test_a_generator_trained_longer_than_asked_is_refused_and_a_shorter_one_trained_on(tmp_path):
    # epochs is a setting of margin training and of the critic; the generator's may grow
    _, short = gan_run(tmp_path / "gan.pt", epochs=1)
    _, longer = gan_run(tmp_path / "gan.pt", epochs=2)
    assert len(longer) == 2 and longer[0] == short[0]
    with pytest.raises(ValueError, match="trained for 2 epochs, more than the 1 asked for"):
        gan_run(tmp_path / "gan.pt", epochs=1)


class RecordingTask:
    """A task that records torch's first random draw of every epoch and the batch order it sees."""

    def __init__(self):
        self.model = torch.nn.Linear(1, 1)
        self.modules = {"model": self.model}
        self.optimizers = {"model": torch.optim.SGD(self.model.parameters(), lr=0.0)}
        self.schedulers = {}
        self.draws = []

    def batches(self, epoch):
        return EpochShards([(torch.arange(4.0)[:, None],)] * 2)

    def step(self, shard):
        if shard.index == 0:
            self.draws.append(torch.rand(1))
        loss = shard.mean(self.model(shard.tensors[0]).squeeze(1))
        loss.backward()
        return {"examples": len(shard), "value": shard.tensors[0].sum()}


def test_fit_seeds_every_epoch_and_averages_metrics_over_examples():
    task = RecordingTask()
    history = fit(task, epochs=3, seed=7, progress=False)
    for epoch, drawn in enumerate(task.draws):
        torch.manual_seed(epoch_seed(7, epoch))
        assert torch.equal(drawn, torch.rand(1))
    assert [row["value"] for row in history] == [1.5] * 3  # mean of 0, 1, 2, 3 over 8 examples
    assert [row["step"] for row in history] == [2, 4, 6]
