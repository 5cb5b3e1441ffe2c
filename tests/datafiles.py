"""Tiny files in the real formats of the file-based datasets, for tests: IDX files (gzipped or not)
for the MNIST family, pickled python batches for CIFAR-10/100, MATLAB .mat files for SVHN, in
torchvision's directory layout. Their images show each class as a bright square at a
class-dependent place, so small models learn them in a few steps.
"""

import gzip
import pickle
import struct

import numpy as np
import scipy.io

# CIFAR-100's classes, superclasses and fine -> coarse map, as in the real files.
CIFAR100_NAMES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can "
    "castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin "
    "elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster "
    "man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck "
    "pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk "
    "skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger "
    "tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm"
).split()
CIFAR100_SUPER = (
    "aquatic_mammals fish flowers food_containers fruit_and_vegetables household_electrical_devices "
    "household_furniture insects large_carnivores large_man-made_outdoor_things large_natural_outdoor_scenes "
    "large_omnivores_and_herbivores medium_mammals non-insect_invertebrates people reptiles small_mammals trees "
    "vehicles_1 vehicles_2"
).split()
CIFAR100_COARSE = [
    4,
    1,
    14,
    8,
    0,
    6,
    7,
    7,
    18,
    3,
    3,
    14,
    9,
    18,
    7,
    11,
    3,
    9,
    7,
    11,
    6,
    11,
    5,
    10,
    7,
    6,
    13,
    15,
    3,
    15,
    0,
    11,
    1,
    10,
    12,
    14,
    16,
    9,
    11,
    5,
    5,
    19,
    8,
    8,
    15,
    13,
    14,
    17,
    18,
    10,
    16,
    4,
    17,
    4,
    2,
    0,
    17,
    4,
    18,
    17,
    10,
    3,
    2,
    12,
    12,
    16,
    12,
    1,
    9,
    19,
    2,
    10,
    0,
    1,
    16,
    12,
    9,
    13,
    15,
    13,
    16,
    19,
    2,
    4,
    6,
    19,
    5,
    5,
    8,
    19,
    18,
    1,
    2,
    15,
    6,
    0,
    17,
    8,
    14,
    13,
]
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MNIST_FAMILY = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST"}


# -- tiny files in the real formats -----------------------------------------------------------------


def _images(labels, shape, seed):
    """uint8 images whose class shows as a bright square at a class-dependent place, over noise."""
    rng = np.random.default_rng(seed)
    c, h, w = shape
    x = rng.integers(0, 80, size=(len(labels), c, h, w), dtype=np.uint8)
    for i, y in enumerate(labels):
        r, q = divmod(int(y) % 16, 4)
        x[i, int(y) % c, r * h // 4 : (r + 1) * h // 4, q * w // 4 : (q + 1) * w // 4] = 220
    return x


def _labels(n_classes, per_class, seed):
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(n_classes), per_class))


def idx_bytes(array) -> bytes:
    """An IDX file's bytes (big-endian header: 0, 0, type 0x08 = ubyte, number of dims; then each dim)."""
    array = np.asarray(array, dtype=np.uint8)
    return bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes()


def write_idx(path, array):
    path.write_bytes(idx_bytes(array))


def gzip_file(path, out, name_in_header=True):
    """``path`` gzipped into ``out``: with the file name in the gzip header (as the authors' and
    torchvision's downloads) or without it and with no time stamp (as ``gzip -n``, Debian's)."""
    data = path.read_bytes()
    with (
        open(out, "wb") as raw,
        gzip.GzipFile(
            filename=path.name if name_in_header else "",
            mode="wb",
            fileobj=raw,
            mtime=1_500_000_000 if name_in_header else 0,
        ) as gz,
    ):
        gz.write(data)
    return out


def write_mnist_family(root, folder, seed=0):
    """The four IDX files, extracted, in torchvision's DIR/<folder>/raw/; ``seed`` varies the content."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    for prefix, per_class, s in (("train", 8, 1 + seed), ("t10k", 3, 2 + seed)):
        y = _labels(10, per_class, s)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", _images(y, (1, 28, 28), s)[:, 0])
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", y)


def _pickle(path, obj):
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)


def write_cifar10(root):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    y = _labels(10, 10, 3)
    x = _images(y, (3, 32, 32), 3).reshape(len(y), -1)
    for b in range(5):
        sl = slice(b * 20, (b + 1) * 20)
        _pickle(
            d / f"data_batch_{b + 1}",
            {
                "batch_label": f"training batch {b + 1} of 5",
                "labels": y[sl].tolist(),
                "data": x[sl],
                "filenames": [f"{i}.png" for i in range(20)],
            },
        )
    yt = _labels(10, 3, 4)
    _pickle(
        d / "test_batch",
        {
            "batch_label": "testing batch 1 of 1",
            "labels": yt.tolist(),
            "data": _images(yt, (3, 32, 32), 4).reshape(len(yt), -1),
            "filenames": ["t.png"] * 30,
        },
    )
    _pickle(d / "batches.meta", {"label_names": CIFAR10_NAMES, "num_cases_per_batch": 20, "num_vis": 3072})


def write_cifar100(root, per_class=(6, 2)):
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    for name, n, seed in (("train", per_class[0], 5), ("test", per_class[1], 6)):
        y = _labels(100, n, seed)
        _pickle(
            d / name,
            {
                "filenames": [f"{i}.png" for i in range(len(y))],
                "batch_label": f"{name} batch",
                "fine_labels": y.tolist(),
                "coarse_labels": [CIFAR100_COARSE[c] for c in y],
                "data": _images(y, (3, 32, 32), seed).reshape(len(y), -1),
            },
        )
    _pickle(d / "meta", {"fine_label_names": CIFAR100_NAMES, "coarse_label_names": CIFAR100_SUPER})


def write_svhn(root):
    d = root / "SVHN"
    d.mkdir(parents=True)
    for split, per_class, seed in (("train", 8, 7), ("test", 3, 8)):
        y = _labels(10, per_class, seed)
        x = np.transpose(_images(y, (3, 32, 32), seed), (2, 3, 1, 0))  # H, W, C, N as in the real files
        svhn_y = np.where(y == 0, 10, y).astype(np.uint8)[:, None]  # SVHN writes the digit 0 as 10
        scipy.io.savemat(d / f"{split}_32x32.mat", {"X": x, "y": svhn_y})


def write_all(root):
    for folder in MNIST_FAMILY.values():
        write_mnist_family(root, folder)
    write_cifar10(root)
    write_cifar100(root)
    write_svhn(root)
    return root
