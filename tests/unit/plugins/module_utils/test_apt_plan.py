"""Unit tests for plugins/module_utils/apt_plan.py (the collection's one apt pattern)."""

from __future__ import annotations

import pytest

from ansible_collections.raibid.dgx_spark.plugins.module_utils import apt_plan as ap

# Real `LC_ALL=C apt-cache policy bash docker.io containerd redis-server nonexist` output (Debian 12),
# with containerd not installed and no candidate for it.
POLICY = """\
bash:
  Installed: 5.2.15-2+b8
  Candidate: 5.2.15-2+b13
  Version table:
     5.2.15-2+b13 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
 *** 5.2.15-2+b8 100
        100 /var/lib/dpkg/status
docker.io:
  Installed: (none)
  Candidate: 20.10.24+dfsg1-1+deb12u1+b6
  Version table:
     20.10.24+dfsg1-1+deb12u1+b6 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
containerd:
  Installed: (none)
  Candidate: (none)
  Version table:
redis-server:
  Installed: 5:7.0.15-1~deb12u10
  Candidate: 5:7.0.15-1~deb12u10
  Version table:
 *** 5:7.0.15-1~deb12u10 500
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
        100 /var/lib/dpkg/status
     5:7.0.15-1~deb12u7 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
"""


def test_parse_policy_reads_installed_candidate_and_versions():
    parsed = ap.parse_policy(POLICY)
    assert parsed["bash"] == {
        "installed": "5.2.15-2+b8",
        "candidate": "5.2.15-2+b13",
        "versions": ["5.2.15-2+b13", "5.2.15-2+b8"],
    }
    assert parsed["docker.io"]["installed"] is None
    assert parsed["containerd"] == {"installed": None, "candidate": None, "versions": []}
    assert parsed["redis-server"]["versions"] == ["5:7.0.15-1~deb12u10", "5:7.0.15-1~deb12u7"]


def test_everything_installed_means_no_install_and_no_refresh():
    # An air-gapped node: nothing to do must not touch the lists.
    result = ap.plan(["bash", "redis-server"], POLICY)
    assert result == {"install": [], "present": ["bash", "redis-server"], "no_candidate": [], "refresh": False}


def test_missing_with_candidate_installs_without_refresh():
    result = ap.plan(["bash", "docker.io"], POLICY)
    assert result["install"] == ["docker.io"]
    assert result["refresh"] is False


@pytest.mark.parametrize("missing", ["containerd", "nonexist"])
def test_missing_without_candidate_or_unknown_refreshes(missing):
    result = ap.plan(["docker.io", missing], POLICY)
    assert result["install"] == ["docker.io", missing]
    assert result["no_candidate"] == [missing]
    assert result["refresh"] is True


def test_empty_lists_refresh():
    # A freshly built image: apt knows only what dpkg has installed, nothing else.
    result = ap.plan(["docker.io", "containerd"], "")
    assert result["refresh"] is True
    assert result["no_candidate"] == ["docker.io", "containerd"]


def test_pins():
    # Installed at the pinned version: present. Another pinned version the lists carry: install, no refresh.
    assert ap.plan(["redis-server=5:7.0.15-1~deb12u10"], POLICY)["install"] == []
    older = ap.plan(["redis-server=5:7.0.15-1~deb12u7"], POLICY)
    assert older["install"] == ["redis-server=5:7.0.15-1~deb12u7"]
    assert older["refresh"] is False
    # A pin the lists do not carry (e.g. a new release in a just-added repository): refresh.
    unknown = ap.plan(["docker.io=5:28.5.1-1"], POLICY)
    assert unknown["refresh"] is True


@pytest.mark.parametrize("bad", ["", "  ", "Docker.io", "bash=", "rm -rf /", None])
def test_bad_names_refused(bad):
    with pytest.raises(ap.AptPlanError):
        ap.plan([bad], POLICY)


def test_package_names_strip_pins_and_duplicates():
    assert ap.package_names(["docker-ce=5:28.5.1-1", "docker-ce-cli=5:28.5.1-1", "docker-ce"]) == [
        "docker-ce",
        "docker-ce-cli",
    ]


def test_plan_from_installed_needs_no_apt_call_when_everything_is_there():
    installed = {"docker.io": "26.1.5+dfsg1-9+b9", "python3-requests": "2.32.3+dfsg-5"}
    assert ap.plan_from_installed(["docker.io", "python3-requests=2.32.3+dfsg-5"], installed) == {
        "install": [],
        "present": ["docker.io", "python3-requests=2.32.3+dfsg-5"],
        "no_candidate": [],
        "refresh": False,
    }


def test_plan_from_installed_leaves_missing_or_other_versions_to_apt():
    installed = {"docker.io": "26.1.5+dfsg1-9+b9"}
    assert ap.plan_from_installed(["docker.io", "containerd"], installed) is None
    assert ap.plan_from_installed(["docker.io=27.0.0-1"], installed) is None
    with pytest.raises(ap.AptPlanError, match="not an apt package name"):
        ap.plan_from_installed(["Bad Name"], installed)
    with pytest.raises(ap.AptPlanError, match="expected the installed packages as a mapping"):
        ap.plan_from_installed(["docker.io"], ["docker.io"])
