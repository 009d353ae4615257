"""lipnb: provably Lipschitz convolutional networks (BCOP and friends) with exact spectra."""

from lipnb.export import export
from lipnb.spectrum import lipschitz_bound, operator_norm, singular_values

__version__ = "0.1.0"

__all__ = ["export", "lipschitz_bound", "operator_norm", "singular_values", "__version__"]
