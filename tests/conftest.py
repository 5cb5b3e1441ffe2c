"""Fixtures only; what tests share besides them is in helpers.py."""

import hashlib
from contextlib import ExitStack

import pytest

import modelset
import modelset.datasets.torchvision as tvs
from builders.build import build
from modelset.datasets import DATA_ENV
from modelset.preset import load_preset

from .datafiles import write_all
from .helpers import SMALL, SWEEP

# Fixtures that build a full-size zoo: a test that uses one is slow (``make test-fast`` skips it).
FULL_SIZE = {"digits500", "digits500_reference"}


def pytest_collection_modifyitems(items):
    for item in items:
        if FULL_SIZE & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def small_archive(tmp_path_factory):
    out = tmp_path_factory.mktemp("small") / "small.h5"
    build(load_preset("digits500", SMALL), out, jobs=1, progress=False)
    return out


@pytest.fixture(scope="session")
def sweep_archive(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "sweep.h5"
    build(load_preset("digits-sweep", SWEEP), out, jobs=1, progress=False)
    return out


@pytest.fixture(scope="session")
def digits500(tmp_path_factory):
    """The real default preset, built as `make modelset` builds it (2 workers)."""
    out = tmp_path_factory.mktemp("digits500") / "digits500.h5"
    build(load_preset("digits500"), out, jobs=2, progress=False)
    return out


@pytest.fixture
def opened():
    """opened(path): ``modelset.load(path)``, entered as a context manager and closed when the test
    ends, so that a test reads an archive as long as it likes without leaving it open."""
    with ExitStack() as stack:
        yield lambda path: stack.enter_context(modelset.load(path))


# -- tiny files of the file-based datasets (tests/datafiles.py) ---------------------------------


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    return write_all(tmp_path_factory.mktemp("datasets"))


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def trust(monkeypatch):
    """trust(root): accept the files now in ``root`` in place of the ones torchvision publishes
    sums for. Only the expected sums change; every read still checks its files against them."""
    trusted = {}
    published = tvs.published_md5

    def test_sums(name):
        return trusted.get(name, published(name))

    def trust_root(root):
        for name in ("cifar10", "cifar100", "svhn"):
            folder = root / tvs.LAYOUT[name].split("/{")[0]
            if folder.is_dir():
                trusted[name] = {f: _md5(folder / f) for f in published(name)}
        return root

    monkeypatch.setattr(tvs, "published_md5", test_sums)
    return trust_root


@pytest.fixture
def no_env(monkeypatch):
    """No $MODELSET_DATA from the caller's shell; restored (or removed again) after the test,
    also when the CLI, run in-process, sets it from --data-root."""
    monkeypatch.delenv(DATA_ENV, raising=False)
