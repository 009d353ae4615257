"""Build a small BCOP network and print the exact singular values of every layer.

    python examples/quickstart.py

Each convolution's spectrum comes from the 2-D FFT of its kernel at the layer's input size
(``lipnb.spectrum``), so the printed numbers are the exact singular values of the operator,
not estimates. The network's Lipschitz bound is their product over layers.
"""

from __future__ import annotations

import torch
from torch import nn

import lipnb
from lipnb.layers import BCOPConv2d, BjorckLinear, MaxMin
from lipnb.spectrum import singular_values


def small_bcop_network() -> nn.Sequential:
    """The paper's Small MNIST network with BCOP convs (4×4 stride-2 → downsampling + 2×2 conv)."""
    return nn.Sequential(
        BCOPConv2d(1, 16, 4, stride=2),
        MaxMin(),
        BCOPConv2d(16, 32, 4, stride=2),
        MaxMin(),
        nn.Flatten(),
        BjorckLinear(32 * 7 * 7, 100),
        MaxMin(),
        BjorckLinear(100, 10),
    )


def main() -> None:
    torch.manual_seed(0)
    model = small_bcop_network()
    input_shape = (1, 28, 28)
    x = torch.zeros(1, *input_shape)
    print(f"{'layer':<62} {'input':>12} {'#σ':>6} {'σ_min':>10} {'σ_max':>10}")
    for layer in model:
        if isinstance(layer, (BCOPConv2d, BjorckLinear)):
            size = tuple(x.shape[2:]) if x.dim() == 4 else None
            sigma = singular_values(layer, size)
            shape = "×".join(str(d) for d in x.shape[1:])
            name = f"{type(layer).__name__}({layer.extra_repr()})"
            print(f"{name:<62} {shape:>12} {sigma.numel():>6} {sigma.min():>10.7f} {sigma.max():>10.7f}")
        x = layer(x)
    print(f"Lipschitz bound of the network (product of exact norms): {lipnb.lipschitz_bound(model, input_shape):.7f}")


if __name__ == "__main__":
    main()
