"""SOC: skew orthogonal convolutions (Singla & Feizi, ICML 2021).

A circular convolution ``L`` whose operator is skew-symmetric, ``Lᵀ = −L``, has an orthogonal
exponential ``exp(L)`` (``exp(L)ᵀ exp(L) = exp(−L) exp(L) = I``). Any kernel ``M`` gives one:
``L = M − Mᵀ`` with ``Mᵀ`` the adjoint convolution, whose kernel is ``M`` transposed in channels
and flipped in space (SOC's skew-symmetric filter ``M − conv_transpose(M)``, and its theorem that
such a filter's Jacobian is skew-symmetric, so its exponential orthogonal). The layer computes
the Taylor series truncated after ``T`` terms, ``S_T(L) x = Σ_{i=0}^{T} Lⁱ x / i!``, whose error
is the tail ``‖exp(L) − S_T(L)‖₂ ≤ Σ_{i>T} ‖L‖ⁱ / i!`` (:func:`taylor_remainder`; the bound
``‖L‖^{T+1} / (T+1)!`` of SOC's approximation-error theorem is its first term, which the full
tail exceeds by a factor of at most ``(T+2)/(T+2−‖L‖)``). So every singular value of ``S_T(L)``
lies within that tail of 1 (Weyl's inequality).

``S_T(L)`` is itself a circular convolution: ``Lⁱ`` composes ``i`` kernels of (odd) size ``k_L``,
a centred kernel of size ``i(k_L − 1) + 1``, so ``S_T(L)`` has a kernel of size
``T(k_L − 1) + 1``, which may exceed the input: :func:`lipnb.circulant.transfer_matrices` folds
it onto the grid (circular aliasing), so its spectrum, hence ``operator_norm`` and
``lipschitz_bound``, is exact and certifies the truncated layer, not the ideal ``exp(L)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from lipnb._validation import require_positive_int
from lipnb.circulant import circular_conv2d, fft_conv2d, rfft_transfer
from lipnb.layers.conv import LipschitzConv2d, default_conv_kernel
from lipnb.layers.parametrized import WeightMap, parametrize_weight


class SOCConv2d(LipschitzConv2d):
    """Skew orthogonal convolution: ``x ↦ P S_T(L) E x`` with the skew-symmetric ``L = M − Mᵀ``.

    ``M`` (``parametrizations.weight.original``) is an unconstrained ``(c, c, k, k)`` kernel,
    ``c = max(in·s², out)`` and ``k = ⌈kernel_size/s⌉``; an even ``k`` is zero-padded to ``k + 1``
    taps in front, the offsets ``circular_conv2d`` gives it, so that ``M`` and ``Mᵀ`` share an odd,
    centred support of ``k_L`` taps. ``E`` zero-pads the input to ``c`` channels (an isometry) and
    ``P`` keeps the first ``out`` output channels (a co-isometry), so for the exact ``exp(L)`` the
    layer is orthogonal for ``in·s² = out``, an isometry for ``in·s² < out`` and a co-isometry for
    ``in·s² > out``: all ``min(in·s², out)·n₁n₂`` singular values are 1, up to the truncation error.

    ``T`` is ``train_terms`` in training mode and ``eval_terms`` in eval mode (SOC uses 6 and 12),
    fixed at construction. ``L`` is rescaled so that ``‖L‖₂ ≤ max_norm`` (:class:`SkewKernel`).
    In training mode ``forward`` applies the series to the input, ``T`` convolutions with the small
    kernel ``L`` (SOC's way: ``T·k_L²`` instead of ``(T(k_L−1)+1)²`` taps per pixel, and autograd
    through small convolutions). In eval mode it applies the cached expanded kernel as one FFT
    convolution (:func:`lipnb.circulant.fft_conv2d`, its transfer matrices cached per input size):
    the same operator, with no series to run per batch;
    ``weight`` is the equivalent expanded kernel ``(out, in·s², K, K)``, ``K = T(k_L − 1) + 1``,
    so ``vanilla_export`` (in the current mode) is an ``nn.Conv2d`` with that kernel; its circular
    padding needs maps (after downsampling) of at least ``(K − 1)/2`` pixels per side, where torch
    refuses to wrap twice and only :meth:`forward` applies.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        bias: bool = True,
        *,
        train_terms: int = 6,
        eval_terms: int = 12,
        max_norm: float = 1.0,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, bias)
        self.channels = max(self.conv_in_channels, out_channels)
        c, k = self.channels, self.conv_kernel_size
        expansion = TaylorExpKernel(out_channels, self.conv_in_channels, train_terms, eval_terms, max_norm)
        parametrize_weight(self, expansion, default_conv_kernel((c, c, k, k)))
        self._transfer_cache: tuple[Tensor, tuple[int, int], Tensor] | None = None  # eval: (weight, size, transfer)

    @property
    def train_terms(self) -> int:
        """Highest power of ``L`` in the series in training mode."""
        return self.parametrizations.weight[0].train_terms

    @property
    def eval_terms(self) -> int:
        """Highest power of ``L`` in the series in eval mode."""
        return self.parametrizations.weight[0].eval_terms

    @property
    def terms(self) -> int:
        """``T`` of the current mode."""
        return self.parametrizations.weight[0].terms

    @property
    def skew_kernel(self) -> Tensor:
        """The rescaled skew-symmetric kernel ``L``, ``(c, c, k_L, k_L)``; cached in eval mode."""
        return self.parametrizations.weight[0].skew(self.parametrizations.weight.original)

    @property
    def kernel_shape(self) -> tuple[int, int, int, int]:
        """Shape of :attr:`weight` in the current mode: ``(out, in·s², K, K)``, ``K = T(k_L − 1) + 1``."""
        size = self.terms * (skew_kernel_size(self.conv_kernel_size) - 1) + 1
        return (self.out_channels, self.conv_in_channels, size, size)

    def forward(self, x: Tensor) -> Tensor:
        x = self.prepare_input(x)
        if self.training:
            x = F.pad(x, (0, 0, 0, 0, 0, self.channels - self.conv_in_channels))
            y = taylor_exp_apply(x, self.skew_kernel, self.terms)[:, : self.out_channels]
        else:
            y = fft_conv2d(x, self._eval_transfer((x.shape[-2], x.shape[-1])))
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)

    def _eval_transfer(self, size: tuple[int, int]) -> Tensor:
        """Transfer matrices of the cached expanded kernel on ``size`` maps, kept until it or the size changes."""
        weight = self.weight  # the eval-mode cache of the parametrization: a new tensor after any change
        cached = self._transfer_cache
        if cached is None or cached[0] is not weight or cached[1] != size:
            with torch.no_grad():
                cached = (weight, size, rfft_transfer(weight, size))
            self._transfer_cache = cached
        return cached[2]

    def extra_repr(self) -> str:
        expansion = self.parametrizations.weight[0]
        return (
            f"{super().extra_repr()}, train_terms={self.train_terms}, eval_terms={self.eval_terms}, "
            f"max_norm={expansion.skew.max_norm}"
        )


class SkewKernel(WeightMap):
    """``L = (M − Mᵀ) / max(1, b/max_norm)``, ``b`` the Gram (Schur) bound on ``‖M − Mᵀ‖₂``.

    For a skew ``L``, ``LᵀL = −L²`` is the convolution with kernel ``G = −L ∗ L`` (``2k_L − 1``
    taps) and ``‖L‖₂² = ‖LᵀL‖₂ ≤ max_i Σ_{j,t} |G_ij(t)| = b²``: the spectral norm of a symmetric
    matrix is at most its largest absolute row sum, and wrapping taps around a small grid only
    merges terms of a row sum (the Gram bound behind AOL, Prach & Lampert 2022). Unlike power
    iteration it is a guaranteed upper bound at every input size, so ``‖L‖₂ ≤ max_norm`` holds
    for certain and the truncation tail is bounded by ``taylor_remainder(max_norm, T)``; it costs
    one small kernel–kernel convolution and needs no state. SOC divides ``M`` by a bound on its
    norm too (the reshaped-kernel bound of Singla & Feizi's earlier "Fantastic Four" paper).
    """

    def __init__(self, max_norm: float) -> None:
        super().__init__()
        if not (isinstance(max_norm, (int, float)) and not isinstance(max_norm, bool) and 0 < max_norm < math.inf):
            raise ValueError(f"max_norm must be a positive finite number; got {max_norm!r}")
        self.max_norm = float(max_norm)

    def compute(self, kernel: Tensor) -> Tensor:
        if kernel.shape[-1] % 2 == 0:  # an even kernel's taps sit at offsets −(k/2 − 1) … k/2
            kernel = F.pad(kernel, (1, 0, 1, 0))
        skew = kernel - kernel.flip(-2, -1).transpose(0, 1)
        gram_bound_sq = compose_kernels(skew, skew).abs().sum(dim=(1, 2, 3)).max()
        return skew / torch.clamp(gram_bound_sq / self.max_norm**2, min=1.0).sqrt()


class TaylorExpKernel(WeightMap):
    """The expanded kernel of ``S_T(L)``, its first ``out`` rows and ``in`` columns (``T`` by mode)."""

    def __init__(
        self, out_channels: int, in_channels: int, train_terms: int, eval_terms: int, max_norm: float
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.in_channels = in_channels
        self.train_terms = require_positive_int("train_terms", train_terms)
        self.eval_terms = require_positive_int("eval_terms", eval_terms)
        self.skew = SkewKernel(max_norm)

    @property
    def terms(self) -> int:
        """``T`` of the current mode."""
        return self.train_terms if self.training else self.eval_terms

    def compute(self, kernel: Tensor) -> Tensor:
        return taylor_exp_kernel(self.skew(kernel), self.terms)[: self.out_channels, : self.in_channels]


def skew_kernel_size(kernel_size: int) -> int:
    """Taps ``k_L`` of ``M − Mᵀ`` for an ``M`` of ``kernel_size`` taps: the next odd number."""
    return kernel_size if kernel_size % 2 else kernel_size + 1


def compose_kernels(outer: Tensor, inner: Tensor) -> Tensor:
    """Kernel of ``conv_outer ∘ conv_inner`` (centred odd kernels): ``Σ_m outer_om ∗ inner_mi``.

    ``(a + b − 1)`` taps for ``a``- and ``b``-tap kernels: the full 2-D convolution, computed as a
    cross-correlation of ``inner`` (batch = its input channels) with the flipped ``outer``.
    """
    k1, k2 = outer.shape[-2:]
    composed = F.conv2d(inner.transpose(0, 1), outer.flip(-2, -1), padding=(k1 - 1, k2 - 1))
    return composed.transpose(0, 1)


def taylor_exp_kernel(skew: Tensor, terms: int) -> Tensor:
    """Kernel of ``S_T(L) = Σ_{i=0}^{T} Lⁱ / i!`` for a square ``(c, c, k, k)`` kernel ``L``, ``k`` odd.

    Size ``T(k − 1) + 1``; each power is centred, so lower powers are zero-padded symmetrically.
    """
    channels, size = skew.shape[0], terms * (skew.shape[-1] - 1) + 1
    term = torch.eye(channels, dtype=skew.dtype, device=skew.device).view(channels, channels, 1, 1)
    total = F.pad(term, (size // 2,) * 4)
    for i in range(1, terms + 1):
        term = compose_kernels(skew, term) / i
        total = total + F.pad(term, ((size - term.shape[-1]) // 2,) * 4)
    return total


def taylor_exp_apply(x: Tensor, skew: Tensor, terms: int) -> Tensor:
    """``S_T(L) x = Σ_{i=0}^{T} Lⁱ x / i!`` by ``T`` circular convolutions with the kernel ``L``."""
    term = total = x
    for i in range(1, terms + 1):
        term = circular_conv2d(term, skew) / i
        total = total + term
    return total


def taylor_remainder(norm: float, terms: int) -> float:
    """``Σ_{i>T} rⁱ/i!``: bounds ``‖exp(L) − S_T(L)‖₂`` when ``‖L‖₂ ≤ r = norm``."""
    term = 1.0
    for i in range(1, terms + 2):
        term *= norm / i
    total, i = 0.0, terms + 1
    while total + term != total:
        total += term
        i += 1
        term *= norm / i
    return total
