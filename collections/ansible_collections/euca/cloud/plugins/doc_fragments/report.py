# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The result size option of the whole-set configuration modules (segment, dhcp, nat, firewall).
    DOCUMENTATION = r"""
options:
  report:
    description:
      - V(full) returns C(before), C(after) and C(commands) (the convention of network resource modules) besides
        C(summary).
      - V(summary) returns only C(summary), the keys of what was added, removed or modified. Use it for large sets;
        at thousands of items the full lists run to megabytes per task, more than AWX is happy to store per event
        and more than ansible-runner keeps (it drops results over 700 KB).
      - With C(--diff) the diff shows the items that change, whichever the report.
    type: str
    choices: [full, summary]
    default: full
"""
