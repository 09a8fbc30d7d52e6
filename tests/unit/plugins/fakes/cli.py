"""What the stand-in command-line tools share at run time: argument parsing, exits, the call log.

A stand-in runs as its own process, once per call (stand_in.py writes it), so this module and the
stand-ins import no more than ``os`` and ``sys`` when they start: a busy probe script calls a few
dozen of them.
"""

from __future__ import annotations

import sys

# typing costs a stand-in's start more than its work; the annotations need it only when checked.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Mapping, Sequence, Tuple

# Go's strconv.ParseBool: what `--flag=value` of a boolean flag accepts in Go CLIs (urfave/cli, cobra/pflag).
GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
GO_BOOL_VALUES = GO_FALSE | {"1", "t", "T", "TRUE", "true", "True"}


class UsageError(Exception):
    """An argument the real tool would refuse (or that the stand-in cannot simulate)."""


class Exit(Exception):
    """End the stand-in with exit status ``rc`` and ``message`` on stderr (what the real tool says)."""

    def __init__(self, rc: int, message: str) -> None:
        super().__init__(message)
        self.rc = rc


def run(body: Callable[[], int]) -> int:
    """``body()``, or the exit status of the Exit it raised, after writing its message to stderr."""
    try:
        return body()
    except Exit as exc:
        sys.stderr.write(str(exc).rstrip("\n") + "\n")
        return exc.rc


def parse(
    args: Sequence[str], flags: Mapping[str, bool], stop_at_positional: bool = False
) -> Tuple[Dict[str, List[str]], List[str]]:
    """``(flag -> values, positional arguments)`` of ``args``; ``flags`` maps each flag to whether it
    takes a value. Raises UsageError for an unknown flag, a value-taking flag without its value, or a
    boolean flag given a value that is not a boolean.

    Stricter than the real parsers: a flag's value never starts with ``-`` and flags are spelled as
    listed (``--long``, ``-s``), never combined (``-it``).
    """
    opts: Dict[str, List[str]] = {}
    positional: List[str] = []
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            positional += rest
            break
        if not arg.startswith("-") or arg == "-" or (positional and stop_at_positional):
            positional.append(arg)
            continue
        name, eq, value = arg.partition("=")
        if name not in flags:
            raise UsageError(f"unknown flag: {name}")
        if flags[name] and not eq:
            if not rest or rest[0].startswith("-"):
                raise UsageError(f"flag needs an argument: {name}")
            value = rest.pop(0)
        elif not flags[name] and eq and value not in GO_BOOL_VALUES:
            raise UsageError(f"invalid boolean value {value!r} for {name}")
        opts.setdefault(name, []).append(value)
    return opts, positional


def is_set(opts: Mapping[str, List[str]], *names: str) -> bool:
    """Whether the last of the boolean flags ``names`` given is true (``--flag`` alone is true)."""
    values = [v for n in names for v in opts.get(n, [])]
    return bool(values) and values[-1] not in GO_FALSE


def record(state: Mapping[str, Any], argv: Sequence[str]) -> None:
    """Append ``argv`` as one line (a Python list literal; stand_in.calls reads it) to ``state["log"]``."""
    if state.get("log"):
        with open(state["log"], "a", encoding="utf-8") as fh:
            fh.write(repr(list(argv)) + "\n")
