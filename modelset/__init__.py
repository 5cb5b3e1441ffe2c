"""modelset: model zoos in one self-describing HDF5 archive, and a benchmark for
parameter-similarity methods."""
from .archive import Archive, load
from .errors import ModelsetError

__version__ = "0.1.0"
__all__ = ["Archive", "ModelsetError", "WeightSpaceDataset", "load", "__version__"]


def __getattr__(name):  # the torch dataset on first use: `import modelset` stays free of torch
    if name == "WeightSpaceDataset":
        from .weightspace import WeightSpaceDataset

        return WeightSpaceDataset
    raise AttributeError(f"module 'modelset' has no attribute {name!r}")
