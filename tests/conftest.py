"""Shared test setup: one CPU thread (the machine is shared), fixed seeds, common fixtures."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

# One thread per process: much faster on a shared machine (no OpenMP spin contention).
torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_collection_modifyitems(config, items):
    """Tests marked ``lava`` run Lava itself: skipped, with the reason, on a core install (no
    ``privsnn[lava]`` extra, e.g. on Python 3.11+)."""
    from privatesnn.lava_extra import lava_missing

    why = lava_missing(need_dl=True)
    if why is None:
        return
    skip = pytest.mark.skip(reason=f"needs Lava, the privsnn[lava] extra (Python 3.10 only): {why}")
    for item in items:
        if item.get_closest_marker("lava") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _single_thread():
    os.environ["PRIVSNN_THREADS"] = "1"  # commands called in-process keep one thread
    torch.set_num_threads(1)
    yield


@pytest.fixture(autouse=True)
def _seed_everything():
    """Every test starts from the same random state, so results do not depend on test order."""
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    yield


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` (real CIFAR-10 images and a pretrained ResNet-20); skip when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (real CIFAR-10/ResNet-20 material; "
                    f"only present on the project's own machines)")
    return SHARED_DATA


@pytest.fixture
def digits_model():
    """The embedded digits CNN (package data, no download)."""
    from privatesnn.models import load_model

    return load_model("digits")
