"""Unit tests for plugins/module_utils/systemd_show.py, on output captured from systemd 257 (Debian trixie)."""

from __future__ import annotations

import pytest

from ansible_collections.raibid.dgx_spark.plugins.module_utils.systemd_show import SystemdShowError, parse_show

# systemctl show --property=Id,ActiveState,UnitFileState raibid-registry@local.service raibid-registry@docker.io.service
#   raibid-registry-gc.timer nosuch.service   (properties come in systemd's order, not the order asked for)
SHOWN = """Id=raibid-registry@local.service
ActiveState=active
UnitFileState=enabled

Id=raibid-registry@docker.io.service
ActiveState=activating
UnitFileState=enabled

Id=raibid-registry-gc.timer
ActiveState=inactive
UnitFileState=disabled

Id=nosuch.service
ActiveState=inactive
UnitFileState=
"""


def test_each_block_is_keyed_by_its_id():
    units = parse_show(SHOWN)
    assert list(units) == [
        "raibid-registry@local.service",
        "raibid-registry@docker.io.service",
        "raibid-registry-gc.timer",
        "nosuch.service",
    ]
    assert units["raibid-registry@docker.io.service"]["ActiveState"] == "activating"
    assert units["raibid-registry-gc.timer"] == {
        "Id": "raibid-registry-gc.timer",
        "ActiveState": "inactive",
        "UnitFileState": "disabled",
    }
    assert units["nosuch.service"]["UnitFileState"] == ""


def test_values_keep_their_equal_signs_and_empty_output_is_no_unit():
    assert parse_show("Id=a.service\nExecStart={ path=/bin/true ; argv[]=/bin/true }\n")["a.service"]["ExecStart"] == (
        "{ path=/bin/true ; argv[]=/bin/true }"
    )
    assert parse_show("") == {}


@pytest.mark.parametrize(
    "text, message",
    [
        ("ActiveState=active\n", "without Id="),
        ("Id=a.service\nnot a property\n", "expected Key=value"),
        (None, "expected systemctl show output as text"),
    ],
)
def test_output_that_is_not_systemctl_show_is_refused(text, message):
    with pytest.raises(SystemdShowError, match=message):
        parse_show(text)
