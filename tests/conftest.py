import os

import numpy as np
import pytest
from hypothesis import settings

settings.register_profile("graphnet", max_examples=15, deadline=None, derandomize=True)
settings.load_profile("graphnet")


@pytest.fixture(autouse=True, scope="session")
def lint_ir_after_every_pass():
    """Every compile in the suite checks the IR's invariants after each pass (ir.lint)."""
    from graphnet.compile import pipeline
    pipeline.CHECK_IR = True
    yield
    pipeline.CHECK_IR = False


@pytest.fixture
def rng():
    """A seeded generator: tests never depend on time or global state."""
    return np.random.default_rng(1234)


def require_torch():
    """torch, or a skip — unless GRAPHNET_REQUIRE_TORCH is set (CI), where a missing torch is a failure."""
    if os.environ.get("GRAPHNET_REQUIRE_TORCH"):
        import torch  # noqa: F401  (must be installed: `pip install torch==2.13.0`)
        return torch
    return pytest.importorskip("torch")
