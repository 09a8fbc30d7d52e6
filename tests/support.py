"""Helpers shared by the test tooling: tests/integration, tests/tooling, tests/molecule_scenario.py,
tests/testbed/images/e2e_images.py and benchmarks/bench.py. One home for each: the PLAY RECAP parser, the bounded
command runner, the machine-wide lock files (held_flock), the KEDA v2.20.2 CRDs (local mirror or pinned
download), the busybox node image and the DGX OS release file.

Imported as `support` with tests/ on sys.path: pytest puts it there for tests/conftest.py, scripts
under tests/ have it as their own directory, benchmarks/bench.py inserts it. Standard library and
PyYAML only; no pytest (callers turn the exceptions into test failures).

Development only: tests/*.py is in galaxy.yml's build_ignore, and ansible-test units (which runs on
the shipped tree) cannot import it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterator, Mapping, Sequence

import yaml

ROOT = Path(__file__).resolve().parent.parent


# --- Machine-wide locks ----------------------------------------------------------------------------


class LockTimeout(Exception):
    """A lock file stayed held past the wait's bound; the message names the file and its holder."""

    def __init__(self, path: Path, seconds: float, holder: str):
        self.path, self.seconds, self.holder = path, seconds, holder
        super().__init__(f"{path} still held after {seconds:.0f} s (by {holder})")


@contextlib.contextmanager
def held_flock(
    path: Path,
    timeout: float,
    purpose: str,
    *,
    waiting: Callable[[str], None] | None = None,
    poll: float = 1.0,
) -> Iterator[None]:
    """Hold an exclusive flock on `path` (made with its directory) for the `with` block, waiting at most
    `timeout` seconds, then raising LockTimeout that names the holder. While held, the file reads
    "pid N since HH:MM:SS: <purpose>" for whoever waits (emptied on release); `waiting(holder)` is
    called once when the lock is busy. The lock goes with the process: a killed holder frees it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as fh:
        deadline = time.monotonic() + timeout
        said = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "unknown"
                if time.monotonic() >= deadline:
                    raise LockTimeout(path, timeout, holder) from None
                if waiting is not None and not said:
                    waiting(holder)
                    said = True
                time.sleep(poll)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} since {time.strftime('%H:%M:%S')}: {purpose}\n")
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fh.flush()
            fcntl.flock(fh, fcntl.LOCK_UN)


# --- PLAY RECAP ------------------------------------------------------------------------------------

# "node-1   : ok=80   changed=3    unreachable=0    failed=1    skipped=2    rescued=1    ignored=0"
_RECAP_LINE = re.compile(r"^(?P<host>\S+)\s*:\s*(?P<counts>ok=\d+(?:\s+[a-z]+=\d+)*)\s*$", re.M)
_COUNT = re.compile(r"([a-z]+)=(\d+)")


def ansible_env() -> dict:
    """The environment of the collection's ansible commands run by the tests: the checkout's .venv
    first on PATH, its ansible.cfg, the collection linked under .cache/collections, plain output.
    Replaces a surrounding Molecule run's ANSIBLE_CONFIG when called from inside one."""
    env = dict(os.environ)
    env.update(
        PATH=f"{ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}",
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"),
        ANSIBLE_FORCE_COLOR="false",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.default",
    )
    return env


def play_recap(output: str) -> dict[str, dict[str, int]]:
    """Per-host counts from the PLAY RECAP lines in ansible-playbook output:
    {"node-1": {"ok": 80, "changed": 3, "unreachable": 0, "failed": 1, "skipped": 2, ...}}.
    A host named in several recaps (several playbook runs in one output) keeps its last; {} when the
    output has none (the run stopped before its recap)."""
    return {
        m.group("host"): {key: int(value) for key, value in _COUNT.findall(m.group("counts"))}
        for m in _RECAP_LINE.finditer(output)
    }


# --- bounded commands ------------------------------------------------------------------------------


def tail(text: str | bytes | None, lines: int = 30) -> str:
    """The last `lines` lines of a command's output (bytes decoded), indented for a failure message."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    kept = (text or "").rstrip().splitlines()[-lines:]
    return "\n".join(f"    {line}" for line in kept) if kept else "    (no output)"


class CommandTimeout(Exception):
    """A command ran past its bound; it and its descendants were killed."""

    def __init__(self, what: str, seconds: float, output: str):
        self.output = output
        super().__init__(
            f"{what} did not finish within {seconds:.0f} s (killed with its child processes); its output ends:\n"
            f"{tail(output)}"
        )


def _children() -> dict[int, list[int]]:
    """Parent PID -> child PIDs of every process on the machine (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(stat.parent.name))
    return children


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL `proc`, its process group and every descendant, by PID. Descendants are found through
    their parents, so they are stopped first (no new ones, none reparented away): ansible-playbook's
    workers call setsid(), so its process group alone does not hold them or the modules they run."""
    stopped: set[int] = set()
    while True:
        tree = _children()
        found, todo = [proc.pid], [proc.pid]
        while todo:
            for child in tree.get(todo.pop(), []):
                found.append(child)
                todo.append(child)
        new = [pid for pid in found if pid not in stopped]
        if not new:
            break
        for pid in new:
            _signal(pid, signal.SIGSTOP)
        stopped.update(new)
    for pid in stopped:
        _signal(pid, signal.SIGKILL)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_bounded(cmd: Sequence[str], timeout: float, what: str, **popen: object) -> subprocess.CompletedProcess:
    """Run `cmd` (stdin /dev/null, stdout and stderr captured as text) in a session of its own and wait
    at most `timeout` seconds. On expiry it is killed with all its descendants -- ansible-playbook's
    workers and the modules they run, a build's compilers, which would otherwise keep running -- and
    CommandTimeout names `what` and shows the end of the output. An interrupt (Ctrl-C, the suite's
    deadline) kills them as well."""
    proc = subprocess.Popen(
        list(cmd),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
        **popen,  # type: ignore[arg-type]
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(proc)
        out, err = proc.communicate()
        raise CommandTimeout(what, timeout, out + err) from None
    except BaseException:
        _kill_tree(proc)
        proc.wait()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# --- KEDA v2.20.2 CRDs -----------------------------------------------------------------------------

KEDA_VERSION = "2.20.2"
# The commit tag v2.20.2 points at. The files are config/crd/bases/ as the repository holds them; the
# release asset keda-2.20.2-crds.yaml is a kustomize build of them with patches applied (a ScaledJob
# trigger field removed, port protocols required), so it is not the same schema.
KEDA_COMMIT = "68a5b5028f35b22d50597c69819ab32c4e92f21a"
KEDA_CRDS_URL = f"https://raw.githubusercontent.com/kedacore/keda/{KEDA_COMMIT}/config/crd/bases"
KEDA_CRDS_SHA256 = {
    "keda.sh_clustertriggerauthentications.yaml": "177413d75f11b76ba7bf98aef200a1736245254197c7c1d8877fc7a0fc641df4",
    "keda.sh_scaledjobs.yaml": "8805cd6c5b05161fb1541726e2c32c8e2990f435649fa74cbc616600b84b583a",
    "keda.sh_scaledobjects.yaml": "af35555862a83933b074af14ad439c4b4ceabaf4daa3e9338e9b23e36d308d80",
    "keda.sh_triggerauthentications.yaml": "275307b4cb19ca8f0f506a879282aa4c67587ac16ec757f494d6585c5c185d65",
}
# A directory holding the files above (a mirror); RAIBID_KEDA_CRDS_URL replaces KEDA_CRDS_URL.
KEDA_CRDS_DIR_ENV = "RAIBID_KEDA_CRDS_DIR"
KEDA_CRDS_URL_ENV = "RAIBID_KEDA_CRDS_URL"
# Our machines keep a copy next to the checkout (shared/data is not part of the repository).
KEDA_CRDS_DEFAULT_DIR = ROOT.parent / "shared" / "data" / f"keda-v{KEDA_VERSION}-crds"
KEDA_CRDS_CACHE = ROOT / ".cache" / f"keda-v{KEDA_VERSION}-crds"
KEDA_DOWNLOAD_TIMEOUT_S = 60


class KedaCrdError(Exception):
    """A KEDA CRD could not be had, or what was had is not the pinned file."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _how_to_provide(filename: str) -> str:
    return (
        f"Provide the KEDA v{KEDA_VERSION} CRDs one of these ways: set {KEDA_CRDS_DIR_ENV} to a directory "
        f"holding {filename} (kedacore/keda tag v{KEDA_VERSION}, config/crd/bases/); or let the tests "
        f"download {KEDA_CRDS_URL}/{filename} (sha256 {KEDA_CRDS_SHA256[filename]}) into {KEDA_CRDS_CACHE}, "
        f"or from a mirror of it named by {KEDA_CRDS_URL_ENV}; or put the file there yourself."
    )


def _verified(path: Path, filename: str, origin: str) -> Path:
    got = sha256_file(path)
    if got != KEDA_CRDS_SHA256[filename]:
        raise KedaCrdError(
            f"{path} ({origin}) is not the pinned KEDA v{KEDA_VERSION} {filename}: sha256 {got}, "
            f"expected {KEDA_CRDS_SHA256[filename]}. Replace it, or unset {KEDA_CRDS_DIR_ENV} to download it."
        )
    return path


def _download(url: str, dest: Path, deadline_s: float) -> None:
    """Fetch `url` to `dest` (through dest.part), giving up after `deadline_s` seconds in all."""
    part = dest.with_name(dest.name + ".part")
    end = time.monotonic() + deadline_s
    try:
        with urllib.request.urlopen(url, timeout=min(30.0, deadline_s)) as resp, part.open("wb") as fh:
            while block := resp.read(1 << 16):
                fh.write(block)
                if time.monotonic() > end:
                    raise TimeoutError(f"still downloading after {deadline_s:.0f} s")
        part.replace(dest)
    finally:
        part.unlink(missing_ok=True)


def keda_crd(name: str, env: Mapping[str, str] | None = None) -> Path:
    """The pinned KEDA v2.20.2 CRD `name` ("scaledjobs", "triggerauthentications", ...) as a local file,
    its sha256 checked: from the directory ${RAIBID_KEDA_CRDS_DIR}, else ../shared/data/keda-v2.20.2-crds
    when that exists, else from .cache/keda-v2.20.2-crds/, downloaded there (from ${RAIBID_KEDA_CRDS_URL}
    or the pinned GitHub URL) when missing. Raises KedaCrdError saying how to provide the file when none
    of that works, and on a checksum mismatch (a mirror or a download that is not the pinned file)."""
    env = os.environ if env is None else env
    filename = f"keda.sh_{name}.yaml"
    if filename not in KEDA_CRDS_SHA256:
        raise KedaCrdError(f"{filename}: not one of the pinned KEDA v{KEDA_VERSION} CRDs {sorted(KEDA_CRDS_SHA256)}")
    mirror = env.get(KEDA_CRDS_DIR_ENV)
    if mirror:
        path = Path(mirror) / filename
        if not path.is_file():
            raise KedaCrdError(f"{KEDA_CRDS_DIR_ENV}={mirror} has no {filename}. {_how_to_provide(filename)}")
        return _verified(path, filename, f"from {KEDA_CRDS_DIR_ENV}")
    if KEDA_CRDS_DEFAULT_DIR.is_dir():
        path = KEDA_CRDS_DEFAULT_DIR / filename
        if not path.is_file():
            raise KedaCrdError(f"{KEDA_CRDS_DEFAULT_DIR} has no {filename}. {_how_to_provide(filename)}")
        return _verified(path, filename, "the shared mirror")
    cached = KEDA_CRDS_CACHE / filename
    if cached.is_file() and sha256_file(cached) == KEDA_CRDS_SHA256[filename]:
        return cached
    url = f"{env.get(KEDA_CRDS_URL_ENV) or KEDA_CRDS_URL}".rstrip("/") + f"/{filename}"
    KEDA_CRDS_CACHE.mkdir(parents=True, exist_ok=True)
    try:
        _download(url, cached, KEDA_DOWNLOAD_TIMEOUT_S)
    except (OSError, ValueError) as exc:  # URLError, HTTPError, timeouts and refused connections are OSErrors
        raise KedaCrdError(
            f"KEDA v{KEDA_VERSION} {filename}: no local mirror ({KEDA_CRDS_DIR_ENV} unset, "
            f"{KEDA_CRDS_DEFAULT_DIR} absent) and the download from {url} failed: {exc}. {_how_to_provide(filename)}"
        ) from exc
    try:
        return _verified(cached, filename, f"downloaded from {url}")
    except KedaCrdError:
        cached.unlink()
        raise


# --- node images -----------------------------------------------------------------------------------

MKIMAGE = ROOT / "tests" / "testbed" / "k8s" / "mkimage.py"


def mkimage() -> ModuleType:
    """tests/testbed/k8s/mkimage.py as a module (build.sh runs it as a script with the system python3)."""
    spec = importlib.util.spec_from_file_location("raibid_testbed_mkimage", MKIMAGE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def static_busybox() -> Path | None:
    """This machine's static busybox (Debian's busybox-static; `make setup` installs it), or None."""
    found = shutil.which("busybox") or "/bin/busybox"
    return Path(found) if Path(found).exists() else None


def busybox_image(
    out: Path,
    tag: str,
    workdir: Path,
    *,
    files: Mapping[str, str] | None = None,
    applets: Sequence[str] | None = ("sh", "cat"),
    cmd: Sequence[str] | None = None,
) -> Path:
    """A one-layer image around the static busybox, written to `out` as a docker-archive tar (what
    `ctr images import` and `docker load` read): the root file system mkimage.busybox_rootfs lays out
    (the given applets; all of them with applets=None), plus `files` (path in the image -> text).
    Raises FileNotFoundError when the machine has no static busybox."""
    busybox = static_busybox()
    if busybox is None:
        raise FileNotFoundError("no static busybox on this machine (make setup installs busybox-static)")
    tool = mkimage()
    rootfs = workdir / "rootfs"
    tool.busybox_rootfs(str(busybox), str(rootfs), applets)
    for rel, text in (files or {}).items():
        path = rootfs / rel.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    tool.write_image(str(rootfs), tag, str(out), cmd=list(cmd) if cmd is not None else None)
    return out


# --- DGX OS ----------------------------------------------------------------------------------------

DGX_RELEASE_VARS = ROOT / "molecule" / "_shared" / "vars" / "dgx-release.yml"


def dgx_release() -> str:
    """/etc/dgx-release as the simulated DGX OS nodes carry it (molecule/_shared/vars/dgx-release.yml, the
    file the Molecule prepare playbooks and the lab node write)."""
    data = yaml.safe_load(DGX_RELEASE_VARS.read_text(encoding="utf-8"))
    return data["raibid_node_dgx_release"]
