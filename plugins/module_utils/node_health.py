# Copyright (c) 2026 raibid.dgx_spark contributors
# MIT License (see LICENSE)
"""Health of one DGX Spark CI build node: every check as ``{name, status, value, message}``.

Read-only. The judgments (thresholds, parsing of ``/info``, ``kubectl get node -o json``, ``openssl
x509 -enddate``, ``docker buildx inspect``) are pure functions; the I/O sits behind ``NodeIO`` (commands,
/proc/meminfo, the clock, statvfs) and behind plain sockets (the Engine API on its unix socket, each
registry's ``/v2/``), so tests run the same code against stand-ins.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import quote, urlsplit

from ansible_collections.raibid.dgx_spark.plugins.module_utils.node_facts import (
    NVIDIA_SMI_FIELDS,
    free_space,
    parse_meminfo_mb,
    parse_nvidia_smi,
)

OK, WARN, FAIL = "ok", "warn", "fail"
STATUSES = (OK, WARN, FAIL)
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
# A registry answers /v2/ with 200 (open) or 401 (auth required); both mean the process serves the API.
REGISTRY_ANSWERING = (200, 401)
# `docker info` shows a containerd image store as "driver-type: io.containerd.snapshotter.v1".
CONTAINERD_SNAPSHOTTER = "io.containerd.snapshotter"
# `nvidia-smi` exits 6 with "No devices were found" on a host with the tools but no GPU.
NVIDIA_SMI_NO_DEVICES = 6

# (rc, stdout, stderr) for an argv and extra environment; the module passes AnsibleModule.run_command
# under a time limit.
Runner = Callable[[List[str], Dict[str, str]], Tuple[int, str, str]]


@dataclass
class Check:
    name: str
    status: str
    value: Any = None
    message: str = ""
    elapsed_ms: int = 0

    def as_dict(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "value": self.value,
            "message": self.message,
            "elapsed_ms": self.elapsed_ms,
        }


def worst(*statuses: str) -> str:
    return max(statuses, key=STATUSES.index)


def below(value: float, warn_below: float, fail_below: float) -> str:
    """``fail`` under ``fail_below``, ``warn`` under ``warn_below``, else ``ok``."""
    if value < fail_below:
        return FAIL
    if value < warn_below:
        return WARN
    return OK


def first_line(text: str, limit: int = 300) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[0][:limit] if lines else ""


# ---------------------------------------------------------------------------------------------------
# Settings and their validation (before any probe)


@dataclass
class Settings:
    docker_host: str = DEFAULT_DOCKER_HOST
    timeout: float = 2.0
    expect_live_restore: bool = True
    expect_gpu: bool = False
    registries: List[Dict[str, Any]] = field(default_factory=list)
    buildkit_builder: Optional[str] = None
    cache_export: Optional[str] = None
    disk_paths: List[str] = field(default_factory=lambda: ["/var/lib/docker", "/var/lib/containerd"])
    disk_warn_free_percent: float = 15.0
    disk_fail_free_percent: float = 5.0
    memory_warn_available_mb: int = 4096
    memory_fail_available_mb: int = 1024
    certificates: List[Dict[str, Any]] = field(default_factory=list)
    cert_warn_days: int = 30
    cert_fail_days: int = 7
    agent_image: Optional[str] = None
    kubernetes_node: Optional[str] = None
    kubeconfig: Optional[str] = None
    # Resolved program paths (None: not found on the node).
    docker_cli: Optional[str] = None
    nvidia_smi: Optional[str] = None
    openssl: Optional[str] = None
    kubectl: Optional[str] = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any], **programs: Optional[str]) -> Settings:
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in params.items() if k in known and v is not None}
        values.update(programs)
        return cls(**values)


def socket_path(docker_host: str) -> Optional[str]:
    """The socket path of a ``unix://`` docker host, else None."""
    if not docker_host.startswith("unix://"):
        return None
    path = docker_host[len("unix://") :]
    return path if path.startswith("/") else None


def registry_url_problem(url: Any) -> Optional[str]:
    """Why ``url`` is not a registry root such as https://127.0.0.1:5000 (None when it is)."""
    if not isinstance(url, str):
        return "must be a string"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        return f"is not a URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return "needs the scheme http:// or https://"
    if not parts.hostname:
        return "has no host"
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return "must be the registry's root (scheme, host and port only)"
    return None


def _threshold_problems(params: Mapping[str, Any], warn: str, fail: str, upper: Optional[float] = None) -> List[str]:
    problems = []
    for name in (warn, fail):
        value = params.get(name)
        if value is not None and value < 0:
            problems.append(f"{name}: {value} must not be negative")
        if value is not None and upper is not None and value > upper:
            problems.append(f"{name}: {value} must be at most {upper:g}")
    if not problems and params.get(warn) is not None and params.get(fail) is not None and params[warn] < params[fail]:
        problems.append(
            f"{warn} ({params[warn]}) must be at least {fail} ({params[fail]}): the warning comes before the failure"
        )
    return problems


def _name_problems(option: str, entries: Sequence[Mapping[str, Any]], example: str) -> List[str]:
    """Each entry of a list option needs a non-empty name, unique in the list (it names a check)."""
    found: List[str] = []
    seen: Dict[str, int] = {}
    for index, entry in enumerate(entries):
        name = entry.get("name")
        if not name:
            found.append(f"{option}[{index}].name must be a non-empty name, e.g. {example}")
        elif name in seen:
            found.append(f"{option}[{index}].name: {name!r} is also {option}[{seen[name]}].name; names must be unique")
        else:
            seen[name] = index
    return found


def problems(params: Mapping[str, Any]) -> List[str]:
    """Every fault of the module arguments, one message each naming the option, the rule and the value."""
    found: List[str] = []
    docker_host = params.get("docker_host") or DEFAULT_DOCKER_HOST
    if socket_path(docker_host) is None:
        found.append(f"docker_host: {docker_host!r} must be a unix socket URL such as {DEFAULT_DOCKER_HOST}")
    timeout = params.get("timeout")
    if timeout is not None and timeout <= 0:
        found.append(f"timeout: {timeout} must be a positive number of seconds")
    command_timeout = params.get("command_timeout")
    if command_timeout is not None and command_timeout <= 0:
        found.append(f"command_timeout: {command_timeout} must be a positive number of seconds")
    found += _threshold_problems(params, "disk_warn_free_percent", "disk_fail_free_percent", upper=100)
    found += _threshold_problems(params, "memory_warn_available_mb", "memory_fail_available_mb")
    found += _threshold_problems(params, "cert_warn_days", "cert_fail_days")

    registries = params.get("registries") or []
    found += _name_problems("registries", registries, "local or docker.io")
    for index, entry in enumerate(registries):
        where = f"registries[{index}]"
        url = entry.get("url")
        fault = registry_url_problem(url)
        if fault:
            found.append(f"{where}.url: {url!r} {fault}, e.g. https://127.0.0.1:5000 or http://127.0.0.1:5001")
        elif entry.get("ca_path") and not str(url).startswith("https://"):
            found.append(f"{where}.ca_path is set but url {url!r} is not https://")

    certificates = params.get("certificates") or []
    found += _name_problems("certificates", certificates, "registry-tls")
    for index, entry in enumerate(certificates):
        if not entry.get("path"):
            found.append(f"certificates[{index}].path must be the path of a PEM certificate")

    paths = params.get("disk_paths") or []
    for path in paths:
        if not str(path).startswith("/"):
            found.append(f"disk_paths: {path!r} must be an absolute path")
    duplicates = sorted({p for p in paths if paths.count(p) > 1})
    if duplicates:
        found.append(f"disk_paths: {', '.join(duplicates)} listed more than once")
    if params.get("kubeconfig") and not params.get("kubernetes_node"):
        found.append("kubeconfig is set but kubernetes_node is not: name the node to check")
    return found


# ---------------------------------------------------------------------------------------------------
# Engine API over its unix socket


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class EngineAPI:
    """GETs on the Engine API, one connection, all within ``timeout`` seconds from the first call."""

    def __init__(self, path: str, timeout: float) -> None:
        self._deadline = time.monotonic() + timeout
        self._conn = _UnixHTTPConnection(path, timeout)

    def get(self, path: str) -> Tuple[int, Any]:
        """``(HTTP status, decoded JSON body or the text)``; raises OSError/HTTPException when the engine
        does not answer in time."""
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out")
        self._conn.timeout = left
        if self._conn.sock is not None:
            self._conn.sock.settimeout(left)
        self._conn.request("GET", path, headers={"Accept": "application/json"})
        response = self._conn.getresponse()
        body = response.read().decode("utf-8", "replace")
        try:
            return response.status, json.loads(body)
        except ValueError:
            return response.status, body

    def close(self) -> None:
        self._conn.close()


def api_message(body: Any) -> str:
    """The Engine API's error text (``{"message": ...}``) or the body's first line."""
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return first_line(str(body))


def image_store(info: Mapping[str, Any]) -> str:
    """``containerd`` when the engine stores images in containerd's snapshotters, else ``classic``."""
    for pair in info.get("DriverStatus") or []:
        if any(CONTAINERD_SNAPSHOTTER in str(cell) for cell in pair or []):
            return "containerd"
    return "classic"


def engine_value(info: Mapping[str, Any], version: Mapping[str, Any]) -> Dict[str, Any]:
    return {
        "version": version.get("Version") or info.get("ServerVersion"),
        "api_version": version.get("ApiVersion"),
        "storage_driver": info.get("Driver"),
        "image_store": image_store(info),
        "live_restore": bool(info.get("LiveRestoreEnabled")),
        "runtimes": sorted(info.get("Runtimes") or {}),
        "default_runtime": info.get("DefaultRuntime"),
        "docker_root_dir": info.get("DockerRootDir"),
    }


def engine_check(
    info: Mapping[str, Any],
    version: Mapping[str, Any],
    expect_live_restore: bool,
    gpu_count: Optional[int] = None,
) -> Check:
    """The engine's check from its ``/info`` and ``/version``; ``gpu_count`` is what nvidia-smi listed
    (None: unknown), for the rule that a GPU node's engine needs the ``nvidia`` runtime."""
    value = engine_value(info, version)
    status, messages = OK, []
    if gpu_count and "nvidia" not in value["runtimes"]:
        status = FAIL
        messages.append(
            f"nvidia-smi lists {gpu_count} GPU(s) but the engine has no nvidia runtime "
            f"(runtimes: {', '.join(value['runtimes']) or 'none'})"
        )
    if expect_live_restore and not value["live_restore"]:
        status = worst(status, WARN)
        messages.append("live-restore is off (expect_live_restore is true): restarting dockerd stops running jobs")
    return Check("engine", status, value, "; ".join(messages))


def probe_engine(settings: Settings) -> Tuple[Optional[Dict[str, Any]], Optional[Dict[str, Any]], str]:
    """``(info, version, error)`` of the engine at ``settings.docker_host``."""
    path = socket_path(settings.docker_host) or ""
    api = EngineAPI(path, settings.timeout)
    try:
        status, info = api.get("/info")
        if status != 200 or not isinstance(info, dict):
            return None, None, f"GET /info answered {status}: {api_message(info)}"
        status, version = api.get("/version")
        if status != 200 or not isinstance(version, dict):
            return None, None, f"GET /version answered {status}: {api_message(version)}"
        return info, version, ""
    except (OSError, http.client.HTTPException) as exc:
        return None, None, str(exc) or type(exc).__name__
    finally:
        api.close()


def image_check(reference: str, status: Optional[int], body: Any, error: str = "") -> Check:
    """``agent_image`` from the Engine API's ``GET /images/<ref>/json`` (status None: no answer)."""
    name = "agent_image"
    if status is None:
        return Check(name, FAIL, None, f"agent_image {reference}: the engine does not answer: {error}")
    if status == 404:
        return Check(name, FAIL, None, f"agent_image {reference} is not in the engine's image store")
    if status != 200 or not isinstance(body, dict):
        return Check(name, FAIL, None, f"agent_image {reference}: GET /images answered {status}: {api_message(body)}")
    value = {
        "reference": reference,
        "id": body.get("Id"),
        "repo_digests": list(body.get("RepoDigests") or []),
        "architecture": body.get("Architecture"),
    }
    return Check(name, OK, value)


def probe_image(settings: Settings, reference: str) -> Check:
    api = EngineAPI(socket_path(settings.docker_host) or "", settings.timeout)
    try:
        status, body = api.get("/images/" + quote(reference, safe="/:@") + "/json")
        return image_check(reference, status, body)
    except (OSError, http.client.HTTPException) as exc:
        return image_check(reference, None, None, str(exc) or type(exc).__name__)
    finally:
        api.close()


# ---------------------------------------------------------------------------------------------------
# Registries


def registry_check(name: str, url: str, status: Optional[int], error: str = "") -> Check:
    """``registry:<name>`` from the status of ``GET <url>/v2/`` (None: no answer, ``error`` says why)."""
    check_name = f"registry:{name}"
    endpoint = url.rstrip("/") + "/v2/"
    if status in REGISTRY_ANSWERING:
        return Check(check_name, OK, {"url": url, "status": status})
    if status is None:
        return Check(check_name, FAIL, {"url": url, "status": None}, f"GET {endpoint}: {error}")
    return Check(
        check_name,
        FAIL,
        {"url": url, "status": status},
        f"GET {endpoint} answered {status} (expected 200 or 401)",
    )


def probe_registry(
    url: str, ca_path: Optional[str], timeout: float, headers: Optional[Mapping[str, str]] = None
) -> Tuple[Optional[int], str]:
    """``(HTTP status, "")`` of ``GET <url>/v2/`` or ``(None, error)``; connect and read share ``timeout``.
    ``headers`` go with the request (registry_health's ``Authorization``); never part of the error."""
    deadline = time.monotonic() + timeout
    parts = urlsplit(url)
    conn: http.client.HTTPConnection
    try:
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=ca_path) if ca_path else ssl.create_default_context()
            conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=timeout, context=context)
        else:
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    except (OSError, ssl.SSLError) as exc:
        return None, f"ca_path {ca_path}: {exc}"
    try:
        conn.connect()
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out")
        if conn.sock is not None:
            conn.sock.settimeout(left)
        conn.request("GET", "/v2/", headers=dict(headers or {}))
        response = conn.getresponse()
        response.read()
        return response.status, ""
    except (OSError, http.client.HTTPException) as exc:
        return None, str(exc) or type(exc).__name__
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------------
# Builder


def parse_buildx_inspect(stdout: str) -> Dict[str, Any]:
    """Name, driver, node statuses and node errors of ``docker buildx inspect NAME`` (text output)."""
    result: Dict[str, Any] = {"name": None, "driver": None, "statuses": [], "errors": []}
    for raw in stdout.splitlines():
        key, sep, value = raw.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key == "Name" and result["name"] is None:
            result["name"] = value
        elif key == "Driver" and result["driver"] is None:
            result["driver"] = value
        elif key == "Status":
            result["statuses"].append(value)
        elif key == "Error":
            result["errors"].append(value)
    return result


def builder_check(name: str, cache_export: Optional[str], rc: int, stdout: str, stderr: str) -> Check:
    """``builder`` from ``docker buildx inspect NAME``: ok when it answers with a driver; a node error warns
    (the builder may still boot on the next build)."""
    if rc != 0:
        value = {"name": name, "driver": None, "status": None, "cache_export": cache_export}
        why = first_line(stderr) or first_line(stdout) or f"exit status {rc}"
        return Check("builder", FAIL, value, f"buildkit_builder {name}: docker buildx inspect failed: {why}")
    parsed = parse_buildx_inspect(stdout)
    value = {
        "name": name,
        "driver": parsed["driver"],
        "status": ", ".join(parsed["statuses"]) or None,
        "cache_export": cache_export,
    }
    if not parsed["driver"]:
        return Check("builder", FAIL, value, f"buildkit_builder {name}: docker buildx inspect reported no driver")
    if parsed["errors"]:
        return Check("builder", WARN, value, f"buildkit_builder {name}: {'; '.join(parsed['errors'])}")
    return Check("builder", OK, value)


# ---------------------------------------------------------------------------------------------------
# Disk, memory


def disk_check(path: str, measured_at: str, free_bytes: int, total_bytes: int, *, warn: float, fail: float) -> Check:
    percent = round(100.0 * free_bytes / total_bytes, 1) if total_bytes else 0.0
    value = {
        "path": path,
        "measured_at": measured_at,
        "free_gb": round(free_bytes / 1024**3, 1),
        "total_gb": round(total_bytes / 1024**3, 1),
        "free_percent": percent,
    }
    status = below(percent, warn, fail)
    message = ""
    if status != OK:
        option, limit = ("disk_fail_free_percent", fail) if status == FAIL else ("disk_warn_free_percent", warn)
        message = f"{percent:g}% free ({value['free_gb']:g} GiB) at {measured_at}, below {option} ({limit:g}%)"
    return Check(f"disk:{path}", status, value, message)


def parse_mem_available_mb(meminfo: str) -> Optional[int]:
    match = re.search(r"^MemAvailable:\s+(\d+)\s*kB", meminfo, re.M)
    return int(match.group(1)) // 1024 if match else None


def memory_check(meminfo: str, warn_mb: int, fail_mb: int) -> Check:
    available = parse_mem_available_mb(meminfo)
    value = {"available_mb": available, "total_mb": parse_meminfo_mb(meminfo)}
    if available is None:
        return Check("memory", FAIL, value, "no MemAvailable line in /proc/meminfo")
    status = below(available, warn_mb, fail_mb)
    message = ""
    if status != OK:
        failing = status == FAIL
        option = "memory_fail_available_mb" if failing else "memory_warn_available_mb"
        limit = fail_mb if failing else warn_mb
        message = f"{available} MiB available, below {option} ({limit} MiB)"
    return Check("memory", status, value, message)


# ---------------------------------------------------------------------------------------------------
# GPU


def nvidia_smi_argv(nvidia_smi: str) -> List[str]:
    # Never memory.*: GB10 answers them with [N/A] (unified memory).
    return [nvidia_smi, "--query-gpu=" + ",".join(NVIDIA_SMI_FIELDS), "--format=csv,noheader"]


def gpu_check(nvidia_smi: Optional[str], rc: int, stdout: str, stderr: str, expect_gpu: bool) -> Check:
    """``gpu`` from nvidia-smi's selective query; ``nvidia_smi`` None: not installed."""
    if not nvidia_smi:
        if expect_gpu:
            return Check("gpu", FAIL, None, "no nvidia-smi on the node (expect_gpu is true; or set nvidia_smi_path)")
        return Check("gpu", OK, None, "no GPU: nvidia-smi not found")
    devices = parse_nvidia_smi(stdout) if rc == 0 else []
    if rc not in (0, NVIDIA_SMI_NO_DEVICES):
        why = first_line(stderr) or first_line(stdout)
        return Check("gpu", FAIL, None, f"{nvidia_smi} exited {rc}: {why}")
    value = {"count": len(devices), "devices": devices}
    if not devices:
        status = FAIL if expect_gpu else OK
        return Check("gpu", status, value, "nvidia-smi lists no GPU" + (" (expect_gpu is true)" if expect_gpu else ""))
    return Check("gpu", OK, value)


def gpu_count(check: Optional[Check]) -> Optional[int]:
    """GPUs a gpu check saw (None when it could not tell)."""
    if check is None or not isinstance(check.value, dict):
        return None
    return check.value.get("count")


# ---------------------------------------------------------------------------------------------------
# Certificates


# The openssl CLI, not `cryptography` (not guaranteed on the node) nor ssl._ssl._test_decode_cert (a private
# CPython test hook that may go without notice): its -enddate output is a stable public interface, openssl is on
# every Ubuntu/DGX OS node (ca-certificates depends on it), and one short process per certificate is cheap.
def openssl_enddate_argv(openssl: str, path: str) -> List[str]:
    return [openssl, "x509", "-enddate", "-noout", "-in", path]


def parse_enddate(stdout: str) -> Optional[float]:
    """Seconds since the epoch of ``notAfter=Jun  1 12:00:00 2026 GMT`` (openssl's C-locale form)."""
    match = re.search(r"^notAfter=(.+)$", stdout, re.M)
    if not match:
        return None
    try:
        return float(ssl.cert_time_to_seconds(match.group(1).strip()))
    except ValueError:
        return None


def cert_check(
    name: str,
    path: str,
    not_after: Optional[float],
    now: float,
    *,
    warn_days: int,
    fail_days: int,
    error: str = "",
) -> Check:
    """``cert:<name>`` from the certificate's notAfter (None: unreadable, ``error`` says why)."""
    check_name = f"cert:{name}"
    if not_after is None:
        return Check(check_name, FAIL, {"path": path}, f"{path}: {error or 'no notAfter date'}")
    expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(not_after))
    days = int((not_after - now) // 86400)
    value = {"path": path, "not_after": expiry, "days_left": days}
    if not_after <= now:
        return Check(check_name, FAIL, value, f"{path} expired on {expiry}")
    status = below(days, warn_days, fail_days)
    message = ""
    if status != OK:
        option, limit = ("cert_fail_days", fail_days) if status == FAIL else ("cert_warn_days", warn_days)
        message = f"{path} expires in {days} days ({expiry}), below {option} ({limit})"
    return Check(check_name, status, value, message)


# ---------------------------------------------------------------------------------------------------
# Kubernetes node


def kubectl_argv(kubectl: str, node: str, kubeconfig: Optional[str], timeout: float) -> List[str]:
    argv = [kubectl, "get", "node", node, "--output=json", f"--request-timeout={max(1, round(timeout))}s"]
    if kubeconfig:
        argv.append(f"--kubeconfig={kubeconfig}")
    return argv


def kubernetes_node_check(node: str, rc: int, stdout: str, stderr: str) -> Check:
    """``kubernetes_node`` from ``kubectl get node NAME -o json``: ok when Ready and schedulable, warn when
    cordoned (a rollout cordons on purpose), fail when not Ready, not found or unreadable."""
    name = "kubernetes_node"
    if rc != 0:
        why = first_line(stderr) or first_line(stdout) or f"exit status {rc}"
        return Check(name, FAIL, None, f"kubernetes_node {node}: {why}")
    try:
        obj = json.loads(stdout)
    except ValueError:
        return Check(name, FAIL, None, f"kubernetes_node {node}: kubectl printed no JSON: {first_line(stdout)}")
    if not isinstance(obj, dict):
        return Check(name, FAIL, None, f"kubernetes_node {node}: kubectl printed no JSON object")
    conditions = (obj.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if isinstance(c, dict) and c.get("type") == "Ready"), None)
    unschedulable = bool((obj.get("spec") or {}).get("unschedulable"))
    value = {
        "name": (obj.get("metadata") or {}).get("name", node),
        "ready": ready.get("status") if ready else None,
        "unschedulable": unschedulable,
        "kubelet_version": ((obj.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion"),
    }
    if not ready or ready.get("status") != "True":
        why = f": {ready.get('reason')} {ready.get('message') or ''}".rstrip() if ready else ""
        return Check(name, FAIL, value, f"kubernetes_node {node} is not Ready (Ready={value['ready']}){why}")
    if unschedulable:
        return Check(name, WARN, value, f"kubernetes_node {node} is cordoned (spec.unschedulable)")
    return Check(name, OK, value)


# ---------------------------------------------------------------------------------------------------
# Running every check


@dataclass
class NodeIO:
    """What the checks read besides sockets; tests replace each."""

    run: Runner
    read_meminfo: Callable[[], str]
    now: Callable[[], float] = time.time
    statvfs: Callable[[str], Tuple[str, int, int]] = free_space


def _disk(settings: Settings, io: NodeIO, path: str) -> Check:
    measured, free_b, total_b = io.statvfs(path)
    warn, fail = settings.disk_warn_free_percent, settings.disk_fail_free_percent
    return disk_check(path, measured, free_b, total_b, warn=warn, fail=fail)


def _gpu(settings: Settings, io: NodeIO) -> Check:
    if not settings.nvidia_smi:
        return gpu_check(None, 0, "", "", settings.expect_gpu)
    rc, out, err = io.run(nvidia_smi_argv(settings.nvidia_smi), {})
    return gpu_check(settings.nvidia_smi, rc, out, err, settings.expect_gpu)


def _cert(settings: Settings, io: NodeIO, entry: Mapping[str, Any]) -> Check:
    name, path = entry["name"], entry["path"]
    warn, fail = settings.cert_warn_days, settings.cert_fail_days
    if not settings.openssl:
        error = "no openssl on the node (set openssl_path)"
        return cert_check(name, path, None, 0, warn_days=warn, fail_days=fail, error=error)
    rc, out, err = io.run(openssl_enddate_argv(settings.openssl, path), {})
    if rc != 0:
        error = f"openssl exited {rc}: {first_line(err) or first_line(out)}"
        return cert_check(name, path, None, 0, warn_days=warn, fail_days=fail, error=error)
    return cert_check(name, path, parse_enddate(out), io.now(), warn_days=warn, fail_days=fail)


def _builder(settings: Settings, io: NodeIO) -> Check:
    name = settings.buildkit_builder or ""
    if not settings.docker_cli:
        value = {"name": name, "driver": None, "status": None, "cache_export": settings.cache_export}
        return Check("builder", FAIL, value, "no docker CLI on PATH (set docker_cli)")
    rc, out, err = io.run([settings.docker_cli, "buildx", "inspect", name], {"DOCKER_HOST": settings.docker_host})
    return builder_check(name, settings.cache_export, rc, out, err)


def _kubernetes_node(settings: Settings, io: NodeIO) -> Check:
    node = settings.kubernetes_node or ""
    if not settings.kubectl:
        return Check("kubernetes_node", FAIL, None, "no kubectl on PATH (set kubectl_path)")
    rc, out, err = io.run(kubectl_argv(settings.kubectl, node, settings.kubeconfig, settings.timeout), {})
    return kubernetes_node_check(node, rc, out, err)


def _engine_raw(settings: Settings) -> Check:
    """The engine's answers, kept in the value until the GPU's check is known (see ``finish_engine``)."""
    info, version, error = probe_engine(settings)
    if info is None:
        return Check("engine", FAIL, None, f"docker_host {settings.docker_host}: the engine does not answer: {error}")
    return Check("engine", OK, {"info": info, "version": version})


def finish_engine(raw: Check, gpu: Optional[Check], expect_live_restore: bool) -> Check:
    if raw.value is None:
        return raw
    check = engine_check(raw.value["info"], raw.value["version"], expect_live_restore, gpu_count(gpu))
    check.elapsed_ms = raw.elapsed_ms
    return check


def plan(settings: Settings, io: NodeIO) -> List[Tuple[str, Callable[[], Check]]]:
    """Every check to run, in report order, as ``(name, probe)``."""
    tasks: List[Tuple[str, Callable[[], Check]]] = [("engine", lambda: _engine_raw(settings))]
    for entry in settings.registries:
        url, ca_path = entry["url"], entry.get("ca_path")
        tasks.append(
            (
                f"registry:{entry['name']}",
                lambda n=entry["name"], u=url, c=ca_path: registry_check(n, u, *probe_registry(u, c, settings.timeout)),
            )
        )
    if settings.buildkit_builder:
        tasks.append(("builder", lambda: _builder(settings, io)))
    for path in settings.disk_paths:
        tasks.append((f"disk:{path}", lambda p=path: _disk(settings, io, p)))
    tasks.append(
        (
            "memory",
            lambda: memory_check(
                io.read_meminfo(), settings.memory_warn_available_mb, settings.memory_fail_available_mb
            ),
        )
    )
    tasks.append(("gpu", lambda: _gpu(settings, io)))
    for entry in settings.certificates:
        tasks.append((f"cert:{entry['name']}", lambda e=entry: _cert(settings, io, e)))
    if settings.agent_image:
        tasks.append(("agent_image", lambda: probe_image(settings, settings.agent_image or "")))
    if settings.kubernetes_node:
        tasks.append(("kubernetes_node", lambda: _kubernetes_node(settings, io)))
    return tasks


def _timed(name: str, probe: Callable[[], Check]) -> Check:
    started = time.monotonic()
    try:
        check = probe()
    except Exception as exc:  # a probe's own fault is that check's failure, never the whole call's
        check = Check(name, FAIL, None, f"probe error: {type(exc).__name__}: {exc}")
    check.elapsed_ms = round((time.monotonic() - started) * 1000)
    return check


def run_checks(tasks: Sequence[Tuple[str, Callable[[], Check]]], workers: int = 8) -> List[Check]:
    """Run the probes concurrently (each waits on its own socket or command), in report order."""
    if not tasks:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(tasks)))) as pool:
        futures = [pool.submit(_timed, name, probe) for name, probe in tasks]
        return [future.result() for future in futures]


def summarize(checks: Sequence[Check], elapsed_ms: int) -> Dict[str, Any]:
    counts = {status: sum(1 for c in checks if c.status == status) for status in STATUSES}
    failed = [c.name for c in checks if c.status == FAIL]
    warned = [c.name for c in checks if c.status == WARN]
    if failed:
        msg = f"unhealthy: {', '.join(failed)} failed"
    else:
        msg = "healthy"
    detail = f"{counts[OK]} ok, {counts[WARN]} warn, {counts[FAIL]} fail in {elapsed_ms} ms"
    return {
        "msg": f"{msg} ({detail})" + (f"; warnings: {', '.join(warned)}" if warned else ""),
        "checks": [c.as_dict() for c in checks],
        "summary": counts,
        "failed_checks": failed,
        "warning_checks": warned,
        "healthy": not failed,
        "elapsed_ms": elapsed_ms,
    }


def node_health(settings: Settings, io: NodeIO) -> Dict[str, Any]:
    """Every check of the node, judged, with the summary the module returns."""
    started = time.monotonic()
    checks = run_checks(plan(settings, io))
    gpu = next((c for c in checks if c.name == "gpu"), None)
    checks = [finish_engine(c, gpu, settings.expect_live_restore) if c.name == "engine" else c for c in checks]
    return summarize(checks, round((time.monotonic() - started) * 1000))
