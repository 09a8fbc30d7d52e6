"""The test side of the stand-ins in this package: writing them as executables, reading what they recorded.

The package holds stand-ins for the tools and services our modules talk to (nvidia-ctk, nvidia-smi,
dockerd, the docker CLI, the agent image's tools, Redis), shared by the unit tests. Each refuses what
the real one refuses (unknown flags, flags missing their value, commands outside the documented
syntax) and fails loudly: a non-zero exit and a message on stderr, or an error reply and an entry in
``violations``. Each flag table names the source it was read from. What a stand-in does not simulate
it refuses too, saying so, instead of answering something made up.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Iterable, List

from . import agent_tools

_SCRIPT = """#!{python}
import sys
sys.path.insert(0, {root!r})
from fakes import {name}
sys.exit({name}.{entry}(sys.argv[1:], {state!r}))
"""
ROOT = str(Path(__file__).resolve().parent.parent)


def install(path: Path, name: str, entry: str = "main", **state: Any) -> Path:
    """Write the stand-in ``fakes.<name>`` as an executable at ``path``: it runs ``<entry>(argv, state)``."""
    path.write_text(_SCRIPT.format(python=sys.executable, root=ROOT, name=name, entry=entry, state=state))
    path.chmod(0o755)
    return path


def calls(log: Path) -> List[List[str]]:
    """The argvs a stand-in recorded, oldest first (none when it never ran)."""
    if not os.path.exists(log):
        return []
    return [ast.literal_eval(line) for line in Path(log).read_text(encoding="utf-8").splitlines()]


def install_agent_tools(bin_dir: Path, missing: Iterable[str] = ()) -> Path:
    """The stand-ins of agent_tools.py (less ``missing``) and links to the coreutils the probe script needs
    in ``bin_dir``, nothing else of the host's PATH; the agent reports healthy."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for tool in agent_tools.FLAGS:
        if tool not in missing:
            install(bin_dir / tool, "agent_tools", tool=tool, dir=str(bin_dir), log=str(bin_dir / "tool-calls"))
    for name in agent_tools.COREUTILS:
        path = shutil.which(name)
        if path and not (bin_dir / name).exists():
            (bin_dir / name).symlink_to(path)
    agent_tools.set_health(str(bin_dir), json.dumps(agent_tools.HEALTH_OK) + "\n", 0)
    return bin_dir
