#!/usr/bin/python3
"""Write a one-layer image FROM scratch as a docker-archive tar (what `docker save` writes and what
`ctr images import` and `docker load` read), from a root file system directory. No Docker engine,
no registry: the test bed's pause and busybox images are made this way by build.sh.

Usage: mkimage.py --tag REPO:TAG --out FILE.tar [--entrypoint JSON] [--cmd JSON] ROOTFS_DIR
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
import tarfile

EPOCH = 0
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = EPOCH
    return info


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tag", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--entrypoint", type=json.loads, default=None)
    parser.add_argument("--cmd", type=json.loads, default=None)
    parser.add_argument("rootfs")
    args = parser.parse_args()

    layer = layer_tar(args.rootfs)
    diff_id = hashlib.sha256(layer).hexdigest()
    created = "1970-01-01T00:00:00Z"
    container_config = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "WorkingDir": "/"}
    if args.entrypoint is not None:
        container_config["Entrypoint"] = args.entrypoint
    if args.cmd is not None:
        container_config["Cmd"] = args.cmd
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
    manifest = [{"Config": config_name, "RepoTags": [args.tag], "Layers": [f"{diff_id}/layer.tar"]}]
    repo, _, tag = args.tag.rpartition(":")
    tmp = args.out + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dir_info = normalise(tarfile.TarInfo(diff_id))
        dir_info.type = tarfile.DIRTYPE
        dir_info.mode = 0o755
        tar.addfile(dir_info)
        add_bytes(tar, f"{diff_id}/VERSION", b"1.0")
        add_bytes(tar, f"{diff_id}/layer.tar", layer)
        add_bytes(tar, config_name, config_bytes)
        add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
        add_bytes(tar, "repositories", json.dumps({repo: {tag: diff_id}}).encode())
    os.replace(tmp, args.out)
    print(f"{args.tag} sha256:{hashlib.sha256(config_bytes).hexdigest()} {len(layer)} bytes")


if __name__ == "__main__":
    main()
