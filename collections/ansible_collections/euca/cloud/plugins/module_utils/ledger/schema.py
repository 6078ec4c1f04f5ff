# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Versioned schema of the ledger.

``MIGRATIONS`` is append-only: a released step is never edited, a change is a new step.
Each step runs inside the write lock, in the same transaction that records it, so two
hosts opening a new ledger at once cannot both apply it and a crash mid-way leaves the
previous version intact. The DDL is written to mean the same on SQLite and PostgreSQL; a
statement that cannot be is a ``{"sqlite": ..., "postgresql": ...}`` dict (triggers; a dialect
left out has nothing to run).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

from ansible_collections.euca.cloud.plugins.module_utils.errors import LedgerUnavailable

# The helpers below write the SQL of migration 2: like the steps, they are never edited.


def _sqlite_host(ip):
    """SQLite expression: the dotted quad ``ip`` as an integer (NULL stays NULL; junk gives junk)."""
    rest1 = "substr(%s, instr(%s, '.') + 1)" % (ip, ip)
    rest2 = "substr(%s, instr(%s, '.') + 1)" % (rest1, rest1)
    octets = ["substr(%s, 1, instr(%s, '.') - 1)" % (part, part) for part in (ip, rest1, rest2)]
    octets.append("substr(%s, instr(%s, '.') + 1)" % (rest2, rest2))
    a, b, c, d = ("CAST(%s AS INTEGER)" % o for o in octets)
    return "(((%s * 256 + %s) * 256 + %s) * 256 + %s)" % (a, b, c, d)


def _owner(host):
    """SQL condition on group_addresses: the row whose subnet holds ``host`` (subnets never overlap,
    so it is the one with the highest first_host at or below it; an indexed lookup)."""
    return ("first_host = (SELECT MAX(first_host) FROM group_addresses WHERE first_host <= {h}) "
            "AND last_host >= {h}").format(h=host)


def _sqlite_release(row):
    """SQLite trigger statements: the live instance ``row`` (OLD) gives back its load and address.

    The address goes back to the group whose subnet holds it (whichever group the instance
    is in: a row written by hand may sit in another group's subnet).
    """
    host = _sqlite_host("%s.private_ip" % row)
    live = "%s.state <> 'terminated'" % row
    return (
        "UPDATE node_load SET cores = cores - {r}.cores, memory_mb = memory_mb - {r}.memory_mb, "
        "disk_gb = disk_gb - {r}.disk_gb, instances = instances - 1 WHERE node = {r}.node AND {live};\n"
        "INSERT INTO free_addresses (group_name, host) SELECT group_name, {h} FROM group_addresses "
        "WHERE {owner} AND next_host > {h} AND {live} ON CONFLICT DO NOTHING;\n"
    ).format(r=row, h=host, live=live, owner=_owner(host))


def _sqlite_take(row):
    """SQLite trigger statements: the live instance ``row`` (NEW) holds its load and address."""
    host = _sqlite_host("%s.private_ip" % row)
    live = "%s.state <> 'terminated'" % row
    return (
        "INSERT INTO node_load (node, cores, memory_mb, disk_gb, instances) "
        "SELECT {r}.node, {r}.cores, {r}.memory_mb, {r}.disk_gb, 1 WHERE {r}.node IS NOT NULL AND {live} "
        "ON CONFLICT (node) DO UPDATE SET cores = cores + excluded.cores, memory_mb = memory_mb + excluded.memory_mb, "
        "disk_gb = disk_gb + excluded.disk_gb, instances = instances + 1;\n"
        "DELETE FROM free_addresses WHERE host = {h} AND {live};\n"
        # an address above the cursor taken behind the allocator's back: the gap below it is
        # unknown, so the group's bookkeeping goes and the next launch rebuilds it
        "DELETE FROM group_addresses WHERE {owner} AND next_host < {h} AND {live};\n"
        "UPDATE group_addresses SET next_host = next_host + 1 WHERE {owner} AND next_host = {h} AND {live};\n"
    ).format(r=row, h=host, live=live, owner=_owner(host))


# Only a change of what the bookkeeping counts fires the update triggers.
_SQLITE_CHANGED = ("(OLD.state = 'terminated') IS NOT (NEW.state = 'terminated') OR OLD.node IS NOT NEW.node "
                   "OR OLD.cores IS NOT NEW.cores OR OLD.memory_mb IS NOT NEW.memory_mb OR OLD.disk_gb IS NOT NEW.disk_gb "
                   "OR OLD.private_ip IS NOT NEW.private_ip OR OLD.group_name IS NOT NEW.group_name")
_PG_CHANGED = _SQLITE_CHANGED.replace(" IS NOT ", " IS DISTINCT FROM ")
_WATCHED = "state, node, cores, memory_mb, disk_gb, private_ip, group_name"

_PG_HOST_FUNCTION = r"""CREATE FUNCTION euca_ip_host(ip TEXT) RETURNS BIGINT LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN ip ~ '^[0-9]{1,3}[.][0-9]{1,3}[.][0-9]{1,3}[.][0-9]{1,3}$' THEN
        split_part(ip, '.', 1)::BIGINT * 16777216 + split_part(ip, '.', 2)::BIGINT * 65536
        + split_part(ip, '.', 3)::BIGINT * 256 + split_part(ip, '.', 4)::BIGINT END
$$"""

_PG_BOOKKEEPING_FUNCTION = """CREATE FUNCTION euca_instance_bookkeeping() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    h BIGINT;
    grp TEXT;
    nxt BIGINT;
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.state <> 'terminated' THEN
        IF OLD.node IS NOT NULL THEN
            UPDATE node_load SET cores = cores - OLD.cores, memory_mb = memory_mb - OLD.memory_mb,
                disk_gb = disk_gb - OLD.disk_gb, instances = instances - 1 WHERE node = OLD.node;
        END IF;
        h := euca_ip_host(OLD.private_ip);
        IF h IS NOT NULL THEN
            INSERT INTO free_addresses (group_name, host) SELECT group_name, h FROM group_addresses
                WHERE """ + _owner("h") + """ AND next_host > h ON CONFLICT DO NOTHING;
        END IF;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.state <> 'terminated' THEN
        IF NEW.node IS NOT NULL THEN
            UPDATE node_load SET cores = cores + NEW.cores, memory_mb = memory_mb + NEW.memory_mb,
                disk_gb = disk_gb + NEW.disk_gb, instances = instances + 1 WHERE node = NEW.node;
            IF NOT FOUND THEN
                INSERT INTO node_load (node, cores, memory_mb, disk_gb, instances)
                    VALUES (NEW.node, NEW.cores, NEW.memory_mb, NEW.disk_gb, 1)
                    ON CONFLICT (node) DO UPDATE SET cores = node_load.cores + EXCLUDED.cores,
                        memory_mb = node_load.memory_mb + EXCLUDED.memory_mb,
                        disk_gb = node_load.disk_gb + EXCLUDED.disk_gb, instances = node_load.instances + 1;
            END IF;
        END IF;
        h := euca_ip_host(NEW.private_ip);
        IF h IS NOT NULL THEN
            SELECT group_name, next_host INTO grp, nxt FROM group_addresses WHERE """ + _owner("h") + """;
            IF nxt = h THEN
                UPDATE group_addresses SET next_host = next_host + 1 WHERE group_name = grp;
            ELSIF nxt < h THEN
                -- taken above the cursor behind the allocator's back: the gap below is unknown,
                -- so the group's bookkeeping goes and its next launch rebuilds it
                DELETE FROM group_addresses WHERE group_name = grp;
            ELSIF nxt > h THEN
                DELETE FROM free_addresses WHERE group_name = grp AND host = h;
            END IF;
        END IF;
    END IF;
    RETURN NULL;
END
$$"""

_BOOKKEEPING_TRIGGERS = [
    # PostgreSQL runs trigger bodies as functions; SQLite has none to create.
    {"postgresql": _PG_HOST_FUNCTION},
    {"postgresql": _PG_BOOKKEEPING_FUNCTION},
    {
        "sqlite": "CREATE TRIGGER instances_bookkeeping_insert AFTER INSERT ON instances "
                  "WHEN NEW.state <> 'terminated' BEGIN\n" + _sqlite_take("NEW") + "END",
        "postgresql": "CREATE TRIGGER instances_bookkeeping_insert AFTER INSERT ON instances FOR EACH ROW "
                      "WHEN (NEW.state <> 'terminated') EXECUTE PROCEDURE euca_instance_bookkeeping()",
    },
    {
        "sqlite": "CREATE TRIGGER instances_bookkeeping_update AFTER UPDATE OF %s ON instances "
                  "WHEN %s BEGIN\n%s%sEND" % (_WATCHED, _SQLITE_CHANGED, _sqlite_release("OLD"), _sqlite_take("NEW")),
        "postgresql": "CREATE TRIGGER instances_bookkeeping_update AFTER UPDATE OF %s ON instances FOR EACH ROW "
                      "WHEN (%s) EXECUTE PROCEDURE euca_instance_bookkeeping()" % (_WATCHED, _PG_CHANGED),
    },
    {
        "sqlite": "CREATE TRIGGER instances_bookkeeping_delete AFTER DELETE ON instances "
                  "WHEN OLD.state <> 'terminated' BEGIN\n" + _sqlite_release("OLD") + "END",
        "postgresql": "CREATE TRIGGER instances_bookkeeping_delete AFTER DELETE ON instances FOR EACH ROW "
                      "WHEN (OLD.state <> 'terminated') EXECUTE PROCEDURE euca_instance_bookkeeping()",
    },
]


# The dispatcher's queue (migration 4); only the id column differs between the dialects.
_JOBS = """CREATE TABLE jobs (
    id %s,
    kind TEXT NOT NULL,
    cluster TEXT NOT NULL,
    account TEXT NOT NULL,
    resources TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '{}',
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    run TEXT,
    message TEXT,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT)"""

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
    (
        2,
        "allocation bookkeeping: node load and per-group address cursor and free list",
        [
            # What the live instances on each node hold: the scheduler reads one row per node
            # instead of summing every instance on it (kept exact by triggers, whoever writes).
            """CREATE TABLE node_load (
                node TEXT PRIMARY KEY,
                cores BIGINT NOT NULL,
                memory_mb BIGINT NOT NULL,
                disk_gb BIGINT NOT NULL,
                instances BIGINT NOT NULL)""",
            "INSERT INTO node_load (node, cores, memory_mb, disk_gb, instances) "
            "SELECT node, SUM(cores), SUM(memory_mb), SUM(disk_gb), COUNT(*) FROM instances "
            "WHERE node IS NOT NULL AND state <> 'terminated' GROUP BY node",
            # A group's private addresses as integers: every host of first_host..last_host from
            # next_host up is free, and free_addresses lists the free ones below it (given back
            # by terminated instances). The lowest free address is MIN(free_addresses.host), else
            # next_host: an indexed lookup, whatever the group holds. Built by the first launch
            # in a group (ledger/allocator.py) and kept exact by the triggers below, which find
            # a group by the address (its subnet); a row whose subnet is not its group's is
            # stale and rebuilt.
            """CREATE TABLE group_addresses (
                group_name TEXT PRIMARY KEY REFERENCES security_groups (name) ON DELETE CASCADE,
                subnet TEXT NOT NULL,
                first_host BIGINT NOT NULL,
                last_host BIGINT NOT NULL,
                next_host BIGINT NOT NULL)""",
            "CREATE INDEX group_addresses_first ON group_addresses (first_host)",
            """CREATE TABLE free_addresses (
                group_name TEXT NOT NULL REFERENCES group_addresses (group_name) ON DELETE CASCADE,
                host BIGINT NOT NULL,
                PRIMARY KEY (group_name, host))""",
            "CREATE INDEX free_addresses_host ON free_addresses (host)",
            # what the first launch in a group reads to build its bookkeeping
            "CREATE INDEX instances_group ON instances (group_name, state)",
        ] + _BOOKKEEPING_TRIGGERS,
    ),
    (
        3,
        "accounts: owners, quotas, key pairs, user data",
        [
            # An account owns groups, instances, addresses, volumes, snapshots, images and key pairs.
            # A NULL quota is no limit. The admin account (ledger/accounts.py ADMIN) sees everything.
            """CREATE TABLE accounts (
                name TEXT PRIMARY KEY,
                number TEXT NOT NULL UNIQUE,
                admin INTEGER NOT NULL DEFAULT 0,
                max_instances INTEGER,
                max_cores INTEGER,
                max_addresses INTEGER,
                max_volume_gb INTEGER,
                created_at TEXT NOT NULL)""",
            {
                "sqlite": "INSERT INTO accounts (name, number, admin, created_at) "
                          "VALUES ('admin', '000000000001', 1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                "postgresql": "INSERT INTO accounts (name, number, admin, created_at) VALUES ('admin', '000000000001', 1, "
                              "to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))",
            },
            # Every owned record gets its owner; what exists already belongs to the admin account.
            # (SQLite adds no REFERENCES with a non-NULL default: ledger/accounts.py checks the owner.)
            "ALTER TABLE security_groups ADD COLUMN account TEXT NOT NULL DEFAULT 'admin'",
            "ALTER TABLE instances ADD COLUMN account TEXT NOT NULL DEFAULT 'admin'",
            "ALTER TABLE elastic_ips ADD COLUMN account TEXT NOT NULL DEFAULT 'admin'",
            "ALTER TABLE volumes ADD COLUMN account TEXT NOT NULL DEFAULT 'admin'",
            "ALTER TABLE snapshots ADD COLUMN account TEXT NOT NULL DEFAULT 'admin'",
            "ALTER TABLE images ADD COLUMN account TEXT NOT NULL DEFAULT 'admin'",
            # What an instance was launched with, kept with it (EC2: a deleted key pair leaves the
            # instances' keys as they were).
            "ALTER TABLE instances ADD COLUMN key_name TEXT",
            "ALTER TABLE instances ADD COLUMN public_key TEXT",
            "ALTER TABLE instances ADD COLUMN user_data TEXT",
            "CREATE INDEX instances_account ON instances (account, state)",
            "CREATE INDEX security_groups_account ON security_groups (account)",
            "CREATE INDEX volumes_account ON volumes (account)",
            "CREATE INDEX elastic_ips_account ON elastic_ips (account)",
            """CREATE TABLE keypairs (
                account TEXT NOT NULL REFERENCES accounts (name),
                name TEXT NOT NULL,
                id TEXT NOT NULL UNIQUE,
                key_type TEXT NOT NULL,
                fingerprint TEXT NOT NULL,
                public_key TEXT NOT NULL,
                created_at TEXT NOT NULL,
                PRIMARY KEY (account, name))""",
        ],
    ),
    (
        4,
        "the EC2 API: access keys, tags, client tokens, the dispatcher's queue",
        [
            # An account's API credentials (EC2 access key id and secret); every request acts as the
            # key's account only. Inactive keys are refused as unknown ones are (AuthFailure).
            """CREATE TABLE access_keys (
                id TEXT PRIMARY KEY,
                account TEXT NOT NULL REFERENCES accounts (name),
                secret TEXT NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('Active', 'Inactive')),
                created_at TEXT NOT NULL)""",
            "CREATE INDEX access_keys_account ON access_keys (account)",
            # EC2 tags on any resource by its id (i-, sg-, eipalloc-/address, vol-, snap-, emi-, key-).
            """CREATE TABLE tags (
                resource_id TEXT NOT NULL,
                tag_key TEXT NOT NULL,
                tag_value TEXT NOT NULL DEFAULT '',
                account TEXT NOT NULL,
                resource_type TEXT NOT NULL,
                PRIMARY KEY (resource_id, tag_key))""",
            "CREATE INDEX tags_account ON tags (account, tag_key)",
            # EC2 idempotency: a ClientToken names the result of its first request (a reservation id)
            # for its account; a retry finds it instead of launching again.
            """CREATE TABLE client_tokens (
                account TEXT NOT NULL,
                token TEXT NOT NULL,
                action TEXT NOT NULL,
                result TEXT NOT NULL,
                created_at TEXT NOT NULL,
                PRIMARY KEY (account, token))""",
            # The dispatcher's queue: what a request changed in the ledger and which hosts must converge
            # it. A request writes its job in its own transaction; the dispatcher claims a cluster's queued
            # jobs together (one run per cluster at a time) and records each outcome here.
            {"sqlite": _JOBS % "INTEGER PRIMARY KEY AUTOINCREMENT", "postgresql": _JOBS % "BIGSERIAL PRIMARY KEY"},
            "CREATE INDEX jobs_state ON jobs (state, cluster, id)",
        ],
    ),
    (
        5,
        "console output: the latest captured console of each instance",
        [
            # EC2 GetConsoleOutput answers at once with what was last read from the instance's node
            # (ledger/console.py): the dispatcher's console job reads the NC and writes it here. One row per
            # instance, the newest capture; no reference to instances, so that history (a terminated
            # instance's row) goes without it and its capture goes with the row (ledger/history.py).
            """CREATE TABLE console_output (
                instance_id TEXT PRIMARY KEY,
                account TEXT NOT NULL,
                output TEXT NOT NULL,
                written_at TEXT,
                captured_at TEXT NOT NULL)""",
            "CREATE INDEX console_output_account ON console_output (account)",
        ],
    ),
    (
        6,
        "instances in launch order: an EC2 describe's page is read in order and stops at its end",
        [
            # DescribeInstances lists in launch order (api/actions_instances.py _rows) and pages with
            # LIMIT/OFFSET: walking these indexes reads a page without sorting every instance first
            # (a page of 1000 of 10,000: 20 ms -> 5 ms). The account's for a tenant, the other for the admin.
            "CREATE INDEX instances_launch_order ON instances (created_gen, reservation_id, launch_index, id)",
            "CREATE INDEX instances_account_order ON instances (account, created_gen, reservation_id, launch_index, id)",
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
                if isinstance(statement, dict):
                    statement = statement.get(txn.dialect)
                    if statement is None:
                        continue
                txn.exec(statement)
            txn.exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)", number, name, now())
