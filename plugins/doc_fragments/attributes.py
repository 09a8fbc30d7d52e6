# Copyright (c) 2026 raibid.dgx_spark contributors
# MIT License (see LICENSE)

"""Shared ``attributes`` documentation for the modules of raibid.dgx_spark.

Every module extends ``raibid.dgx_spark.attributes`` (the descriptions) and then the fragments that
say what it supports, so the wording is written once:

    extends_documentation_fragment:
      - raibid.dgx_spark.attributes
      - raibid.dgx_spark.attributes.actiongroup_dgx_spark
      - raibid.dgx_spark.attributes.info_module      # read-only modules
      - raibid.dgx_spark.attributes.facts            # modules that return ansible_facts
"""

from __future__ import annotations


class ModuleDocFragment:
    # The descriptions; a module sets "support" (and "details") for each in its own DOCUMENTATION
    # or through one of the fragments below.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in C(check_mode) and return changed status prediction without modifying the target.
  diff_mode:
    description:
      Will return details on what has changed (or possibly needs changing in C(check_mode)), when in diff mode.
"""

    # Read-only modules (health checks, fact gathering): nothing to predict, nothing to diff.
    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    support: full
    details:
      - This action does not modify state.
  diff_mode:
    support: N/A
    details:
      - This action does not modify state.
"""

    # Membership of the collection's module_defaults group (meta/runtime.yml action_groups.dgx_spark).
    ACTIONGROUP_DGX_SPARK = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/raibid.dgx_spark.dgx_spark) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - raibid.dgx_spark.dgx_spark
"""

    # Modules that return ansible_facts.
    FACTS = r"""
options: {}
attributes:
  facts:
    description: Action returns an C(ansible_facts) dictionary that will update existing host facts.
    support: full
"""
