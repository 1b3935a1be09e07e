"""Check a command line before Hydra runs anything; one error path for every command.

Each command (popsim, popsim-validate, popsim-calibrate) composes its configuration here
first, with every override (each value of a sweep), and checks it: Hydra's own errors,
keys the schema does not have (with or without ``+``), values, ranges, input files and
whether the output folder can be created. The first problem becomes one line naming the
key (or file, row and column), what was given and what is valid; the command then exits
with status 2 before any folder is created or any computation starts. Warnings (values
that are possible but extreme) are one line each and do not stop the run.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import sys
import tempfile
import typing
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf, open_dict

from popsim.app.store import CONFIG_MODULE, CONFIG_NAME, register
from popsim.config.build import ConfigError, build_run
from popsim.config.ranges import check_resources, check_run_ranges
from popsim.config.schema import PopsimConfig

# Flags of Hydra's command line that take a value.
_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                     "--config-dir", "-cd", "--experimental-rerun"}
_NO_RUN_FLAGS = {"--help", "-h", "--hydra-help", "--version", "--shell-completion", "-sc", "--info", "-i",
                 "--cfg", "-c"}
GROUPS = ("population", "trt", "protocol", "solver", "outcomes", "output", "experiment")


class Rejected(Exception):
    """An input the command refuses; the message is one line."""


class Checked(typing.NamedTuple):
    """What a successful check found: warnings to show and anything the run can reuse."""

    warnings: list[str]
    payload: Any = None


# ----------------------------------------------------------------------------- command line


def split_overrides(argv: list[str]) -> tuple[list[str], bool]:
    """Overrides of ``argv`` and whether the command runs a job (False for --help, --cfg etc.)."""
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


def is_multirun(argv: Sequence[str]) -> bool:
    return any(a in ("-m", "--multirun") for a in argv) or any(
        a.replace(" ", "") in ("hydra.mode=MULTIRUN", "hydra.mode=multirun") for a in argv)


def one_line(text: object) -> str:
    """``text`` with its lines joined (Hydra's and OmegaConf's messages span several)."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def parse(overrides: list[str]):
    try:
        return OverridesParser.create().parse_overrides(overrides)
    except Exception as e:  # noqa: BLE001 - Hydra's parser errors have several types
        lines = [t for t in str(e).splitlines() if t.strip()]
        raise Rejected(f"could not parse the overrides: {lines[0] if lines else e}; write key=value, "
                       "lists as key=[a,b], text with spaces in quotes") from None


# ----------------------------------------------------------------------------- schemas


def _key_parts(key: str) -> list[Any]:
    """'protocol.courses[0].dose' or 'protocol.courses.0.dose' -> ['protocol', 'courses', 0, 'dose']."""
    parts: list[Any] = []
    for piece in re.split(r"\.|\[|\]", key.lstrip("+~")):
        if piece == "":
            continue
        parts.append(int(piece) if piece.isdigit() else piece)
    return parts


def _dotted(parts: Sequence[Any]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


class DataclassSchema:
    """Keys of a dataclass schema (PopsimConfig, ValidateConfig): nested dataclasses and
    lists of them are closed; ``Dict`` fields are open (any key)."""

    def __init__(self, root: type):
        self.root = root

    def node(self, parts: Sequence[Any]):
        """The type at ``parts``: a dataclass, 'open', 'list:<type>' or None (a leaf / unknown)."""
        node: Any = self.root
        for part in parts:
            if isinstance(node, tuple) and node[0] == "list":
                if not isinstance(part, int):
                    return None
                node = node[1]
                continue
            if not (isinstance(node, type) and dataclasses.is_dataclass(node)):
                return "open" if node == "open" else None
            hints = typing.get_type_hints(node)
            if part not in hints:
                return None
            node = self._classify(hints[part])
        return node

    @staticmethod
    def _classify(hint):
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin is typing.Union:
            hint = next(a for a in args if a is not type(None))
            origin, args = typing.get_origin(hint), typing.get_args(hint)
        if dataclasses.is_dataclass(hint):
            return hint
        if origin in (dict, typing.Dict):
            return "open"
        if origin in (list, typing.List) and args and dataclasses.is_dataclass(args[0]):
            return ("list", args[0])
        return "leaf"

    def valid_keys(self, parts: Sequence[Any]) -> list[str] | None:
        node = self.node(parts)
        if isinstance(node, type) and dataclasses.is_dataclass(node):
            return [f.name for f in dataclasses.fields(node)]
        return None

    def is_list(self, parts: Sequence[Any]) -> bool:
        return isinstance(self.node(parts), tuple)

    def is_open(self, parts: Sequence[Any]) -> bool:
        return self.node(parts) == "open"

    def unknown(self, container: Mapping) -> tuple[list[Any], list[str]] | None:
        """(path of the first key the schema does not have, valid keys there) or None."""
        return _walk_dataclass(self, container, [])


def _walk_dataclass(schema: DataclassSchema, value, parts):
    node = schema.node(parts)
    if isinstance(node, type) and dataclasses.is_dataclass(node) and isinstance(value, Mapping):
        valid = [f.name for f in dataclasses.fields(node)]
        for key in value:
            if key not in valid:
                return parts + [key], valid
            found = _walk_dataclass(schema, value[key], parts + [key])
            if found:
                return found
    elif isinstance(node, tuple) and isinstance(value, list):
        for i, item in enumerate(value):
            found = _walk_dataclass(schema, item, parts + [i])
            if found:
                return found
    return None


class ReferenceSchema:
    """Keys of a configuration without a dataclass schema (calibrate.yaml): the keys of the
    shipped default configuration; ``open`` paths take any key."""

    def __init__(self, reference: Mapping, open_paths: Iterable[str] = ()):
        self.reference = reference
        self.open = {tuple(_key_parts(p)) for p in open_paths}

    def _node(self, parts):
        node: Any = self.reference
        for depth, part in enumerate(parts, start=1):
            if tuple(parts[:depth]) in self.open:
                return "open"
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int):
                return "list-item"
            else:
                return None
        return node

    def valid_keys(self, parts):
        if tuple(parts) in self.open:
            return None
        node = self._node(parts)
        return sorted(node) if isinstance(node, Mapping) else None

    def is_list(self, parts):
        return isinstance(self._node(parts), list)

    def is_open(self, parts):
        return tuple(parts) in self.open

    def unknown(self, container: Mapping):
        def walk(value, ref, parts):
            if tuple(parts) in self.open or not isinstance(ref, Mapping) or not isinstance(value, Mapping):
                return None
            for key in value:
                if key not in ref:
                    return parts + [key], sorted(ref)
                found = walk(value[key], ref[key], parts + [key])
                if found:
                    return found
            return None
        return walk(container, self.reference, [])


def unknown_key_message(parts: Sequence[Any], valid: Sequence[str]) -> str:
    where = _dotted(parts[:-1]) or "the top level"
    close = [v for v in valid if _similar(str(parts[-1]), v)]
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"{_dotted(parts)}: unknown key; valid keys under {where} are {list(valid)}{hint}"


def _similar(a: str, b: str) -> bool:
    import difflib

    return difflib.SequenceMatcher(None, a.lower(), b.lower()).ratio() >= 0.75


# ----------------------------------------------------------------------------- Hydra's errors


def _group_options(group: str) -> list[str]:
    try:
        return sorted(GlobalHydra.instance().config_loader().get_group_options(group))
    except Exception:  # noqa: BLE001 - best effort for the message only
        return []


def _failing_override(error: Exception, overrides: Sequence[str]) -> str | None:
    """The override Hydra or OmegaConf complained about (not necessarily the one last added)."""
    text = str(error)
    m = re.search(r"(?:Error merging override|Could not override|Could not append to config\. An item is already at"
                  r"|Could not delete from config\. .* does not exist)\s*([^\n]+)", text)
    named = m.group(1).strip().rstrip(".").strip("'") if m else None
    for o in overrides:
        if named and (o == named or o.split("=", 1)[0].lstrip("+~") == named.split("=", 1)[0].lstrip("+~")):
            return o
    full_key = getattr(error.__cause__, "full_key", None) if error.__cause__ is not None else None
    if full_key:
        want = _key_parts(str(full_key))
        for o in overrides:
            parts = _key_parts(o.split("=", 1)[0])
            if parts == want[:len(parts)]:
                return o
    return named


def explain_compose_error(error: Exception, overrides: Sequence[str], schema, valid_values=None) -> str:
    """One line for a composition error: the override at fault, what it gave, what is valid."""
    cause = error.__cause__ or error
    override = _failing_override(error, overrides) or (overrides[-1] if overrides else "")
    key, _, value = override.partition("=")
    bare = key.lstrip("+~")
    parts = _key_parts(bare)
    text = str(error) + "\n" + str(cause)
    missing = re.search(r"Could not find '([^']+)/([^'/]+)'", text)
    if missing and (isinstance(error, MissingConfigException) or isinstance(cause, MissingConfigException)):
        # Hydra names the group and option it could not find: that override is the one at fault.
        bare, value = missing.group(1), missing.group(2)
    if isinstance(error, MissingConfigException) or isinstance(cause, MissingConfigException) or (
            "Could not find" in text and "/" not in bare and "." not in bare):
        options = _group_options(bare)
        return f"{bare}: no config named '{value}'; valid values are {options}"
    if parts and parts[0] == "hydra" and ("not in struct" in text or "Could not override" in text):
        return f"{bare}: not a Hydra setting; see --hydra-help and https://hydra.cc/docs/configure_hydra/intro/"
    if "An item is already at" in text:
        return f"{bare}: already in the configuration; write {bare}={value} (without '+') to change it"
    if "Could not delete" in text:
        return f"{bare}: nothing to delete there"
    if "not in struct" in text or re.search(r"Key '[^']+' not in", text) or "Could not override" in text:
        # The first part of the key the configuration does not have.
        full_key = getattr(cause, "full_key", None)
        target = _key_parts(str(full_key)) if full_key else parts
        for depth in range(1, len(target)):
            if schema.is_open(target[:depth]):
                parent = _dotted(target[:depth])
                example = f"+{bare}={value}" if len(parts) > depth else f"+{parent}.{target[depth]}=..."
                return f"{_dotted(target)}: a new key under {parent} needs '+': write {example}"
        for depth in range(1, len(target) + 1):
            if schema.valid_keys(target[:depth - 1]) is not None and target[depth - 1] not in (
                    schema.valid_keys(target[:depth - 1]) or []):
                return unknown_key_message(target[:depth], schema.valid_keys(target[:depth - 1]))
        if schema.valid_keys(target[:-1]) is None and len(target) > 1:
            parent = _dotted(target[:-1])
            return (f"{parent}: cannot set '{target[-1]}' there: {parent} is a value, not a section"
                    if not schema.is_list(target[:-1]) else f"{parent}: no item {target[-1]}")
        return f"{bare}: unknown key"
    m = re.search(r"full_key: (\S+)", str(cause))
    field = m.group(1) if m else bare
    shown = value if value != "" else "(empty)"
    if "is not Optional" in text:
        hint = valid_values(field) if valid_values else None
        return f"{field}: a value is required, got null" + (f"; valid values are {hint}" if hint else "")
    if "is not a ListConfig" in text or "list or tuple" in text:
        return f"{field}: expected a list, got '{shown}'; write {bare}=[{value or 'a,b'}]"
    if "is not a valid bool" in text:
        return f"{field}: expected true or false, got '{shown}'"
    if "could not be converted to Integer" in text:
        return f"{field}: expected an integer, got '{shown}' (its value could not be converted to Integer)"
    if "could not be converted to Float" in text:
        return f"{field}: expected a number, got '{shown}'"
    if "is not a subclass of" in text or "Invalid type assigned" in text:
        if isinstance(parts[-1], int) or any(isinstance(p, int) for p in parts):
            at = next(i for i, p in enumerate(parts) if isinstance(p, int))
            return f"{_dotted(parts[:at])}: there is no item {parts[at]} to change (the list is shorter)"
        return f"{field}: expected a section (key: value pairs), got '{shown}'"
    if "Unsupported interpolation" in text or "Interpolation" in text:
        return f"{override}: {one_line(cause).split(' full_key:')[0]}"
    first = next((t.strip() for t in str(cause).splitlines() if t.strip()), one_line(error))
    return f"{override}: {first}"


# ----------------------------------------------------------------------------- files and folders


def check_output_dir(path: str, key: str) -> None:
    """Raise Rejected unless ``path`` exists as a writable folder or can be created.

    Creates nothing that stays: writability is tried with a temporary folder, removed at once.
    """
    target = Path(os.path.expanduser(str(path)))
    if not target.is_absolute():
        target = Path.cwd() / target
    if target.exists() and not target.is_dir():
        raise Rejected(f"{key}: '{path}' exists and is not a folder; give a folder for the outputs")
    probe_at = target
    while not probe_at.exists():
        probe_at = probe_at.parent
    if not probe_at.is_dir():
        raise Rejected(f"{key}: cannot create '{path}': '{probe_at}' is a file, not a folder; "
                       f"give another output folder ({key}=...)")
    try:
        made = tempfile.mkdtemp(prefix=".popsim-write-check-", dir=probe_at)
        os.rmdir(made)
    except OSError as e:
        raise Rejected(f"{key}: cannot create '{path}' ({e.strerror or e} in '{probe_at}'); "
                       f"give a writable output folder ({key}=...)") from None


def output_dir_of(cfg, argv: Sequence[str]) -> tuple[str, str]:
    """(folder Hydra will create, its key) for a composed config with its hydra node."""
    key = "hydra.sweep.dir" if is_multirun(argv) else "hydra.run.dir"
    path = str(cfg.hydra.sweep.dir if is_multirun(argv) else cfg.hydra.run.dir)
    if not path.strip():
        raise Rejected(f"{key}: empty; give the output folder, e.g. {key}=outputs/my_run")
    return path, key


def compose_checked(config_name: str, overrides: list[str], schema, valid_values=None, config_module=CONFIG_MODULE):
    """Compose (with the hydra node) or raise Rejected with one line."""
    try:
        return compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    except Exception as e:  # noqa: BLE001 - Hydra and OmegaConf raise many types
        raise Rejected(explain_compose_error(e, overrides, schema, valid_values)) from None


def without_hydra(cfg):
    """A copy of a composed config without its hydra node (keeping its schema type)."""
    copy = cfg.copy()
    with open_dict(copy):
        copy.pop("hydra", None)
    return copy


def app_container(cfg) -> dict:
    container = OmegaConf.to_container(cfg, resolve=False)
    container.pop("hydra", None)
    return container


def sweep_combinations(overrides: list[str]) -> list[list[str]]:
    """Command lines to check: each sweep value on its own (with the first value of the
    other sweeps), so that one bad value is named precisely."""
    parsed = parse(overrides)
    choices = []
    for override, item in zip(overrides, parsed):
        if item.is_sweep_override():
            key = item.get_key_element()
            choices.append([f"{key}={v}" for v in item.sweep_string_iterator()])
        else:
            choices.append([override])
    base = [values[0] for values in choices]
    combos = [base]
    for i, values in enumerate(choices):
        for value in values[1:]:
            combos.append(base[:i] + [value] + base[i + 1:])
    return combos


def run_guarded(prog: str, check: Callable[[list[str]], Checked], run: Callable[[Any], None],
                argv: list[str] | None = None) -> None:
    """Check ``argv``; on a problem print one line and exit 2, else show warnings and run."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        checked = check(argv)
    except Rejected as e:
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        sys.exit(2)
    finally:
        GlobalHydra.instance().clear()
    for warning in checked.warnings:
        print(f"{prog}: warning: {one_line(warning)}", file=sys.stderr)
    run(checked.payload)


# ----------------------------------------------------------------------------- popsim


POPSIM_SCHEMA = DataclassSchema(PopsimConfig)


def _course_units(cfg_overrides: list[str]):
    """Valid dose units of the course at a key (for 'a value is required' messages)."""
    def valid(field: str):
        m = re.match(r"protocol\.courses\[(\d+)\]\.dose_unit", field)
        if not m:
            return None
        from popsim.dosing.drugs import PROTOCOL_DRUGS
        from popsim.units import DOSE_UNIT_FACTORS

        rest = [o for o in cfg_overrides if not o.split("=", 1)[0].lstrip("+~").startswith("protocol.courses")]
        try:
            cfg = compose(config_name=CONFIG_NAME, overrides=rest)
            drug = cfg.protocol.courses[int(m.group(1))].drug
            return sorted(DOSE_UNIT_FACTORS[PROTOCOL_DRUGS[drug].dose_unit])
        except Exception:  # noqa: BLE001 - best effort for the message
            return None
    return valid


def check_popsim(argv: list[str]) -> Checked:
    """Check a ``popsim`` command line; raise Rejected with one line."""
    overrides, runs = split_overrides(argv)
    register()
    combos = sweep_combinations(overrides)
    warnings: list[str] = []
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        for k, combo in enumerate(combos):
            cfg = compose_checked(CONFIG_NAME, combo, POPSIM_SCHEMA, _course_units(combo))
            unknown = POPSIM_SCHEMA.unknown(app_container(cfg))
            if unknown:
                raise Rejected(unknown_key_message(*unknown))
            if not runs:
                continue
            if k == 0:
                check_output_dir(*output_dir_of(cfg, argv))
            if cfg.get("resume") is not None:
                _check_resume(cfg, argv, combos)
            try:
                typed = OmegaConf.to_object(without_hydra(cfg))
                plan = build_run(typed)
                found = check_run_ranges(typed) + check_resources(plan)
            except ConfigError as e:
                raise Rejected(one_line(e)) from None
            except Exception as e:  # noqa: BLE001 - OmegaConf conversion errors
                raise Rejected(explain_compose_error(e, combo, POPSIM_SCHEMA)) from None
            warnings += [w for w in found if w not in warnings]
    return Checked(warnings)


def _check_resume(cfg, argv: Sequence[str], combos: Sequence) -> None:
    """``resume=<run dir>``: one run, into that folder, with that run's settings."""
    from popsim.app.resume import check_resume

    if is_multirun(argv) or len(combos) > 1:
        raise Rejected("resume: resumes one run, not a sweep; to resume a sweep run it again with "
                       "hydra.sweep.dir=<the sweep folder> (finished jobs are skipped)")
    try:
        run_dir = check_resume(str(cfg.resume), without_hydra(cfg))
    except ValueError as e:
        raise Rejected(one_line(e)) from None
    given = Path(os.path.expanduser(str(cfg.hydra.run.dir)))
    if any(o.split("=", 1)[0].lstrip("+~") == "hydra.run.dir" for o in split_overrides(list(argv))[0]) and (
            given.absolute() != run_dir):
        raise Rejected(f"resume: '{cfg.resume}' and hydra.run.dir={cfg.hydra.run.dir} are different folders; "
                       "a resumed run writes into the folder it resumes (leave hydra.run.dir out)")


def resume_argv(argv: list[str]) -> list[str]:
    """``argv`` with ``hydra.run.dir=<folder>`` added for ``resume=<folder>`` (the resumed
    run writes into the folder it resumes)."""
    overrides, _ = split_overrides(argv)
    folder = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+~") == "resume"), None)
    if folder in (None, "", "null", "None") or any(
            o.split("=", 1)[0].lstrip("+~") == "hydra.run.dir" for o in overrides):
        return argv
    return [*argv, f"hydra.run.dir={folder}"]


def check(argv: list[str]) -> str | None:
    """Return a one-line error for a ``popsim`` command line, or None when every run it asks for is valid."""
    try:
        check_popsim(argv)
    except Rejected as e:
        return one_line(e)
    finally:
        GlobalHydra.instance().clear()
    return None


def sweep_size(argv: list[str]) -> int:
    """Number of jobs a command line asks for (1 without sweeps)."""
    overrides, _ = split_overrides(argv)
    parsed = OverridesParser.create().parse_overrides(overrides)
    sizes = [len(list(p.sweep_string_iterator())) for p in parsed if p.is_sweep_override()]
    return int(max(1, sum(1 for _ in itertools.product(*[range(s) for s in sizes]))))
