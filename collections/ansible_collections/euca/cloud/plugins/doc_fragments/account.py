# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The account a ledger module acts as (module_utils/ledger/accounts.py).
    DOCUMENTATION = r"""
options:
  account:
    description:
      - The account this request acts as. Names (security groups, key pairs, labels) are that account's own;
        another account's records are not found, with the words an unknown id or name gets.
      - The admin account (V(admin), the default) sees and manages every account's records; it names another
        account's group or label by its key C(ACCOUNT:NAME), as its results show them.
      - New records belong to this account and count against its quotas (M(euca.cloud.account)).
    type: str
    default: admin
"""
