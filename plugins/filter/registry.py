# Copyright (c) 2026 raibid.dgx_spark contributors
# MIT License (see LICENSE)
"""Filters that derive the node's registry endpoints from the dgx_spark_registry_* settings."""

from __future__ import annotations

from ansible_collections.raibid.dgx_spark.plugins.module_utils.registry import (
    auth_user_problems,
    bind_address_problem,
    client_host,
    is_loopback,
    mirror_problems,
    registry_endpoints,
    registry_instances,
    settings_problems,
)


class FilterModule:
    """Endpoint map, instance list, client host, loopback test and input checks for the registries."""

    def filters(self):
        return {
            "registry_endpoints": registry_endpoints,
            "registry_instances": registry_instances,
            "registry_client_host": client_host,
            "registry_is_loopback": is_loopback,
            "registry_mirror_problems": mirror_problems,
            "registry_auth_user_problems": auth_user_problems,
            "registry_settings_problems": settings_problems,
            "registry_address_problem": bind_address_problem,
        }
