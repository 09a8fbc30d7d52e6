"""Unit tests for plugins/filter/systemd.py (a thin wrapper over module_utils/systemd_show.py)."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.raibid.dgx_spark.plugins.filter.systemd import FilterModule


def test_systemctl_show_is_registered_and_wraps_errors():
    show = FilterModule().filters()["systemctl_show"]
    assert show("Id=a.service\nActiveState=active\n") == {"a.service": {"Id": "a.service", "ActiveState": "active"}}
    with pytest.raises(AnsibleFilterError, match="systemctl_show: a block without Id="):
        show("ActiveState=active\n")
