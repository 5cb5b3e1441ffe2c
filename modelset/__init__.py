"""modelset: model zoos in one self-describing HDF5 archive, and a benchmark for
parameter-similarity methods."""

from importlib import import_module

from .archive import Archive, load
from .errors import ModelsetError

__version__ = "0.1.0"
__all__ = ["Archive", "ModelsetError", "WeightSpaceDataset", "check_method", "load", "__version__"]

# Imported on first use, so that `import modelset` stays free of torch and of the scoring side:
# the metanetwork dataset, and the method author's check of the contract (metrics.checks).
_LAZY = {"WeightSpaceDataset": "modelset.weightspace", "check_method": "metrics.checks"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'modelset' has no attribute {name!r}")
