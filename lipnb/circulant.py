"""Circular convolutions: the operator, its adjoint and its exact Fourier diagonalization.

A stride-1 circular convolution on an ``n₁ × n₂`` grid is block-diagonalized by the 2-D DFT
(Sedghi, Gupta & Long 2019, Theorem 6): its singular values are the union, over the ``n₁n₂``
frequencies, of the singular values of the ``out × in`` transfer matrices
``T(u, v) = Σ_{a,b} K[:, :, a, b] e^{-2πi(au/n₁ + bv/n₂)}``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def same_padding(kernel_size: int) -> tuple[int, int]:
    """(before, after) padding that keeps the size; matches ``nn.Conv2d(padding="same")``."""
    before = (kernel_size - 1) // 2
    return before, kernel_size - 1 - before


def circular_conv2d(x: Tensor, kernel: Tensor, bias: Tensor | None = None) -> Tensor:
    """Stride-1 cross-correlation with circular padding; output has the input's spatial size."""
    top, bottom = same_padding(kernel.shape[-2])
    left, right = same_padding(kernel.shape[-1])
    return F.conv2d(F.pad(x, (left, right, top, bottom), mode="circular"), kernel, bias)


def circular_conv2d_adjoint(y: Tensor, kernel: Tensor) -> Tensor:
    """Adjoint of :func:`circular_conv2d` (no bias): the flipped, channel-transposed kernel."""
    top, bottom = same_padding(kernel.shape[-2])
    left, right = same_padding(kernel.shape[-1])
    padded = F.pad(y, (right, left, bottom, top), mode="circular")
    return F.conv2d(padded, kernel.flip(-2, -1).transpose(0, 1))


def check_input_size(input_size: tuple[int, int], name: str = "input_size") -> tuple[int, int]:
    """``input_size`` as a ``(height, width)`` tuple of ints; anything else fails with one line naming ``name``."""
    size = tuple(int(s) for s in input_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"{name} must be (height, width) with positive entries; got {input_size!r}")
    return size  # type: ignore[return-value]


def transfer_matrices(kernel: Tensor, input_size: tuple[int, int]) -> Tensor:
    """Complex ``(n₁, n₂, out, in)`` transfer matrices of the circular convolution by ``kernel``.

    Taps beyond the grid wrap around (a kernel larger than the input is folded onto it).
    """
    n1, n2 = check_input_size(input_size)
    k1, k2 = kernel.shape[-2:]
    folded = F.pad(kernel, (0, -k2 % n2, 0, -k1 % n1))
    folded = folded.unflatten(-1, (-1, n2)).sum(-2).unflatten(-2, (-1, n1)).sum(-3)
    return torch.fft.fft2(folded).permute(2, 3, 0, 1)


def rfft_transfer(kernel: Tensor, input_size: tuple[int, int]) -> Tensor:
    """Transfer matrices of ``circular_conv2d(·, kernel)`` at the ``rfft2`` frequencies, ``(n₁, ⌊n₂/2⌋+1, out, in)``.

    ``rfft2(circular_conv2d(x, kernel))(f) = T(f) rfft2(x)(f)`` with
    ``T(u, v) = Σ_{a,b} K[:, :, a, b] e^{2πi(d_a u/n₁ + d_b v/n₂)}``, ``d`` the tap's offset in
    ``circular_conv2d`` (``+``: it is a cross-correlation); a kernel larger than the grid wraps
    around. Two small DFT matrices over the taps, no zero-padded FFT of the kernel; their factors
    are exactly ``±1`` at the self-conjugate frequencies and exactly conjugate at ``u`` and
    ``n − u``, so :func:`fft_conv2d` applies exactly this operator. Differentiable in ``kernel``.
    """
    n1, n2 = check_input_size(input_size)
    k1, k2 = kernel.shape[-2:]
    rows = _dft_factors(k1, n1, n1, kernel)  # (n₁, k₁)
    cols = _dft_factors(k2, n2, n2 // 2 + 1, kernel)  # (⌊n₂/2⌋+1, k₂)
    return torch.einsum("ua,vb,oiab->uvoi", rows, cols, kernel.to(rows.dtype))


def _dft_factors(taps: int, n: int, frequencies: int, like: Tensor) -> Tensor:
    """``e^{2πi·d·u/n}`` for frequencies ``u < frequencies`` and the taps' offsets ``d``."""
    before, _ = same_padding(taps)
    offsets = torch.arange(taps, device=like.device) - before
    phase = (torch.arange(frequencies, device=like.device).view(-1, 1) * offsets) % n  # integer, exact
    phase = torch.where(2 * phase > n, phase - n, phase)  # signed residue: e^{−iθ} = conj e^{iθ} bitwise
    angle = phase.to(torch.float64) * (2 * math.pi / n)
    imag = torch.where(2 * phase.abs() == n, 0.0, torch.sin(angle))  # sin π is not exactly 0
    factors = torch.complex(torch.cos(angle), imag)
    return factors.to(torch.complex64 if like.dtype != torch.float64 else torch.complex128)


def fft_conv2d(x: Tensor, transfer: Tensor) -> Tensor:
    """The circular convolution with transfer matrices ``transfer`` (:func:`rfft_transfer`) applied to ``x``.

    ``irfft2(T(f) · rfft2(x)(f))``: for a kernel with many taps (Cayley's dense kernel, SOC's
    expanded one) far cheaper than the direct convolution.
    """
    size = (x.shape[-2], x.shape[-1])
    return torch.fft.irfft2(torch.einsum("uvoi,biuv->bouv", transfer, torch.fft.rfft2(x)), s=size)


def conv_singular_values(kernel: Tensor, input_size: tuple[int, int]) -> Tensor:
    """All ``min(out, in)·n₁n₂`` singular values of the circular convolution, descending, float64."""
    values = torch.linalg.svdvals(transfer_matrices(kernel.detach().double(), input_size))
    return values.flatten().sort(descending=True).values


def clip_singular_values(
    kernel: Tensor, input_size: tuple[int, int], max_value: float = 1.0, rounds: int = 50
) -> Tensor:
    """Sedghi et al. (2019, Sec. 4) singular value clipping of a ``k × k`` kernel at ``input_size``.

    Each round clips every transfer matrix's singular values at ``max_value`` and cuts the result
    back to the kernel's support; as that cut can undo part of the clipping, the result is
    finally divided by ``max(1, σ_max / max_value)`` so that ``σ_max ≤ max_value`` holds exactly.
    """
    n1, n2 = check_input_size(input_size)
    k1, k2 = kernel.shape[-2:]
    if k1 > n1 or k2 > n2:
        raise ValueError(f"clip_singular_values: kernel {k1}×{k2} is larger than the input {n1}×{n2}")
    clipped = kernel.detach().double()
    for _ in range(rounds):
        u, s, vh = torch.linalg.svd(transfer_matrices(clipped, (n1, n2)), full_matrices=False)
        clipped_t = (u * s.clamp(max=max_value).unsqueeze(-2).to(u.dtype)) @ vh
        full = torch.fft.ifft2(clipped_t.permute(2, 3, 0, 1)).real
        clipped = full[..., :k1, :k2]
    sigma_max = conv_singular_values(clipped, (n1, n2))[0]
    clipped = clipped / torch.clamp(sigma_max / max_value, min=1.0)
    return clipped.to(kernel.dtype)
