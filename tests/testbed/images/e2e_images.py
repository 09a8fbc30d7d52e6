#!/usr/bin/env python3
"""Images for the end-to-end Pod tests, as docker-archive tars cached per machine by input hash.

Three images for the host's architecture, for ``ctr -n k8s.io images import`` (no registry pulls):

- ``agent``: the agent image built from ``image/`` exactly as the ``agent_image`` role builds it in the
  ``molecule/agent_image`` scenario (same build context bytes, build args, base image archive and extra CA
  certificates), and through the same BuildKit local cache directory
  (``/var/cache/raibid-agent-image-buildcache``), so the cargo tools compile once per machine whichever of
  the two builds first. The host's Docker 20.10 cannot export a local cache, so the build runs in a
  throw-away builder container of ``raibid-node:trixie-docker`` (Docker 26 + buildx, containerd image
  store), which is removed with its volumes afterwards.
- ``agent-broken``: the agent image without ``cargo-deny`` (listed in its tool list), so
  ``raibid-agent health`` fails.
- ``dind``: dockerd from Debian trixie's packages (recipe ``dind`` in molecule/images/recipes.yml) plus a
  minimal ``dockerd-entrypoint.sh`` (entrypoint; runs ``dockerd`` with the arguments, or the command given).

Usage: e2e_images.py [--json FILE] [--only NAME[,NAME]] [--force]
Prints one JSON object on stdout (progress goes to stderr); see ``ensure_images`` for its shape.
Everything missing is rebuilt, the rest is a cache hit. Concurrent callers serialize on a lock.
Timings are appended to .cache/e2e-image-timings.jsonl.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
IMAGE_DIR = ROOT / "image"
BUILD_PY = ROOT / "molecule" / "images" / "build.py"
AGENT_DEFAULTS = ROOT / "roles" / "agent_image" / "defaults" / "main.yml"
AGENT_VARS = ROOT / "roles" / "agent_image" / "vars" / "main.yml"
AGENT_SCENARIO = ROOT / "molecule" / "agent_image" / "molecule.yml"
TIMINGS = ROOT / ".cache" / "e2e-image-timings.jsonl"

# Bump when what this script builds changes in a way the hashed inputs do not show.
FORMAT = 1
CACHE_DIR = Path(os.environ.get("RAIBID_E2E_IMAGES_CACHE", "/var/cache/raibid-e2e-images"))
# The agent_image scenario's BuildKit local cache on the host (molecule/agent_image/molecule.yml).
BUILDKIT_CACHE = Path(os.environ.get("RAIBID_AGENT_IMAGE_BUILDCACHE", "/var/cache/raibid-agent-image-buildcache"))
# Where that scenario mounts it in its node (the role default agent_image_cache_dir); same path here.
BUILDKIT_CACHE_IN_NODE = "/var/cache/raibid/agent-image-buildcache"
EXTRA_CA_GLOB = "/usr/local/share/ca-certificates/*.crt"
# The agent_image scenario's settings (molecule/agent_image/molecule.yml).
BASE_IMAGE = "raibid-node:agent-rust-base"
BASE_RECIPE = "agent-rust-base"
BUILDER_RECIPE = "trixie-docker"
DIND_RECIPE = "dind"
HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
REPOSITORY = "localhost/raibid-e2e"
BUILDER_LABEL = "org.raibid.e2e-image-builder"
BROKEN_TOOL = "cargo-deny"
NAMES = ("agent", "agent-broken", "dind")
KEEP = int(os.environ.get("RAIBID_E2E_IMAGES_KEEP", "3"))  # cache entries kept per image


def _timeout(name: str, default: int) -> int:
    return int(os.environ.get(f"RAIBID_E2E_{name}_TIMEOUT", default))


# Bounded waits (seconds); each can be overridden with RAIBID_E2E_<NAME>_TIMEOUT.
LOCK_TIMEOUT = _timeout("LOCK", 9000)  # another caller may be doing the cold agent build
NODE_IMAGE_TIMEOUT = _timeout("NODE_IMAGE", 1800)  # build.py (waits on its own lock if CI builds it)
# 20-40 min cold on 2 idle cores; seen well over an hour on a machine busy with the CI suite.
AGENT_BUILD_TIMEOUT = _timeout("AGENT_BUILD", 7200)
DAEMON_TIMEOUT = _timeout("DAEMON", 180)
STEP_TIMEOUT = _timeout("STEP", 900)  # load / save / small builds

# Node flags that work on these VMs (molecule/_shared/node.yml; --privileged fails here).
CAPABILITIES = yaml.safe_load((ROOT / "molecule" / "_shared" / "node.yml").read_text(encoding="utf-8"))[
    "raibid_node_capabilities"
]
sys.path[:0] = [str(HERE.parent), str(HERE.parent.parent)]
import node_cgroup  # tests/testbed/node_cgroup.py: the cgroup flags, by the host's cgroup version
from support import LockTimeout, held_flock  # tests/support.py: the machine-wide lock files

del sys.path[:2]

DIND_ENTRYPOINT = """#!/bin/sh
# Minimal stand-in for docker:dind's dockerd-entrypoint.sh: no TLS generation (the Pods bring their
# certificates). No arguments, or options only: run dockerd with them; otherwise run the command given.
set -e
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
    set -- dockerd "$@"
fi
exec "$@"
"""

DIND_DOCKERFILE = """FROM {base}
COPY dockerd-entrypoint.sh /usr/local/bin/dockerd-entrypoint.sh
VOLUME /var/lib/docker
ENTRYPOINT ["/usr/bin/tini", "--", "dockerd-entrypoint.sh"]
CMD []
LABEL org.raibid.e2e.image=dind org.raibid.e2e.key={key}
"""

BROKEN_DOCKERFILE = """FROM {agent}
USER root
RUN rm -f /usr/local/bin/{tool} && ! command -v {tool}
USER 1000:1000
LABEL org.raibid.e2e.image=agent-broken org.raibid.e2e.broken-tool={tool}
"""


class E2EImageError(RuntimeError):
    """A build step failed or hung; the message names it."""


def log(msg: str) -> None:
    print(f"[e2e-images] {msg}", file=sys.stderr, flush=True)


def run(
    cmd: List[str], what: str, timeout: int, *, capture: bool = True, log_file: Optional[Path] = None, **kw: Any
) -> subprocess.CompletedProcess:
    """Run cmd; raise E2EImageError naming ``what`` when it fails or runs past ``timeout`` seconds."""
    try:
        if log_file is not None:
            with log_file.open("ab") as fh:
                proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout, check=False, **kw)
        else:
            proc = subprocess.run(cmd, capture_output=capture, text=True, timeout=timeout, check=False, **kw)
    except subprocess.TimeoutExpired as exc:
        where = f"; log: {log_file}" if log_file else ""
        raise E2EImageError(f"timed out after {timeout} s: {what} ({' '.join(cmd[:8])} ...){where}") from exc
    if proc.returncode != 0:
        if log_file is not None:
            tail = "\n".join(log_file.read_text(encoding="utf-8", errors="replace").splitlines()[-40:])
            detail = f"last lines of {log_file}:\n{tail}"
        else:
            detail = ((proc.stderr or "") + (proc.stdout or "")).strip()[-4000:]
        raise E2EImageError(f"{what} failed (rc={proc.returncode}): {detail}")
    return proc


def record_timing(**values: Any) -> None:
    TIMINGS.parent.mkdir(parents=True, exist_ok=True)
    with TIMINGS.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"at": time.time(), **values}) + "\n")


# --------------------------------------------------------------------------------------------
# Inputs


def node_images() -> Any:
    """molecule/images/build.py as a module (recipes and their hashes)."""
    sys.path.insert(0, str(BUILD_PY.parent))
    try:
        import build  # noqa: PLC0415

        return build
    finally:
        sys.path.pop(0)


def agent_build_args() -> Dict[str, str]:
    """The role's agent_image_build_args for the agent_image scenario (defaults + its base image and tools
    opt-level), so that both builds share the compiled tools through the BuildKit cache."""
    defaults = yaml.safe_load(AGENT_DEFAULTS.read_text(encoding="utf-8"))
    arg_names = yaml.safe_load(AGENT_VARS.read_text(encoding="utf-8"))["agent_image_tool_build_args"]
    scenario = yaml.safe_load(AGENT_SCENARIO.read_text(encoding="utf-8"))["provisioner"]["inventory"]
    scenario = scenario["group_vars"]["all"]
    health = str(defaults["agent_image_health_docker"])
    opt_level = scenario.get("agent_image_cargo_tools_opt_level", defaults["agent_image_cargo_tools_opt_level"])
    args = {
        "BASE_IMAGE": BASE_IMAGE,
        "HEALTH_DOCKER": health,
        "VERSION": str(defaults["agent_image_version"]),
        "SOURCE": str(defaults["agent_image_source_url"]),
        "CARGO_TOOLS_OPT_LEVEL": str(opt_level),
    }
    for tool, version in defaults["agent_image_cargo_tools"].items():
        args[arg_names[tool]] = str(version)
    return args


def extra_ca_files() -> Dict[str, str]:
    """dgx_spark_extra_ca_files for the scenario's CA list: <sha256(pem)[:16]>.crt -> pem (trimmed + LF)."""
    import glob  # noqa: PLC0415

    files = {}
    for path in sorted(glob.glob(EXTRA_CA_GLOB)):
        pem = Path(path).read_text(encoding="utf-8").strip() + "\n"
        files[hashlib.sha256(pem.encode()).hexdigest()[:16] + ".crt"] = pem
    return files


TAR_OPTIONS = [
    "--sort=name",
    "--mtime=@0",
    "--owner=0",
    "--group=0",
    "--numeric-owner",
    "--mode=go-w",
    "--exclude=target",
    "--exclude=.git",
    "--exclude=README.md",
]


def make_context(work: Path) -> Path:
    """The build context exactly as roles/agent_image/tasks/context.yml makes and unpacks it on the node.

    Same tar runs and options, the CA directory with the controller cache's 0700 mode, unpacked as root:
    the files, modes and owners BuildKit hashes for its cache keys are those of the scenario's context.
    """
    cas = work / "ca-certificates"
    cas.mkdir(mode=0o700)
    os.chmod(cas, 0o700)
    for name, pem in extra_ca_files().items():
        (cas / name).write_text(pem, encoding="utf-8")
        os.chmod(cas / name, 0o644)
    archive = work / "context.tar"
    tar = ["tar", "--create", "--file", str(archive), *TAR_OPTIONS, "-C", str(IMAGE_DIR), "."]
    run(tar, "packing the build context", STEP_TIMEOUT)
    append = ["tar", "--append", "--file", str(archive), *TAR_OPTIONS, "--transform=s,^[.]/,./ca-certificates/,"]
    run([*append, "-C", str(cas), "."], "adding the CA certificates to the build context", STEP_TIMEOUT)
    context = work / "context"
    context.mkdir(mode=0o755)
    run(["tar", "--extract", "-C", str(context), "-f", str(archive)], "unpacking the build context", STEP_TIMEOUT)
    return context


def tree_digest(directory: Path) -> str:
    """sha256 over relative path, mode, owner and content of every entry (what BuildKit's COPY sees)."""
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        st = path.lstat()
        digest.update(f"{path.relative_to(directory)}\0{st.st_mode:o}\0{st.st_uid}:{st.st_gid}\0".encode())
        if path.is_file() and not path.is_symlink():
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        elif path.is_symlink():
            digest.update(os.readlink(path).encode())
    return digest.hexdigest()


def short(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# Cache entries


def entry_paths(name: str, key: str) -> Dict[str, Path]:
    return {"tar": CACHE_DIR / f"{name}-{key}.tar", "meta": CACHE_DIR / f"{name}-{key}.json"}


def cached(name: str, key: str) -> Optional[Dict[str, Any]]:
    paths = entry_paths(name, key)
    if paths["tar"].is_file() and paths["meta"].is_file():
        meta = json.loads(paths["meta"].read_text(encoding="utf-8"))
        if meta.get("size") == paths["tar"].stat().st_size:
            return meta
    return None


def archive_info(tar_path: Path) -> Dict[str, Any]:
    """repo:tag, image ID (config digest) and manifest digest as stored in a docker-archive tar."""
    with tarfile.open(tar_path) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        try:
            index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
        except KeyError:
            index = {}
    if len(manifest) != 1:
        raise E2EImageError(f"{tar_path}: expected one image in manifest.json, found {len(manifest)}")
    config = manifest[0]["Config"]
    config_hex = Path(config).name.split(".")[0]
    digests = [m.get("digest", "") for m in index.get("manifests", [])]
    return {
        "refs": manifest[0].get("RepoTags") or [],
        "image_id": f"sha256:{config_hex}",
        "manifest_digest": digests[0] if len(digests) == 1 else None,
    }


def store(name: str, key: str, produced: Path, inputs: Dict[str, Any], seconds: float, **extra: Any) -> Dict:
    """Move a saved archive into the cache with its metadata (atomic renames; metadata last)."""
    paths = entry_paths(name, key)
    info = archive_info(produced)
    part = paths["tar"].with_suffix(".tar.part")
    shutil.move(str(produced), str(part))
    os.chmod(part, 0o644)
    part.rename(paths["tar"])
    meta = {
        "name": name,
        "key": key,
        "tar": str(paths["tar"]),
        "ref": info["refs"][0] if info["refs"] else None,
        "refs": info["refs"],
        "image_id": info["image_id"],
        "manifest_digest": info["manifest_digest"],
        "arch": HOST_ARCH,
        "size": paths["tar"].stat().st_size,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(seconds, 1),
        "inputs": inputs,
        **extra,
    }
    meta_part = paths["meta"].with_suffix(".json.part")
    meta_part.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    meta_part.rename(paths["meta"])
    prune(name)
    return meta


def prune(name: str) -> None:
    """Keep the KEEP newest entries of an image (other checkouts may use older keys)."""
    # name-<hex key>.tar only: "agent-*" also matches agent-broken-<key>.tar.
    entries = [p for p in CACHE_DIR.glob(f"{name}-*.tar") if "-" not in p.name[len(name) + 1 :]]
    for stale in sorted(entries, key=lambda p: p.stat().st_mtime, reverse=True)[KEEP:]:
        log(f"pruning {stale}")
        stale.unlink(missing_ok=True)
        stale.with_suffix(".json").unlink(missing_ok=True)


@contextlib.contextmanager
def locked(timeout: int, group: str, purpose: str) -> Iterator[None]:
    """One builder per image group and machine; waits at most ``timeout`` s, naming the holder if it gives up."""
    path = CACHE_DIR / f".{group}.lock"
    try:
        with held_flock(
            path, timeout, purpose, waiting=lambda holder: log(f"waiting for {path} (held by {holder})"), poll=2
        ):
            yield
    except LockTimeout as exc:
        raise E2EImageError(f"waiting for the image group's lock: {exc}") from None


# --------------------------------------------------------------------------------------------
# Node images (molecule/images/build.py has a lock per image: a concurrent CI build is waited for)


def ensure_node_image(name: str) -> None:
    started = time.monotonic()
    run(
        [sys.executable, str(BUILD_PY), name],
        f"building node image {name} (molecule/images/build.py)",
        NODE_IMAGE_TIMEOUT,
    )
    log(f"raibid-node:{name} ready ({time.monotonic() - started:.0f} s)")


def base_archive() -> Path:
    proc = run(
        [sys.executable, str(BUILD_PY), "--archive", BASE_RECIPE],
        f"building/saving {BASE_RECIPE} (molecule/images/build.py --archive)",
        NODE_IMAGE_TIMEOUT,
    )
    return Path(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# The builder container: Docker 26 + buildx on the containerd image store


class Builder:
    def __init__(self, work: Path, mounts: List[str], log_file: Path) -> None:
        self.id = uuid.uuid4().hex[:8]
        self.name = f"raibid-e2e-builder-{self.id}"
        self.volumes = [f"{self.name}-docker", f"{self.name}-containerd"]
        self.work = work
        self.mounts = mounts
        self.log_file = log_file

    @staticmethod
    def remove_stale() -> None:
        """Builders left by a killed run (we hold the lock, so no other run owns one)."""
        proc = run(["docker", "ps", "-aq", "--filter", f"label={BUILDER_LABEL}"], "listing stale builders", 60)
        for cid in proc.stdout.split():
            proc = run(["docker", "inspect", "--format", "{{.Name}}", cid], "inspecting a stale builder", 60)
            name = proc.stdout.strip().lstrip("/")
            log(f"removing stale builder {name}")
            subprocess.run(["docker", "rm", "-f", "-v", cid], capture_output=True, timeout=120, check=False)
            for vol in (f"{name}-docker", f"{name}-containerd"):
                subprocess.run(["docker", "volume", "rm", "-f", vol], capture_output=True, timeout=120, check=False)

    def __enter__(self) -> Builder:
        cmd = ["docker", "run", "-d", "--name", self.name, "--label", f"{BUILDER_LABEL}=1"]
        cmd += [arg for cap in CAPABILITIES for arg in ("--cap-add", cap)]
        cmd += ["--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined"]
        try:
            cgroup = node_cgroup.node_cgroup_flags(
                node_cgroup.detect_cgroup_version(), ["/bin/sh", "-c", "exec sleep infinity"], systemd=False
            )
        except (OSError, ValueError) as exc:
            raise E2EImageError(f"choosing the builder's cgroup flags: {exc}") from exc
        cmd += [*cgroup.docker_run_flags(), "--tmpfs", "/run", "--tmpfs", "/tmp"]
        cmd += ["-v", f"{self.volumes[0]}:/var/lib/docker", "-v", f"{self.volumes[1]}:/var/lib/containerd"]
        cmd += ["-e", "DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1"]
        for mount in self.mounts:
            cmd += ["-v", mount]
        cmd += ["--entrypoint", cgroup.command[0], f"raibid-node:{BUILDER_RECIPE}", *cgroup.command[1:]]
        run(cmd, f"starting the builder container {self.name}", 120)
        try:
            # The containerd image store (BuildKit cache export needs it), and the MTU of the builder's own
            # link: the host's bridge may be smaller than 1500 (1400 here), and with the default 1500 the
            # build steps' downloads stall (TCP connects, bigger packets are dropped).
            daemon_json = {
                "features": {"containerd-snapshotter": True},
                "containerd": "/run/containerd/containerd.sock",
                "mtu": 0,
            }
            template = _quote(json.dumps(daemon_json).replace('"mtu": 0', '"mtu": %s'))
            self.sh(
                f'mkdir -p /etc/docker && printf {template} "$(cat /sys/class/net/eth0/mtu)" >/etc/docker/daemon.json',
                "writing the builder's daemon.json",
                30,
            )
            self.sh("nohup containerd >/var/log/containerd.log 2>&1 &", "starting containerd in the builder", 30)
            self.sh(
                "for i in $(seq 60); do [ -S /run/containerd/containerd.sock ] && exit 0; sleep 1; done; exit 1",
                "waiting for containerd in the builder (see /var/log/containerd.log)",
                90,
            )
            self.sh("nohup dockerd >/var/log/dockerd.log 2>&1 &", "starting dockerd in the builder", 30)
            self.sh(
                f"for i in $(seq {DAEMON_TIMEOUT}); do docker info >/dev/null 2>&1 && exit 0; sleep 1; done; "
                "tail -n 30 /var/log/dockerd.log; exit 1",
                "waiting for dockerd in the builder",
                DAEMON_TIMEOUT + 30,
            )
            proc = self.sh(
                "docker info --format '{{.ServerVersion}} {{.Driver}} {{.DriverStatus}}'",
                "reading the builder's docker info",
                60,
            )
            if "snapshotter" not in proc.stdout and "overlayfs" not in proc.stdout:
                raise E2EImageError(f"the builder's dockerd is not on the containerd image store: {proc.stdout}")
            log(f"builder {self.name}: dockerd {proc.stdout.strip()}")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def sh(self, script: str, what: str, timeout: int, *, log_output: bool = False) -> subprocess.CompletedProcess:
        return run(
            ["docker", "exec", self.name, "sh", "-c", script],
            what,
            timeout,
            log_file=self.log_file if log_output else None,
        )

    def __exit__(self, *exc: Any) -> None:
        subprocess.run(["docker", "rm", "-f", "-v", self.name], capture_output=True, timeout=300, check=False)
        for vol in self.volumes:
            subprocess.run(["docker", "volume", "rm", "-f", vol], capture_output=True, timeout=300, check=False)


def build_agents(
    *,
    agent_key: str,
    broken_key: str,
    inputs: Dict[str, Any],
    context: Path,
    base_tar: Path,
    build_args: Dict[str, str],
    work: Path,
    want_broken: bool,
) -> Dict[str, Dict]:
    """Build the agent image (and the broken one) in a builder container; return their cache entries."""
    CACHE_DIR.joinpath("logs").mkdir(exist_ok=True)
    log_file = CACHE_DIR / "logs" / f"agent-{agent_key}.log"
    log_file.write_text("")
    out = work / "out"
    out.mkdir()
    (work / "broken").mkdir()
    agent_ref = f"{REPOSITORY}/agent:{agent_key}"
    broken_ref = f"{REPOSITORY}/agent-broken:{broken_key}"
    (work / "broken" / "Dockerfile").write_text(BROKEN_DOCKERFILE.format(agent=agent_ref, tool=BROKEN_TOOL))
    BUILDKIT_CACHE.mkdir(mode=0o700, parents=True, exist_ok=True)
    mounts = [
        f"{context}:/ctx:ro",
        f"{base_tar}:/in/base.tar:ro",
        f"{work / 'broken'}:/broken:ro",
        f"{out}:/out",
        f"{BUILDKIT_CACHE}:{BUILDKIT_CACHE_IN_NODE}",
    ]
    results: Dict[str, Dict] = {}
    Builder.remove_stale()
    started = time.monotonic()
    with Builder(work, mounts, log_file) as builder:
        t0 = time.monotonic()
        builder.sh("docker load -i /in/base.tar", f"loading {base_tar.name} into the builder", STEP_TIMEOUT)
        load_s = time.monotonic() - t0
        cache_from = []
        if (BUILDKIT_CACHE / "index.json").exists():
            cache_from = ["--cache-from", f"type=local,src={BUILDKIT_CACHE_IN_NODE}"]
        cmd = ["docker", "buildx", "build", "--progress", "plain", "--file", "/ctx/Dockerfile", "--tag", agent_ref]
        for key, value in sorted({**build_args, "CREATED": "1970-01-01T00:00:00Z", "REVISION": agent_key}.items()):
            cmd += ["--build-arg", f"{key}={value}"]
        cmd += ["--label", f"org.raibid.e2e.key={agent_key}", *cache_from]
        cmd += ["--cache-to", f"type=local,dest={BUILDKIT_CACHE_IN_NODE},mode=max,ignore-error=true"]
        cmd += ["--provenance=false", "/ctx"]
        log(
            f"building the agent image (log: {log_file}); cache from "
            f"{'the local cache ' + str(BUILDKIT_CACHE) if cache_from else 'nothing (cold: the tools compile)'}"
        )
        t0 = time.monotonic()
        builder.sh(" ".join(_quote(c) for c in cmd), "building the agent image", AGENT_BUILD_TIMEOUT, log_output=True)
        build_s = time.monotonic() - t0
        steps = _cache_summary(log_file)
        log(
            f"agent image built in {build_s:.0f} s; {steps['cached']}/{steps['layer_steps']} layer steps CACHED, "
            f"tools from cache: {steps['tools_cached']}"
        )
        t0 = time.monotonic()
        builder.sh(f"docker save -o /out/agent.tar {agent_ref}", "saving the agent image", STEP_TIMEOUT)
        save_s = time.monotonic() - t0
        total = time.monotonic() - started
        results["agent"] = store(
            "agent",
            agent_key,
            out / "agent.tar",
            inputs["agent"],
            total,
            build_log=str(log_file),
            tools_from_cache=steps["tools_cached"],
            cached_steps=steps["cached"],
        )
        record_timing(
            image="agent",
            key=agent_key,
            seconds=round(total, 1),
            build_s=round(build_s, 1),
            load_base_s=round(load_s, 1),
            save_s=round(save_s, 1),
            tools_from_cache=steps["tools_cached"],
            cached_steps=steps["cached"],
            cache_from=bool(cache_from),
        )
        if want_broken:
            t0 = time.monotonic()
            builder.sh(
                f"docker buildx build --progress plain --provenance=false --tag {broken_ref} /broken",
                "building the broken agent image",
                STEP_TIMEOUT,
                log_output=True,
            )
            builder.sh(
                f"docker save -o /out/agent-broken.tar {broken_ref}", "saving the broken agent image", STEP_TIMEOUT
            )
            seconds = time.monotonic() - t0
            results["agent-broken"] = store(
                "agent-broken",
                broken_key,
                out / "agent-broken.tar",
                inputs["agent-broken"],
                seconds,
                broken_tool=BROKEN_TOOL,
            )
            record_timing(image="agent-broken", key=broken_key, seconds=round(seconds, 1))
    return results


def _quote(arg: str) -> str:
    import shlex  # noqa: PLC0415

    return shlex.quote(arg)


def _cache_summary(log_file: Path) -> Dict[str, Any]:
    """CACHED layer steps, and whether every cargo-install step came from cache.

    Parsed by the role's own parser of BuildKit's plain progress (plugins/module_utils/image_build.py):
    a cached step is reported on a line of its own ("#12 CACHED") or, for a layer BuildKit pulls lazily
    from the imported cache, as blob transfers.
    """
    import importlib.util  # noqa: PLC0415

    spec = importlib.util.spec_from_file_location(
        "raibid_image_build", ROOT / "plugins" / "module_utils" / "image_build.py"
    )
    assert spec is not None and spec.loader is not None
    image_build = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = image_build  # dataclasses look their module up while the class is made
    spec.loader.exec_module(image_build)
    build_log = image_build.parse_plain_progress(log_file.read_text(encoding="utf-8", errors="replace"))
    summary = build_log.summary()
    tools = [s for s in build_log.steps if s.is_layer and "cargo-install cargo-" in s.name]
    return {
        "cached": summary["cached_steps"],
        "layer_steps": summary["layer_steps"],
        "tools_cached": bool(tools) and all(s.cached for s in tools),
    }


def build_dind(key: str, inputs: Dict[str, Any], work: Path) -> Dict:
    """FROM raibid-node:dind (recipe) + the entrypoint, with the host's engine; saved as a tar."""
    started = time.monotonic()
    ensure_node_image(DIND_RECIPE)
    ctx = work / "dind"
    ctx.mkdir()
    (ctx / "dockerd-entrypoint.sh").write_text(DIND_ENTRYPOINT)
    os.chmod(ctx / "dockerd-entrypoint.sh", 0o755)
    (ctx / "Dockerfile").write_text(DIND_DOCKERFILE.format(base=inputs["base_ref"], key=key))
    ref = f"{REPOSITORY}/dind:{key}"
    # The host's engine builds FROM the local image (nothing pulled); the classic builder is enough.
    run(
        ["docker", "build", "--tag", ref, str(ctx)],
        "building the dind image",
        STEP_TIMEOUT,
        env=dict(os.environ, DOCKER_BUILDKIT="0"),
    )
    run(["docker", "save", "-o", str(work / "dind.tar"), ref], "saving the dind image", STEP_TIMEOUT)
    subprocess.run(["docker", "rmi", ref], capture_output=True, timeout=120, check=False)
    seconds = time.monotonic() - started
    record_timing(image="dind", key=key, seconds=round(seconds, 1))
    return store("dind", key, work / "dind.tar", inputs, seconds)


# --------------------------------------------------------------------------------------------


def compute_keys(work: Path) -> Dict[str, Any]:
    """Input hashes of the three images (and what went into them)."""
    images = node_images()
    recipes = images.load_recipes()
    context = make_context(work)
    build_args = agent_build_args()
    agent_inputs = {
        "format": FORMAT,
        "context": tree_digest(context),
        "base_recipe": f"{BASE_RECIPE}-{images.recipe_hash(recipes[BASE_RECIPE])}",
        "build_args": build_args,
        "ca_files": sorted(extra_ca_files()),
        "arch": HOST_ARCH,
    }
    agent_key = short(agent_inputs)
    broken_inputs = {"agent": agent_key, "dockerfile": BROKEN_DOCKERFILE, "tool": BROKEN_TOOL}
    dind_hash = images.recipe_hash(recipes[DIND_RECIPE])
    dind_inputs = {
        "format": FORMAT,
        "recipe": recipes[DIND_RECIPE],
        "recipe_hash": dind_hash,
        "base_ref": f"raibid-node:{DIND_RECIPE}-{dind_hash}",
        "entrypoint": DIND_ENTRYPOINT,
        "dockerfile": DIND_DOCKERFILE,
        "arch": HOST_ARCH,
    }
    return {
        "context": context,
        "build_args": build_args,
        "keys": {"agent": agent_key, "agent-broken": short(broken_inputs), "dind": short(dind_inputs)},
        "inputs": {"agent": agent_inputs, "agent-broken": broken_inputs, "dind": dind_inputs},
    }


def remove_dead_work_dirs() -> None:
    """Work directories of killed runs (e2e-images-<pid>-*; may hold half-saved archives)."""
    for path in CACHE_DIR.glob("e2e-images-*-*"):
        pid = path.name.split("-")[2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            log(f"removing {path} (its run, pid {pid}, is gone)")
            shutil.rmtree(path, ignore_errors=True)


def ensure_images(only: Optional[List[str]] = None, force: bool = False) -> Dict[str, Any]:
    """Build what is missing; return {"images": {name: entry}, "cache_dir", "seconds", "built"}.

    Each entry: tar (path), ref (repository:tag stored in the tar), refs, image_id (config digest: the
    ID docker and crictl show), manifest_digest (from the tar's index.json; null if absent), size (bytes),
    key, arch, built_at, build_seconds (and for the agent: build_log, tools_from_cache, cached_steps; for
    agent-broken: broken_tool). The hashed inputs are kept next to each tar in <name>-<key>.json.
    """
    wanted = list(only or NAMES)
    if "agent-broken" in wanted and "agent" not in wanted:
        wanted.append("agent")
    started = time.monotonic()
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    remove_dead_work_dirs()
    work = Path(tempfile.mkdtemp(prefix=f"e2e-images-{os.getpid()}-", dir=CACHE_DIR))
    try:
        plan = compute_keys(work)
        keys = plan["keys"]

        def hits() -> Dict[str, Dict]:
            found = {n: cached(n, keys[n]) for n in wanted}
            return {n: m for n, m in found.items() if m is not None and not force}

        result = hits()
        built: List[str] = []
        # One lock per group: the dind image never waits behind a cold agent build.
        if "dind" in wanted and "dind" not in result:
            with locked(LOCK_TIMEOUT, "dind", "building dind"):
                found = hits()
                if "dind" in found:
                    result["dind"] = found["dind"]
                else:
                    log(f"dind: building (key {keys['dind']})")
                    result["dind"] = build_dind(keys["dind"], plan["inputs"]["dind"], work)
                    built.append("dind")
        agent_group = [n for n in ("agent", "agent-broken") if n in wanted]
        if any(n not in result for n in agent_group):
            with locked(LOCK_TIMEOUT, "agent", f"building {', '.join(n for n in agent_group if n not in result)}"):
                result.update({n: m for n, m in hits().items() if n in agent_group})
                missing = [n for n in agent_group if n not in result]
                if missing:
                    log(f"{', '.join(missing)}: building (key {keys['agent']})")
                    ensure_node_image(BUILDER_RECIPE)
                    if "agent" in missing:
                        made = build_agents(
                            agent_key=keys["agent"],
                            broken_key=keys["agent-broken"],
                            inputs=plan["inputs"],
                            context=plan["context"],
                            base_tar=base_archive(),
                            build_args=plan["build_args"],
                            work=work,
                            want_broken="agent-broken" in wanted,
                        )
                    else:
                        made = rebuild_broken_only(keys, plan["inputs"], result["agent"], work)
                    result.update(made)
                    built += list(made)
        seconds = round(time.monotonic() - started, 1)
        if not built:
            record_timing(image="all", cache_hit=True, seconds=seconds)
        return {
            # The inputs stay in the cache's <name>-<key>.json; callers need paths and references.
            "images": {n: {k: v for k, v in result[n].items() if k != "inputs"} for n in NAMES if n in result},
            "cache_dir": str(CACHE_DIR),
            "built": built,
            "seconds": seconds,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def rebuild_broken_only(keys: Dict[str, str], inputs: Dict[str, Any], agent: Dict, work: Path) -> Dict[str, Dict]:
    """The agent tar is cached, the broken one not: derive it on the host's engine from the agent tar."""
    started = time.monotonic()
    run(["docker", "load", "-i", agent["tar"]], "loading the cached agent image into the host's engine", STEP_TIMEOUT)
    ctx = work / "broken"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(BROKEN_DOCKERFILE.format(agent=agent["ref"], tool=BROKEN_TOOL))
    ref = f"{REPOSITORY}/agent-broken:{keys['agent-broken']}"
    run(
        ["docker", "build", "--tag", ref, str(ctx)],
        "building the broken agent image",
        STEP_TIMEOUT,
        env=dict(os.environ, DOCKER_BUILDKIT="0"),
    )
    run(["docker", "save", "-o", str(work / "agent-broken.tar"), ref], "saving the broken agent image", STEP_TIMEOUT)
    subprocess.run(["docker", "rmi", ref], capture_output=True, timeout=120, check=False)
    seconds = time.monotonic() - started
    record_timing(image="agent-broken", key=keys["agent-broken"], seconds=round(seconds, 1))
    return {
        "agent-broken": store(
            "agent-broken",
            keys["agent-broken"],
            work / "agent-broken.tar",
            inputs["agent-broken"],
            seconds,
            broken_tool=BROKEN_TOOL,
        )
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--json", metavar="FILE", help="also write the result to FILE")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(NAMES)}")
    parser.add_argument("--force", action="store_true", help="rebuild even when cached")
    args = parser.parse_args()
    only = [n for n in (args.only or "").split(",") if n] or None
    bad = [n for n in only or [] if n not in NAMES]
    if bad:
        parser.error(f"unknown image(s) {bad}; known: {list(NAMES)}")
    # A killed caller (pytest timeout, Ctrl-C) still removes its builder container and volumes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        result = ensure_images(only, args.force)
    except E2EImageError as exc:
        print(f"e2e-images: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(result, indent=2, sort_keys=True)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
