# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The describe filter: a ledger view as readable tables."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.euca.cloud.plugins.module_utils.ledger import tables


def describe(view):
    """Lines of tables (instances, addresses, volumes, groups, nodes) of a ledger view."""
    try:
        return tables.describe(view)
    except (KeyError, TypeError) as exc:
        raise AnsibleFilterError("describe needs what euca.cloud.ledger_info returns: %s" % exc)


class FilterModule(object):
    def filters(self):
        return {"describe": describe}
