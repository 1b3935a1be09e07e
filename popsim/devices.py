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


# XLA keeps each compiled executable's machine code in memory mappings of its own (about
# 1,000 per popsim run compiled on the CPU, measured on a four-job sweep), and a process
# keeps every executable it compiled. Past the kernel's limit on mappings per process
# (vm.max_map_count, 65,530 by default on Linux) XLA aborts the whole process inside its
# next compile: a Hydra sweep of some 60 jobs in one process, or a long test session.
_MAPS = "/proc/self/maps"
_MAX_MAP_COUNT = "/proc/sys/vm/max_map_count"
DEFAULT_MAX_MAP_COUNT = 65_530


def memory_mapping_count() -> int | None:
    """Memory mappings this process holds now (None where the OS does not say: not Linux)."""
    try:
        with open(_MAPS, "rb") as maps:
            return sum(1 for _ in maps)
    except OSError:
        return None


def max_memory_mappings() -> int:
    """The kernel's limit on memory mappings per process (vm.max_map_count)."""
    try:
        with open(_MAX_MAP_COUNT) as limit:
            return int(limit.read().strip())
    except (OSError, ValueError):
        return DEFAULT_MAX_MAP_COUNT


def release_compiled_code_near_the_mapping_limit(fraction: float = 0.3) -> bool:
    """Drop JAX's compiled executables (``jax.clear_caches()``) when this process holds
    more than ``fraction`` of the kernel's memory-mapping limit, so that a process that
    compiles many programs one after another (the jobs of a sweep) never reaches it; the
    next call of a dropped program compiles it again.

    Returns:
        Whether the compiled code was dropped.
    """
    count = memory_mapping_count()
    if count is None or count <= fraction * max_memory_mappings():
        return False
    release_compiled_code()
    return True


def release_compiled_code() -> None:
    """Drop every compiled executable JAX holds (and their memory mappings); the next call
    of a dropped program compiles it again."""
    import gc

    import jax

    jax.clear_caches()
    gc.collect()
