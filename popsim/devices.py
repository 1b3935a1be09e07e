"""Device set-up: use every CPU core by sharding patients over host devices.

XLA runs a vmapped loop on one CPU core; popsim shards the patient axis over all local
devices, so on a CPU it asks for one host device per core. The flag is read when JAX
first initialises its backends, so call this after ``import popsim`` and before any
computation (the ``popsim`` command does it for you).
"""

from __future__ import annotations

import os
import warnings

_FLAG = "--xla_force_host_platform_device_count"


def available_cores() -> int:
    """CPU cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return max(os.cpu_count() or 1, 1)


def _backends_initialised() -> bool:
    try:
        from jax._src import xla_bridge  # private: no public way to ask

        return bool(getattr(xla_bridge, "_backends", {}))
    except Exception:  # noqa: BLE001 - if the internals move, assume not initialised
        return False


def use_all_cpu_cores(n_devices: int | None = None) -> int:
    """Expose ``n_devices`` (default: one per core) CPU host devices to JAX.

    Returns:
        The device count requested; leaves an explicit user setting of the flag alone.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if _FLAG in flags:
        return int(flags.split(_FLAG + "=")[1].split()[0])
    count = n_devices or available_cores()
    if _backends_initialised():
        warnings.warn("JAX is already initialised; popsim.use_all_cpu_cores() has no effect in this process. "
                      "Call it before the first JAX computation.", stacklevel=2)
        return count
    os.environ["XLA_FLAGS"] = f"{flags} {_FLAG}={count}".strip()
    return count
