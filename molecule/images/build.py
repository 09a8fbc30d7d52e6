#!/usr/bin/env python3
"""Build the Molecule test-node images locally, without pulling from any registry.

Each image in recipes.yml is debootstrapped from the Debian mirror that this machine's apt already
uses, imported into the local Docker engine with systemd as its command, and tagged twice:
``raibid-node:<name>-<hash>`` and ``raibid-node:<name>`` (the alias scenarios use). An image whose
hashed tag exists is not rebuilt. Foreign architectures (arm64 on x86_64) are built under qemu-user
emulation; binfmt_misc is set up here when needed.

The hash (``image_hash``) covers what shapes the image: the recipe entry (suite, packages, kind, env),
the architecture, the Debian mirror URL debootstrap fetches from, and the bytes of this script, so a
changed build script rebuilds every image instead of testing old ones. Not covered: the host's
debootstrap and qemu versions, and the suite's contents on the day (a point release does not rebuild;
``--force`` does).

Every external command is bounded; one that runs past its limit is stopped (SIGTERM, then SIGKILL, to
its process group) and the build fails naming it, e.g. "debootstrap of trixie-arm64 did not finish in
1800 s". Limits in seconds, each overridable with ``RAIBID_NODE_<STEP>_TIMEOUT``:
DEBOOTSTRAP 1800 (arm64 under qemu takes up to ~8 min here, amd64 ~1 min), IMPORT 900 (tar | docker
import), SAVE 900 (docker save), APT 900 (installing debootstrap/qemu), BINFMT 120 (binfmt_misc set-up),
DOCKER 120 (docker image inspect/tag), LOCK 3600 (waiting for another build.py of the same image).

Usage: build.py [--list] [--force] [NAME ...]     (no NAME: every image)
       build.py --archive NAME                    build if needed, write `docker save` of it to
                                                  .cache/images/NAME-<hash>.tar once, print that path
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Mapping, Optional, Union

import yaml

SCRIPT = Path(__file__).resolve()
HERE = SCRIPT.parent
REPOSITORY = "raibid-node"
WORK_ROOT = Path(os.environ.get("RAIBID_NODE_BUILD_DIR", "/var/tmp/raibid-node-build"))
HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
QEMU_BINFMT = {"arm64": "qemu-aarch64", "amd64": "qemu-x86_64"}

# Seconds each kind of external command may take (module docstring); RAIBID_NODE_<STEP>_TIMEOUT overrides.
TIMEOUTS = {
    "DEBOOTSTRAP": 1800,
    "IMPORT": 900,
    "SAVE": 900,
    "APT": 900,
    "BINFMT": 120,
    "DOCKER": 120,
    "LOCK": 3600,
}

# Units that have nothing to do inside a container and only make systemd report failures.
MASKED_UNITS = [
    "getty@tty1.service",
    "serial-getty@console.service",
    "systemd-udevd.service",
    "systemd-udevd-control.socket",
    "systemd-udevd-kernel.socket",
    "systemd-firstboot.service",
    "systemd-modules-load.service",
    "sys-kernel-config.mount",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "systemd-remount-fs.service",
]


class NodeImageError(RuntimeError):
    """A build step failed or ran past its limit; the message names it."""


def log(msg: str) -> None:
    print(f"[node-images] {msg}", flush=True)


def step_timeout(step: str) -> int:
    """The limit in seconds for a kind of step (TIMEOUTS), or RAIBID_NODE_<STEP>_TIMEOUT."""
    value = os.environ.get(f"RAIBID_NODE_{step}_TIMEOUT", "").strip()
    if not value:
        return TIMEOUTS[step]
    if not value.isdigit() or int(value) == 0:
        raise NodeImageError(f"RAIBID_NODE_{step}_TIMEOUT: a number of seconds > 0, not {value!r}")
    return int(value)


def _stop(proc: subprocess.Popen) -> None:
    """End a command started in its own session: SIGTERM to its group (debootstrap unmounts then), SIGKILL."""
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 30)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)


def run(
    cmd: list[str],
    what: str,
    step: str,
    *,
    check: bool = True,
    capture: bool = False,
    stdin: Optional[IO[bytes]] = None,
    stdout: Union[int, IO[Any], None] = None,
    env: Optional[Mapping[str, str]] = None,
) -> subprocess.CompletedProcess:
    """Run cmd within the limit of ``step``; raise NodeImageError naming ``what`` when it fails or hangs.

    The command's stdout goes to stderr unless ``stdout`` says otherwise: build.py's stdout carries only its
    own lines (--archive prints a path there).
    """
    limit = step_timeout(step)
    if stdout is None:
        stdout = 2
    proc = subprocess.Popen(
        cmd,
        stdin=stdin,
        stdout=subprocess.PIPE if capture else stdout,
        stderr=subprocess.PIPE if capture else None,
        env=None if env is None else dict(env),
        text=capture,
        start_new_session=True,  # so that a timeout stops the command's children too
    )
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        _stop(proc)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        raise NodeImageError(
            f"{what} did not finish in {limit} s (stopped; RAIBID_NODE_{step}_TIMEOUT raises the limit)"
        ) from None
    except BaseException:
        _stop(proc)
        raise
    if check and proc.returncode != 0:
        detail = f": {err.strip()[-2000:]}" if err and err.strip() else ""
        raise NodeImageError(f"{what} failed (rc={proc.returncode}, {' '.join(cmd[:4])} ...){detail}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def load_recipes() -> dict:
    with open(HERE / "recipes.yml", encoding="utf-8") as fh:
        return yaml.safe_load(fh)["images"]


def image_hash(recipe: Mapping[str, Any], *, arch: str, mirror: str, script: bytes) -> str:
    """The tag hash of an image: its recipe entry (suite included), architecture, Debian mirror and build script."""
    blob = json.dumps(
        {
            "recipe": recipe,
            "arch": arch,
            "mirror": mirror.rstrip("/"),
            "script": hashlib.sha256(script).hexdigest(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def recipe_hash(recipe: dict) -> str:
    """``image_hash`` of a recipe as this machine would build it (its mirror, this script)."""
    return image_hash(recipe, arch=recipe.get("arch", HOST_ARCH), mirror=debian_mirror(), script=SCRIPT.read_bytes())


def image_exists(ref: str) -> bool:
    proc = run(["docker", "image", "inspect", ref], f"docker image inspect {ref}", "DOCKER", check=False, capture=True)
    return proc.returncode == 0


@functools.cache
def debian_mirror() -> str:
    """The Debian archive URI this machine's apt uses (never hard-coded here)."""
    if os.environ.get("RAIBID_DEBIAN_MIRROR"):
        return os.environ["RAIBID_DEBIAN_MIRROR"]
    texts = []
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if path.is_file() and path.suffix in ("", ".list", ".sources"):
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
    for text in texts:
        for uri in re.findall(r"^\s*URIs:\s*(\S+)", text, re.M) + re.findall(
            r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s", text, re.M
        ):
            if uri.rstrip("/").endswith("/debian"):
                return uri
    sys.exit(
        "node-images: no Debian archive URI found in /etc/apt sources; "
        "set RAIBID_DEBIAN_MIRROR to the Debian mirror URL (e.g. http://<mirror>/debian)"
    )


def ensure_tools(arch: str) -> None:
    missing = [t for t in ("debootstrap", "docker") if shutil.which(t) is None]
    packages = []
    if "debootstrap" in missing:
        packages.append("debootstrap")
    if arch != HOST_ARCH and shutil.which(f"{QEMU_BINFMT[arch]}-static") is None:
        packages += ["qemu-user-static", "binfmt-support"]
    if "docker" in missing:
        sys.exit("node-images: docker CLI missing; run tests/testbed/ensure-docker.sh first")
    if packages:
        log(f"installing {' '.join(packages)} with apt-get")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["apt-get", "update", "-qq"], "apt-get update", "APT", env=env)
        run(["apt-get", "install", "-y", "-qq", *packages], f"apt-get install {' '.join(packages)}", "APT", env=env)
    if arch != HOST_ARCH:
        ensure_binfmt(arch)


def ensure_binfmt(arch: str) -> None:
    entry = Path("/proc/sys/fs/binfmt_misc") / QEMU_BINFMT[arch]
    if not Path("/proc/sys/fs/binfmt_misc/register").exists():
        log("mounting binfmt_misc")
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc"], "mounting binfmt_misc", "BINFMT")
    if not entry.exists() or "enabled" not in entry.read_text():
        log(f"enabling binfmt {QEMU_BINFMT[arch]}")
        run(["update-binfmts", "--enable", QEMU_BINFMT[arch]], f"update-binfmts --enable {QEMU_BINFMT[arch]}", "BINFMT")
    if not entry.exists():
        sys.exit(f"node-images: binfmt entry {entry} still missing; cannot run {arch} binaries")


def build(name: str, recipe: dict, force: bool) -> None:
    # One builder per image at a time: parallel Molecule runs may ask for the same missing image.
    WORK_ROOT.mkdir(parents=True, exist_ok=True)
    with open(WORK_ROOT / f"{name}.lock", "w", encoding="utf-8") as lock:
        wait_for_lock(lock, name)
        _build_locked(name, recipe, force)


def wait_for_lock(lock: IO[str], name: str) -> None:
    """flock the image's lock file, waiting at most the LOCK limit for another build.py of it."""
    limit = step_timeout("LOCK")
    deadline = time.monotonic() + limit
    waiting = False
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise NodeImageError(
                    f"another build of {name} held {lock.name} for more than {limit} s "
                    "(RAIBID_NODE_LOCK_TIMEOUT raises the limit)"
                ) from None
            if not waiting:
                log(f"{name}: waiting for another build of it ({lock.name})")
                waiting = True
            time.sleep(1)


def _build_locked(name: str, recipe: dict, force: bool) -> None:
    digest = recipe_hash(recipe)
    hashed, alias = f"{REPOSITORY}:{name}-{digest}", f"{REPOSITORY}:{name}"
    if image_exists(hashed) and not force:
        run(["docker", "tag", hashed, alias], f"docker tag {hashed} {alias}", "DOCKER")
        log(f"{alias}: up to date ({hashed})")
        return
    arch = recipe.get("arch", HOST_ARCH)
    ensure_tools(arch)
    WORK_ROOT.mkdir(parents=True, exist_ok=True)
    rootfs = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=WORK_ROOT))
    started = time.monotonic()
    try:
        cmd = [
            "debootstrap",
            "--variant=minbase",
            f"--arch={arch}",
            f"--include={','.join(recipe['packages'])}",
            recipe["suite"],
            str(rootfs),
            debian_mirror(),
        ]
        log(f"{alias}: {' '.join(cmd)}")
        run(cmd, f"debootstrap of {name}", "DEBOOTSTRAP", stdout=subprocess.DEVNULL)
        base = recipe.get("kind", "node") == "base"
        prepare_base_rootfs(rootfs) if base else prepare_rootfs(rootfs)
        log(f"{alias}: importing into Docker")
        docker_import(rootfs, [*import_changes(recipe, digest, name), "-", hashed], name)
        run(["docker", "tag", hashed, alias], f"docker tag {hashed} {alias}", "DOCKER")
    finally:
        remove_rootfs(rootfs)
    elapsed = time.monotonic() - started
    log(f"{alias}: built in {elapsed:.0f}s ({hashed})")
    record_timing(name, hashed, elapsed)


def docker_import(rootfs: Path, import_args: list[str], name: str) -> None:
    """``tar -C rootfs -c . | docker import ARGS``, both within the IMPORT limit."""
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE, start_new_session=True)
    assert tar.stdout is not None
    try:
        run(
            ["docker", "import", *import_args],
            f"docker import of {name}",
            "IMPORT",
            stdin=tar.stdout,
            stdout=subprocess.DEVNULL,
        )
        try:
            rc = tar.wait(60)  # docker import has read the whole stream: tar is done or about to be
        except subprocess.TimeoutExpired:
            raise NodeImageError(f"tar of {rootfs} for {name} did not exit 60 s after docker import") from None
    except BaseException:
        _stop(tar)
        raise
    finally:
        tar.stdout.close()
    if rc != 0:
        raise NodeImageError(f"tar of {rootfs} for {name} failed (rc={rc})")


def mounts_below(directory: Path, mounts: Path = Path("/proc/self/mounts")) -> list[str]:
    """Mount points under ``directory`` (from ``mounts``), deepest first."""
    prefix = str(directory) + "/"
    with mounts.open(encoding="utf-8") as fh:
        points = [fields[1] for fields in (line.split() for line in fh) if len(fields) > 1]
    return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)


def remove_rootfs(rootfs: Path) -> None:
    """Delete the build tree; first detach what a stopped debootstrap left mounted in it (/proc, /sys, a bound
    /dev), and never recurse into a mount that is still there."""
    for point in mounts_below(rootfs):
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(["umount", "-l", point], check=False, capture_output=True, timeout=60)
    left = mounts_below(rootfs)
    if left:
        log(f"not deleting {rootfs}: still mounted below it: {', '.join(left)}")
        return
    shutil.rmtree(rootfs, ignore_errors=True)


def save_archive(name: str, recipe: dict) -> Path:
    """``docker save`` of the image to .cache/images/<name>-<hash>.tar (once per recipe hash)."""
    digest = recipe_hash(recipe)
    directory = HERE.parent.parent / ".cache" / "images"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}-{digest}.tar"
    if not path.exists():
        for stale in directory.glob(f"{name}-*.tar"):
            stale.unlink()
        partial = path.with_suffix(".tar.part")
        run(
            ["docker", "save", "--output", str(partial), f"{REPOSITORY}:{name}"],
            f"docker save of {name}",
            "SAVE",
            stdout=subprocess.DEVNULL,
        )
        partial.rename(path)
    return path


def record_timing(name: str, ref: str, seconds: float) -> None:
    """Append the build time to .cache/node-image-timings.jsonl (read by benchmarks/bench.py)."""
    path = HERE.parent.parent / ".cache" / "node-image-timings.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"image": name, "ref": ref, "seconds": round(seconds, 1), "at": time.time()}) + "\n")


def import_changes(recipe: dict, digest: str, name: str) -> list[str]:
    """Dockerfile instructions for docker import: a systemd node, or a plain base image (kind: base)."""
    label = f"LABEL org.raibid.node.recipe={digest} org.raibid.node.name={name}"
    if recipe.get("kind", "node") == "base":
        changes = ['CMD ["/bin/bash"]', *(f"ENV {k}={v}" for k, v in sorted(recipe.get("env", {}).items())), label]
    else:
        changes = ['CMD ["/lib/systemd/systemd"]', "ENV container=docker", label]
    return [arg for change in changes for arg in ("-c", change)]


def prepare_base_rootfs(rootfs: Path) -> None:
    """A plain base image (no init): lean apt settings, no package lists or archives kept."""
    (rootfs / "etc/apt/apt.conf.d/90raibid-base").write_text(
        'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\nAcquire::Retries "3";\n'
    )
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (rootfs / sub).glob("*"):
            if entry.is_file():
                entry.unlink()


def prepare_rootfs(rootfs: Path) -> None:
    """Make the tree boot cleanly as a container with systemd as PID 1."""
    (rootfs / "etc/machine-id").write_text("")
    for unit in MASKED_UNITS:
        link = rootfs / "etc/systemd/system" / unit
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to("/dev/null")
    # apt inside a node must not try to start services against a missing policy, and must be lean.
    (rootfs / "etc/apt/apt.conf.d/90raibid-node").write_text(
        'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\nAcquire::Retries "3";\n'
    )
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (rootfs / sub).glob("*"):
            if entry.is_file():
                entry.unlink()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("names", nargs="*", help="images to build (default: all)")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    parser.add_argument("--list", action="store_true", help="print name, hashed tag and state")
    parser.add_argument("--archive", action="store_true", help="save the image as an archive and print its path")
    args = parser.parse_args()
    try:
        return _main(args)
    except NodeImageError as exc:
        print(f"node-images: {exc}", file=sys.stderr, flush=True)
        return 1


def _main(args: argparse.Namespace) -> int:
    recipes = load_recipes()
    unknown = [n for n in args.names if n not in recipes]
    if unknown:
        sys.exit(f"node-images: unknown image(s) {unknown}; known: {sorted(recipes)}")
    names = args.names or sorted(recipes)
    if args.list:
        for name in names:
            ref = f"{REPOSITORY}:{name}-{recipe_hash(recipes[name])}"
            print(f"{name}\t{ref}\t{'present' if image_exists(ref) else 'missing'}")
        return 0
    if args.archive:
        if len(args.names) != 1:
            sys.exit("node-images: --archive takes exactly one NAME")
        name = args.names[0]
        with contextlib.redirect_stdout(sys.stderr):
            build(name, recipes[name], args.force)
        print(save_archive(name, recipes[name]))
        return 0
    for name in names:
        build(name, recipes[name], args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
