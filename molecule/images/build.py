#!/usr/bin/env python3
"""Build the Molecule test-node images locally, without pulling from any registry.

Each image in recipes.yml is debootstrapped from the Debian mirror that this machine's apt already
uses, imported into the local Docker engine with systemd as its command, and tagged twice:
``raibid-node:<name>-<hash>`` (the recipe hash) and ``raibid-node:<name>`` (the alias scenarios use).
An image whose hashed tag exists is not rebuilt. Foreign architectures (arm64 on x86_64) are built
under qemu-user emulation; binfmt_misc is set up here when needed.

Usage: build.py [--list] [--force] [NAME ...]     (no NAME: every image)
       build.py --archive NAME                    build if needed, write `docker save` of it to
                                                  .cache/images/NAME-<hash>.tar once, print that path
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPOSITORY = "raibid-node"
# Bump when the build steps below change in a way that changes the image.
BUILD_FORMAT = 2
WORK_ROOT = Path(os.environ.get("RAIBID_NODE_BUILD_DIR", "/var/tmp/raibid-node-build"))
HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
QEMU_BINFMT = {"arm64": "qemu-aarch64", "amd64": "qemu-x86_64"}

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


def log(msg: str) -> None:
    print(f"[node-images] {msg}", flush=True)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kw)


def load_recipes() -> dict:
    with open(HERE / "recipes.yml", encoding="utf-8") as fh:
        return yaml.safe_load(fh)["images"]


def recipe_hash(recipe: dict) -> str:
    blob = json.dumps({"format": BUILD_FORMAT, "recipe": recipe}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def image_exists(ref: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", ref], check=False, capture_output=True).returncode == 0


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
        run(["apt-get", "update", "-qq"], env=env)
        run(["apt-get", "install", "-y", "-qq", *packages], env=env)
    if arch != HOST_ARCH:
        ensure_binfmt(arch)


def ensure_binfmt(arch: str) -> None:
    entry = Path("/proc/sys/fs/binfmt_misc") / QEMU_BINFMT[arch]
    if not Path("/proc/sys/fs/binfmt_misc/register").exists():
        log("mounting binfmt_misc")
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc"])
    if not entry.exists() or "enabled" not in entry.read_text():
        log(f"enabling binfmt {QEMU_BINFMT[arch]}")
        run(["update-binfmts", "--enable", QEMU_BINFMT[arch]])
    if not entry.exists():
        sys.exit(f"node-images: binfmt entry {entry} still missing; cannot run {arch} binaries")


def build(name: str, recipe: dict, force: bool) -> None:
    # One builder per image at a time: parallel Molecule runs may ask for the same missing image.
    WORK_ROOT.mkdir(parents=True, exist_ok=True)
    with open(WORK_ROOT / f"{name}.lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _build_locked(name, recipe, force)


def _build_locked(name: str, recipe: dict, force: bool) -> None:
    digest = recipe_hash(recipe)
    hashed, alias = f"{REPOSITORY}:{name}-{digest}", f"{REPOSITORY}:{name}"
    if image_exists(hashed) and not force:
        run(["docker", "tag", hashed, alias])
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
        run(cmd, stdout=subprocess.DEVNULL)
        base = recipe.get("kind", "node") == "base"
        prepare_base_rootfs(rootfs) if base else prepare_rootfs(rootfs)
        log(f"{alias}: importing into Docker")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        run(
            [
                "docker",
                "import",
                *import_changes(recipe, digest, name),
                "-",
                hashed,
            ],
            stdin=tar.stdout,
            stdout=subprocess.DEVNULL,
        )
        if tar.wait() != 0:
            sys.exit(f"node-images: tar of {rootfs} failed")
        run(["docker", "tag", hashed, alias])
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    elapsed = time.monotonic() - started
    log(f"{alias}: built in {elapsed:.0f}s ({hashed})")
    record_timing(name, hashed, elapsed)


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
        run(["docker", "save", "--output", str(partial), f"{REPOSITORY}:{name}"], stdout=subprocess.DEVNULL)
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
