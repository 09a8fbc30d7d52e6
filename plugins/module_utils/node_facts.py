# Copyright (c) 2026 raibid.dgx_spark contributors
# MIT License (see LICENSE)
"""Facts about a (possible) DGX Spark node: pure functions over files and command output.

Everything here reads; nothing writes. Paths are taken relative to a root so that unit tests can
run the same code over a fake tree.
"""

from __future__ import annotations

import os
import re
import shlex
from typing import Any, Callable, Dict, List, Optional, Tuple

# (rc, stdout, stderr) for an argv list; the module passes AnsibleModule.run_command.
Runner = Callable[[List[str]], Tuple[int, str, str]]

DGX_RELEASE = "etc/dgx-release"
OS_RELEASE = ("etc/os-release", "usr/lib/os-release")
DMI_PRODUCT_NAME = "sys/class/dmi/id/product_name"
MEMINFO = "proc/meminfo"
DPKG_STATUS = "var/lib/dpkg/status"

# Packages whose presence later roles act on (adopt the engine, configure the toolkit).
TRACKED_PACKAGES = (
    "docker-ce",
    "docker-ce-cli",
    "docker.io",
    "docker-buildx-plugin",
    "docker-buildx",
    "containerd",
    "containerd.io",
    "nvidia-container-toolkit",
    "nv-docker-options",
    "nv-docker-gpus",
    "docker-registry",
)

ARCH_ALIASES = {"arm64": "aarch64", "aarch64": "aarch64", "amd64": "x86_64", "x86_64": "x86_64"}

# nvidia-smi fields we query. Memory fields are deliberately absent: GB10 (DGX Spark) reports
# them as "[N/A]"/"Not Supported" because its memory is unified with the CPU.
NVIDIA_SMI_FIELDS = ("index", "name", "uuid", "driver_version")


def _path(root: str, rel: str) -> str:
    return os.path.join(root, rel)


def read_text(root: str, rel: str) -> Optional[str]:
    try:
        with open(_path(root, rel), encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except (FileNotFoundError, NotADirectoryError, PermissionError, IsADirectoryError):
        return None


def parse_key_value_file(text: str) -> Dict[str, str]:
    """Parse os-release / dgx-release style ``KEY=value`` lines (values may be shell-quoted)."""
    result: Dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        key = key.strip()
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            continue
        try:
            parts = shlex.split(value, posix=True)
        except ValueError:
            parts = [value.strip().strip("\"'")]
        result[key] = " ".join(parts)
    return result


def parse_meminfo_mb(text: str) -> Optional[int]:
    match = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.M)
    return int(match.group(1)) // 1024 if match else None


def parse_dpkg_status(text: str, names: Optional[Tuple[str, ...]] = TRACKED_PACKAGES) -> Dict[str, str]:
    """Installed versions of the tracked packages (``names=None``: of every package), from /var/lib/dpkg/status."""
    wanted = None if names is None else set(names)
    found: Dict[str, str] = {}
    for stanza in text.split("\n\n"):
        fields: Dict[str, str] = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, value = line.split(":", 1)
                fields[key.strip()] = value.strip()
        name = fields.get("Package")
        if name and (wanted is None or name in wanted) and fields.get("Status", "").endswith(" installed"):
            found[name] = fields.get("Version", "")
    return found


def parse_nvidia_smi(stdout: str) -> List[Dict[str, str]]:
    """Rows of ``nvidia-smi --query-gpu=index,name,uuid,driver_version --format=csv,noheader``."""
    gpus = []
    for line in stdout.splitlines():
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split(",")]
        if len(cells) < len(NVIDIA_SMI_FIELDS):
            continue
        gpus.append(dict(zip(NVIDIA_SMI_FIELDS, cells)))
    return gpus


def _unroot(path: str, root: str) -> str:
    rel = os.path.relpath(path, root)
    return "/" if rel == "." else "/" + rel


def free_space(path: str) -> Tuple[str, int, int]:
    """(measured path, free bytes, total bytes) at ``path`` or, if it does not exist yet, at the
    closest existing parent (the Docker data root may be created later on the same filesystem)."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    stat = os.statvfs(probe)
    return probe, stat.f_bavail * stat.f_frsize, stat.f_blocks * stat.f_frsize


def classify_os(os_release: Dict[str, str], dgx_release: Optional[Dict[str, str]]) -> Dict[str, Any]:
    """Name the platform: ``dgx_os`` when /etc/dgx-release exists, else the os-release ID."""
    base_id = os_release.get("ID", "unknown").lower()
    base_version = os_release.get("VERSION_ID", "")
    if dgx_release is not None:
        version = dgx_release.get("DGX_SWBUILD_VERSION") or dgx_release.get("DGX_OTA_VERSION", "")
        return {
            "family": "dgx_os",
            "version": version,
            "base_id": base_id,
            "base_version": base_version,
            "pretty_name": os_release.get("PRETTY_NAME", base_id),
        }
    return {
        "family": base_id,
        "version": base_version,
        "base_id": base_id,
        "base_version": base_version,
        "pretty_name": os_release.get("PRETTY_NAME", base_id),
    }


def is_dgx_spark(product_name: str, dgx_release: Optional[Dict[str, str]]) -> bool:
    if "dgx spark" in product_name.lower():
        return True
    if dgx_release:
        text = " ".join([dgx_release.get("DGX_NAME", ""), dgx_release.get("DGX_PLATFORM", "")]).lower()
        return "spark" in text
    return False


def version_tuple(version: str) -> Tuple[int, ...]:
    """'24.04' -> (24, 4); '13' -> (13,); leading numeric components only."""
    parts = []
    for piece in re.split(r"[.\-+~]", version.strip()):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


def disk_facts(root: str, path: str) -> Dict[str, Any]:
    """Free and total space (GiB) where ``path`` lives (its closest existing parent)."""
    measured, free_b, total_b = free_space(_path(root, path.lstrip("/")))
    return {
        "path": path,
        "measured_at": _unroot(measured, root),
        "free_gb": round(free_b / 1024**3, 1),
        "total_gb": round(total_b / 1024**3, 1),
    }


def collect(
    root: str,
    machine: str,
    disk_path: str,
    run: Runner,
    nvidia_smi: Optional[str],
    *,
    extra_disk_paths: Optional[List[str]] = None,
    pending_dir: Optional[str] = None,
) -> Dict[str, Any]:
    """Gather every node fact. ``machine`` is ``os.uname().machine``; ``nvidia_smi`` its path or None.

    With ``pending_dir``, also the reloads and restarts recorded there (:func:`pending_records`).
    """
    dgx_text = read_text(root, DGX_RELEASE)
    dgx_release = parse_key_value_file(dgx_text) if dgx_text is not None else None
    os_text = next((t for t in (read_text(root, p) for p in OS_RELEASE) if t is not None), "")
    os_release = parse_key_value_file(os_text)
    product_name = (read_text(root, DMI_PRODUCT_NAME) or "").strip()
    meminfo = read_text(root, MEMINFO) or ""
    dpkg = read_text(root, DPKG_STATUS) or ""

    gpu: Dict[str, Any] = {"present": False, "count": 0, "devices": [], "probe": "nvidia-smi not found"}
    if nvidia_smi:
        query = "--query-gpu=" + ",".join(NVIDIA_SMI_FIELDS)
        rc, out, err = run([nvidia_smi, query, "--format=csv,noheader"])
        if rc == 0:
            devices = parse_nvidia_smi(out)
            gpu = {"present": bool(devices), "count": len(devices), "devices": devices, "probe": "ok"}
        else:
            gpu["probe"] = f"nvidia-smi exited {rc}: {(err or out).strip()[:200]}"

    return {
        "architecture": ARCH_ALIASES.get(machine, machine),
        "is_dgx_spark": is_dgx_spark(product_name, dgx_release),
        "is_dgx_os": dgx_release is not None,
        "dgx_release": dgx_release or {},
        "product_name": product_name,
        "os": classify_os(os_release, dgx_release),
        "memory_mb": parse_meminfo_mb(meminfo),
        "disk": disk_facts(root, disk_path),
        # Every path measured: the data root first, then e.g. containerd's root, where the containerd
        # image store keeps image data.
        "disks": [disk_facts(root, p) for p in [disk_path, *(extra_disk_paths or [])]],
        "gpu": gpu,
        "packages": parse_dpkg_status(dpkg),
        # Every installed package: the collection's apt pattern needs no apt call for what is already there.
        "installed": parse_dpkg_status(dpkg, None),
        **({} if pending_dir is None else {"pending_dir": pending_dir, "pending": pending_records(root, pending_dir)}),
    }


def pending_records(root: str, pending_dir: str) -> Dict[str, List[str]]:
    """The records under ``pending_dir`` (dgx_spark_pending_dir): ``{role directory: [record names]}``, sorted.

    Each role keeps the reloads and restarts it decided but has not made yet as empty-named files in its own
    directory (``<pending_dir>/<role>/<unit>.<action>``); one left there means a run was killed before its
    handlers. A missing or unreadable directory holds none.
    """
    base = _path(root, pending_dir.lstrip("/"))
    records: Dict[str, List[str]] = {}
    try:
        roles = sorted(os.listdir(base))
    except OSError:
        return records
    for role in roles:
        try:
            directory = os.path.join(base, role)
            names = sorted(n for n in os.listdir(directory) if os.path.isfile(os.path.join(directory, n)))
        except OSError:
            continue
        if names:
            records[role] = names
    return records
