"""Unit tests for plugins/filter/apt.py (thin wrappers over module_utils/apt_plan.py)."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.raibid.dgx_spark.plugins.filter.apt import FilterModule

POLICY = """\
docker.io:
  Installed: (none)
  Candidate: 26.1.5+dfsg1-9+b9
  Version table:
     26.1.5+dfsg1-9+b9 500
        500 http://deb.debian.org/debian trixie/main amd64 Packages
"""


def test_filters_are_registered_and_wrap_errors():
    filters = FilterModule().filters()
    assert filters["apt_plan"](POLICY, ["docker.io"])["install"] == ["docker.io"]
    assert filters["apt_package_names"](["a=1"]) == ["a"]
    with pytest.raises(AnsibleFilterError, match="apt_plan"):
        filters["apt_plan"](POLICY, ["BAD NAME"])


def test_apt_plan_installed_is_registered_and_wraps_errors():
    installed_plan = FilterModule().filters()["apt_plan_installed"]
    assert installed_plan({"docker.io": "26.1.5"}, ["docker.io"])["install"] == []
    assert installed_plan({}, ["docker.io"]) is None
    with pytest.raises(AnsibleFilterError, match="apt_plan_installed: expected the installed packages"):
        installed_plan(["docker.io"], ["docker.io"])
