# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Versioned schema of the ledger.

``MIGRATIONS`` is append-only: a released step is never edited, a change is a new step.
Each step runs inside the write lock, in the same transaction that records it, so two
hosts opening a new ledger at once cannot both apply it and a crash mid-way leaves the
previous version intact. The DDL is written to mean the same on SQLite and PostgreSQL.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

from ansible_collections.euca.cloud.plugins.module_utils.errors import LedgerUnavailable

MIGRATIONS = [
    (
        1,
        "initial ledger",
        [
            """CREATE TABLE ledger_meta (
                key TEXT PRIMARY KEY,
                value BIGINT NOT NULL)""",
            "INSERT INTO ledger_meta (key, value) VALUES ('generation', 0)",
            """CREATE TABLE settings (
                key TEXT PRIMARY KEY,
                value TEXT NOT NULL)""",
            """CREATE TABLE clusters (
                name TEXT PRIMARY KEY,
                created_at TEXT NOT NULL)""",
            """CREATE TABLE nodes (
                name TEXT PRIMARY KEY,
                cluster TEXT NOT NULL REFERENCES clusters (name),
                cores INTEGER NOT NULL CHECK (cores > 0),
                memory_mb INTEGER NOT NULL CHECK (memory_mb > 0),
                disk_gb INTEGER NOT NULL CHECK (disk_gb > 0),
                state TEXT NOT NULL CHECK (state IN ('enabled', 'disabled')),
                created_at TEXT NOT NULL)""",
            """CREATE TABLE images (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL UNIQUE,
                kind TEXT NOT NULL CHECK (kind IN ('machine', 'kernel', 'ramdisk')),
                checksum TEXT NOT NULL,
                size_bytes BIGINT NOT NULL CHECK (size_bytes >= 0),
                format TEXT NOT NULL,
                kernel_id TEXT REFERENCES images (id),
                ramdisk_id TEXT REFERENCES images (id),
                location TEXT,
                created_at TEXT NOT NULL)""",
            """CREATE TABLE security_groups (
                name TEXT PRIMARY KEY,
                description TEXT NOT NULL,
                segment_id INTEGER NOT NULL UNIQUE,
                subnet TEXT NOT NULL UNIQUE,
                created_at TEXT NOT NULL)""",
            """CREATE TABLE group_rules (
                group_name TEXT NOT NULL REFERENCES security_groups (name) ON DELETE CASCADE,
                protocol TEXT NOT NULL CHECK (protocol IN ('tcp', 'udp', 'icmp', 'all')),
                from_port INTEGER NOT NULL,
                to_port INTEGER NOT NULL,
                cidr TEXT NOT NULL,
                source_group TEXT NOT NULL,
                PRIMARY KEY (group_name, protocol, from_port, to_port, cidr, source_group))""",
            """CREATE TABLE instances (
                id TEXT PRIMARY KEY,
                name TEXT,
                reservation_id TEXT NOT NULL,
                launch_index INTEGER NOT NULL,
                group_name TEXT NOT NULL REFERENCES security_groups (name),
                image_id TEXT NOT NULL REFERENCES images (id),
                instance_type TEXT NOT NULL,
                cluster TEXT NOT NULL REFERENCES clusters (name),
                node TEXT REFERENCES nodes (name),
                cores INTEGER NOT NULL,
                memory_mb INTEGER NOT NULL,
                disk_gb INTEGER NOT NULL,
                private_ip TEXT,
                mac TEXT,
                state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'stopped', 'terminated')),
                reason TEXT NOT NULL DEFAULT '',
                created_gen BIGINT NOT NULL,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL)""",
            # A terminated instance keeps its row (history) but gives its address and MAC back.
            "CREATE UNIQUE INDEX instances_live_ip ON instances (private_ip) WHERE state <> 'terminated'",
            "CREATE UNIQUE INDEX instances_live_mac ON instances (mac) WHERE state <> 'terminated'",
            "CREATE INDEX instances_node ON instances (node, state)",
            "CREATE INDEX instances_name ON instances (name, state)",
            """CREATE TABLE elastic_ips (
                address TEXT PRIMARY KEY,
                name TEXT UNIQUE,
                instance_id TEXT UNIQUE REFERENCES instances (id),
                allocated_at TEXT NOT NULL)""",
            """CREATE TABLE volumes (
                id TEXT PRIMARY KEY,
                name TEXT UNIQUE,
                cluster TEXT NOT NULL REFERENCES clusters (name),
                size_gb INTEGER NOT NULL CHECK (size_gb > 0),
                snapshot_id TEXT,
                state TEXT NOT NULL CHECK (state IN ('available', 'in-use')),
                created_at TEXT NOT NULL)""",
            # The primary key is the rule "a volume is never attached twice".
            """CREATE TABLE attachments (
                volume_id TEXT PRIMARY KEY REFERENCES volumes (id),
                instance_id TEXT NOT NULL REFERENCES instances (id),
                device TEXT NOT NULL,
                attached_at TEXT NOT NULL,
                UNIQUE (instance_id, device))""",
            """CREATE TABLE snapshots (
                id TEXT PRIMARY KEY,
                name TEXT UNIQUE,
                volume_id TEXT NOT NULL,
                size_gb INTEGER NOT NULL,
                created_at TEXT NOT NULL)""",
        ],
    ),
]

LATEST = MIGRATIONS[-1][0]


def now():
    """UTC timestamp as stored in the ledger.

    Microseconds, because ``created_at`` orders instances ("terminate the newest" for
    exact_count): two launches within one second must not tie.
    """
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def current_version(txn):
    """The schema version recorded in the ledger (0 for an empty database)."""
    if txn.dialect == "postgresql":
        present = txn.value("SELECT to_regclass('schema_migrations') IS NOT NULL")
    else:
        present = txn.value("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'")
    if not present:
        return 0
    return int(txn.value("SELECT COALESCE(MAX(version), 0) FROM schema_migrations") or 0)


def migrate(ledger):
    """Bring the ledger to ``LATEST``; a no-op (one read) when it is already there."""
    with ledger.read() as txn:
        if current_version(txn) == LATEST:
            return
    with ledger.write() as txn:
        txn.exec(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        version = current_version(txn)
        if version > LATEST:
            raise LedgerUnavailable(
                "ledger %s has schema version %d but this euca.cloud knows only up to %d: "
                "upgrade the collection on this host" % (ledger.url, version, LATEST)
            )
        for number, name, statements in MIGRATIONS:
            if number <= version:
                continue
            for statement in statements:
                txn.exec(statement)
            txn.exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)", number, name, now())
