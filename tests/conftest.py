"""Test configuration: CPU, 32-bit JAX by default (tests needing float64 run it in a
subprocess), fixed seeds."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
