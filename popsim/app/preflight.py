"""Validate a command line before Hydra runs anything.

Every override (each value of a sweep) is composed against the typed schema and built
into a run plan; the first problem becomes one line naming the key and the valid values,
and nothing is written.
"""

from __future__ import annotations

import dataclasses
import itertools
import typing

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from popsim.app.store import CONFIG_MODULE, CONFIG_NAME, register
from popsim.config.build import ConfigError, build_run
from popsim.config.schema import PopsimConfig

# Flags of Hydra's command line that take a value.
_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                     "--config-dir", "-cd", "--experimental-rerun"}
_NO_RUN_FLAGS = {"--help", "-h", "--hydra-help", "--version", "--shell-completion", "-sc", "--info", "-i"}
GROUPS = ("population", "trt", "protocol", "solver", "outcomes", "output", "experiment")


def split_overrides(argv: list[str]) -> tuple[list[str], bool]:
    """Overrides of ``argv`` and whether the command runs a job (False for --help etc.)."""
    overrides, runs, skip = [], True, False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in _NO_RUN_FLAGS:
            runs = False
        if arg in _FLAGS_WITH_VALUE:
            skip = True
            continue
        if arg.startswith("-"):
            continue
        overrides.append(arg)
    return overrides, runs


def _valid_keys(path: list[str]) -> list[str] | None:
    """Field names of the schema node at ``path`` (None if not a dataclass node)."""
    node = PopsimConfig
    for part in path:
        hints = typing.get_type_hints(node)
        if part not in hints or not dataclasses.is_dataclass(hints[part]):
            return None
        node = hints[part]
    return [f.name for f in dataclasses.fields(node)]


def _group_options(group: str) -> list[str]:
    try:
        return sorted(GlobalHydra.instance().config_loader().get_group_options(group))
    except Exception:  # noqa: BLE001 - best effort for the message only
        return []


def _explain(override: str, error: Exception) -> str:
    text = str(error).strip().splitlines()
    key = override.split("=", 1)[0].lstrip("+~")
    if isinstance(error, MissingConfigException) or "Could not find" in " ".join(text):
        group = key.split("/")[-1] if "/" in key else key
        options = _group_options(group)
        return f"{key}: no config named '{override.split('=', 1)[-1]}'; valid values are {options}"
    joined = " ".join(t.strip() for t in text)
    if "not in" in joined or "Key '" in joined and "not" in joined:
        parts = key.split(".")
        valid = _valid_keys(parts[:-1])
        where = ".".join(parts[:-1]) or "the top level"
        if valid is not None:
            return f"{key}: unknown key; valid keys under {where} are {valid}"
        return f"{key}: unknown key"
    first = next((t for t in text if t.strip() and not t.startswith("Set the environment")), joined)
    return f"{override}: {first.strip()}"


def check(argv: list[str]) -> str | None:
    """Return a one-line error for ``argv``, or None when every run it asks for is valid."""
    overrides, runs = split_overrides(argv)
    register()
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as e:
        return f"could not parse the overrides: {str(e).splitlines()[0]}"
    choices = []
    for override, item in zip(overrides, parsed):
        if item.key_or_group.startswith("hydra"):
            continue
        key = item.get_key_element()
        if item.is_sweep_override():
            values = [f"{key}={v}" for v in item.sweep_string_iterator()]
        else:
            values = [override]
        choices.append(values)
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        # Each value on its own (with the first value of the other sweeps), then the
        # whole first combination: one bad value is named precisely.
        base = [values[0] for values in choices]
        for i, values in enumerate(choices):
            for value in values:
                combo = base[:i] + [value] + base[i + 1:]
                try:
                    cfg = compose(config_name=CONFIG_NAME, overrides=combo)
                    plan_cfg = OmegaConf.to_object(cfg)
                except (ConfigCompositionException, MissingConfigException, OmegaConfBaseException, ValueError) as e:
                    return _explain(value, e.__cause__ or e if isinstance(e, ConfigCompositionException) else e)
                if runs:
                    try:
                        build_run(plan_cfg)
                    except (ConfigError, ValueError) as e:
                        return str(e).splitlines()[0]
        if not choices and runs:
            try:
                build_run(OmegaConf.to_object(compose(config_name=CONFIG_NAME)))
            except (ConfigError, ValueError) as e:
                return str(e).splitlines()[0]
    GlobalHydra.instance().clear()
    return None


def sweep_size(argv: list[str]) -> int:
    """Number of jobs a command line asks for (1 without sweeps)."""
    overrides, _ = split_overrides(argv)
    parsed = OverridesParser.create().parse_overrides(overrides)
    sizes = [len(list(p.sweep_string_iterator())) for p in parsed if p.is_sweep_override()]
    return int(max(1, sum(1 for _ in itertools.product(*[range(s) for s in sizes]))))
