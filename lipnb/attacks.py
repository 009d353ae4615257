"""Empirical robustness under L2 attacks (Li et al. 2019, Sec. 5.2, Tables 2 and 3).

Inputs live in ``[0, 1]``. Every adversarial batch returned here lies in the L2 ball of radius
``eps`` around the clean batch *and* in ``[0, 1]``. The gradient attacks (:func:`pgd_l2`,
:func:`fgsm_l2`) maximize the Carlini-Wagner margin :func:`lipnb.losses.cw_margin_loss`; the decision-based
attacks (:func:`foolbox_attack`: Boundary and Pointwise) come from foolbox 3, and
:func:`autoattack_l2` (the field's standard since 2020, after the paper) from the authors'
AutoAttack; both are optional dependencies (``pip install "lipnb[attacks]"``) imported only when
they are used.

The empirical robust accuracy of an attack (:func:`robust_accuracy`) is an upper bound on the
true robust accuracy, and the certified accuracy is a lower bound; :func:`check_certificates`
turns "no certified point is ever broken" into an assertion.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from lipnb._modes import eval_mode
from lipnb._validation import require_choice, require_positive_int
from lipnb.losses import cw_margin_loss

ATTACKS = ("pgd", "fgsm", "boundary", "pointwise", "autoattack")
PAPER_ATTACKS = ATTACKS[:4]  # the BCOP paper's Tables 2 and 3; AutoAttack came after it
FOOLBOX_ATTACKS = ("boundary", "pointwise")
BOUNDARY_STEPS = 5000  # foolbox's default is 25000; on 100 8x8 digits 5000 gets within ~1% of it
NORM_SLACK = 1e-6  # tolerance on ||x_adv - x|| <= eps in check_certificates
_EVAL_BATCH = 512


class CertificateViolation(AssertionError):
    """A point certified robust at radius eps was misclassified within that radius."""


def _per_example(norms: Tensor, like: Tensor) -> Tensor:
    """Reshape a (N,) tensor to broadcast against a (N, ...) batch."""
    return norms.view(-1, *([1] * (like.dim() - 1)))


def _l2_norms(delta: Tensor) -> Tensor:
    return delta.flatten(1).norm(dim=1)


def _project(x: Tensor, x_adv: Tensor, eps: float) -> Tensor:
    """Clamp to ``[0, 1]``, then scale the perturbation radially into the ``eps`` ball.

    Scaling towards ``x`` keeps the point in the box (the box is convex and contains ``x``), so
    the result lies in the intersection of ball and box. It is a feasible point, not the exact
    Euclidean projection onto the intersection.
    """
    delta = x_adv.clamp(0.0, 1.0) - x
    scale = (eps / _l2_norms(delta).clamp_min(1e-12)).clamp(max=1.0)
    return x + delta * _per_example(scale, delta)


def _check_eps(eps: float) -> None:
    if not eps >= 0:
        raise ValueError(f"eps must be a non-negative number; got {eps!r}")


def _margin_and_direction(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """CW margin, logits and the unit-L2 gradient direction of the margin at ``x`` (zero gradients stay zero)."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    loss = cw_margin_loss(logits, y)
    (grad,) = torch.autograd.grad(loss.sum(), x)
    direction = grad / _per_example(_l2_norms(grad).clamp_min(1e-12), grad)
    return loss.detach(), logits.detach(), direction


def pgd_l2(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    steps: int = 200,
    step_size: float = 0.01,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """L2 projected gradient ascent on :func:`lipnb.losses.cw_margin_loss` (Sec. 5.2).

    Each step moves ``step_size`` along the per-example normalized gradient, then clamps to
    ``[0, 1]`` and scales back into the ``eps`` ball (see :func:`_project`). The random start is
    uniform in the ball (Gaussian direction, radius ``eps * U^(1/d)``). Per example the best
    iterate is returned: the first misclassified one wins over any correctly classified one, and
    among equals the one with the higher margin loss, so the result is misclassified whenever any
    iterate (the start included) was.
    """
    _check_eps(eps)
    require_positive_int("steps", steps)
    x, y = x.detach(), y.to(x.device)
    with eval_mode(model):
        x_adv = x
        if random_start:
            device = generator.device if generator is not None else x.device
            noise = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
            direction = noise / _per_example(_l2_norms(noise).clamp_min(1e-12), noise)
            uniform = torch.rand(len(x), generator=generator, device=device, dtype=x.dtype).to(x.device)
            radius = eps * uniform ** (1 / x[0].numel())
            x_adv = _project(x, x + direction * _per_example(radius, x), eps)
        best = x_adv.clone()
        best_loss = torch.full((len(x),), float("-inf"), device=x.device, dtype=x.dtype)
        best_wrong = torch.zeros(len(x), dtype=torch.bool, device=x.device)

        def keep_best(candidate: Tensor, loss: Tensor, logits: Tensor) -> None:
            wrong = logits.argmax(dim=1) != y
            better = (wrong & ~best_wrong) | ((wrong == best_wrong) & (loss > best_loss))
            best[better] = candidate[better]
            best_loss[better] = loss[better]
            best_wrong[better] = wrong[better]

        for _ in range(steps):
            loss, logits, direction = _margin_and_direction(model, x_adv, y)
            keep_best(x_adv, loss, logits)
            x_adv = _project(x, x_adv + step_size * direction, eps)
        with torch.no_grad():
            logits = model(x_adv)
            keep_best(x_adv, cw_margin_loss(logits, y), logits)
    return best


def fgsm_l2(model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
    """One step of length ``eps`` along the normalized gradient of :func:`lipnb.losses.cw_margin_loss` (Sec. 5.2).

    The CW margin (rather than cross-entropy) keeps the objective the same as :func:`pgd_l2`; for a
    two-class linear model the step is then the exact minimal-norm attack. The result is clamped
    to ``[0, 1]``, which only shortens the perturbation, so it stays in the ball.
    """
    _check_eps(eps)
    x = x.detach()
    with eval_mode(model):
        _, _, direction = _margin_and_direction(model, x, y.to(x.device))
    return (x + eps * direction).clamp(0.0, 1.0)


def _import_foolbox() -> Any:
    try:
        import foolbox
    except ImportError as error:
        raise ImportError(
            'the Boundary and Pointwise attacks need foolbox 3: pip install "lipnb[attacks]"'
        ) from error
    return foolbox


def foolbox_attack(
    model: nn.Module, x: Tensor, y: Tensor, eps: float, attack: str, steps: int | None = None
) -> Tensor:
    """foolbox 3's decision-based Boundary or Pointwise attack, evaluated at radius ``eps`` (Sec. 5.2).

    Both are minimal-perturbation attacks, so they run unbounded (``epsilons=None``); an example
    counts as broken at ``eps`` iff the attack found a misclassified point within L2 distance
    ``eps``: that point is returned, otherwise ``x`` itself. Points misclassified already are
    returned unchanged (broken at distance 0). Starting points come from foolbox's usual
    initializations, run here so that points where they fail are skipped (returned as ``x``)
    instead of failing the batch: ``LinearSearchBlendedUniformNoiseAttack(steps=50)`` for Boundary,
    ``SaltAndPepperNoiseAttack(steps)`` for Pointwise.

    ``steps``: Boundary iterations (default :data:`BOUNDARY_STEPS` = 5000: about 8 s for 100 8x8
    digits on one CPU core and within ~1% robust accuracy of 25000 steps there; the paper used
    foolbox's default, 25000, which a GPU run on larger images should pass) or, for Pointwise,
    the salt-and-pepper initialization steps (default 1000, foolbox's default).
    """
    require_choice("foolbox attack", attack, FOOLBOX_ATTACKS)
    _check_eps(eps)
    fb = _import_foolbox()
    x, y = x.detach(), y.to(x.device)
    result = x.clone()
    with eval_mode(model), torch.no_grad():
        todo = (model(x).argmax(dim=1) == y).nonzero().squeeze(1)
        if len(todo) == 0:
            return result
        fmodel = fb.PyTorchModel(model, bounds=(0, 1), device=x.device)
        xs, criterion = x[todo], fb.criteria.Misclassification(y[todo])
        if attack == "boundary":
            init = fb.attacks.LinearSearchBlendedUniformNoiseAttack(distance=fb.distances.l2, steps=50)
            main = fb.attacks.BoundaryAttack(steps=BOUNDARY_STEPS if steps is None else steps)
        else:
            init = fb.attacks.SaltAndPepperNoiseAttack(steps=1000 if steps is None else steps)
            main = fb.attacks.PointwiseAttack()
        starts, _, started = init(fmodel, xs, criterion, epsilons=None)
        if not started.any():
            return result
        todo, xs, starts = todo[started], xs[started], starts[started]
        advs, _, success = main(fmodel, xs, fb.criteria.Misclassification(y[todo]), epsilons=None,
                                starting_points=starts)
        broken = success & (_l2_norms(advs - xs) <= eps)
        result[todo[broken]] = advs[broken]
    return result


def autoattack_l2(model: nn.Module, x: Tensor, y: Tensor, eps: float, seed: int = 0) -> Tensor:
    """AutoAttack, standard L2 version (Croce & Hein, ICML 2020), at radius ``eps``.

    The ensemble the field reports since 2020: APGD on cross-entropy, targeted APGD on the DLR
    loss, targeted FAB, and the Square attack, each run only on the points the ones before it did
    not break; all use fixed hyperparameters (nothing to tune per model). The implementation is the
    authors' (the ``pyautoattack`` package, an optional dependency: ``pip install "lipnb[attacks]"``),
    seeded with ``seed``. It needs at least 10 classes (its targeted attacks use the 9 runners-up).
    Returned points lie in the ``eps`` ball and in ``[0, 1]``.
    """
    _check_eps(eps)
    try:
        from pyautoattack import AutoAttack
    except ImportError as error:
        raise ImportError('AutoAttack needs the pyautoattack package: pip install "lipnb[attacks]"') from error
    x, y = x.detach(), y.to(x.device)
    with eval_mode(model):
        adversary = AutoAttack(model, norm="L2", eps=eps, version="standard", seed=seed, device=x.device)
        x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=len(x))
    return _project(x, x_adv.to(x.device), eps)  # only rounding to undo: the attacks stay in the ball and box


def run_attack(name: str, model: nn.Module, x: Tensor, y: Tensor, eps: float, **kwargs: Any) -> Tensor:
    """Run attack ``name`` (one of :data:`ATTACKS`) at radius ``eps``; ``kwargs`` go to the attack."""
    require_choice("attack", name, ATTACKS)
    if name == "pgd":
        return pgd_l2(model, x, y, eps, **kwargs)
    if name == "fgsm":
        return fgsm_l2(model, x, y, eps, **kwargs)
    if name == "autoattack":
        return autoattack_l2(model, x, y, eps, **kwargs)
    return foolbox_attack(model, x, y, eps, name, **kwargs)


def _predict(model: nn.Module, x: Tensor) -> Tensor:
    """Predicted classes of ``x`` in eval mode, in chunks."""
    with eval_mode(model), torch.no_grad():
        return torch.cat([model(chunk).argmax(dim=1) for chunk in x.split(_EVAL_BATCH)])


def robust_accuracy(model: nn.Module, x: Tensor, y: Tensor, x_adv: Tensor) -> float:
    """Fraction of examples classified correctly on both ``x`` and ``x_adv`` (Table 2/3)."""
    y = y.to(x.device)
    robust = (_predict(model, x) == y) & (_predict(model, x_adv) == y)
    return robust.float().mean().item()


def check_certificates(
    model: nn.Module, x: Tensor, x_adv: Tensor, y: Tensor, certified: Tensor, eps: float | None = None
) -> None:
    """Raise :class:`CertificateViolation` if a certified point is misclassified within radius ``eps``.

    ``certified`` (bool, one per point) says which points the caller certified at ``eps``. A point
    violates its certificate if ``x_adv`` is misclassified and ``||x_adv - x||_2 <= eps``
    (+ :data:`NORM_SLACK`); with ``eps=None`` every ``x_adv`` is taken to be inside the certified
    radius. A violation means the Lipschitz bound or the certificate computation is wrong.
    """
    y, certified = y.to(x.device), certified.to(x.device, torch.bool)
    norms = _l2_norms(x_adv - x)
    inside = torch.ones_like(certified) if eps is None else norms <= eps + NORM_SLACK
    violated = certified & inside & (_predict(model, x_adv) != y)
    if violated.any():
        indices = violated.nonzero().squeeze(1).tolist()
        raise CertificateViolation(
            f"{len(indices)} certified point(s) misclassified within eps={eps}: indices {indices}, "
            f"largest perturbation norm {norms[violated].max().item():.6g}"
        )


def attack_dataset(
    name: str,
    model: nn.Module,
    dataset_or_loader: Dataset | DataLoader,
    eps: float,
    limit: int | None = None,
    batch_size: int = 100,
    device: str | torch.device | None = None,
    progress: bool = True,
    **kwargs: Any,
) -> tuple[Tensor, Tensor, Tensor]:
    """Attack the first ``limit`` points (all if ``None``) batch by batch; returns CPU ``(x, y, x_adv)``.

    The paper attacks the first 100 test points with Boundary and Pointwise (Sec. 5.2). A dataset
    is read in order with ``batch_size``; a loader is used as given. Batches go to ``device``
    (default: the model's device), where the model must already be.
    """
    if limit is not None:
        require_positive_int("limit", limit)
    if device is None:
        device = next(model.parameters(), torch.empty(0)).device
    if isinstance(dataset_or_loader, DataLoader):
        loader = dataset_or_loader
    else:
        dataset = dataset_or_loader
        if limit is not None:
            dataset = Subset(dataset, range(min(limit, len(dataset))))  # type: ignore[arg-type]
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    total = len(loader.dataset)  # type: ignore[arg-type]
    if limit is not None:
        total = min(limit, total)
    xs: list[Tensor] = []
    ys: list[Tensor] = []
    advs: list[Tensor] = []
    seen = 0
    with tqdm(total=total, desc=f"{name} eps={eps:g}", unit="pt", disable=not progress) as bar:
        for x, y in loader:
            if seen >= total:
                break
            x, y = x[: total - seen].to(device), y[: total - seen].to(device)
            advs.append(run_attack(name, model, x, y, eps, **kwargs).cpu())
            xs.append(x.cpu())
            ys.append(y.cpu())
            seen += len(x)
            bar.update(len(x))
    return torch.cat(xs), torch.cat(ys), torch.cat(advs)


__all__ = [
    "ATTACKS",
    "PAPER_ATTACKS",
    "BOUNDARY_STEPS",
    "CertificateViolation",
    "FOOLBOX_ATTACKS",
    "attack_dataset",
    "autoattack_l2",
    "check_certificates",
    "fgsm_l2",
    "foolbox_attack",
    "pgd_l2",
    "robust_accuracy",
    "run_attack",
]
