"""The networks of the BCOP paper's robustness experiments (Sec. 5.1, Appendix; Wong et al. 2018).

Every model is a plain ``nn.Sequential`` so :func:`lipnb.lipschitz_bound` reads its composition.
Each 4×4 stride-2 conv of the original networks is invertible downsampling + a 2×2 conv (the
``stride=2`` convention of :mod:`lipnb.layers`). The activation follows every layer but the last.

==========  ===========================================================================
``small``   conv 16 4×4 s2 → conv 32 4×4 s2 → FC 100 → FC 10
``large``   conv 32 3×3 → conv 32 4×4 s2 → conv 64 3×3 → conv 64 4×4 s2 → FC 512 → FC 512 → FC 10
``fc3``     FC 1024 → FC 1024 → FC 1024 → FC 10 (Björck linear, no convs)
==========  ===========================================================================

Linear layers are :class:`~lipnb.layers.BjorckLinear`, except with ``conv="plain"``, the
unconstrained baseline, where every layer is a plain one.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from lipnb._validation import require_choice
from lipnb.layers import CONV_KINDS, BjorckLinear, MaxMin, lipschitz_conv

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"maxmin": MaxMin, "relu": nn.ReLU}

# (out_channels, kernel_size, stride) of each conv, then the hidden widths of the FC layers
_CONVNETS: dict[str, tuple[list[tuple[int, int, int]], list[int]]] = {
    "small": ([(16, 4, 2), (32, 4, 2)], [100]),
    "large": ([(32, 3, 1), (32, 4, 2), (64, 3, 1), (64, 4, 2)], [512, 512]),
    "fc3": ([], [1024, 1024, 1024]),
}
ARCHITECTURES: tuple[str, ...] = tuple(_CONVNETS)


def build_model(
    arch: str,
    conv: str = "bcop",
    activation: str = "maxmin",
    input_shape: tuple[int, int, int] = (1, 28, 28),
    num_classes: int = 10,
) -> nn.Sequential:
    """The ``arch`` network (see the module table) for inputs of ``input_shape`` (C, H, W)."""
    require_choice("arch", arch, ARCHITECTURES)
    require_choice("conv", conv, tuple(CONV_KINDS))
    require_choice("activation", activation, tuple(ACTIVATIONS))
    convs, hidden = _CONVNETS[arch]
    channels, height, width = input_shape
    downsampling = 2 ** sum(stride == 2 for _, _, stride in convs)
    if height % downsampling or width % downsampling:
        raise ValueError(
            f"arch {arch!r} downsamples by {downsampling}: input height and width must be divisible by it; "
            f"got input_shape={tuple(input_shape)}"
        )
    layers: list[nn.Module] = []
    for out_channels, kernel_size, stride in convs:
        layers += [lipschitz_conv(conv, channels, out_channels, kernel_size, stride), ACTIVATIONS[activation]()]
        channels = out_channels
    layers.append(nn.Flatten())
    linear = nn.Linear if conv == "plain" else BjorckLinear
    features = channels * (height // downsampling) * (width // downsampling)
    for width_out in hidden:
        layers += [linear(features, width_out), ACTIVATIONS[activation]()]
        features = width_out
    layers.append(linear(features, num_classes))
    return nn.Sequential(*layers)
