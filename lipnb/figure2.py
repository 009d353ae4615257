"""Singular values before and after training (BCOP paper, Figure 2).

For each conv kind, the exact spectrum (:mod:`lipnb.spectrum`) of the second convolution of the
Large network at initialization and after margin training. Gradient-norm preservation needs every
singular value at 1: the paper's Figure 2 shows that only BCOP keeps them there, while OSSN, RKO
and SVCM drift below 1 during training.

The networks are the robustness experiment's (:class:`lipnb.robustness.RobustnessConfig` with
``arch="large"``), trained in its run directories: a finished run is reused, an interrupted one
resumed, and one this module trains serves the robustness notebook as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from torch import Tensor, nn

from lipnb.data import dataset_info
from lipnb.layers import LipschitzConv2d
from lipnb.models import RESIDUAL_BLOCK_KINDS
from lipnb.orthogonal import DEFAULT_ORTHOGONALIZER
from lipnb.robustness import RobustnessConfig, initial_model, train_model
from lipnb.spectrum import layer_spectra, lipschitz_bound, spectrum_summary

FIGURE2_CONVS: tuple[str, ...] = ("ossn", "rko", "svcm", "bcop")
"""The conv kinds of the paper's Figure 2, in its order."""

TABLE_COLUMNS: tuple[str, ...] = (
    "σ < 0.1 at init", "σ < 0.1 trained", "median σ at init", "median σ trained", "max σ trained", "network bound",
)
"""Columns of :attr:`Figure2Result.table`: fractions (0–1) of singular values below 0.1, medians, the
largest trained one, and the trained network's Lipschitz bound (:func:`lipnb.lipschitz_bound`)."""


@dataclass(frozen=True)
class Figure2Result:
    """Per conv kind: the layer's spectra ``(at_init, trained)`` (CPU, float64, descending), the
    trained network's Lipschitz bound, and the numbers behind the histograms, one row per kind."""

    spectra: dict[str, tuple[Tensor, Tensor]]
    bounds: dict[str, float]
    table: pd.DataFrame


def second_conv(model: nn.Module) -> LipschitzConv2d:
    """The second :mod:`lipnb.layers` convolution of ``model``, in order: the layer of the paper's Figure 2.

    In the Large network it is the 32-channel 4×4 stride-2 conv (invertible downsampling + 2×2 conv).
    """
    convs = [module for module in model.modules() if isinstance(module, LipschitzConv2d)]
    if len(convs) < 2:
        raise ValueError(
            f"second_conv needs a network with at least two lipnb.layers convolutions; it has {len(convs)}"
        )
    return convs[1]


def second_conv_spectrum(model: nn.Module, input_shape: tuple[int, ...]) -> Tensor:
    """Exact singular values of :func:`second_conv` at the size it sees for inputs of ``input_shape``, on the CPU."""
    layer = second_conv(model)
    return next(sigma for module, sigma in layer_spectra(model, input_shape) if module is layer).cpu()


def singular_values_before_and_after(
    convs: Sequence[str] = FIGURE2_CONVS,
    *,
    dataset: str = "digits",
    epochs: int = 10,
    orthogonalizer: str = DEFAULT_ORTHOGONALIZER,
    seed: int = 0,
    device: str = "auto",
    data_root: str | None = None,
    runs_dir: str = "runs",
    progress: bool = True,
) -> Figure2Result:
    """Figure 2 of the BCOP paper: the second conv's spectrum at init and trained, for each of ``convs``
    (conv kinds of :data:`lipnb.layers.CONV_KINDS`; one name is one kind).

    Each network is the Large one trained for ``epochs`` (the paper: 200) as the robustness
    experiment trains it, in ``runs_dir/robustness/<dataset>_large_<conv>_maxmin_seed<seed>``;
    a finished run there is reused. Every config is checked before any data is read.
    """
    if isinstance(convs, str):
        convs = (convs,)
    nonlinear = [conv for conv in convs if conv in RESIDUAL_BLOCK_KINDS]
    if nonlinear:
        raise ValueError(
            f"Figure 2 shows the spectra of linear convolutions; {', '.join(map(repr, nonlinear))} is a nonlinear "
            f"residual block with no spectrum (its bound is a declared rule): leave it out"
        )
    configs = {
        conv: RobustnessConfig(
            conv=conv, dataset=dataset, arch="large", orthogonalizer=orthogonalizer, epochs=epochs, seed=seed,
            device=device, data_root=data_root, attacks="", runs_dir=runs_dir,
        )
        for conv in convs
    }
    if not configs:
        raise ValueError("singular_values_before_and_after needs at least one conv kind")
    data = next(iter(configs.values())).load_data()
    input_shape = dataset_info(dataset).input_shape
    spectra, bounds = {}, {}
    for conv, config in configs.items():
        at_init = second_conv_spectrum(initial_model(config), input_shape)
        model, _ = train_model(config, data, progress)
        spectra[conv] = (at_init, second_conv_spectrum(model, input_shape))
        bounds[conv] = lipschitz_bound(model, input_shape)
    return Figure2Result(spectra, bounds, spectra_table(spectra, bounds))


def spectra_table(spectra: dict[str, tuple[Tensor, Tensor]], bounds: dict[str, float]) -> pd.DataFrame:
    """One row per conv kind with the :data:`TABLE_COLUMNS`, from :func:`lipnb.spectrum.spectrum_summary`."""
    rows = {}
    for conv, (at_init, trained) in spectra.items():
        before, after = spectrum_summary(at_init), spectrum_summary(trained)
        rows[conv] = (
            before["fraction_below_0.1"], after["fraction_below_0.1"], before["median"], after["median"], after["max"],
            bounds[conv],
        )
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(TABLE_COLUMNS)).rename_axis("conv")
