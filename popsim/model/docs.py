"""Generate the parameter section of ``docs/model.md`` from the one parameter table.

The prose of ``docs/model.md`` is written by hand; the parameter tables between the
marker lines ``<!-- parameter-table:start -->`` and ``<!-- parameter-table:end -->`` are
generated from ``popsim.model.parameters.PARAMETERS``. A test checks that the file is up
to date. Usage::

    python -m popsim.model.docs --write docs/model.md   # regenerate in place
    python -m popsim.model.docs --check docs/model.md   # exit 1 if out of date
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from popsim.model.parameters import PARAMETERS

START_MARKER = "<!-- parameter-table:start -->"
END_MARKER = "<!-- parameter-table:end -->"
REGENERATE_COMMAND = "python -m popsim.model.docs --write docs/model.md"

_HEADER = ("| name | default | unit | plausible range | meaning | source |\n"
           "|---|---|---|---|---|---|")


def _cell(text: str) -> str:
    """Make text safe for one markdown table cell (escape pipes, no line breaks)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _range(plausible) -> str:
    """``low-high`` of a plausible range, "-" where none is set."""
    return "-" if plausible is None else f"{plausible[0]:.3g} to {plausible[1]:.3g}"


def parameter_table_markdown() -> str:
    """Render PARAMETERS as markdown tables, one per group in order of first appearance.

    Returns:
        Markdown text: for each group a ``### Group: <group>`` heading and a table with
        columns name (in backticks), default (``{:.4g}``), unit, plausible range, meaning
        and source.
    """
    groups: dict[str, list] = {}
    for spec in PARAMETERS:
        groups.setdefault(spec.group, []).append(spec)
    blocks = []
    for group, specs in groups.items():
        rows = [f"| `{spec.name}` | {spec.default:.4g} | {_cell(spec.unit)} | {_range(spec.plausible)} "
                f"| {_cell(spec.meaning)} | {_cell(spec.source)} |" for spec in specs]
        blocks.append(f"### Group: {group}\n\n{_HEADER}\n" + "\n".join(rows))
    return "\n\n".join(blocks) + "\n"


def render_model_doc(template: str) -> str:
    """Replace everything between the parameter-table marker lines with fresh tables.

    Args:
        template: the text of ``docs/model.md`` (or any text holding both markers once,
            each on a line of its own, start before end).

    Returns:
        The text with the generated tables between the markers; the rest is unchanged.

    Raises:
        ValueError: if a marker is missing, repeated or out of order.
    """
    lines = template.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.strip() == START_MARKER]
    ends = [i for i, line in enumerate(lines) if line.strip() == END_MARKER]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise ValueError(f"the document must hold one line '{START_MARKER}' followed by one line "
                         f"'{END_MARKER}' (found {len(starts)} start and {len(ends)} end markers)")
    start, end = starts[0], ends[0]
    head = "".join(lines[:start + 1])
    if not head.endswith("\n"):
        head += "\n"
    return head + "\n" + parameter_table_markdown() + "\n" + "".join(lines[end:])


def _write_atomically(path: Path, text: str) -> None:
    """Write text to path via a temporary file in the same folder and os.replace."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    """Command line: ``--write PATH`` regenerates PATH in place, ``--check PATH`` verifies it.

    Args:
        argv: arguments (default ``sys.argv[1:]``).

    Returns:
        0 on success; 1 when ``--check`` finds the file out of date or a marker is wrong.
    """
    parser = argparse.ArgumentParser(prog="python -m popsim.model.docs", description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", metavar="PATH", type=Path, help="regenerate the tables in PATH in place")
    action.add_argument("--check", metavar="PATH", type=Path, help="exit 1 if PATH is not up to date")
    args = parser.parse_args(argv)
    path = args.write or args.check
    try:
        current = path.read_text(encoding="utf-8")
        expected = render_model_doc(current)
    except (OSError, ValueError) as err:
        print(f"{path}: {err}", file=sys.stderr)
        return 1
    if args.write:
        if expected != current:
            _write_atomically(path, expected)
        state = "rewritten" if expected != current else "already up to date"
        print(f"{path}: parameter tables {state} ({len(PARAMETERS)} parameters)")
        return 0
    if expected != current:
        print(f"{path} is out of date with popsim/model/parameters.py; run `{REGENERATE_COMMAND}`",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
