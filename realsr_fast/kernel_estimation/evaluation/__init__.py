"""Evaluation of kernel estimators (the yardstick on scikit-image photos): for tests/ and benchmarks/ only,
never imported by the package itself (tests/test_architecture.py checks it)."""
