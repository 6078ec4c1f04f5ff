# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The command lines of the daemons the roles run under the service manager, from the same
module_utils the modules and the tests use (one place for each)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.euca.cloud.plugins.module_utils.storage.exports import tgtd_argv


def tgtd_argv_filter(portal, namespace=None, control_port=0):
    return tgtd_argv(portal, namespace or None, control_port)


class FilterModule(object):
    def filters(self):
        return {"tgtd_argv": tgtd_argv_filter}
