"""Benchmarks time ours and a baseline in the same run; `python benchmarks/ratios.py JSON` turns a
pytest-benchmark JSON file into the ratio tables of benchmarks/README.md.

Naming: in each benchmark group the test named `..._ours` is what the ratios are taken against.
"""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _two_threads():
    # The reference machine has 2 cores; pin torch to them so runs are comparable.
    torch.set_num_threads(2)
