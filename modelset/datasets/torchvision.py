"""Datasets in torchvision's on-disk formats: MNIST, Fashion-MNIST, KMNIST (IDX files), CIFAR-10,
CIFAR-100 (pickled batches) and SVHN (MATLAB .mat files).

The data directory DIR has torchvision's own layout, so a directory that torchvision filled with
``download=True`` works as it is (``LAYOUT`` below; data/README.md shows it). The MNIST family is
also read as its authors distribute it: the four IDX files, gzipped or extracted, in torchvision's
``DIR/<Class>/raw/`` or directly in DIR (Debian's dataset-fashion-mnist package, say). A dataset is
its own train/test split, train first then test, with pixels standardised per channel by the train
split's mean and std; it is identified by that decoded content (``Dataset.fingerprint``), never by
its files, so every container of the same images gives the same plans and archives.

Integrity. Before a file is read, and always, it is checked against the MD5 sum torchvision
publishes for it (``published_md5``): the CIFAR batches and meta files and the SVHN .mat files. A
CIFAR batch is a pickle, so the check also keeps an unknown pickle from ever being loaded. The MNIST
family has published sums only for the compressed downloads (torchvision checks those when it
downloads), and they depend on the gzip header (the file name it records), not only the images: a
distribution's re-compressed copy of the same files differs. IDX files are therefore checked for
their format and shape (``modelset.datasets.idx``), gzipped or not. There is no switch that turns the
check off: a test suite that writes small files in these formats substitutes the sums of its own
files for ``published_md5`` (the ``trust`` fixture of the tests), so the check itself runs in tests too.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import ModelsetError
from .base import Dataset, register_file_dataset
from .idx import read_idx

DIGITS = tuple(str(i) for i in range(10))


@dataclass(frozen=True)
class Raw:
    """A dataset as its files hold it: uint8 images (N, C, H, W) and int labels per split."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: tuple[str, ...]
    superclasses: tuple[int, ...] | None = None
    superclass_names: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one object per dataset
class TorchvisionSource:
    name: str  # modelset's name, e.g. "cifar100"
    title: str  # e.g. "CIFAR-100"
    torchvision_class: str  # e.g. "CIFAR100"
    folder: str  # the files' directory, relative to the data directory
    files: tuple[str, ...]
    reader: Callable[[TorchvisionSource, Path], Raw]
    # torchvision constructor calls that download every file (root is DIR/download_subdir)
    download_calls: tuple[dict, ...] = ({"train": True}, {"train": False})
    download_subdir: str = ""
    class_names: tuple[str, ...] = field(default=(), compare=False)
    superclasses: tuple[int, ...] | None = None  # where the files carry none (Fashion-MNIST's categories)
    superclass_names: tuple[str, ...] = ()
    # The files may sit directly in DIR and be gzipped (FILE or FILE.gz): the MNIST family as distributed.
    as_distributed: bool = False
    from_files = True  # read from a data directory (``base.resolve_root``)

    @property
    def layout(self) -> str:
        return f"{self.folder}/{{{','.join(self.files)}}}"

    @property
    def accepted(self) -> str:
        """Where under DIR the files may be, for messages."""
        return f"DIR/{self.layout}" + (
            " (or the same files, each extracted or .gz, directly in DIR)" if self.as_distributed else ""
        )

    def locate(self, root: str) -> dict[str, Path] | None:
        """{file name: path} of every file, or None when some is missing in every accepted place."""
        folders = [Path(root) / self.folder] + ([Path(root)] if self.as_distributed else [])
        suffixes = ("", ".gz") if self.as_distributed else ("",)
        for folder in folders:
            found = {}
            for f in self.files:
                found[f] = next((folder / (f + s) for s in suffixes if (folder / (f + s)).is_file()), None)
            if all(found.values()):
                return found
        return None

    def _how_to_get(self, root: str) -> str:
        target = os.path.join(root, self.download_subdir) if self.download_subdir else root
        return (
            f"on a connected machine, --download (or torchvision.datasets.{self.torchvision_class}"
            f"({target!r}, download=True)) fetches the files, or copy them there from one that has them"
        )

    def load(self, root: str) -> Dataset:
        paths = self.locate(root)
        if paths is None:
            folder = Path(root) / self.folder
            missing = [f for f in self.files if not (folder / f).is_file()]
            where = f"{folder} or {root} (each file extracted or .gz)" if self.as_distributed else str(folder)
            raise ModelsetError(
                f"dataset {self.name!r}: {self.title} files not found in {where} "
                f"(missing {', '.join(missing)}); {self._how_to_get(root)}"
            )
        # Keyed by the directory and the files' paths, sizes and mtimes: a replaced file is read
        # (and checked) anew, and two directories never share an entry.
        stats = tuple((f, str(p), p.stat().st_size, p.stat().st_mtime_ns) for f, p in paths.items())
        sums = tuple(sorted(published_md5(self.name).items()))
        return _load(self, str(root), stats, sums)

    def download(self, root: str) -> None:
        """Let torchvision fetch (and check) whatever files are missing under ``root``."""
        import torchvision.datasets as tvd

        target = os.path.join(root, self.download_subdir) if self.download_subdir else root
        cls = getattr(tvd, self.torchvision_class)
        for kwargs in self.download_calls:
            try:
                cls(target, download=True, **kwargs)
            except Exception as e:  # no network, refused, bad checksum of the download, disk full...
                reason = " ".join(str(e).split())[:300] or type(e).__name__
                raise ModelsetError(
                    f"dataset {self.name!r}: torchvision.datasets.{self.torchvision_class} could "
                    f"not download into {target} ({reason}); on a machine without internet, "
                    f"fetch the files elsewhere and copy them to {Path(root) / self.folder}"
                ) from None


def published_md5(name: str) -> dict[str, str]:
    """{file name: MD5} that torchvision publishes for the dataset's files (empty for the MNIST
    family, whose extracted files have none). Read from torchvision's dataset classes, so the
    sums are exactly the ones torchvision itself checks."""
    import torchvision.datasets as tvd

    if name in ("cifar10", "cifar100"):
        cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
        sums = {f: md5 for f, md5 in cls.train_list + cls.test_list}
        sums[cls.meta["filename"]] = cls.meta["md5"]
        return sums
    if name == "svhn":
        return {tvd.SVHN.split_list[s][1]: tvd.SVHN.split_list[s][2] for s in ("train", "test")}
    return {}


@lru_cache(maxsize=2)
def _load(src: TorchvisionSource, root: str, stats: tuple, sums: tuple) -> Dataset:
    from torchvision.datasets.utils import check_integrity

    paths = {f: Path(p) for f, p, *_ in stats}
    for fname, md5 in sums:
        if not check_integrity(str(paths[fname]), md5):
            raise ModelsetError(
                f"dataset {src.name!r}: {paths[fname]} does not match the MD5 sum torchvision publishes for it "
                f"(truncated, altered or another file); delete it, then {src._how_to_get(root)}"
            )
    raw = src.reader(src, paths)
    return _standardised(src, raw)


def _standardised(src: TorchvisionSource, raw: Raw) -> Dataset:
    n_classes = len(raw.class_names)
    for split, y in (("train", raw.train_y), ("test", raw.test_y)):
        if len(y) and (y.min() < 0 or y.max() >= n_classes):
            raise ModelsetError(f"dataset {src.name!r}: {split} labels outside 0..{n_classes - 1} in {src.folder}")
    x = np.concatenate([raw.train_x, raw.test_x])
    labels = np.concatenate([raw.train_y, raw.test_y]).astype(np.int64)
    test = np.r_[np.zeros(len(raw.train_y), bool), np.ones(len(raw.test_y), bool)]
    mean, std = _channel_stats(raw.train_x)
    images = x.astype(np.float32)
    images -= mean.astype(np.float32)[None, :, None, None]
    images /= std.astype(np.float32)[None, :, None, None]
    fmt = lambda v: "(" + ", ".join(f"{a:.6g}" for a in v) + ")"
    return Dataset(
        name=src.name,
        images=images,
        labels=labels,
        test=test,
        class_names=tuple(raw.class_names),
        normalization=(
            f"per channel (pixel - mean) / std with mean {fmt(mean)} and std {fmt(std)}: "
            f"the train split's 0..255 pixels"
        ),
        superclasses=raw.superclasses,
        superclass_names=tuple(raw.superclass_names),
    )


def _channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-channel mean and std of uint8 images, from pixel-value counts (no float sums)."""
    if not len(x):
        raise ModelsetError("a dataset's train split is empty")
    v = np.arange(256, dtype=np.float64)
    mean, std = [], []
    for c in range(x.shape[1]):
        counts = np.bincount(x[:, c].reshape(-1), minlength=256).astype(np.float64)
        n = counts.sum()
        m = (counts @ v) / n
        mean.append(m)
        std.append(np.sqrt(max((counts @ (v - m) ** 2) / n, 0.0)) or 1.0)
    return np.array(mean), np.array(std)


# -- readers -------------------------------------------------------------------------------------


def _read_idx(src: TorchvisionSource, paths: dict[str, Path]) -> Raw:
    """MNIST-family IDX files: 28 x 28 uint8 images and as many labels per split."""
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = paths[f"{prefix}-images-idx3-ubyte"], paths[f"{prefix}-labels-idx1-ubyte"]
        try:
            x, y = read_idx(images, 3), read_idx(labels, 1)
        except ModelsetError as e:
            raise ModelsetError(f"dataset {src.name!r}: {e}") from None
        if x.shape[1:] != (28, 28):
            raise ModelsetError(
                f"dataset {src.name!r}: {images}: images of {x.shape[1]} x {x.shape[2]} pixels; {src.title} has 28 x 28"
            )
        if len(x) != len(y):
            raise ModelsetError(
                f"dataset {src.name!r}: {images} holds {len(x)} {split} images but {labels} "
                f"{len(y)} labels; the two files are not one split of one dataset"
            )
        out[split] = (np.ascontiguousarray(x[:, None]), y.astype(np.int64))
    return Raw(
        *out["train"],
        *out["test"],
        class_names=src.class_names,
        superclasses=src.superclasses,
        superclass_names=src.superclass_names,
    )


def _in_folder(reader):
    """A reader of the files of one folder (CIFAR, SVHN) from the {file: path} map."""
    return lambda src, paths: reader(src, next(iter(paths.values())).parent)


def _unpickle(src: TorchvisionSource, path: Path, keys: tuple[str, ...]) -> dict:
    try:
        with open(path, "rb") as fh:
            entry = pickle.load(fh, encoding="latin1")  # as torchvision reads them (Python 2 pickles)
    except Exception:
        entry = None
    if not isinstance(entry, dict) or any(k not in entry for k in keys):
        raise ModelsetError(f"dataset {src.name!r}: {path} is not a CIFAR python batch with {', '.join(keys)}")
    return entry


def _read_cifar(src: TorchvisionSource, folder: Path) -> Raw:
    """CIFAR-10/100 python batches. CIFAR-100's also give each image's coarse label (superclass),
    which torchvision's CIFAR100 does not expose; the fine -> coarse map is read from them."""
    coarse = src.name == "cifar100"
    label_key = "fine_labels" if coarse else "labels"
    keys = ("data", label_key) + (("coarse_labels",) if coarse else ())
    if coarse:
        train_files, test_file, meta_file = ("train",), "test", "meta"
    else:
        train_files, test_file, meta_file = tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"
    parts = {}
    for split, files in (("train", train_files), ("test", (test_file,))):
        xs, ys, cs = [], [], []
        for f in files:
            entry = _unpickle(src, folder / f, keys)
            data = np.asarray(entry["data"], dtype=np.uint8)
            if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(entry[label_key]) != len(data):
                raise ModelsetError(f"dataset {src.name!r}: {folder / f}: expected N x 3072 uint8 data and N labels")
            xs.append(data.reshape(-1, 3, 32, 32))
            ys.append(np.asarray(entry[label_key], dtype=np.int64))
            if coarse:
                cs.append(np.asarray(entry["coarse_labels"], dtype=np.int64))
        parts[split] = (np.concatenate(xs), np.concatenate(ys), np.concatenate(cs) if coarse else None)
    meta = _unpickle(
        src, folder / meta_file, ("fine_label_names", "coarse_label_names") if coarse else ("label_names",)
    )
    names = tuple(meta["fine_label_names" if coarse else "label_names"])
    superclasses, super_names = None, ()
    if coarse:
        super_names = tuple(meta["coarse_label_names"])
        fine = np.concatenate([parts["train"][1], parts["test"][1]])
        crs = np.concatenate([parts["train"][2], parts["test"][2]])
        mapping = []
        for c in range(len(names)):
            found = np.unique(crs[fine == c])
            if len(found) != 1 or not 0 <= found[0] < len(super_names):
                raise ModelsetError(
                    f"dataset {src.name!r}: class {c} ({names[c]}) has coarse labels "
                    f"{found.tolist()} in {folder}; each class needs exactly one superclass"
                )
            mapping.append(int(found[0]))
        superclasses = tuple(mapping)
    return Raw(
        parts["train"][0],
        parts["train"][1],
        parts["test"][0],
        parts["test"][1],
        class_names=names,
        superclasses=superclasses,
        superclass_names=super_names,
    )


def _read_svhn(src: TorchvisionSource, folder: Path) -> Raw:
    """SVHN cropped digits (.mat); label 10 means the digit 0, as torchvision maps it."""
    import scipy.io

    out = {}
    for split in ("train", "test"):
        path = folder / f"{split}_32x32.mat"
        try:
            mat = scipy.io.loadmat(str(path))
            x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).astype(np.int64).reshape(-1)
        except Exception:
            raise ModelsetError(f"dataset {src.name!r}: {path} is not an SVHN .mat file with X and y") from None
        if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y) or x.dtype != np.uint8:
            raise ModelsetError(f"dataset {src.name!r}: {path}: expected X of 32 x 32 x 3 x N uint8 and N labels")
        y[y == 10] = 0
        out[split] = (np.ascontiguousarray(np.transpose(x, (3, 2, 0, 1))), y)
    return Raw(*out["train"], *out["test"], class_names=DIGITS)


def _mnist_like(name, title, cls, class_names, **kw):
    return TorchvisionSource(
        name=name,
        title=title,
        torchvision_class=cls,
        folder=f"{cls}/raw",
        files=(
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        ),
        reader=_read_idx,
        class_names=class_names,
        as_distributed=True,
        **kw,
    )


# Fashion-MNIST's classes by the kind of article (Zalando's catalogue): the graded relation of
# fashion-mnist500. A dress is worn on the upper body too, so it counts among the tops.
FASHION_CATEGORIES = ("tops", "trousers", "footwear", "bags")
FASHION_CATEGORY_OF = (0, 1, 0, 0, 0, 2, 0, 2, 3, 2)


LAYOUT = {}
for _src in (
    _mnist_like("mnist", "MNIST", "MNIST", DIGITS),
    _mnist_like(
        "fashion-mnist",
        "Fashion-MNIST",
        "FashionMNIST",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        superclasses=FASHION_CATEGORY_OF,
        superclass_names=FASHION_CATEGORIES,
    ),
    _mnist_like("kmnist", "KMNIST", "KMNIST", ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")),
    TorchvisionSource(
        name="cifar10",
        title="CIFAR-10",
        torchvision_class="CIFAR10",
        folder="cifar-10-batches-py",
        files=tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta"),
        reader=_in_folder(_read_cifar),
    ),
    TorchvisionSource(
        name="cifar100",
        title="CIFAR-100",
        torchvision_class="CIFAR100",
        folder="cifar-100-python",
        files=("train", "test", "meta"),
        reader=_in_folder(_read_cifar),
    ),
    TorchvisionSource(
        name="svhn",
        title="SVHN",
        torchvision_class="SVHN",
        folder="SVHN",
        files=("train_32x32.mat", "test_32x32.mat"),
        reader=_in_folder(_read_svhn),
        download_calls=({"split": "train"}, {"split": "test"}),
        download_subdir="SVHN",
    ),
):
    register_file_dataset(_src)
    LAYOUT[_src.name] = _src.layout
