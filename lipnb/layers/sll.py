"""SLL: SDP-based Lipschitz layers (Araujo, Havens, Delattre, Allauzen & Hu, ICLR 2023).

Theorem 3 of the paper: for ``W ∈ ℝ^{n×m}``, ``b ∈ ℝ^m``, ``q ∈ ℝ^m`` with positive entries
and the diagonal ``T`` with ``T_ii = Σ_j |WᵀW|_ij q_j / q_i``, the residual block

    ``h(x) = x − 2 W T⁻¹ σ(Wᵀx + b)``

is 1-Lipschitz for every activation ``σ`` slope-restricted to ``[0, 1]`` (ReLU here), whatever
``W``, ``b`` and ``q``. The argument, re-derived (the paper's equation numbers are not cited here,
as they could not be checked against its text):

1. ``T ⪰ WᵀW``. With ``M = WᵀW`` and ``r_ij = q_j / q_i`` (so ``r_ij r_ji = 1``), for any ``v``,
   ``vᵀMv ≤ Σ_ij |M_ij| |v_i| |v_j| ≤ Σ_ij |M_ij| (r_ij v_i² + r_ji v_j²) / 2 = Σ_i v_i² Σ_j |M_ij| r_ij
   = vᵀTv`` by ``2ab ≤ r a² + b²/r`` and the symmetry of ``|M|``. Only ``r_ij r_ji ≥ 1`` is used,
   and raising a diagonal entry of ``T`` keeps ``T ⪰ M``: the two numerical guards below
   (a symmetric clip of ``log r_ij``, a floor on ``T_ii``) keep the theorem.
2. 1-Lipschitz. For inputs ``x, y`` let ``Δ = x − y``, ``u = WᵀΔ`` and
   ``δ = σ(Wᵀx + b) − σ(Wᵀy + b)``. The slope restriction gives ``δ_i = λ_i u_i``, ``λ_i ∈ [0, 1]``,
   hence ``u_i δ_i ≥ δ_i²``, and with ``T⁻¹`` diagonal and positive
   ``‖h(x) − h(y)‖² = ‖Δ‖² − 4 uᵀT⁻¹δ + 4 δᵀT⁻¹ WᵀW T⁻¹δ ≤ ‖Δ‖² − 4 δᵀT⁻¹δ + 4 δᵀT⁻¹ T T⁻¹δ
   = ‖Δ‖²``, the last step by 1. Any positive diagonal ``T ⪰ WᵀW`` would do: ``T = ‖W‖₂² I``
   gives the convex potential layer (Meunier et al. 2022), which SLL generalizes.

Convolution (:class:`SLLConv2d`). The inner map ``Wᵀ`` is the circular convolution ``C`` with the
kernel ``K`` of shape ``(hidden, channels, k, k)`` (lipnb's padding convention,
:func:`lipnb.circulant.circular_conv2d`, even ``k`` included) and ``W = Cᵀ`` its exact adjoint, the
circular convolution with ``K`` transposed in channels and flipped in space
(:func:`adjoint_kernel`). The paper's Gram ``WᵀW`` is then ``C Cᵀ``, a convolution over the hidden
channels whose kernel is the autocorrelation of ``K`` over its output channels,
``G_ij(t) = Σ_c Σ_a K_ic(a) K_jc(a + t)`` (``2k − 1`` taps per dimension). With one ``q_i`` per
hidden channel (the same at every pixel), the ``q``-weighted absolute row sum of ``C Cᵀ`` at
(channel ``i``, any pixel) is at most ``T_ii = Σ_j Σ_t |G_ij(t)| q_j / q_i``: exactly that on a grid
of at least ``2k − 1`` pixels per side; on a smaller grid taps that wrap around land on the same
matrix entry and add up first, which can only lower the absolute row sum (``|a + b| ≤ |a| + |b|``).
So ``diag(T) ⊗ I ⪰ C Cᵀ`` at every grid size, and the theorem applies to the convolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lipnb._validation import require_positive_int
from lipnb.circulant import circular_conv2d
from lipnb.layers.conv import LipschitzConv2d
from lipnb.layers.parametrized import WeightMap
from lipnb.layers.residual import Residual

_EPS = 1e-12  # floor of T_ii: an all-zero hidden unit gets a zero outer column, not NaN (T only grows)
_MAX_LOG_RATIO = 50.0  # |log(q_j/q_i)| clip: no overflow to inf (and inf·0 = NaN); r_ij r_ji stays 1


def sll_diagonal(weight: Tensor, log_q: Tensor) -> Tensor:
    """The diagonal of ``T`` (one entry per hidden unit) for the inner weight ``Wᵀ`` and ``log q``.

    ``weight`` is the inner map's weight: an ``(hidden, features)`` matrix, or an
    ``(hidden, channels, k, k)`` kernel whose absolute Gram row sums come from its autocorrelation
    over the hidden channels (module docstring). ``T_ii = Σ_j S_ij q_j / q_i`` with ``S_ij`` those sums.
    """
    if weight.dim() == 4:
        k1, k2 = weight.shape[-2:]
        # batch i, filter j, offset t: Σ_c Σ_a K_ic(a + t) K_jc(a) = G_ij(−t); the sum over t is the same
        autocorrelation = F.conv2d(weight, weight, padding=(k1 - 1, k2 - 1))
        sums = autocorrelation.abs().sum(dim=(2, 3))
    elif weight.dim() == 2:
        sums = (weight @ weight.T).abs()
    else:
        raise ValueError(
            f"sll_diagonal needs a (hidden, features) or (hidden, channels, k, k) weight; got {tuple(weight.shape)}"
        )
    log_ratio = (log_q.unsqueeze(0) - log_q.unsqueeze(1)).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)
    return (sums * log_ratio.exp()).sum(dim=1).clamp_min(_EPS)


def adjoint_kernel(kernel: Tensor) -> Tensor:
    """Kernel of the adjoint of ``circular_conv2d(·, kernel)``, itself applied by ``circular_conv2d``.

    ``kernel`` transposed in channels and flipped in space. For an even size ``k`` the adjoint needs
    the padding ``(k/2, k/2 − 1)`` where ``circular_conv2d`` (and ``nn.Conv2d(padding="same")``)
    use ``(k/2 − 1, k/2)``: a zero tap appended after the flipped taps gives an odd ``k + 1`` kernel
    with the symmetric padding ``(k/2, k/2)`` and the same outputs.
    """
    k1, k2 = kernel.shape[-2:]
    flipped = kernel.flip(-2, -1).transpose(0, 1)
    return F.pad(flipped, (0, 1 - k2 % 2, 0, 1 - k1 % 2))


class SLLOuterWeight(WeightMap):
    """``−2 W T⁻¹`` as the outer map's weight, from the inner weight ``Wᵀ``; holds ``log q``.

    ``log_q`` (zeros at init, so ``q = 1``) is the trained parameter behind ``q = exp(log_q)``. As a
    :class:`~lipnb.layers.parametrized.WeightMap` the result is cached in eval mode and recomputed
    only when the inner weight or ``log_q`` changes.
    """

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.log_q = nn.Parameter(torch.zeros(hidden))

    def compute(self, weight: Tensor) -> Tensor:
        scale = -2 / sll_diagonal(weight, self.log_q)
        if weight.dim() == 4:
            return adjoint_kernel(weight) * scale.view(1, -1, 1, 1)
        return weight.T * scale

    def extra_repr(self) -> str:
        return f"hidden={self.log_q.numel()}"


class SLLConv2d(LipschitzConv2d):
    """SLL convolutional residual block ``x + Cᵀ(−2T⁻¹ ReLU(C x + b))``: 1-Lipschitz for any parameters.

    ``C`` is the circular convolution with ``weight``, the kernel ``K`` of shape
    ``(hidden_channels, channels, k, k)`` (a trained ``nn.Parameter``, Xavier-normal at init);
    ``bias`` (zeros) has ``hidden_channels`` entries and acts inside the ReLU; ``outer.log_q``
    (zeros) is ``log q``. ``hidden_channels`` defaults to ``in_channels``.

    The factory signature ``(in_channels, out_channels, kernel_size, stride, bias)`` is kept for
    :func:`lipnb.layers.lipschitz_conv`, but a residual block needs ``in_channels == out_channels``
    and ``stride == 1``. Unlike the other :class:`LipschitzConv2d` kinds the block is nonlinear:
    it has no spectrum, and :func:`lipnb.lipschitz_bound` counts it by its declared rule
    (Theorem 3: 1) in :data:`lipnb.spectrum.LIPSCHITZ_RULES`. :meth:`vanilla_export` gives a
    :class:`Residual` around ``nn.Conv2d → nn.ReLU → nn.Conv2d`` (circular padding), the outer
    conv holding ``−2 Kᵀ T⁻¹`` (:attr:`outer_weight`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        bias: bool = True,
        *,
        hidden_channels: int | None = None,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, bias=False)
        if in_channels != out_channels or stride != 1:
            raise ValueError(
                f"SLLConv2d is a residual block x + f(x), so it needs in_channels == out_channels and stride=1; "
                f"got stride={stride} with in_channels={in_channels}, out_channels={out_channels} (use it in arch "
                f"'residual'; change the width and downsample elsewhere, e.g. with a conv of another kind)"
            )
        hidden = in_channels if hidden_channels is None else require_positive_int("hidden_channels", hidden_channels)
        self.hidden_channels = hidden
        self.weight = nn.Parameter(nn.init.xavier_normal_(torch.empty(self.kernel_shape)))
        self.bias = nn.Parameter(torch.zeros(hidden)) if bias else None
        self.outer = SLLOuterWeight(hidden)

    @property
    def kernel_shape(self) -> tuple[int, int, int, int]:
        """Shape of the inner kernel ``K`` (:attr:`weight`): ``(hidden_channels, channels, k, k)``."""
        k = self.kernel_size
        return (self.hidden_channels, self.in_channels, k, k)

    @property
    def outer_weight(self) -> Tensor:
        """Kernel ``(channels, hidden, k', k')`` of the outer map ``−2 Cᵀ T⁻¹``; cached in eval mode.

        ``k' = k`` for odd ``k`` and ``k + 1`` for even ``k`` (:func:`adjoint_kernel`).
        """
        return self.outer(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        x = self.prepare_input(x)
        hidden = F.relu(circular_conv2d(x, self.weight, self.bias))
        return x + circular_conv2d(hidden, self.outer_weight)

    def vanilla_export(self) -> Residual:
        """An equivalent plain-torch block: ``Residual(Sequential(Conv2d, ReLU, Conv2d))``, circular padding."""
        weight, outer = self.weight.detach(), self.outer_weight.detach()
        options = {"padding": "same", "padding_mode": "circular", "device": weight.device, "dtype": weight.dtype}
        inner_conv = nn.Conv2d(
            self.in_channels, self.hidden_channels, weight.shape[-1], bias=self.bias is not None, **options
        )
        outer_conv = nn.Conv2d(self.hidden_channels, self.out_channels, outer.shape[-1], bias=False, **options)
        return _exported_block(self, inner_conv, outer_conv)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, hidden_channels={self.hidden_channels}"


class SLLLinear(nn.Module):
    """SLL dense residual block ``x + Wₒ ReLU(W x + b)`` with ``Wₒ = −2 Wᵀ T⁻¹``: 1-Lipschitz.

    ``weight`` is the inner ``(hidden, features)`` matrix (``nn.Linear``'s layout; the paper's
    ``Wᵀ``), Xavier-normal at init; ``bias`` (zeros) has ``hidden`` entries and acts inside the
    ReLU; ``outer.log_q`` (zeros) is ``log q``. ``hidden`` defaults to ``features``. Acts on the
    last dimension, e.g. after ``nn.Flatten``. :meth:`vanilla_export` gives a :class:`Residual`
    around ``nn.Linear → nn.ReLU → nn.Linear``.
    """

    def __init__(self, features: int, hidden: int | None = None, bias: bool = True) -> None:
        super().__init__()
        self.features = require_positive_int("features", features)
        self.hidden = features if hidden is None else require_positive_int("hidden", hidden)
        self.weight = nn.Parameter(nn.init.xavier_normal_(torch.empty(self.hidden, features)))
        self.bias = nn.Parameter(torch.zeros(self.hidden)) if bias else None
        self.outer = SLLOuterWeight(self.hidden)

    @property
    def in_features(self) -> int:
        return self.features

    @property
    def out_features(self) -> int:
        return self.features

    @property
    def outer_weight(self) -> Tensor:
        """The outer ``(features, hidden)`` matrix ``−2 Wᵀ T⁻¹``; cached in eval mode."""
        return self.outer(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 0 or x.shape[-1] != self.features:
            raise ValueError(
                f"SLLLinear expects inputs with last dimension features={self.features}; got {tuple(x.shape)}"
            )
        return x + F.linear(F.relu(F.linear(x, self.weight, self.bias)), self.outer_weight)

    def vanilla_export(self) -> Residual:
        """An equivalent plain-torch block: ``Residual(Sequential(Linear, ReLU, Linear))``."""
        options = {"device": self.weight.device, "dtype": self.weight.dtype}
        inner = nn.Linear(self.features, self.hidden, bias=self.bias is not None, **options)
        return _exported_block(self, inner, nn.Linear(self.hidden, self.features, bias=False, **options))

    def extra_repr(self) -> str:
        return f"features={self.features}, hidden={self.hidden}, bias={self.bias is not None}"


def _exported_block(block: SLLConv2d | SLLLinear, inner: nn.Module, outer: nn.Module) -> Residual:
    """``Residual(Sequential(inner, ReLU, outer))`` holding ``block``'s inner weight and bias and its outer weight."""
    with torch.no_grad():
        inner.weight.copy_(block.weight)
        if block.bias is not None:
            inner.bias.copy_(block.bias)
        outer.weight.copy_(block.outer_weight)
    return Residual(nn.Sequential(inner, nn.ReLU(), outer))
