"""roles/agent_image/files/pack_context.py: the agent image's build context as one reproducible tarball."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Dict, List

import pytest

# The script ships with the role (the collection root is four levels up, in a checkout and in
# ansible-test's copy alike); it is run by path, not imported as a package.
SCRIPT = Path(__file__).resolve().parents[4] / "roles" / "agent_image" / "files" / "pack_context.py"
_spec = importlib.util.spec_from_file_location("agent_image_pack_context", SCRIPT)
pack_context = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = pack_context  # dataclasses look their module up while the class is made
_spec.loader.exec_module(pack_context)

PEM_A = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
PEM_B = "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n"
EXCLUDE = ["target", ".git", "README.md"]


def write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """A small image/ like the collection's, with what the excludes must leave out."""
    root = tmp_path / "image"
    write(root / "Dockerfile", "FROM scratch\n")
    write(root / ".dockerignore", "README.md\n")
    write(root / "README.md", "not in the context\n")
    write(root / "ca-certificates" / "README", "the extra CA certificates go here\n")
    write(root / "tools" / "cargo-install.sh", "#!/bin/sh\n", mode=0o775)
    write(root / "home" / "cargo-config.toml", "[net]\n", mode=0o666)
    write(root / "agent" / "Cargo.toml", "[package]\nname = 'bundled'\n")
    write(root / "agent" / "src" / "main.rs", "fn main() {}\n")
    write(root / "agent" / "target" / "debug" / "raibid-agent", "build output\n")
    write(root / "agent" / ".git" / "HEAD", "ref: refs/heads/main\n")
    return root


def pack(tmp_path: Path, image: Path, **settings) -> Dict:
    settings.setdefault("exclude", EXCLUDE)
    return pack_context.pack(str(tmp_path / "cache" / "context.tar"), str(image), **settings)


def members(tar_path: Path) -> List[tarfile.TarInfo]:
    with tarfile.open(tar_path) as tar:
        return tar.getmembers()


def names(tar_path: Path) -> List[str]:
    return [m.name for m in members(tar_path)]


def read(tar_path: Path, name: str) -> str:
    with tarfile.open(tar_path) as tar:
        return tar.extractfile(name).read().decode()


def test_same_inputs_give_the_same_bytes_and_leave_the_tarball_untouched(tmp_path: Path, image: Path) -> None:
    first = pack(tmp_path, image, ca_files={"a.crt": PEM_A})
    dest = tmp_path / "cache" / "context.tar"
    data = dest.read_bytes()
    os.utime(dest, ns=(1_000_000_000, 1_000_000_000))
    inode = dest.stat().st_ino

    second = pack(tmp_path, image, ca_files={"a.crt": PEM_A})

    assert first["changed"] is True
    assert second["changed"] is False
    assert dest.read_bytes() == data
    assert dest.stat().st_ino == inode
    assert dest.stat().st_mtime_ns == 1_000_000_000
    assert [p.name for p in dest.parent.iterdir()] == ["context.tar"]  # no temporary file left


def test_the_checksums_are_those_of_the_tarball_and_of_its_dockerfile(tmp_path: Path, image: Path) -> None:
    result = pack(tmp_path, image)
    unchanged = pack(tmp_path, image)
    tar_bytes = (tmp_path / "cache" / "context.tar").read_bytes()

    assert result["sha1"] == hashlib.sha1(tar_bytes).hexdigest()
    assert result["dockerfile_sha1"] == hashlib.sha1(b"FROM scratch\n").hexdigest()
    assert read(tmp_path / "cache" / "context.tar", "./Dockerfile") == "FROM scratch\n"
    # A tarball left in place reports the same checksums as the one that was written.
    assert (unchanged["changed"], unchanged["sha1"], unchanged["dockerfile_sha1"]) == (
        False,
        result["sha1"],
        result["dockerfile_sha1"],
    )


def test_a_context_without_a_dockerfile_has_no_dockerfile_checksum(tmp_path: Path, image: Path) -> None:
    (image / "Dockerfile").unlink()

    assert pack(tmp_path, image)["dockerfile_sha1"] == ""


def test_the_bytes_do_not_depend_on_file_times(tmp_path: Path, image: Path) -> None:
    pack(tmp_path, image)
    data = (tmp_path / "cache" / "context.tar").read_bytes()
    os.utime(image / "Dockerfile", (12345, 12345))

    assert pack(tmp_path, image)["changed"] is False
    assert (tmp_path / "cache" / "context.tar").read_bytes() == data


def test_a_changed_file_replaces_the_tarball(tmp_path: Path, image: Path) -> None:
    pack(tmp_path, image)
    write(image / "Dockerfile", "FROM scratch\nRUN true\n")

    assert pack(tmp_path, image)["changed"] is True
    assert read(tmp_path / "cache" / "context.tar", "./Dockerfile") == "FROM scratch\nRUN true\n"


def test_the_order_of_the_ca_certificates_changes_nothing(tmp_path: Path, image: Path) -> None:
    pack(tmp_path, image, ca_files={"a.crt": PEM_A, "b.crt": PEM_B})
    data = (tmp_path / "cache" / "context.tar").read_bytes()

    assert pack(tmp_path, image, ca_files={"b.crt": PEM_B, "a.crt": PEM_A})["changed"] is False
    assert (tmp_path / "cache" / "context.tar").read_bytes() == data


def test_ca_certificates_join_the_image_directory_of_them(tmp_path: Path, image: Path) -> None:
    pack(tmp_path, image, ca_files={"b.crt": PEM_B, "a.crt": PEM_A})
    tar_path = tmp_path / "cache" / "context.tar"
    listed = names(tar_path)

    assert [n for n in listed if n.startswith("./ca-certificates")] == [
        "./ca-certificates",
        "./ca-certificates/README",
        "./ca-certificates/a.crt",
        "./ca-certificates/b.crt",
    ]
    assert read(tar_path, "./ca-certificates/a.crt") == PEM_A
    modes = {m.name: m.mode for m in members(tar_path)}
    assert modes["./ca-certificates/a.crt"] == 0o644
    assert modes["./ca-certificates"] == 0o755


def test_a_certificate_no_longer_listed_is_gone(tmp_path: Path, image: Path) -> None:
    pack(tmp_path, image, ca_files={"a.crt": PEM_A, "b.crt": PEM_B})

    assert pack(tmp_path, image, ca_files={"a.crt": PEM_A})["changed"] is True
    listed = names(tmp_path / "cache" / "context.tar")
    assert "./ca-certificates/a.crt" in listed
    assert "./ca-certificates/b.crt" not in listed


def test_certificates_without_a_ca_directory_in_image_get_one(tmp_path: Path, image: Path) -> None:
    (image / "ca-certificates" / "README").unlink()
    (image / "ca-certificates").rmdir()
    pack(tmp_path, image, ca_files={"a.crt": PEM_A})

    modes = {m.name: m.mode for m in members(tmp_path / "cache" / "context.tar")}
    assert modes["./ca-certificates"] == 0o755
    assert modes["./ca-certificates/a.crt"] == 0o644


def test_the_bundled_agent_is_packed_without_build_output_vcs_data_or_readmes(tmp_path: Path, image: Path) -> None:
    pack(tmp_path, image)
    listed = names(tmp_path / "cache" / "context.tar")

    assert "./agent/Cargo.toml" in listed
    assert "./agent/src/main.rs" in listed
    assert not [n for n in listed if "/target" in n or "/.git" in n or n.endswith("README.md")]
    assert "./.dockerignore" in listed  # ".git" is a whole name, not a prefix


def test_another_agent_source_replaces_the_bundled_one(tmp_path: Path, image: Path) -> None:
    other = tmp_path / "agent-source"
    write(other / "Cargo.toml", "[package]\nname = 'other'\n")
    write(other / "src" / "lib.rs", "\n")
    write(other / "README.md", "left out\n")
    write(other / ".git" / "HEAD", "left out\n")
    write(other / "target" / "x", "left out\n")
    (other / "tools").mkdir()  # a name image/ has too: only image/'s top-level agent is replaced
    other.chmod(0o775)
    pack(tmp_path, image, agent_dir=str(other))
    tar_path = tmp_path / "cache" / "context.tar"

    assert [n for n in names(tar_path) if n.startswith("./agent")] == [
        "./agent",
        "./agent/Cargo.toml",
        "./agent/src",
        "./agent/src/lib.rs",
        "./agent/tools",
    ]
    assert read(tar_path, "./agent/Cargo.toml") == "[package]\nname = 'other'\n"
    assert {m.name: m.mode for m in members(tar_path)}["./agent"] == 0o755
    assert "./tools/cargo-install.sh" in names(tar_path)


def test_members_are_sorted_with_parents_first(tmp_path: Path, image: Path) -> None:
    write(image / "tools" / "Zeta", "z\n")
    write(image / "tools" / "alpha", "a\n")
    write(image / "tools-extra" / "x", "x\n")  # "tools-extra" sorts after "tools/..." by component
    pack(tmp_path, image)

    assert names(tmp_path / "cache" / "context.tar") == [
        ".",
        "./.dockerignore",
        "./Dockerfile",
        "./agent",
        "./agent/Cargo.toml",
        "./agent/src",
        "./agent/src/main.rs",
        "./ca-certificates",
        "./ca-certificates/README",
        "./home",
        "./home/cargo-config.toml",
        "./tools",
        "./tools/Zeta",
        "./tools/alpha",
        "./tools/cargo-install.sh",
        "./tools-extra",
        "./tools-extra/x",
    ]


def test_headers_carry_no_times_owners_or_group_write(tmp_path: Path, image: Path) -> None:
    (image / "link").symlink_to("Dockerfile")
    pack(tmp_path, image)
    found = {m.name: m for m in members(tmp_path / "cache" / "context.tar")}

    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in found.values()} == {(0, 0, 0, "", "")}
    assert not [m.name for m in found.values() if m.mode & 0o022]
    assert found["./tools/cargo-install.sh"].mode == 0o755
    assert found["./home/cargo-config.toml"].mode == 0o644
    assert found["./Dockerfile"].mode == 0o644
    assert found["./link"].issym() and found["./link"].linkname == "Dockerfile"
    # The context's root as the tar runs before this script left it on the node.
    assert found["."].mode == 0o700 and found["."].isdir()


def test_the_format_is_gnu_without_pax_headers(tmp_path: Path, image: Path) -> None:
    write(image / ("long-" * 30) / "name", "x\n")
    pack(tmp_path, image)
    data = (tmp_path / "cache" / "context.tar").read_bytes()

    assert data[257:265] == b"ustar  \0"  # GNU magic
    assert b"PaxHeader" not in data
    assert len(data) % 10240 == 0  # whole records, as tar writes them
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert not any(m.pax_headers for m in tar.getmembers())
        assert f"./{'long-' * 30}/name" in tar.getnames()


def test_the_cache_directory_is_created_private(tmp_path: Path, image: Path) -> None:
    dest = tmp_path / "new" / "cache" / "context.tar"
    pack_context.pack(str(dest), str(image))

    assert dest.is_file()
    assert dest.parent.stat().st_mode & 0o777 == 0o700 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"dest": "/tmp/x.tar"}, "image_dir: empty"),
        ({"dest": "/tmp/x.tar", "image_dir": "/nonexistent/image"}, "image_dir: /nonexistent/image is not a directory"),
        ({"dest": "/tmp/x.tar", "image_dir": "IMAGE", "ca_files": {"../x.crt": PEM_A}}, "ca_files: '../x.crt'"),
        ({"dest": "/tmp/x.tar", "image_dir": "IMAGE", "ca_files": ["x"]}, "ca_files: must be an object"),
        ({"dest": "/tmp/x.tar", "image_dir": "IMAGE", "agent_dir": "/nonexistent/agent"}, "agent_dir: /nonexistent"),
        ({"dest": "/tmp/x.tar", "image_dir": "IMAGE", "exclude": "target"}, "exclude: must be a list"),
        ({"dest": "/tmp/x.tar", "image_dir": "IMAGE", "tar_options": []}, "unknown settings tar_options"),
    ],
)
def test_unusable_settings_are_named(
    image: Path, settings: Dict, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = {k: (str(image) if v == "IMAGE" else v) for k, v in settings.items()}

    assert pack_context.main(io.StringIO(json.dumps(settings))) == 1
    err = capsys.readouterr().err
    assert err.startswith("pack_context: ") and message in err


def test_run_as_the_role_runs_it(tmp_path: Path, image: Path) -> None:
    """A script with the settings on stdin, one JSON result on stdout."""
    settings = {
        "dest": str(tmp_path / "cache" / "context.tar"),
        "image_dir": str(image),
        "agent_dir": "",
        "ca_files": {"a.crt": PEM_A},
        "exclude": EXCLUDE,
    }
    run = [sys.executable, str(SCRIPT)]
    stdin = json.dumps(settings) + "\n"  # the command module adds a newline to stdin
    first = subprocess.run(run, input=stdin, capture_output=True, text=True, check=True)
    second = subprocess.run(run, input=stdin, capture_output=True, text=True, check=True)

    assert (json.loads(first.stdout)["changed"], json.loads(second.stdout)["changed"]) == (True, False)
    assert json.loads(first.stdout)["members"] == len(names(tmp_path / "cache" / "context.tar"))
