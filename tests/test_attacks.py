"""L2 attacks: feasibility, exactness on linear models, soundness against certificates."""

from __future__ import annotations

import math
import sys

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import lipnb
from lipnb.attacks import (
    ATTACKS,
    PAPER_ATTACKS,
    CertificateViolation,
    attack_dataset,
    check_certificates,
    fgsm_l2,
    foolbox_attack,
    pgd_l2,
    robust_accuracy,
    run_attack,
)
from lipnb.data import load_dataset
from lipnb.losses import cw_margin_loss
from lipnb.robustness import RobustnessConfig, run_robustness
from lipnb.layers import BCOPConv2d, BjorckLinear, MaxMin


def _norms(delta: torch.Tensor) -> torch.Tensor:
    return delta.flatten(1).norm(dim=1)


def _linear_two_class(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A 10-class linear model where only classes 0 and 1 can win, inputs, labels, exact distances.

    f_0 − f_1 = u·x + c with ‖u‖ = 1, so the distance of x to the decision boundary is |u·x + c|.
    Inputs lie in [0.3, 0.7]: an L2 ball of radius ≤ 0.3 stays inside [0, 1], the clamp is inactive.
    """
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(64, generator=gen)
    u /= u.norm()
    c = -0.5 * u.sum().item()  # the boundary passes through the centre of the box
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].weight[0] = u / 2
        model[1].weight[1] = -u / 2
        model[1].bias.fill_(-1e3)
        model[1].bias[0] = c / 2
        model[1].bias[1] = -c / 2
    x = 0.3 + 0.4 * torch.rand(200, 1, 8, 8, generator=gen)
    margin = x.flatten(1) @ u + c
    y = (margin < 0).long()  # the model's own prediction: every point is clean-correct
    return model, x, y, margin.abs()


@pytest.fixture(scope="module")
def bcop_model() -> nn.Module:
    """The BCOP net of the brief, trained a few Adam steps on digits."""
    torch.manual_seed(0)
    model = nn.Sequential(
        BCOPConv2d(1, 8, 3), MaxMin(), BCOPConv2d(8, 8, 4, stride=2), MaxMin(),
        nn.Flatten(), BjorckLinear(8 * 4 * 4, 10),
    )
    x, y = load_dataset("digits", train=True).tensors
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(20):
        batch = torch.randint(0, len(x), (256,))
        loss = nn.functional.cross_entropy(5 * model(x[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def digits_test() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_dataset("digits", train=False).tensors
    return x[:100], y[:100]


def test_cw_margin_loss_by_hand():
    logits = torch.tensor([[1.0, 3.0, 2.0], [5.0, 0.0, -1.0], [0.5, 0.5, 0.5], [-2.0, -7.0, -1.0]])
    labels = torch.tensor([1, 0, 2, 1])
    # max over the other classes minus the true logit
    expected = torch.tensor([2.0 - 3.0, 0.0 - 5.0, 0.5 - 0.5, -1.0 - -7.0])
    torch.testing.assert_close(cw_margin_loss(logits, labels), expected)


@pytest.mark.parametrize("name", ["pgd", "fgsm"])
def test_gradient_attacks_stay_in_ball_and_box(name):
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    model.train()
    x = torch.rand(32, 1, 8, 8)
    x[:8] = x[:8].round()  # pixels on the box faces, where the clamp is active
    y = torch.randint(0, 10, (32,))
    for eps in (0.05, 0.5, 3.0):
        kwargs = {"steps": 20, "step_size": eps / 4} if name == "pgd" else {}
        x_adv = run_attack(name, model, x, y, eps, **kwargs)
        assert x_adv.shape == x.shape
        assert (_norms(x_adv - x) <= eps + 1e-5).all()
        assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert model.training and model[0].training  # the mode is restored


def test_pgd_random_start_is_reproducible_with_a_generator():
    model, x, y, _ = _linear_two_class()
    runs = [pgd_l2(model, x, y, 0.1, steps=3, generator=torch.Generator().manual_seed(5)) for _ in range(2)]
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)


def test_pgd_and_fgsm_are_exact_on_a_linear_model():
    model, x, y, distance = _linear_two_class()
    eps = 0.12
    clear = (distance - eps).abs() > 0.01  # leave out points within 0.01 of the threshold
    assert clear.sum() > 150 and (distance[clear] < eps).sum() > 30 and (distance[clear] > eps).sum() > 30
    for x_adv in (pgd_l2(model, x, y, eps, steps=100, step_size=0.01), fgsm_l2(model, x, y, eps)):
        assert (_norms(x_adv - x) <= eps + 1e-5).all()
        broken = model(x_adv).argmax(dim=1) != y
        assert torch.equal(broken[clear], distance[clear] < eps)
        robust = robust_accuracy(model, x, y, x_adv)
        assert math.isclose(robust, 1 - broken.float().mean().item(), abs_tol=1e-6)


class _Zigzag(nn.Module):
    """Two classes; the attacker's margin is 0.02 − |t − 0.05| along t = u·x − c (‖u‖ = 1).

    From t = 0, steps of 0.06 along the normalized gradient alternate between t = 0.06
    (misclassified) and t = 0 (correct): the last iterate of an even number of steps is correct.
    """

    def __init__(self, u: torch.Tensor, c: float):
        super().__init__()
        self.u, self.c = u, c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.flatten(1) @ self.u - self.c
        return torch.stack([torch.zeros_like(t), 0.02 - (t - 0.05).abs()], dim=1)


def test_pgd_returns_a_misclassified_iterate_even_if_the_last_is_not():
    u = torch.randn(64)
    u /= u.norm()
    c = 0.5 * u.sum().item()
    x = (0.3 + 0.4 * torch.rand(10, 64)).double()
    x = (x - (x @ u.double() - c)[:, None] * u.double()).float().view(10, 1, 8, 8)  # t = 0 exactly
    model, y = _Zigzag(u, c), torch.zeros(10, dtype=torch.long)
    assert (model(x).argmax(dim=1) == y).all()
    x_adv = pgd_l2(model, x, y, 0.1, steps=4, step_size=0.06, random_start=False)
    assert (model(x_adv).argmax(dim=1) != y).all()
    torch.testing.assert_close(_norms(x_adv - x), torch.full((10,), 0.06))


def test_robust_accuracy_requires_clean_correctness():
    model, x, y, _ = _linear_two_class()
    wrong = 1 - y  # every clean point misclassified ...
    assert robust_accuracy(model, x, wrong, x) == 0.0
    flipped = 1.0 - x  # ... even where the perturbed point lands on the given label
    assert (model(flipped).argmax(dim=1) == wrong).float().mean() > 0.9
    assert robust_accuracy(model, x, wrong, flipped) == 0.0
    assert robust_accuracy(model, x, y, x) == 1.0


def test_check_certificates_raises_on_a_broken_certified_point():
    model, x, y, distance = _linear_two_class()
    eps = 0.12
    x_adv = fgsm_l2(model, x, y, eps)
    broken = model(x_adv).argmax(dim=1) != y
    index = int(broken.nonzero()[0])
    certified = torch.zeros(len(x), dtype=torch.bool)
    certified[index] = True
    with pytest.raises(CertificateViolation, match=rf"1 certified point.*indices \[{index}\]") as info:
        check_certificates(model, x, x_adv, y, certified, eps)
    assert isinstance(info.value, AssertionError)
    # silent: the broken point is not certified; certified points that were not broken
    check_certificates(model, x, x_adv, y, torch.zeros(len(x), dtype=torch.bool), eps)
    check_certificates(model, x, x_adv, y, ~broken, eps)
    # silent: the adversarial lies outside the certified radius
    check_certificates(model, x, x_adv, y, certified, eps=distance[index].item() / 2)


def test_certified_points_are_never_broken(bcop_model, digits_test):
    x, y = digits_test
    eps = 0.3
    bound = lipnb.lipschitz_bound(bcop_model, (1, 8, 8))
    with torch.no_grad():
        margin = -cw_margin_loss(bcop_model(x), y)
    certified = margin > math.sqrt(2) * bound * eps
    assert 0.2 < certified.float().mean() < 0.95  # a meaningful mix of certified and not
    x_adv = pgd_l2(bcop_model, x, y, eps, steps=50, step_size=0.02)
    check_certificates(bcop_model, x, x_adv, y, certified, eps)
    robust = robust_accuracy(bcop_model, x, y, x_adv)
    clean = robust_accuracy(bcop_model, x, y, x)
    assert certified.float().mean().item() <= robust < clean  # the attack breaks uncertified points


@pytest.mark.parametrize(("attack", "steps"), [("boundary", 200), ("pointwise", 200)])
def test_foolbox_attacks(bcop_model, digits_test, attack, steps):
    x, y = digits_test[0][:5], digits_test[1][:5]
    with torch.no_grad():
        logits = bcop_model(x)
    clean_correct = logits.argmax(dim=1) == y
    bound = lipnb.lipschitz_bound(bcop_model, (1, 8, 8))
    for eps in (0.0, 0.5, 8.0):  # 8 is the diameter of [0, 1]^64: every adversarial found counts
        x_adv = foolbox_attack(bcop_model, x, y, eps, attack, steps=steps)
        assert x_adv.min() >= 0 and x_adv.max() <= 1
        moved = (x_adv != x).flatten(1).any(dim=1)
        assert (_norms(x_adv - x)[moved] <= eps).all()
        assert (bcop_model(x_adv).argmax(dim=1) != y)[moved].all()
        assert not moved[~clean_correct].any()
        check_certificates(bcop_model, x, x_adv, y, -cw_margin_loss(logits, y) > math.sqrt(2) * bound * eps, eps)
        if eps == 0.0:
            assert not moved.any()
    assert moved[clean_correct].float().mean() >= 0.8  # at eps = 8 nearly every start is refined


def test_run_attack_rejects_unknown_names():
    model, x, y, _ = _linear_two_class()
    with pytest.raises(ValueError, match="'pgd', 'fgsm', 'boundary', 'pointwise'"):
        run_attack("deepfool", model, x, y, 0.1)
    assert ATTACKS == ("pgd", "fgsm", "boundary", "pointwise", "autoattack")
    assert PAPER_ATTACKS == ATTACKS[:4]


def test_foolbox_attacks_without_foolbox_ask_for_the_extra(monkeypatch):
    model, x, y, _ = _linear_two_class()
    monkeypatch.setitem(sys.modules, "foolbox", None)  # makes `import foolbox` raise ImportError
    with pytest.raises(ImportError, match=r'pip install "lipnb\[attacks\]"'):
        run_attack("boundary", model, x[:2], y[:2], 0.1)
    run_attack("fgsm", model, x[:2], y[:2], 0.1)  # the gradient attacks need no foolbox


def test_attack_dataset_limit_and_loader(bcop_model):
    dataset = load_dataset("digits", train=False)
    x, y, x_adv = attack_dataset("fgsm", bcop_model, dataset, 0.2, limit=7, batch_size=3, progress=False)
    assert x.shape == x_adv.shape == (7, 1, 8, 8) and y.shape == (7,)
    torch.testing.assert_close(x, dataset.tensors[0][:7])
    torch.testing.assert_close(y, dataset.tensors[1][:7])
    torch.testing.assert_close(x_adv, fgsm_l2(bcop_model, x, y, 0.2))
    loader = DataLoader(dataset, batch_size=4)
    x2, y2, x_adv2 = attack_dataset("pgd", bcop_model, loader, 0.2, limit=10, progress=False, steps=5)
    assert x2.shape == x_adv2.shape == (10, 1, 8, 8)
    torch.testing.assert_close(y2, dataset.tensors[1][:10])
    assert (_norms(x_adv2 - x2) <= 0.2 + 1e-5).all()


def test_autoattack_breaks_exactly_the_points_a_linear_model_cannot_defend():
    """Known answer: for f(x) = Wx + b the smallest L2 perturbation that changes the class of x is
    min_j (f_y − f_j) / ‖w_y − w_j‖. Inputs in [0.3, 0.7] with eps = 0.03 keep the box inactive, so every
    point closer than eps must be broken and no point farther may be (a certificate, exact here)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with torch.no_grad():  # every class ties at the grey image: the points below lie near their boundaries
        model[1].weight.normal_()
        model[1].bias.copy_(-0.5 * model[1].weight.sum(1))
    x = (0.5 + 0.1 * torch.randn(80, 1, 8, 8)).clamp(0.3, 0.7)
    with torch.no_grad():
        logits = model(x)
    y = logits.argmax(1)  # every point starts correctly classified
    weight = model[1].weight.detach()
    gaps = logits.gather(1, y[:, None]) - logits  # f_y − f_j
    distances = gaps / (weight[y][:, None, :] - weight[None, :, :]).norm(dim=-1).clamp_min(1e-12)
    distances.scatter_(1, y[:, None], float("inf"))
    minimal = distances.min(1).values
    eps = 0.03
    assert (minimal < 0.9 * eps).sum() >= 10 and (minimal > 1.1 * eps).sum() >= 10  # both kinds are present
    x_adv = run_attack("autoattack", model, x, y, eps, seed=1)
    assert float((x_adv - x).flatten(1).norm(dim=1).max()) <= eps + 1e-6 and 0 <= float(x_adv.min())
    broken = model(x_adv).argmax(1) != y
    assert broken[minimal < 0.9 * eps].all()
    assert not broken[minimal > eps].any()
    check_certificates(model, x, x_adv, y, minimal > eps, eps)


def test_autoattack_in_a_robustness_run_on_a_limit_of_points(tmp_path):
    config = RobustnessConfig(epochs=1, attacks="pgd,autoattack", autoattack_limit=100, device="cpu",
                              out_dir=str(tmp_path / "run"))
    results = run_robustness(config, progress=False)  # the soundness check runs on every attacked point
    assert set(results["attacks"]) == {"pgd", "autoattack"}
    assert results["certified_accuracy"] <= results["attacks"]["autoattack"] <= results["clean_accuracy"] + 1e-9
    with pytest.raises(ValueError, match="autoattack_limit must be a positive integer"):
        RobustnessConfig(autoattack_limit=0)
