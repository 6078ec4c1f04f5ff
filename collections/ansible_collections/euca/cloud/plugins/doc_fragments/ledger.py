# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Options shared by every module that reads or writes the CLC's ledger.
    DOCUMENTATION = r"""
attributes:
  action_group:
    support: full
    membership: [euca.cloud.ledger]
options:
  ledger:
    description:
      - Where the cloud controller's ledger lives.
      - A file path selects SQLite (WAL journal, synchronous commits); the file and its directory are created
        on first use and migrated to the current schema.
      - A C(postgresql://) DSN selects PostgreSQL (requires psycopg 3 on the CLC host).
    type: str
    default: /var/lib/euca/clc/ledger.sqlite
  ledger_timeout:
    description:
      - Seconds to wait for the ledger's write lock held by another job before failing.
    type: float
    default: 30.0
requirements:
  - netaddr
  - psycopg >= 3 (only for a PostgreSQL ledger)
notes:
  - Run on the C(clc) host. Every change is one transaction that holds the ledger's write lock, so concurrent
    jobs are serialized and allocations are unique.
  - Check mode computes the change inside a transaction and rolls it back, so it reports exactly what a real
    run would allocate and changes nothing.
"""
