"""Shared by tests/ and benchmarks/: `cuda`-marked items run only where a GPU is present, and
nothing downloads pretrained weights (REALSR_OFFLINE=1, inherited by the CLI subprocesses too)."""
from __future__ import annotations

import os

import pytest
import torch

from realsr_fast.download import OFFLINE_ENV


def pytest_configure(config):
    os.environ[OFFLINE_ENV] = "1"


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
