"""modelset: model zoos in one self-describing HDF5 archive, and a benchmark for
parameter-similarity methods."""
from .archive import Archive, load
from .checks import check_method
from .errors import ModelsetError

__version__ = "0.1.0"
__all__ = ["Archive", "ModelsetError", "check_method", "load", "__version__"]
