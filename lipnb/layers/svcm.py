"""SVCM: singular value clipping and masking (Sedghi, Gupta & Long 2019)."""

from __future__ import annotations

import torch

from lipnb.circulant import clip_singular_values
from lipnb.layers.conv import PlainConv2d


class SVCMConv2d(PlainConv2d):
    """An unconstrained kernel that :meth:`project` pulls back to ``σ_max ≤ 1``.

    Between projections the layer is unconstrained; the training loop projects every 100 steps
    and at the end of each epoch (BCOP paper, Sec. 5.1), so the bound holds right after a projection.
    """

    @torch.no_grad()
    def project(self, rounds: int = 50, input_size: tuple[int, int] | None = None) -> None:
        """Clip the singular values at ``input_size`` (default: the last input's size) to ≤ 1."""
        size = input_size if input_size is not None else self.input_size
        if size is None:
            raise ValueError("SVCMConv2d.project needs input_size=(height, width) or a forward pass first")
        self.weight.copy_(clip_singular_values(self.weight, self.conv_input_size(size), rounds=rounds))
