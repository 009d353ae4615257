"""The networks of the BCOP paper: the robustness classifiers (Sec. 5.1, Appendix; Wong et al. 2018) and the critic.

Every model is a plain ``nn.Sequential`` so :func:`lipnb.lipschitz_bound` reads its composition.
Each 4×4 stride-2 conv of the original networks is invertible downsampling + a 2×2 conv (the
``stride=2`` convention of :mod:`lipnb.layers`). The activation follows every layer but the last.

==========  ===========================================================================
``small``   conv 16 4×4 s2 → conv 32 4×4 s2 → FC 100 → FC 10
``large``   conv 32 3×3 → conv 32 4×4 s2 → conv 64 3×3 → conv 64 4×4 s2 → FC 512 → FC 512 → FC 10
``fc3``     FC 1024 → FC 1024 → FC 1024 → FC 10 (Björck linear, no convs)
``residual`` downsample 2 → pad to 16 channels → block 16 3×3 → downsample 2 → block 64 3×3 →
            FC block (hidden 100) → FC 10
==========  ===========================================================================

``residual`` is for kinds that keep the width, SLL's residual blocks (``conv="sll"``): the SLL
paper's small CIFAR network scaled to 28×28 and to the size of ``small`` (about 390k parameters
against 166k). Width and resolution change only by invertible downsampling and zero channel
padding, both isometries; the blocks are :class:`~lipnb.layers.SLLConv2d` and one
:class:`~lipnb.layers.SLLLinear` (ReLU inside, as the SLL theorem needs: ``activation="relu"``);
the last layer is Björck linear. With ``conv="plain"`` each block is an unconstrained
``x + W₂ relu(W₁ x + b)``, the baseline.

Linear layers are :class:`~lipnb.layers.BjorckLinear`, except with ``conv="plain"``, the
unconstrained baseline, where every layer is a plain one. ``layer_options`` reach every layer that
takes them, e.g. ``{"orthogonalizer": "bjorck"}`` the BCOP or RKO convs and the Björck linear layers.
:func:`dcgan_critic` is the Wasserstein critic of Sec. 5.3, built from the same layers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from lipnb._validation import require_choice, require_positive_int
from lipnb.layers import (
    CONV_KINDS,
    BjorckLinear,
    ChannelPadding,
    InvertibleDownsampling,
    MaxMin,
    NearestUpsampling,
    Residual,
    SLLLinear,
    layer_options,
    lipschitz_conv,
)
from lipnb.orthogonal import ORTHOGONALIZERS

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"maxmin": MaxMin, "relu": nn.ReLU}

# (out_channels, kernel_size, stride) of each conv, then the hidden widths of the FC layers
_CONVNETS: dict[str, tuple[list[tuple[int, int, int]], list[int]]] = {
    "small": ([(16, 4, 2), (32, 4, 2)], [100]),
    "large": ([(32, 3, 1), (32, 4, 2), (64, 3, 1), (64, 4, 2)], [512, 512]),
    "fc3": ([], [1024, 1024, 1024]),
}
# (channels, blocks) of each stage of the residual network, and the FC block's hidden width
_RESIDUAL_STAGES: list[tuple[int, int]] = [(16, 1), (64, 1)]
_RESIDUAL_HIDDEN = 100
ARCHITECTURES: tuple[str, ...] = (*_CONVNETS, "residual")
RESIDUAL_BLOCK_KINDS: tuple[str, ...] = ("sll",)
"""Conv kinds that are residual blocks, which keep the width: they build the ``residual`` arch (with
``plain``, its baseline) and no other; every other kind builds the other archs."""


def build_model(
    arch: str,
    conv: str = "bcop",
    activation: str = "maxmin",
    input_shape: tuple[int, int, int] = (1, 28, 28),
    num_classes: int = 10,
    layer_options: dict[str, Any] | None = None,
) -> nn.Sequential:
    """The ``arch`` network (see the module table) for inputs of ``input_shape`` (C, H, W).

    Each of ``layer_options`` goes to every layer that takes it; one that no layer of the network
    takes is an error.
    """
    check_network(arch, conv, activation)
    if arch == "residual":
        return _residual_network(conv, input_shape, num_classes, layer_options or {})
    convs, hidden = _CONVNETS[arch]
    linear = nn.Linear if conv == "plain" else BjorckLinear
    conv_options, linear_options = split_layer_options(layer_options or {}, conv if convs else None, linear)
    channels, height, width = input_shape
    downsampling = 2 ** sum(stride == 2 for _, _, stride in convs)
    if height % downsampling or width % downsampling:
        raise ValueError(
            f"arch {arch!r} downsamples by {downsampling}: input height and width must be divisible by it; "
            f"got input_shape={tuple(input_shape)}"
        )
    layers: list[nn.Module] = []
    for out_channels, kernel_size, stride in convs:
        conv_layer = lipschitz_conv(conv, channels, out_channels, kernel_size, stride, **conv_options)
        layers += [conv_layer, ACTIVATIONS[activation]()]
        channels = out_channels
    layers.append(nn.Flatten())
    features = channels * (height // downsampling) * (width // downsampling)
    for width_out in hidden:
        layers += [linear(features, width_out, **linear_options), ACTIVATIONS[activation]()]
        features = width_out
    layers.append(linear(features, num_classes, **linear_options))
    return nn.Sequential(*layers)


def check_network(arch: str, conv: str, activation: str) -> None:
    """Fail with one line unless :func:`build_model` builds ``arch`` from ``conv`` and ``activation``."""
    require_choice("arch", arch, ARCHITECTURES)
    require_choice("conv", conv, tuple(CONV_KINDS))
    require_choice("activation", activation, tuple(ACTIVATIONS))
    if arch != "residual" and conv in RESIDUAL_BLOCK_KINDS:
        raise ValueError(f"conv {conv!r} is a residual block that keeps the width: use arch='residual', not {arch!r}")
    if arch == "residual" and conv not in (*RESIDUAL_BLOCK_KINDS, "plain"):
        kinds = ", ".join(map(repr, (*RESIDUAL_BLOCK_KINDS, "plain")))
        raise ValueError(
            f"arch 'residual' is built from residual blocks: conv must be one of {kinds}, "
            f"not {conv!r} (which builds 'small', 'large' and 'fc3')"
        )
    if arch == "residual" and activation != "relu":
        raise ValueError(
            f"arch 'residual' has ReLU inside its blocks (SLL's theorem needs an elementwise activation): "
            f"pass activation='relu', not {activation!r}"
        )


def _residual_network(
    conv: str, input_shape: tuple[int, int, int], num_classes: int, options: dict[str, Any]
) -> nn.Sequential:
    """The ``residual`` network (module table) of SLL blocks, or of unconstrained ones for ``plain``."""
    linear = nn.Linear if conv == "plain" else BjorckLinear
    conv_options, linear_options = split_layer_options(options, conv, linear)
    channels, height, width = input_shape
    downsampling = 2 ** len(_RESIDUAL_STAGES)
    if height % downsampling or width % downsampling:
        raise ValueError(
            f"arch 'residual' downsamples by {downsampling}: input height and width must be divisible by it; "
            f"got input_shape={tuple(input_shape)}"
        )
    layers: list[nn.Module] = []
    for stage, (stage_channels, blocks) in enumerate(_RESIDUAL_STAGES):
        layers.append(InvertibleDownsampling(2))
        channels, height, width = channels * 4, height // 2, width // 2
        if stage == 0 and channels < stage_channels:
            layers.append(ChannelPadding(stage_channels))
            channels = stage_channels
        if channels != stage_channels:
            raise ValueError(
                f"arch 'residual' needs at most {_RESIDUAL_STAGES[0][0] // 4} input channels; got input_shape={tuple(input_shape)}"
            )
        layers += [_residual_block(conv, channels, conv_options) for _ in range(blocks)]
    features = channels * height * width
    layers += [nn.Flatten(), _residual_block(conv, features, linear=True)]
    layers.append(linear(features, num_classes, **linear_options))
    return nn.Sequential(*layers)


def _residual_block(conv: str, width: int, options: dict[str, Any] | None = None, linear: bool = False) -> nn.Module:
    """An SLL block (conv 3×3 with ``options``, or with ``linear`` FC with hidden width 100), or its unconstrained twin."""
    if conv == "plain":
        inner, outer = (
            (nn.Linear(width, _RESIDUAL_HIDDEN), nn.Linear(_RESIDUAL_HIDDEN, width))
            if linear
            else (lipschitz_conv("plain", width, width, 3), lipschitz_conv("plain", width, width, 3))
        )
        return Residual(nn.Sequential(inner, nn.ReLU(), outer))
    return SLLLinear(width, _RESIDUAL_HIDDEN) if linear else lipschitz_conv(conv, width, width, 3, **(options or {}))


def dcgan_critic(
    conv: str = "bcop",
    activation: str = "maxmin",
    input_shape: tuple[int, int, int] = (1, 28, 28),
    width: int = 64,
    upsample: int = 1,
    layer_options: dict[str, Any] | None = None,
) -> nn.Sequential:
    """The DCGAN discriminator without batch norm, every conv a :mod:`lipnb.layers` conv of kind ``conv``.

    Optional nearest upsampling by ``upsample``, then 4×4 stride-2 convs of ``width``, ``2·width``, …
    channels (invertible downsampling + 2×2 conv, as in the paper) while the map stays ≥ 4 pixels
    and even, at most four; then a linear map to one output (DCGAN's final 4×4 valid conv),
    :class:`~lipnb.layers.BjorckLinear` (a unit row), or ``nn.Linear`` for ``conv="plain"``.
    ``layer_options`` reach every layer that takes them (as in :func:`lipnb.models.build_model`).
    """
    require_choice("conv", conv, tuple(CONV_KINDS))
    require_choice("activation", activation, tuple(ACTIVATIONS))
    require_positive_int("width", width)
    require_positive_int("upsample", upsample)
    channels, height, width_px = input_shape
    height, width_px = height * upsample, width_px * upsample
    linear = nn.Linear if conv == "plain" else BjorckLinear
    conv_options, linear_options = split_layer_options(layer_options or {}, conv, linear)
    layers: list[nn.Module] = [NearestUpsampling(upsample)] if upsample > 1 else []
    for stage in range(4):
        if height % 2 or width_px % 2 or min(height, width_px) < 8:
            break
        out_channels = width * 2**stage
        layers += [lipschitz_conv(conv, channels, out_channels, 4, stride=2, **conv_options), ACTIVATIONS[activation]()]
        channels, height, width_px = out_channels, height // 2, width_px // 2
    if not layers or isinstance(layers[-1], NearestUpsampling):
        raise ValueError(
            f"dcgan_critic needs an input whose (upsampled) height and width are even and >= 8; "
            f"got input_shape={tuple(input_shape)}, upsample={upsample}"
        )
    layers += [nn.Flatten(), linear(channels * height * width_px, 1, **linear_options)]
    return nn.Sequential(*layers)


def orthogonalizer_options(conv: str, orthogonalizer: str) -> dict[str, Any]:
    """The ``layer_options`` that set ``orthogonalizer`` in a network of ``conv`` (none for ``plain``)."""
    require_choice("orthogonalizer", orthogonalizer, tuple(ORTHOGONALIZERS))
    return {} if conv == "plain" else {"orthogonalizer": orthogonalizer}


def split_layer_options(
    options: dict[str, Any], conv: str | None, linear: type[nn.Module]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The options for the convs of kind ``conv`` (``None``: the network has none) and for ``linear``."""
    conv_names = layer_options(CONV_KINDS[conv]) if conv is not None else ()
    linear_names = layer_options(linear) if linear is BjorckLinear else ()
    unused = sorted(set(options) - set(conv_names) - set(linear_names))
    if unused:
        accepted = ", ".join(sorted(set(conv_names) | set(linear_names))) or "none"
        raise ValueError(
            f"no layer of this network takes the option {', '.join(map(repr, unused))} (conv={conv!r}); "
            f"its layers take: {accepted}"
        )
    conv_options = {key: value for key, value in options.items() if key in conv_names}
    return conv_options, {key: value for key, value in options.items() if key in linear_names}
