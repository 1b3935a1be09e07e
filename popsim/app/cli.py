"""Entry point of the ``popsim`` command.

Process-wide JAX settings must be made before JAX starts, so this tiny module sets them
and only then imports the application: on a CPU the patient axis is sharded over one
host device per core (XLA otherwise runs the vmapped loop on a single core).
"""

from __future__ import annotations


def main() -> None:
    """Run the popsim command."""
    from popsim.devices import use_all_cpu_cores

    use_all_cpu_cores()
    from popsim.app.simulate import main as run

    run()


def calibrate_main() -> None:
    """Run the popsim-calibrate command (Bayesian calibration to lab data)."""
    from popsim.devices import use_all_cpu_cores

    use_all_cpu_cores()
    from popsim.app.calibrate import main as run

    run()


def validate_main() -> None:
    """Run the popsim-validate command (the default model against published targets)."""
    from popsim.devices import use_all_cpu_cores

    use_all_cpu_cores()
    from popsim.app.validate import main as run

    run()


if __name__ == "__main__":
    main()
