#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ledger_backup
short_description: Back up the cloud's ledger, or restore it from a backup
version_added: 0.1.0
description:
  - O(operation=backup) writes one backup file of the ledger into O(backup_dir), consistent while other jobs write to the
    ledger; SQLite with its online backup API, PostgreSQL with C(pg_dump --format=custom) in the snapshot the backup's
    metadata is read in.
  - A backup file (C(ledger-<UTC stamp>-g<generation>.tar)) holds C(backup.json) (schema version, ledger generation,
    created_at, counts, checksums) and the copy (C(ledger.sqlite) or C(ledger.pgdump)).
  - O(operation=restore) checks the whole file first and refuses a damaged one, one of a newer schema than this collection
    knows, or one of the other backend, with nothing changed. It then keeps the ledger it replaces aside
    (C(pre-restore-<stamp>-g<generation>.tar) in O(backup_dir), restorable the same way), and installs the backup
    atomically; SQLite through a checked, fsynced temporary file in the ledger's directory (renamed into place when there is no
    readable ledger, copied into the live ledger in one transaction under its write lock when there is one); PostgreSQL in one
    C(psql --single-transaction) that holds the ledger's write lock.
  - The restored ledger's generation is the backup's, moved past the generation of the ledger it replaces and past
    O(min_generation) when they are not lower, so cluster controllers (which refuse an older generation than the one they
    applied) accept what C(reconcile.yml) converges from it.
  - O(operation=verify) checks a backup file the same way and changes nothing.
author:
  - euca.cloud maintainers (@euca-cloud)
extends_documentation_fragment:
  - euca.cloud.attributes
  - euca.cloud.ledger
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
attributes:
  check_mode:
    support: full
    details: Reports what would be backed up or restored (after checking the backup file) and writes nothing.
  diff_mode:
    support: full
    details: Generation and counts of the ledger before and after a restore, or of the newest backup before and after a backup.
options:
  operation:
    description: What to do.
    type: str
    choices: [backup, restore, verify]
    default: backup
  backup_dir:
    description: Where backup files live (created with mode 0700); pre-restore copies are written here too.
    type: path
    default: /var/lib/euca/clc/backups
  path:
    description:
      - The backup file to restore or verify; default the newest C(ledger-*.tar) in O(backup_dir).
      - With O(operation=backup), the file to write instead of a new name in O(backup_dir).
    type: path
  force:
    description:
      - With O(operation=backup), write a new backup even when the newest one in O(backup_dir) already holds the ledger's
        content at its generation (otherwise that one is returned and nothing is written).
    type: bool
    default: false
  keep:
    description: With O(operation=backup), remove all but this many newest C(ledger-*.tar) backups; V(0) keeps all.
    type: int
    default: 0
  min_generation:
    description:
      - With O(operation=restore), the highest ledger generation the data plane has applied (C(restore-ledger.yml)
        reads it from the cluster controllers); the restored ledger's generation is moved past it.
    type: int
    default: 0
requirements:
  - pg_dump, pg_restore and psql (Debian's postgresql-client) for a PostgreSQL ledger
notes:
  - Run on the C(clc) host. Stop other jobs while restoring; a write that lands while the previous ledger is being kept aside
    makes the restore fail with nothing restored.
seealso:
  - module: euca.cloud.ledger_info
"""

EXAMPLES = r"""
- name: Back up the ledger, keeping the 14 newest backups
  euca.cloud.ledger_backup:
    backup_dir: /var/lib/euca/clc/backups
    keep: 14
  register: backup

- name: Restore the newest backup
  euca.cloud.ledger_backup:
    operation: restore
    backup_dir: /var/lib/euca/clc/backups

- name: Restore one backup file into a PostgreSQL ledger
  euca.cloud.ledger_backup:
    operation: restore
    ledger: postgresql://euca@db.example.com/euca
    path: /var/lib/euca/clc/backups/ledger-20260101T020000.000000Z-g4211.tar
"""

RETURN = r"""
path:
  description: The backup file written, found (unchanged backup) or restored from.
  returned: always
  type: str
  sample: /var/lib/euca/clc/backups/ledger-20260101T020000.000000Z-g4211.tar
generation:
  description: The ledger generation the backup holds.
  returned: always
  type: int
  sample: 4211
created_at:
  description: When the backup was taken (UTC); null in check mode for a backup not written.
  returned: always
  type: str
  sample: "2026-01-01T02:00:00.000000Z"
schema_version:
  description: The ledger schema version the backup holds.
  returned: always
  type: int
  sample: 1
counts:
  description: What the backup holds; live and terminated instances, volumes, snapshots, elastic IPs (and how many are
    associated), security groups, images, nodes, clusters.
  returned: always
  type: dict
  sample: {instances: 12, instances_terminated: 3, volumes: 2, snapshots: 0, addresses: 4, addresses_associated: 2,
           security_groups: 3, images: 2, nodes: 2, clusters: 1}
content_sha256:
  description: Digest of every row the backup holds (the generation counter left out); equal for equal content.
  returned: always
  type: str
ledger_generation:
  description: The ledger's generation after a restore (the backup's, or higher; see O(min_generation)).
  returned: when O(operation=restore)
  type: int
  sample: 4212
previous:
  description:
    - Where the ledger that was replaced was kept; a backup file, or the moved files of a damaged SQLite ledger; null
      when there was no ledger or nothing changed.
  returned: when O(operation=restore)
  type: raw
  sample: /var/lib/euca/clc/backups/pre-restore-20260102T101500.000000Z-g4388.tar
before:
  description: Generation and counts of the ledger before the restore (null when there was none or it was unreadable).
  returned: when O(operation=restore)
  type: dict
method:
  description: How the backup was installed (V(rename), V(one transaction in the live ledger), V(psql --single-transaction)).
  returned: when a restore changed the ledger
  type: str
pruned:
  description: Backup files removed by O(keep).
  returned: when O(operation=backup)
  type: list
  elements: str
"""

import shutil
import tempfile

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.euca.cloud.plugins.module_utils.base import LEDGER_ARGS, EucaModule
from ansible_collections.euca.cloud.plugins.module_utils.errors import NotFound
from ansible_collections.euca.cloud.plugins.module_utils.ledger import backup, db

PUBLIC = ("path", "generation", "created_at", "schema_version", "counts", "content_sha256")


class LedgerBackupModule(EucaModule):
    argument_spec = dict(
        LEDGER_ARGS,
        operation=dict(type="str", default="backup", choices=["backup", "restore", "verify"]),
        backup_dir=dict(type="path", default=backup.DEFAULT_BACKUP_DIR),
        path=dict(type="path"),
        force=dict(type="bool", default=False),
        keep=dict(type="int", default=0),
        min_generation=dict(type="int", default=0),
    )

    def __init__(self):
        super(LedgerBackupModule, self).__init__()
        if db.is_postgres_url(self.params["ledger"]) and db.load_psycopg() is None:
            self.ansible.fail_json(msg=missing_required_lib("psycopg"), exception=str(db.psycopg_import_error()))

    def chosen_file(self):
        p = self.params
        if p["path"]:
            return p["path"]
        found = backup.list_backups(p["backup_dir"])
        if not found:
            raise NotFound("no backup (ledger-*.tar) in %s: give -e backup=<file>; nothing was changed" % p["backup_dir"])
        return found[-1]

    def run(self):
        return getattr(self, "run_" + self.params["operation"])()

    def run_backup(self):
        p = self.params
        if p["keep"] < 0:
            raise backup.InvalidInput("keep must be 0 (keep every backup) or more, not %d" % p["keep"])
        live = backup.current(p["ledger"], p["ledger_timeout"])
        if not isinstance(live, dict):
            raise NotFound("no readable ledger at %s: nothing to back up" % backup.safe_url(p["ledger"]))
        newest = None
        found = backup.list_backups(p["backup_dir"])
        if found and not p["path"]:
            try:
                newest = backup.read_meta(found[-1])
            except backup.InvalidInput:
                newest = None
        before = backup.summary(newest)
        if newest and not p["force"] and newest["content_sha256"] == live["content_sha256"] \
                and newest["generation"] == live["generation"] and newest.get("dialect") == self.dialect():
            result = self.public(newest, changed=False)
            result["pruned"] = [] if self.check_mode else backup.prune(p["backup_dir"], p["keep"])
            return result
        if self.check_mode:
            result = self.public(dict(live, path=p["path"], created_at=None), changed=True)
            result["pruned"] = []
        else:
            made = backup.take(p["ledger"], p["backup_dir"], timeout=p["ledger_timeout"], path=p["path"])
            result = self.public(made, changed=True)
            result["pruned"] = backup.prune(p["backup_dir"], p["keep"])
        result["diff"] = {"before": before, "after": backup.summary(result)}
        return result

    def run_restore(self):
        p = self.params
        out = backup.restore(p["ledger"], self.chosen_file(), p["backup_dir"], timeout=p["ledger_timeout"],
                             min_generation=p["min_generation"], check_mode=self.check_mode)
        result = self.public(out["backup"], changed=out["changed"])
        before, after = backup.summary(out["before"]), backup.summary(out["after"])
        result.update(before=before, previous=out["previous"],
                      ledger_generation=after["generation"] if after else None)
        if out["method"]:
            result["method"] = out["method"]
        result["diff"] = {"before": before or {}, "after": after}
        return result

    def run_verify(self):
        p = self.params
        work = tempfile.mkdtemp(prefix="euca-ledger-verify-")
        try:
            meta, _payload = backup.verify(self.chosen_file(), work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        result = self.public(meta, changed=False)
        result["dialect"] = meta["dialect"]
        return result

    def dialect(self):
        return "postgresql" if db.is_postgres_url(self.params["ledger"]) else "sqlite"

    @staticmethod
    def public(meta, changed):
        result = dict((k, meta.get(k)) for k in PUBLIC)
        result["changed"] = changed
        return result


def main():
    LedgerBackupModule()()


if __name__ == "__main__":
    main()
