"""Stand-in ``nvidia-smi`` for the selective query the node_facts module makes.

Simulated: ``--query-gpu=<fields> --format=csv[,noheader][,nounits]`` (optionally ``-i``/``--id``),
answered with ``state["output"]`` and ``state["rc"]``. Other options of the real tool are refused as
not simulated; unknown fields, a missing ``--format`` or a format option nvidia-smi lacks are refused
as the real tool refuses them. State: ``log``, ``output`` (printed as is), ``rc``, ``stderr``.
"""

from __future__ import annotations

import sys
from typing import Any, Dict, List, Mapping, Sequence

from .cli import UsageError, parse, record

# nvidia-smi(1), "SELECTIVE QUERY OPTIONS" (the driver 550 manual, manpages.ubuntu.com nvidia-utils-550-server):
# --query-gpu= takes a comma-separated list of the properties `nvidia-smi --help-query-gpu` lists and needs
# --format=, a comma-separated list of csv (mandatory), noheader, nounits; "RETURN VALUE" 2: a supplied
# argument or flag is invalid. Only the options below are simulated.
FLAGS: Dict[str, bool] = {"--query-gpu": True, "--format": True, "-i": True, "--id": True}
FORMAT_OPTIONS = ("csv", "noheader", "nounits")
# Some of the properties `nvidia-smi --help-query-gpu` documents, those a facts probe could want (memory.* are
# valid fields that GB10 answers with [N/A]); a field not listed here is refused.
GPU_FIELDS = frozenset(
    "timestamp driver_version count name serial uuid pci.bus_id index vbios_version compute_cap persistence_mode "
    "memory.total memory.used memory.free temperature.gpu utilization.gpu power.draw".split()
)


def check_argv(argv: Sequence[str]) -> List[str]:
    """The queried fields of an nvidia-smi argv (without the program); UsageError where nvidia-smi would
    refuse it or this stand-in does not simulate it."""
    try:
        opts, positional = parse(argv, FLAGS)
    except UsageError as exc:
        raise UsageError(f"{exc} (simulated: {', '.join(FLAGS)})") from None
    if positional:
        raise UsageError(f"Invalid combination of input arguments: {' '.join(positional)}")
    if "--query-gpu" not in opts:
        raise UsageError("only --query-gpu is simulated")
    fields = opts["--query-gpu"][-1].split(",")
    for field in fields:
        if field not in GPU_FIELDS:
            raise UsageError(f'Field "{field}" is not a valid field to query.')
    if "--format" not in opts:
        raise UsageError("--format is required with --query-gpu")
    formats = opts["--format"][-1].split(",")
    if "csv" not in formats or any(f not in FORMAT_OPTIONS for f in formats):
        raise UsageError(f"--format={opts['--format'][-1]}: options are {', '.join(FORMAT_OPTIONS)}; csv is mandatory")
    return fields


def main(argv: Sequence[str], state: Mapping[str, Any]) -> int:
    """Answer a valid query from ``state``; rc 2 and a message on stderr for a refused argv."""
    record(state, argv)
    try:
        check_argv(argv)
    except UsageError as exc:
        sys.stderr.write(f"nvidia-smi (stand-in): {exc}\n")
        return 2
    sys.stdout.write(state.get("output", ""))
    sys.stderr.write(state.get("stderr", ""))
    return int(state.get("rc", 0))
