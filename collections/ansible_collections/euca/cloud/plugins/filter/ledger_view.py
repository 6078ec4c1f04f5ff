# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that turn a ledger slice into the data plane's module configuration."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.euca.cloud.plugins.module_utils.errors import EucaError
from ansible_collections.euca.cloud.plugins.module_utils.net import ledger_view


def _wrap(function):
    def filter_(slice_, peers=None):
        try:
            return function(slice_, peers=peers)
        except EucaError as exc:
            raise AnsibleFilterError(exc.msg)
    return filter_


class FilterModule(object):
    def filters(self):
        return {
            "cc_config": _wrap(ledger_view.cc_config),
            "nc_config": _wrap(ledger_view.nc_config),
        }
