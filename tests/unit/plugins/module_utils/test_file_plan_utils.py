"""Unit tests for plugins/module_utils/file_plan.py over real files in a temporary tree, as the user running
them (owner and group checks use that user's names, or another account's found on the machine)."""

from __future__ import annotations

import errno
import grp
import hashlib
import os
import pwd
from pathlib import Path
from typing import Any, Dict, List

import pytest

from ansible_collections.raibid.dgx_spark.plugins.module_utils import file_plan as fp

CONTENT = b"listen = 127.0.0.1:5000\npassword = s3cret\n"
SHA1 = hashlib.sha1(CONTENT).hexdigest()
OTHER_SHA1 = hashlib.sha1(b"something else\n").hexdigest()
ME = pwd.getpwuid(os.getuid()).pw_name
MY_GROUP = grp.getgrgid(os.getgid()).gr_name
UNKNOWN = "raibid-no-such-account"


def other_user() -> str:
    """An account other than the one running the tests (every system has several: root, nobody, daemon)."""
    return next(p.pw_name for p in pwd.getpwall() if p.pw_uid != os.getuid() and p.pw_name != str(p.pw_uid))


def other_group() -> str:
    return next(g.gr_name for g in grp.getgrall() if g.gr_gid != os.getgid() and g.gr_name != str(g.gr_gid))


def plan(*entries: Dict[str, Any]) -> Dict[str, Any]:
    return fp.file_plan(fp.validate(list(entries)))


def reasons(entry: Dict[str, Any]) -> List[str]:
    (result,) = plan(entry)["files"]
    assert result["differs"] is bool(result["reasons"])
    return result["reasons"]


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    path = tmp_path / "agent.toml"
    path.write_bytes(CONTENT)
    path.chmod(0o640)
    return path


# -- validation ------------------------------------------------------------------------------------------------


def test_validate_defaults_and_modes():
    wanted = fp.validate(
        [
            {"path": "/etc/a", "checksum": SHA1},
            {"path": "/etc/b", "checksum": SHA1, "state": "file", "owner": "root", "group": "adm", "mode": "644"},
            {"path": "/etc/c", "state": "directory", "mode": "2755", "checksum": None},
        ]
    )
    assert wanted == [
        fp.Wanted("/etc/a", "file", SHA1),
        fp.Wanted("/etc/b", "file", SHA1, "root", "adm", 0o644),
        fp.Wanted("/etc/c", "directory", None, None, None, 0o2755),
    ]
    assert fp.validate([{"path": "/etc/a", "checksum": SHA1, "mode": "0644"}])[0].mode == 0o644
    # an unquoted 0644 in YAML is the number 420: the bits themselves, as the file and template modules take it
    assert fp.validate([{"path": "/etc/a", "checksum": SHA1, "mode": 420}])[0].mode == 0o644
    assert fp.validate([]) == []


@pytest.mark.parametrize(
    ("entry", "named", "says"),
    [
        ({"path": "etc/x.conf", "checksum": SHA1}, "files[0].path", "is not an absolute path"),
        ({"path": "", "checksum": SHA1}, "files[0].path", "expected one starting with /"),
        ({"path": None, "checksum": SHA1}, "files[0].path", "is not an absolute path"),
        ({"path": "~/x", "checksum": SHA1}, "files[0].path", "is not an absolute path"),
        ({"path": "/etc/\x00x", "checksum": SHA1}, "files[0].path", "is not an absolute path"),
        ({"path": "/etc/x", "state": "absent", "mode": "0644"}, "files[0]", "mode not used with state=absent"),
        ({"path": "/etc/x", "state": "absent", "checksum": SHA1}, "files[0].checksum", "not used with state=absent"),
        ({"path": "/etc/x", "state": "any", "owner": "root"}, "files[0]", "owner not used with state=any"),
        ({"path": "/etc/x", "state": "any", "checksum": SHA1}, "files[0].checksum", "not used with state=any"),
        ({"path": "/etc/x", "unlisted": "*.yml"}, "files[0].unlisted", "only used with state=directory"),
        ({"path": "/etc/x", "state": "directory", "unlisted": "a/*"}, "files[0].unlisted", "not a glob of names"),
        ({"path": "/etc/x", "state": "directory", "unlisted": ""}, "files[0].unlisted", "not a glob of names"),
        ({"path": "/etc/x", "checksum": SHA1.upper()}, "files[0].checksum", "40 lowercase hex digits"),
        ({"path": "/etc/x", "checksum": SHA1[:39]}, "files[0].checksum", "is not a sha1"),
        ({"path": "/etc/x", "checksum": SHA1 + "\n"}, "files[0].checksum", "is not a sha1"),
        ({"path": "/etc/x", "checksum": SHA1, "mode": "0644\n"}, "files[0].mode", "is not an octal mode"),
        ({"path": "/etc/x", "checksum": "sha1:" + SHA1}, "files[0].checksum", "is not a sha1"),
        ({"path": "/etc/x", "checksum": hashlib.sha256(CONTENT).hexdigest()}, "files[0].checksum", "is not a sha1"),
        ({"path": "/etc/x", "state": "directory", "checksum": SHA1}, "files[0].checksum", "not used with state=dir"),
        ({"path": "/etc/x", "state": "link", "checksum": SHA1}, "files[0].state", "is not one of file, directory"),
        ({"path": "/etc/x", "checksum": SHA1, "mode": "0999"}, "files[0].mode", "is not an octal mode"),
        ({"path": "/etc/x", "checksum": SHA1, "mode": "64"}, "files[0].mode", '"0644" or "644"'),
        ({"path": "/etc/x", "checksum": SHA1, "mode": "12345"}, "files[0].mode", "is not an octal mode"),
        ({"path": "/etc/x", "checksum": SHA1, "mode": "u=rw"}, "files[0].mode", "is not an octal mode"),
        ({"path": "/etc/x", "checksum": SHA1, "mode": 0o10000}, "files[0].mode", "is not an octal mode"),
        ({"path": "/etc/x", "checksum": SHA1, "mode": -1}, "files[0].mode", "is not an octal mode"),
        ({"path": "/etc/x", "checksum": SHA1, "mode": True}, "files[0].mode", "is not an octal mode"),
        ({"path": "/etc/x", "checksum": SHA1, "mode": 6.44}, "files[0].mode", "is not an octal mode"),
        ({"path": "/etc/x", "checksum": SHA1, "owner": ""}, "files[0].owner", "is not a user name"),
        ({"path": "/etc/x", "checksum": SHA1, "group": " adm"}, "files[0].group", "is not a group name"),
        ({"path": "/etc/x", "checksum": SHA1, "content": "secret"}, "files[0]", "unknown key(s) content"),
        ("/etc/x", "files[0]", "expected a dict"),
    ],
)
def test_each_bad_field_is_named(entry, named, says):
    with pytest.raises(fp.FilePlanError) as exc:
        fp.validate([entry])
    (problem,) = exc.value.problems
    assert problem.startswith(f"{named}: ") and says in problem, problem
    assert str(exc.value) == problem
    assert "secret" not in problem  # an unknown key is named, its value never shown


@pytest.mark.parametrize("again", ["/etc/raibid/a.conf", "/etc/raibid//a.conf", "/etc/raibid/./a.conf/"])
def test_duplicate_paths_are_refused(again):
    with pytest.raises(fp.FilePlanError) as exc:
        fp.validate([{"path": "/etc/raibid/a.conf", "checksum": SHA1}, {"path": again, "checksum": SHA1}])
    assert exc.value.problems == [f"files[1].path: {again} is already files[0].path (each path once)"]


def test_one_failure_lists_every_bad_entry_in_order():
    with pytest.raises(fp.FilePlanError) as exc:
        fp.validate(
            [
                {"path": "/etc/ok", "checksum": SHA1},
                {"path": "relative", "checksum": "nope", "mode": "888"},
                {"path": "/etc/ok", "state": "directory", "checksum": SHA1},
                {"path": "/etc/fine", "state": "directory"},
                {"path": "/etc/gone", "state": "absent", "owner": "root"},
            ]
        )
    assert [p.split(":")[0] for p in exc.value.problems] == [
        "files[1].path",
        "files[1].checksum",
        "files[1].mode",
        "files[2].path",
        "files[2].checksum",
        "files[4]",
    ]
    assert str(exc.value) == "; ".join(exc.value.problems)


def test_files_must_be_a_list():
    with pytest.raises(fp.FilePlanError, match=r"^files: expected a list of dicts, got dict$"):
        fp.validate({"path": "/etc/x"})  # type: ignore[arg-type]


# -- what differs ----------------------------------------------------------------------------------------------


def test_same_file_does_not_differ(conf):
    entry = {"path": str(conf), "checksum": SHA1, "owner": ME, "group": MY_GROUP, "mode": "0640"}
    assert plan(entry) == {
        "differ": [],
        "files": [{"path": str(conf), "exists": True, "differs": False, "reasons": []}],
        "unlisted": [],
        "checked": 1,
    }
    # owner, group and mode are compared only when given
    assert reasons({"path": str(conf), "checksum": SHA1}) == []


def test_content_differs(conf):
    assert reasons({"path": str(conf), "checksum": OTHER_SHA1, "mode": "640"}) == ["content"]


def test_missing_file_and_missing_parent(tmp_path, conf):
    result = plan(
        {"path": str(tmp_path / "nope.conf"), "checksum": SHA1, "mode": "0644"},
        {"path": str(tmp_path / "no-dir" / "x.conf"), "checksum": SHA1},
        {"path": str(conf / "under-a-file"), "checksum": SHA1},
        {"path": str(tmp_path / "nope.d"), "state": "directory", "owner": UNKNOWN},
    )
    assert [f["reasons"] for f in result["files"]] == [["missing"]] * 4
    assert [f["exists"] for f in result["files"]] == [False] * 4
    assert result["differ"] == [f["path"] for f in result["files"]]


def test_symlink_is_reported_not_followed(tmp_path, conf):
    link = tmp_path / "link.toml"
    link.symlink_to(conf)
    assert plan({"path": str(link), "checksum": SHA1})["files"] == [
        {"path": str(link), "exists": True, "differs": True, "reasons": ["symlink"]}
    ]
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    assert reasons({"path": str(dangling), "checksum": SHA1}) == ["symlink"]
    linked_dir = tmp_path / "linked.d"
    linked_dir.symlink_to(tmp_path)
    # a trailing slash would make lstat follow the link; the link itself is what the task would manage
    assert reasons({"path": f"{linked_dir}/", "state": "directory"}) == ["symlink"]


def test_wrong_kind(tmp_path, conf):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert reasons({"path": str(tmp_path), "checksum": SHA1, "mode": "0000"}) == ["not a regular file"]
    assert reasons({"path": str(fifo), "checksum": SHA1}) == ["not a regular file"]
    assert reasons({"path": str(conf), "state": "directory", "mode": "0755"}) == ["not a directory"]


def test_directory(tmp_path):
    directory = tmp_path / "raibid.d"
    directory.mkdir()
    directory.chmod(0o750)
    assert reasons({"path": str(directory), "state": "directory", "owner": ME, "group": MY_GROUP, "mode": "750"}) == []
    result = plan({"path": f"{directory}/", "state": "directory", "mode": "0755"})
    assert result["files"] == [
        {"path": f"{directory}/", "exists": True, "differs": True, "reasons": ["mode 0750 -> 0755"]}
    ]
    assert result["differ"] == [f"{directory}/"]


def test_mode_compares_the_permission_bits_only(tmp_path, conf):
    assert reasons({"path": str(conf), "checksum": SHA1, "mode": "0644"}) == ["mode 0640 -> 0644"]
    conf.chmod(0o2750)
    assert reasons({"path": str(conf), "checksum": SHA1, "mode": "0750"}) == ["mode 2750 -> 0750"]
    assert reasons({"path": str(conf), "checksum": SHA1, "mode": "2750"}) == []
    sticky = tmp_path / "tmp.d"
    sticky.mkdir()
    sticky.chmod(0o1777)
    assert reasons({"path": str(sticky), "state": "directory", "mode": "1777"}) == []
    assert reasons({"path": str(sticky), "state": "directory", "mode": "777"}) == ["mode 1777 -> 0777"]


def test_owner_and_group(conf):
    them, their_group = other_user(), other_group()
    assert reasons({"path": str(conf), "checksum": SHA1, "owner": them, "group": their_group}) == [
        f"owner {ME} -> {them}",
        f"group {MY_GROUP} -> {their_group}",
    ]
    # a name that is all digits and names no account is the id, as for the file module
    assert reasons({"path": str(conf), "checksum": SHA1, "owner": str(os.getuid()), "group": str(os.getgid())}) == []


def test_unknown_owner_and_group_are_reasons_not_crashes(conf):
    assert reasons({"path": str(conf), "checksum": SHA1, "owner": UNKNOWN, "group": UNKNOWN, "mode": "0640"}) == [
        f"owner {UNKNOWN} unknown",
        f"group {UNKNOWN} unknown",
    ]


def test_actual_owner_without_a_name_is_its_id(conf, monkeypatch):
    def no_name(_id: int) -> Any:
        raise KeyError("no such id")

    monkeypatch.setattr(fp.pwd, "getpwuid", no_name)
    monkeypatch.setattr(fp.grp, "getgrgid", no_name)
    them, their_group = other_user(), other_group()
    assert reasons({"path": str(conf), "checksum": SHA1, "owner": them, "group": their_group}) == [
        f"owner {os.getuid()} -> {them}",
        f"group {os.getgid()} -> {their_group}",
    ]


def test_every_reason_in_a_stable_order(conf):
    assert reasons(
        {"path": str(conf), "checksum": OTHER_SHA1, "owner": UNKNOWN, "group": other_group(), "mode": "0600"}
    ) == ["content", f"owner {UNKNOWN} unknown", f"group {MY_GROUP} -> {other_group()}", "mode 0640 -> 0600"]


def test_unreadable_file_keeps_the_other_checks(conf, monkeypatch):
    # Denied by a stand-in for open(): the tests may run as root, whom file permissions do not stop.
    def denied(path: str, flags: int, *args: Any) -> int:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)

    monkeypatch.setattr(fp.os, "open", denied)
    assert reasons({"path": str(conf), "checksum": SHA1, "mode": "0644"}) == [
        f"unreadable: {os.strerror(errno.EACCES)}",
        "mode 0640 -> 0644",
    ]


def test_replaced_by_a_symlink_after_the_lstat(conf, monkeypatch):
    def loop(path: str, flags: int, *args: Any) -> int:
        assert flags & os.O_NOFOLLOW and flags & os.O_NONBLOCK
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)

    monkeypatch.setattr(fp.os, "open", loop)
    assert reasons({"path": str(conf), "checksum": SHA1}) == ["symlink"]


def test_lstat_denied(tmp_path, monkeypatch):
    real_lstat = os.lstat
    hidden = str(tmp_path / "private" / "x.conf")

    def lstat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if str(path) == hidden:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr(fp.os, "lstat", lstat)
    assert plan({"path": hidden, "checksum": SHA1})["files"] == [
        {"path": hidden, "exists": False, "differs": True, "reasons": [f"unreadable: {os.strerror(errno.EACCES)}"]}
    ]


def test_sha1_is_read_in_chunks(tmp_path):
    data = os.urandom(100_003)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert fp.sha1_of(str(path), chunk=4096) == hashlib.sha1(data).hexdigest()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert reasons({"path": str(empty), "checksum": hashlib.sha1(b"").hexdigest()}) == []


def test_many_entries_in_input_order(tmp_path, conf):
    directory = tmp_path / "conf.d"
    directory.mkdir()
    (directory / "b.conf").write_bytes(b"b\n")
    entries = [
        {"path": str(directory / "b.conf"), "checksum": OTHER_SHA1},
        {"path": str(directory), "state": "directory"},
        {"path": str(directory / "a.conf"), "checksum": SHA1},
        {"path": str(conf), "checksum": SHA1},
    ]
    result = plan(*entries)
    assert result["checked"] == 4
    assert result["differ"] == [str(directory / "b.conf"), str(directory / "a.conf")]
    assert [f["path"] for f in result["files"]] == [e["path"] for e in entries]
    assert [f["reasons"] for f in result["files"]] == [["content"], [], ["missing"], []]
    assert plan() == {"differ": [], "files": [], "unlisted": [], "checked": 0}


def test_names_are_looked_up_once(tmp_path, monkeypatch):
    calls: List[str] = []
    real = pwd.getpwnam

    def getpwnam(name: str) -> Any:
        calls.append(name)
        return real(name)

    monkeypatch.setattr(fp.pwd, "getpwnam", getpwnam)
    entries = []
    for index in range(5):
        path = tmp_path / f"{index}.conf"
        path.write_bytes(CONTENT)
        entries.append({"path": str(path), "checksum": SHA1, "owner": ME})
    assert plan(*entries)["differ"] == []
    assert calls == [ME]


# -- optional checksum, absent, unlisted ---------------------------------------------------------------------


def test_a_file_without_checksum_compares_kind_and_attributes_only(tmp_path, conf):
    assert reasons({"path": str(conf), "mode": "0640"}) == []
    assert reasons({"path": str(conf), "mode": "0600"}) == ["mode 0640 -> 0600"]
    assert reasons({"path": str(tmp_path / "nothing")}) == ["missing"]
    assert reasons({"path": str(tmp_path)}) == ["not a regular file"]


def test_absent_differs_only_when_something_is_there(tmp_path, conf):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")

    assert reasons({"path": str(tmp_path / "nothing"), "state": "absent"}) == []
    assert reasons({"path": str(conf), "state": "absent"}) == ["present"]
    assert reasons({"path": str(tmp_path), "state": "absent"}) == ["present"]
    assert reasons({"path": str(link), "state": "absent"}) == ["present"]
    (gone,) = plan({"path": str(tmp_path / "nothing"), "state": "absent"})["files"]
    assert gone == {"path": str(tmp_path / "nothing"), "exists": False, "differs": False, "reasons": []}


def test_unlisted_names_the_matching_entries_no_entry_lists(tmp_path):
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    for name in ("local.yml", "docker.yml", "old.yml", "htpasswd", "old.yml.bak"):
        (conf_dir / name).write_text("x")
    (conf_dir / "tls").mkdir()
    other = tmp_path / "other"
    other.mkdir()
    (other / "stale.yml").write_text("x")

    result = plan(
        {"path": str(conf_dir), "state": "directory", "unlisted": "*.yml"},
        {"path": f"{conf_dir}/local.yml"},
        {"path": f"{conf_dir}//docker.yml"},  # listed, written another way
        {"path": str(other), "state": "directory", "unlisted": "*.yml"},
        {"path": str(tmp_path / "missing"), "state": "directory", "unlisted": "*"},
    )

    assert result["unlisted"] == [f"{conf_dir}/old.yml", f"{other}/stale.yml"]
    assert [f.get("unlisted") for f in result["files"]] == [
        [f"{conf_dir}/old.yml"],
        None,
        None,
        [f"{other}/stale.yml"],
        [],
    ]
    assert result["differ"] == [str(tmp_path / "missing")]


def test_unlisted_is_empty_for_a_directory_that_is_a_file(tmp_path, conf):
    result = plan({"path": str(conf), "state": "directory", "unlisted": "*"})
    assert result["unlisted"] == [] and result["files"][0]["reasons"] == ["not a directory"]


def test_any_reports_existence_and_never_differs(tmp_path, conf):
    result = plan(
        {"path": str(tmp_path / "nothing"), "state": "any"},
        {"path": str(conf), "state": "any"},
        {"path": str(tmp_path), "state": "any"},
    )
    assert result["differ"] == []
    assert [(f["exists"], f["differs"], f["reasons"]) for f in result["files"]] == [
        (False, False, []),
        (True, False, []),
        (True, False, []),
    ]
