"""Test configuration: CPU, 32-bit JAX by default (tests needing float64 run it in a
subprocess), fixed seeds."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import pytest

from popsim.devices import release_compiled_code, release_compiled_code_near_the_mapping_limit


# A pytest worker keeps every executable the suite compiled, each in memory mappings of its
# own: a full-suite worker reached 57,000 mappings, near the kernel's limit per process
# (65,530 by default), past which XLA aborts the worker inside its next compile;
# test_calibration.py alone reaches 30,000. So the compiled code is dropped after each
# module, and after any test that leaves the process near the limit.
@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code_after_each_module():
    yield
    release_compiled_code()


@pytest.fixture(autouse=True)
def _release_compiled_code_near_the_mapping_limit():
    yield
    release_compiled_code_near_the_mapping_limit()
