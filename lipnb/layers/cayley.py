"""Cayley: orthogonal convolutions by the Cayley transform in the Fourier domain (Trockman & Kolter, ICLR 2021).

A stride-1 circular convolution on an ``n₁ × n₂`` grid is block-diagonalized by the 2-D DFT
(:mod:`lipnb.circulant`): with ``x̂ = fft2(x)``, the output is ``ŷ(f) = Ŵ(f) x̂(f)`` at each of the
``n₁n₂`` frequencies ``f``, ``Ŵ(f)`` an ``out × in`` complex matrix, and the operator is orthogonal
exactly when every ``Ŵ(f)`` is unitary. The paper (its Algorithm 1) takes the DFT ``Ŵ`` of an
unconstrained kernel ``W`` and replaces each ``Ŵ(f)`` by the Cayley transform of the
skew-Hermitian ``A = Ŵ − Ŵᴴ``::

    Q = (I + A)⁻¹ (I − A),

unitary because ``A`` has imaginary eigenvalues (so ``I + A`` is invertible) — the case ``V = 0``
below. For ``out ≠ in`` the paper extends the transform to non-square matrices: for a tall
``Ŵ = [U; V]`` (``U`` the first ``in`` rows, ``V`` the other ``out − in``)::

    A = U − Uᴴ + VᴴV,    Q = [(I + A)⁻¹(I − A); −2V(I + A)⁻¹] = [I − A; −2V] (I + A)⁻¹.

Derivation of ``QᴴQ = I``: ``B = I + A`` is invertible (``Re xᴴBx = ‖x‖² + ‖Vx‖² > 0``, as
``xᴴ(U − Uᴴ)x`` is imaginary); ``I − A`` commutes with ``B⁻¹``; ``A + Aᴴ = 2VᴴV``, so
``BᴴB − (I − A)ᴴ(I − A) = 2(A + Aᴴ) = 4VᴴV`` and
``QᴴQ = B⁻ᴴ[(I − A)ᴴ(I − A) + 4VᴴV]B⁻¹ = B⁻ᴴBᴴBB⁻¹ = I``: orthonormal columns. A wide ``Ŵ``
(``out < in``) is transformed through ``Ŵᴴ`` and transposed back: orthonormal rows. So the layer is
orthogonal (all ``out·n₁n₂`` singular values 1) when ``in·s² = out``, and semi-orthogonal
otherwise — an isometry for ``in·s² < out``, a co-isometry for ``in·s² > out`` — with
``min(in·s², out)·n₁n₂`` singular values 1 and the rest of the dense matrix's 0.

Conventions. ``Ŵ(f)`` is exactly the transfer matrix of lipnb's
:func:`~lipnb.circulant.circular_conv2d` with the ``k × k`` kernel ``W`` (an even kernel's taps sit at
offsets ``−(k/2 − 1) … k/2``; a kernel larger than the grid wraps around):
``Ŵ(u, v) = Σ_{a,b} W[:, :, a, b] e^{2πi(d_a u/n₁ + d_b v/n₂)}``, ``d_a = a − ⌊(k−1)/2⌋`` the tap's
offset (``+`` because ``circular_conv2d`` is a cross-correlation). A real ``W`` gives
``Ŵ(−f) = conj Ŵ(f)``; the transform commutes with conjugation, so ``Q(−f) = conj Q(f)`` and real
inputs give real outputs, computed on the ``n₁ × (⌊n₂/2⌋ + 1)`` frequencies of ``rfft2``/``irfft2``.
At the self-conjugate frequencies (``2f ≡ 0``: zero and Nyquist rows and columns) ``Ŵ``, hence
``Q``, is real (the DFT factors are exactly ``±1`` there), and ``irfft2`` reads only the Hermitian
part of the ``v = 0`` and Nyquist columns, which ``Q`` already is: the operator applied is exactly
the convolution whose transfer is ``Q``, and :func:`transfer_to_kernel` its kernel.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lipnb.circulant import check_input_size, fft_conv2d, rfft_transfer, same_padding
from lipnb.layers.conv import LipschitzConv2d, default_conv_kernel

_TINY = 1e-12  # lower bound of ‖W‖_F: an all-zero W gives Ŵ = 0 (Q = [I; 0]), not NaN


class CayleyConv2d(LipschitzConv2d):
    """Orthogonal circular convolution ``x ↦ irfft2(Q(f) · rfft2(E x)(f)) + b``, ``Q`` a Cayley transform.

    Orthogonal (all singular values 1) when ``in·s² = out``, semi-orthogonal otherwise (module
    docstring).

    Trained parameters: ``kernel``, an unconstrained ``W`` of shape :attr:`kernel_shape`
    ``(out, in·s², ⌈k/s⌉, ⌈k/s⌉)`` (``nn.Conv2d``'s default initialization), and a scalar ``alpha``;
    ``Q(f)`` is the Cayley transform of the DFT of ``α·W/‖W‖_F`` (``E`` the invertible downsampling
    for ``stride = s > 1``). ``alpha`` is the reference implementation's learnable scale, kept because
    the Cayley transform is not scale-invariant — an eigenvalue ``iθ`` of ``A`` becomes the rotation
    ``e^{−2i·arctan θ}`` of ``Q`` — so the overall size of ``A`` sets how far each ``Q(f)`` turns
    away from ``I``; weight normalization gives that one number its own parameter, decoupled from
    the direction of ``W`` (whose gradient is then orthogonal to ``W``). It is initialized to
    ``‖W‖_F``, so the initial layer is the plain Cayley transform of ``W`` (the reference initializes
    it lazily to the norm of ``Ŵ`` at the first input size; ``‖W‖_F`` does not depend on it).

    The layer works on any grid, with one ``Q`` per grid size: the operator depends on the input
    size, and its spatial kernel fills the whole ``n₁ × n₂`` grid (the Cayley transform is rational,
    not polynomial, in ``Ŵ``). :attr:`weight` is that dense kernel for the last input seen;
    :meth:`weight_at` gives it at any (downsampled) size, so
    :func:`lipnb.spectrum.singular_values` is exact there. ``vanilla_export`` is therefore an
    ``nn.Conv2d`` with that ``n₁ × n₂`` kernel, equal to the layer on inputs of the last size only
    (circular "same" padding pads less than ``n`` per side, which torch allows); exact, but it costs
    ``n₁n₂`` taps per output pixel.

    Training mode recomputes ``Q`` differentiably in every forward. In eval mode ``Q`` (and the
    kernel, once asked for) is computed once without autograd for the current grid size and
    reused until a parameter changes (an optimizer step, ``load_state_dict``, ``.to()``) or the
    grid size changes: no matrix inverse in an eval forward, only ``rfft2``, one batched complex
    matrix product and ``irfft2``. The reference implementation recomputes ``Q`` in every forward,
    eval included. Eval-mode ``Q`` does not backpropagate into the parameters; input gradients are
    unaffected.

    Cost of ``Q``, at ``F = n₁(⌊n₂/2⌋ + 1)`` frequencies: the DFT of ``W`` (``F·k²·out·in``
    complex products), then one batch of ``F`` complex ``c × c`` inverses, ``c = min(in·s², out)``,
    and for ``in·s² ≠ out`` a ``(max − c) × c × c`` product per frequency: ``O(F·c²·max)``.
    Applying it: ``rfft2`` of the input, ``F`` complex ``out × in`` matrix products per batch,
    ``irfft2`` of the output.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, bias: bool = True
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, bias)
        kernel = default_conv_kernel(self.kernel_shape)
        self.kernel = nn.Parameter(kernel)
        self.alpha = nn.Parameter(kernel.norm())
        self._cache: dict | None = None  # eval mode: {"key", "size", "transfer", "weight"}

    # -- the operator ---------------------------------------------------------------------------

    def transfer(self, conv_input_size: tuple[int, int]) -> Tensor:
        """``Q(f)`` at the ``rfft2`` frequencies of ``conv_input_size``, complex ``(n₁, ⌊n₂/2⌋+1, out, in·s²)``.

        Differentiable and recomputed in training mode; cached in eval mode (see the class docstring).
        """
        size = check_input_size(conv_input_size, "conv_input_size")
        if self.training:
            self._cache = None
            return self._compute_transfer(size)
        return self._eval_entry(size)["transfer"]

    def weight_at(self, conv_input_size: tuple[int, int]) -> Tensor:
        """The real ``(out, in·s², n₁, n₂)`` kernel ``K`` with ``circular_conv2d(x, K)`` equal to the
        layer's stride-1 convolution on ``n₁ × n₂`` maps (after downsampling)."""
        size = check_input_size(conv_input_size, "conv_input_size")
        if self.training:
            self._cache = None
            return transfer_to_kernel(self._compute_transfer(size), size)
        entry = self._eval_entry(size)
        if entry["weight"] is None:
            entry["weight"] = transfer_to_kernel(entry["transfer"], size)
        return entry["weight"]

    @property
    def weight(self) -> Tensor:
        """The spatial kernel at the last input size seen (:attr:`input_size`), see :meth:`weight_at`."""
        if self.input_size is None:
            raise ValueError(
                "CayleyConv2d.weight depends on the input size: run a forward pass first, "
                "or call weight_at((height, width)) with the size after downsampling"
            )
        return self.weight_at(self.conv_input_size(self.input_size))

    def forward(self, x: Tensor) -> Tensor:
        x = self.prepare_input(x)
        size = (x.shape[-2], x.shape[-1])
        y = fft_conv2d(x, self.transfer(size))
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)

    # -- internals --------------------------------------------------------------------------------

    def _compute_transfer(self, size: tuple[int, int]) -> Tensor:
        scaled = self.kernel * (self.alpha / self.kernel.norm().clamp_min(_TINY))
        return cayley_transform(rfft_transfer(scaled, size))

    def _eval_entry(self, size: tuple[int, int]) -> dict:
        tensors = (self.kernel, self.alpha)
        key = tuple((t.data_ptr(), t._version, t.shape, t.dtype, t.device) for t in tensors)
        if self._cache is None or self._cache["key"] != key or self._cache["size"] != size:
            with torch.no_grad():
                transfer = self._compute_transfer(size)
            self._cache = {"key": key, "size": size, "transfer": transfer, "weight": None}
        return self._cache

    def _apply(self, fn, recurse=True):  # .to(), .double(), .cuda(): drop the cached tensors
        self._cache = None
        return super()._apply(fn, recurse)


def cayley_transform(w: Tensor) -> Tensor:
    """Cayley transform of a batch ``(…, m, n)`` of complex matrices: unitary, or orthonormal
    columns (``m > n``) or rows (``m < n``); see the module docstring.

    With ``B = I + A``, ``(I − A)B⁻¹ = (2I − B)B⁻¹ = 2B⁻¹ − I``, so
    ``Q = [2B⁻¹ − I; −2V B⁻¹]``: ``B⁻¹`` is part of ``Q`` itself, computed by one batched inverse
    (an LU factorization per matrix, no separate right-hand sides), and its backward pass is two
    matrix products, cheaper than a solve's.
    """
    m, n = w.shape[-2:]
    if m < n:
        return cayley_transform(w.mH).mH
    u, v = w[..., :n, :], w[..., n:, :]
    eye = torch.eye(n, dtype=w.dtype, device=w.device)
    a = u - u.mH if m == n else u - u.mH + v.mH @ v
    inverse = torch.linalg.inv(eye + a)
    top = 2 * inverse - eye
    return top if m == n else torch.cat([top, -2 * (v @ inverse)], dim=-2)


def transfer_to_kernel(transfer: Tensor, size: tuple[int, int]) -> Tensor:
    """The real ``(out, in, n₁, n₂)`` kernel, in ``circular_conv2d``'s tap order, of the convolution
    whose transfer at the ``rfft2`` frequencies is ``transfer`` (``(n₁, ⌊n₂/2⌋+1, out, in)``).

    ``Q(f) = Σ_d K_d e^{2πi⟨d, f⟩/n}`` makes ``irfft2(conj Q)`` the kernel indexed by offset
    ``d mod n``; rolling by ``⌊(n−1)/2⌋`` puts offset ``d`` at tap ``d + ⌊(n−1)/2⌋``, where
    ``circular_conv2d``'s "same" padding reads it for an ``n``-tap kernel.
    """
    n1, n2 = size
    by_offset = torch.fft.irfft2(transfer.conj().permute(2, 3, 0, 1), s=size)
    return torch.roll(by_offset, shifts=(same_padding(n1)[0], same_padding(n2)[0]), dims=(-2, -1))
