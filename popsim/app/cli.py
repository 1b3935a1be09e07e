"""Entry point of the ``popsim`` command.

Process-wide JAX settings must be made before JAX starts, so this tiny module sets them
and only then imports the application: on a CPU the patient axis is sharded over one
host device per core (XLA otherwise runs the vmapped loop on a single core).
"""

from __future__ import annotations

import os


def configure_host_devices() -> None:
    """Ask XLA for one CPU device per core unless the user configured it."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={max(cores, 1)}".strip()


def main() -> None:
    """Run the popsim command."""
    configure_host_devices()
    from popsim.app.simulate import main as run

    run()


if __name__ == "__main__":
    main()
