"""Figure 2 (singular values before and after training) on a tiny budget, against independent recomputation."""

import pytest
import torch

from lipnb import lipschitz_bound, singular_values
from lipnb.figure2 import TABLE_COLUMNS, second_conv, singular_values_before_and_after
from lipnb.models import build_model
from lipnb.robustness import RobustnessConfig, initial_model, train_model
from lipnb.spectrum import spectrum_summary

DIGITS = (1, 8, 8)


def test_second_conv_is_the_large_networks_strided_conv():
    model = build_model("large", "bcop", input_shape=DIGITS)
    layer = second_conv(model)
    assert layer is model[2]  # conv, activation, conv
    assert (layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride) == (32, 32, 4, 2)
    with pytest.raises(ValueError, match="at least two"):
        second_conv(build_model("fc3", "bcop", input_shape=DIGITS))
    with pytest.raises(ValueError, match="at least one"):
        singular_values_before_and_after((), device="cpu")


def test_spectra_bounds_and_table_of_trained_large_networks(tmp_path):
    convs = ("svcm", "bcop")
    result = singular_values_before_and_after(
        convs, dataset="digits", epochs=1, device="cpu", runs_dir=str(tmp_path), progress=False
    )
    assert list(result.spectra) == list(result.bounds) == list(result.table.index) == list(convs)
    assert list(result.table.columns) == list(TABLE_COLUMNS)
    for conv in convs:
        config = RobustnessConfig(conv=conv, dataset="digits", arch="large", epochs=1, device="cpu", attacks="",
                                  runs_dir=str(tmp_path))
        assert (tmp_path / "robustness" / f"digits_large_{conv}_maxmin_seed0" / "checkpoint.pt").exists()
        model, history = train_model(config, progress=False)  # the run just trained, reused
        assert len(history) == 1
        at_init, trained = result.spectra[conv]
        # the Large network's second conv sees the 8×8 digits after the first, stride-1 conv
        torch.testing.assert_close(at_init, singular_values(initial_model(config)[2], (8, 8)), atol=0, rtol=0)
        torch.testing.assert_close(trained, singular_values(model[2], (8, 8)), atol=0, rtol=0)
        assert result.bounds[conv] == pytest.approx(lipschitz_bound(model, DIGITS), rel=1e-12)
        before, after = spectrum_summary(at_init), spectrum_summary(trained)
        expected = [before["fraction_below_0.1"], after["fraction_below_0.1"], before["median"], after["median"],
                    after["max"], result.bounds[conv]]
        assert result.table.loc[conv].tolist() == pytest.approx(expected, rel=1e-12)
    bcop_init, bcop_trained = result.spectra["bcop"]
    assert len(bcop_trained) == 4 * 4 * 32  # 4×4 frequencies × 32 output channels
    assert (bcop_trained - 1).abs().max() < 1e-4 and (bcop_init - 1).abs().max() < 1e-4
    svcm_init, svcm_trained = result.spectra["svcm"]
    assert (svcm_trained - svcm_init).abs().max() > 1e-3  # training moved the spectrum
    assert result.table.loc["svcm", "max σ trained"] <= 1 + 1e-4  # clipped after every epoch
