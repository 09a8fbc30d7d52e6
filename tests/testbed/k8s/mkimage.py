#!/usr/bin/python3
"""Write a one-layer image FROM scratch as a docker-archive tar (what `docker save` writes and what
`ctr images import` and `docker load` read), from a root file system directory. No Docker engine,
no registry: the test bed's pause and busybox images are made this way by build.sh, and the tests'
own busybox images through tests/support.py (busybox_image), which imports this file.

Usage: mkimage.py --tag REPO:TAG --out FILE.tar [--entrypoint JSON] [--cmd JSON] [--busybox PATH] ROOTFS_DIR
  --busybox PATH   first lay out ROOTFS_DIR around the static busybox PATH (busybox_rootfs: every
                   applet it lists, /tmp, root and nobody), as the test bed's busybox image has it
Standard library only (runs with the system python3). The output is reproducible: fixed mtimes,
root ownership, sorted entries.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import tarfile
from typing import Optional, Sequence

EPOCH = 0
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"


def normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = EPOCH
    return info


def busybox_rootfs(busybox: str, rootfs: str, applets: Optional[Sequence[str]] = None) -> None:
    """Lay out a root file system around a static busybox: bin/busybox, a bin/ link per applet (every
    one `busybox --list` names when `applets` is None), a world-writable /tmp, and root and nobody in
    etc/passwd and etc/group."""
    bin_dir = os.path.join(rootfs, "bin")
    os.makedirs(bin_dir, exist_ok=True)
    target = os.path.join(bin_dir, "busybox")
    shutil.copyfile(busybox, target)
    os.chmod(target, 0o755)
    if applets is None:
        listed = subprocess.run([target, "--list"], capture_output=True, text=True, check=True, timeout=30)
        applets = listed.stdout.split()
    for applet in applets:
        link = os.path.join(bin_dir, applet)
        if applet != "busybox" and not os.path.lexists(link):
            os.symlink("busybox", link)
    tmp = os.path.join(rootfs, "tmp")
    os.makedirs(tmp, exist_ok=True)
    os.chmod(tmp, 0o1777)
    os.makedirs(os.path.join(rootfs, "etc"), exist_ok=True)
    with open(os.path.join(rootfs, "etc", "passwd"), "w", encoding="utf-8") as fh:
        fh.write(PASSWD)
    with open(os.path.join(rootfs, "etc", "group"), "w", encoding="utf-8") as fh:
        fh.write(GROUP)


def layer_tar(rootfs: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for top, dirs, files in os.walk(rootfs):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                path = os.path.join(top, name)
                arcname = os.path.relpath(path, rootfs)
                tar.add(path, arcname=arcname, recursive=False, filter=normalise)
    return buf.getvalue()


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = normalise(tarfile.TarInfo(name))
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def write_image(rootfs: str, tag: str, out: str, entrypoint: Optional[list] = None, cmd: Optional[list] = None) -> str:
    """Write `rootfs` as the one layer of image `tag` to the docker-archive `out`; returns a summary
    line (tag, config digest, layer size)."""
    layer = layer_tar(rootfs)
    diff_id = hashlib.sha256(layer).hexdigest()
    created = "1970-01-01T00:00:00Z"
    container_config = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "WorkingDir": "/"}
    if entrypoint is not None:
        container_config["Entrypoint"] = entrypoint
    if cmd is not None:
        container_config["Cmd"] = cmd
    config = {
        "architecture": ARCH,
        "os": "linux",
        "created": created,
        "config": container_config,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        "history": [{"created": created, "created_by": "raibid test bed mkimage.py"}],
    }
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": [tag], "Layers": [f"{diff_id}/layer.tar"]}]
    repo, _, version = tag.rpartition(":")
    tmp = out + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dir_info = normalise(tarfile.TarInfo(diff_id))
        dir_info.type = tarfile.DIRTYPE
        dir_info.mode = 0o755
        tar.addfile(dir_info)
        add_bytes(tar, f"{diff_id}/VERSION", b"1.0")
        add_bytes(tar, f"{diff_id}/layer.tar", layer)
        add_bytes(tar, config_name, config_bytes)
        add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
        add_bytes(tar, "repositories", json.dumps({repo: {version: diff_id}}).encode())
    os.replace(tmp, out)
    return f"{tag} sha256:{hashlib.sha256(config_bytes).hexdigest()} {len(layer)} bytes"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tag", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--entrypoint", type=json.loads, default=None)
    parser.add_argument("--cmd", type=json.loads, default=None)
    parser.add_argument("--busybox", default=None, help="a static busybox to lay out ROOTFS_DIR around first")
    parser.add_argument("rootfs")
    args = parser.parse_args()
    if args.busybox:
        busybox_rootfs(args.busybox, args.rootfs)
    print(write_image(args.rootfs, args.tag, args.out, args.entrypoint, args.cmd))


if __name__ == "__main__":
    main()
