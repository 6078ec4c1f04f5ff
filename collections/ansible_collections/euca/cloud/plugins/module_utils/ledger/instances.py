# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Instance reservations: ids, placement, private address and MAC, state changes.

``present`` with ``count``/``exact_count`` is idempotent by ``name`` (the reservation's
label), like amazon.aws.ec2_instance: re-running asks for nothing new.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.euca.cloud.plugins.module_utils.errors import Conflict, InvalidInput, NotFound
from ansible_collections.euca.cloud.plugins.module_utils.ledger import accounts, groups, ids, images, keypairs, scheduler, settings
from ansible_collections.euca.cloud.plugins.module_utils.model import addressing
from ansible_collections.euca.cloud.plugins.module_utils.model import names
from ansible_collections.euca.cloud.plugins.module_utils.ledger.cloud import get_cluster, node_usage
from ansible_collections.euca.cloud.plugins.module_utils.ledger.schema import now

STATES = ("pending", "running", "stopped", "terminated")
# Which state each target state may be reached from.
TRANSITIONS = {
    "running": ("pending", "stopped", "running"),
    "stopped": ("pending", "running", "stopped"),
    "terminated": ("pending", "running", "stopped", "terminated"),
}
VIEW = ("id", "name", "reservation_id", "launch_index", "group_name", "image_id", "instance_type", "cluster", "node",
        "cores", "memory_mb", "disk_gb", "private_ip", "mac", "state", "reason", "account", "key_name")
#: EC2's limit on user data (RunInstances: 16 KB, before base64)
USER_DATA_MAX = 16384


def view(row, account=None):
    """An instance in the shape modules return (``group`` for ``group_name``), in ``account``'s words."""
    out = dict((k, row[k]) for k in VIEW)
    out["group"] = out.pop("group_name")
    if account is not None and account != accounts.ADMIN:
        out["group"] = accounts.group_display(out["group"])
    return out


def get_instance(txn, instance_id, account=None):
    """The instance row; NotFound naming the fix otherwise (also for another account's, with ``account``)."""
    found = txn.row("SELECT * FROM instances WHERE id = ?", instance_id)
    if found is None or (account is not None and not accounts.sees(txn, account, found["account"])):
        raise NotFound("InvalidInstanceID.NotFound: unknown instance %r" % (instance_id,))
    return found


def live_by_name(txn, name, account=accounts.ADMIN):
    """``account``'s live (not terminated) instances labelled ``name``, oldest first."""
    return txn.rows(
        "SELECT * FROM instances WHERE name = ? AND account = ? AND state <> 'terminated' "
        "ORDER BY created_gen, launch_index, id",
        name, account,
    )


def check_user_data(user_data):
    """``user_data`` (text) when it is within EC2's 16 KiB, else InvalidInput."""
    if user_data is None:
        return None
    if not isinstance(user_data, str):
        raise InvalidInput("user_data must be text, not %s" % type(user_data).__name__)
    size = len(user_data.encode("utf-8"))
    if size > USER_DATA_MAX:
        raise InvalidInput("InvalidParameterValue: user data is %d bytes; EC2's limit is %d bytes (16 KiB)"
                           % (size, USER_DATA_MAX))
    return user_data


def resolve_type(conf, instance_type):
    """The (cores, memory_mb, disk_gb) of a VM type from the cloud's vm_types."""
    types = conf["vm_types"]
    if instance_type not in types:
        raise InvalidInput("unknown instance_type %r: known types are %s" % (instance_type, ", ".join(sorted(types))))
    spec = types[instance_type]
    return {"cores": spec["cores"], "memory_mb": spec["memory_mb"], "disk_gb": spec["disk_gb"]}


def _candidates(txn, cluster):
    rows = txn.rows(
        "SELECT * FROM nodes WHERE state = 'enabled'" + (" AND cluster = ?" if cluster else "") + " ORDER BY name",
        *([cluster] if cluster else [])
    )
    out = []
    for row in rows:
        used = node_usage(txn, row["name"])
        out.append({
            "name": row["name"],
            "cluster": row["cluster"],
            "instances": used["instances"],
            "free": dict((r, row[r] - used[r]) for r in scheduler.RESOURCES),
        })
    return out


def terminate(txn, row, reason="terminated by request"):
    """Terminate one instance: free its address, drop its EIP association and attachments."""
    if row["state"] == "terminated":
        return False
    txn.exec("UPDATE elastic_ips SET instance_id = NULL WHERE instance_id = ?", row["id"])
    for attachment in txn.rows("SELECT volume_id FROM attachments WHERE instance_id = ?", row["id"]):
        txn.exec("DELETE FROM attachments WHERE volume_id = ?", attachment["volume_id"])
        txn.exec("UPDATE volumes SET state = 'available' WHERE id = ?", attachment["volume_id"])
    txn.exec("UPDATE instances SET state = 'terminated', reason = ?, updated_at = ? WHERE id = ?", reason, now(), row["id"])
    return True


def launch(txn, name, group, image, instance_type, count, cluster=None, policy=None, account=accounts.ADMIN,
           keypair=None, user_data=None):
    """Reserve ``count`` new pending instances; all or nothing.

    The cost does not grow with the cloud: node capacity comes from node_load and the lowest
    free addresses from the group's free list (ledger/allocator.py), each one indexed query.
    """
    # imported here: this function is the only user
    from ansible_collections.euca.cloud.plugins.module_utils.ledger import allocator

    # One query reads the settings, the group, the image, the candidate nodes and the group's
    # lowest free addresses; the ledger's own lookups run only to refuse (with their words).
    reads = allocator.launch_reads(txn, group, image, count, cluster)
    conf = dict(settings.DEFAULTS)  # as settings.load: the stored values over the defaults
    conf.update(reads["settings"])
    need = resolve_type(conf, instance_type)
    if reads["subnet"] is None:
        groups.get_group(txn, group)  # raises NotFound
    image_row = reads["image"]
    if image_row is None or image_row["kind"] != "machine" or account != accounts.ADMIN:
        image_row = images.resolve(txn, image, "machine", account)  # raises NotFound or InvalidInput
    accounts.check_quota(txn, account, max_instances=count, max_cores=count * need["cores"])
    if cluster:
        get_cluster(txn, cluster)
    policy = policy or conf["scheduler"]
    subnet = addressing.parse_network(reads["subnet"], "subnet")
    nodes = reads["nodes"]
    hosts = allocator.plan(txn, group, subnet, reads)
    placed, cursor = scheduler.place(nodes, need, count, policy, conf.get("roundrobin_cursor"))
    clusters = dict((n["name"], n["cluster"]) for n in nodes)
    reservation = ids.new_id(txn, "reservation")
    created = []
    stamp = now()
    # The generation this transaction commits as: orders launches even within one second.
    generation = txn.current_generation() + 1
    for index, node in enumerate(placed):
        fresh = False
        for _attempt in range(16):
            # The INSERT checks the id (primary key, terminated instances included) and the
            # address and MAC (unique among live instances): no query ahead of it.
            instance_id = allocator.new_instance_id()
            address = addressing.ipv4_text(hosts[index])
            rows = txn.exec_rows(
                "INSERT INTO instances (id, name, reservation_id, launch_index, group_name, image_id, instance_type, "
                "cluster, node, cores, memory_mb, disk_gb, private_ip, mac, state, reason, created_gen, created_at, "
                "updated_at, account, key_name, public_key, user_data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', '', ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING RETURNING *",
                instance_id, name, reservation, index, group, image_row["id"], instance_type, clusters[node], node,
                need["cores"], need["memory_mb"], need["disk_gb"], address, allocator.mac_for_host(hosts[index]),
                generation, stamp, stamp, account, keypair["name"] if keypair else None,
                keypair["public_key"] if keypair else None, user_data,
            )
            if rows:
                created.append(rows[0])
                break
            if txn.row("SELECT id FROM instances WHERE id = ?", instance_id):
                continue  # an id drawn before: draw another
            holder = txn.row("SELECT id, group_name FROM instances WHERE (private_ip = ? OR mac = ?) "
                             "AND state <> 'terminated'", address, allocator.mac_for_host(hosts[index])) or {}
            if fresh:
                raise Conflict(
                    "private address %s in subnet %s of group %s is held by instance %s of group %s; terminate that "
                    "instance" % (address, subnet, group, holder.get("id"), holder.get("group_name"))
                )
            # The bookkeeping offered an address a live instance holds (a row written behind its
            # back): rebuild it and plan the rest of this reservation again.
            hosts[index:] = allocator.plan_hosts(txn, group, subnet, len(placed) - index, fresh=True)
            fresh = True
        else:
            raise Conflict("could not draw a fresh instance id in 16 tries")
    if policy == "ROUNDROBIN" and cursor != conf.get("roundrobin_cursor"):
        settings.store(txn, "roundrobin_cursor", cursor)
    return created


def ensure_instances(txn, name=None, state="present", instance_ids=None, group=None, image=None,
                     instance_type="m1.small", cluster=None, count=None, exact_count=None, policy=None, reason=None,
                     account=accounts.ADMIN, key_name=None, user_data=None):
    """Converge instances to ``state``.

    ``present``: at least ``count`` (or exactly ``exact_count``, terminating the newest
    extra ones) live instances labelled ``name``. ``running``/``stopped``/``terminated``:
    move the instances in ``instance_ids`` (or all live ones labelled ``name``).

    Everything is ``account``'s: labels and group names are its own, another account's instance id
    is not found (the admin account acts on every account's instances by id), new instances get
    its key pair ``key_name`` and ``user_data`` and count against its quotas.
    """
    accounts.get_account(txn, account)
    user_data = check_user_data(user_data)
    if state == "absent":
        state = "terminated"
    if state == "present":
        if not name:
            raise InvalidInput("state=present needs name: it labels the reservation so re-runs are idempotent")
        names.check_name("instance", name)
        if (count is None) == (exact_count is None):
            raise InvalidInput("state=present needs exactly one of count or exact_count")
        wanted = count if count is not None else exact_count
        if not isinstance(wanted, int) or wanted < 0:
            raise InvalidInput("count/exact_count must be a non-negative integer, not %r" % (wanted,))
        # the instances belong to their group's account (the admin account launches into another's
        # group as that account: its labels, key pairs and quotas)
        group_row = groups.get_group(txn, group, account) if group else None
        owner = group_row["account"] if group_row else account
        live = live_by_name(txn, name, owner)
        before = [view(r, account) for r in live]
        created, removed = [], []
        if wanted > len(live):
            if not group or not image:
                raise InvalidInput("launching instances for %s needs group and image" % name)
            keypair = keypairs.get_keypair(txn, owner, key_name) if key_name else None
            created = launch(txn, name, group_row["name"], image, instance_type, wanted - len(live), cluster, policy,
                             owner, keypair, user_data)
        elif exact_count is not None and len(live) > exact_count:
            for row in list(reversed(live))[: len(live) - exact_count]:
                terminate(txn, row, "terminated to meet exact_count %d" % exact_count)
                removed.append(row["id"])
        after_rows = live_by_name(txn, name, owner)
        return {
            "changed": bool(created or removed),
            "before": before,
            "after": [view(r, account) for r in after_rows],
            "instances": [view(r, account) for r in after_rows],
            "launched": [r["id"] for r in created],
            "terminated": removed,
        }

    if state not in TRANSITIONS:
        raise InvalidInput("state must be present, running, stopped, terminated or absent, not %r" % (state,))
    if instance_ids:
        rows = []
        for instance_id in instance_ids:
            rows.append(get_instance(txn, instance_id, account))
    elif name:
        rows = live_by_name(txn, name, account)
    else:
        raise InvalidInput("state=%s needs instance_ids or name" % state)
    before = [view(r, account) for r in rows]
    changed = []
    for row in rows:
        if row["state"] not in TRANSITIONS[state]:
            raise Conflict("instance %s is %s and cannot become %s" % (row["id"], row["state"], state))
        if row["state"] == state:
            continue
        if state == "terminated":
            terminate(txn, row, reason or "terminated by request")
        else:
            txn.exec("UPDATE instances SET state = ?, reason = ?, updated_at = ? WHERE id = ?", state, reason or "", now(), row["id"])
        changed.append(row["id"])
    after = [view(get_instance(txn, r["id"]), account) for r in rows]
    return {"changed": bool(changed), "before": before, "after": after, "instances": after,
            "launched": [], "terminated": changed if state == "terminated" else []}


# ---------------------------------------------------------------------------------------------- observed state
#: EC2's state reasons for an instance the node reports shut off, by libvirt's shut-off reason
SHUTOFF_REASONS = {
    "shutdown": "Client.InstanceInitiatedShutdown: Instance initiated shutdown",
    "destroyed": "Client.UserInitiatedShutdown: User initiated shutdown (the domain was powered off on node %s, "
                 "outside the cloud)",
}
#: shut-off reasons that are not the guest's or a user's choice: the instance stays running in the ledger and
#: reconcile starts it again (like a gone domain)
CRASH_REASONS = ("crashed", "failed")
NOT_STARTED = "Server.InternalError: the node did not start the instance: %s"
OBSERVED_STATES = ("running", "stopping", "stopped")


def _observations(observations):
    """Check the per-node observations; ``[(node, expected or None, domains by name, failures by id)]``."""
    out, seen = [], set()
    for index, obs in enumerate(observations or []):
        if not isinstance(obs, dict) or not obs.get("node"):
            raise InvalidInput("observation %d needs node (the ledger's name of the node that reported)" % index)
        node = obs["node"]
        if node in seen:
            raise InvalidInput("node %s is observed twice; give one observation per node" % node)
        seen.add(node)
        domains = {}
        for dom in obs.get("domains") or []:
            name = dom.get("name") if isinstance(dom, dict) else None
            if not name or dom.get("state") not in OBSERVED_STATES:
                raise InvalidInput("node %s: every domain needs name and state (%s), not %r"
                                   % (node, ", ".join(OBSERVED_STATES), dom))
            domains[name] = {"state": dom["state"], "reason": dom.get("reason") or ""}
        failures = {}
        for fail in obs.get("failed") or []:
            # {name, msg}, or a failed loop result of euca.cloud.nc_instance as registered (item.name, msg)
            name = (fail.get("name") or (fail.get("item") or {}).get("name")) if isinstance(fail, dict) else None
            if not name:
                raise InvalidInput("node %s: every failed launch needs name (the instance id) and msg" % node)
            failures[name] = " ".join(str(fail.get("msg") or "unknown error").split())[:300]
        expected = None
        if obs.get("expected") is not None:
            expected = dict((e["id"], e["state"]) for e in obs["expected"])
        out.append((node, expected, domains, failures))
    return out


def record_observations(txn, observations):
    """Record what node controllers report about their instances, as Eucalyptus's CC polled its NCs.

    ``observations``: one dict per node that answered: ``node``; ``domains``, every instance domain it has
    (``name``, ``state`` running|stopping|stopped, ``reason`` why libvirt shut it off; what
    euca.cloud.nc_instance_info returns); ``failed``, the launches it tried and could not do (``name``,
    ``msg``; after its retry); ``expected``, optional, the node's live instances (``id``, ``state``) as the
    ledger had them when the node was polled. A node that sent nothing is not judged (``unobserved``).

    Transitions, for each live instance the ledger places on an observed node:

    - ``pending`` and its domain runs: ``running`` (the launch finished; a killed run-instances leaves this).
    - ``pending`` or ``running`` and the node failed to start it (in ``failed``) and it does not run:
      ``terminated`` with EC2's ``Server.InternalError: the node did not start the instance: <why>``; its
      private address and MAC go back to the group, its elastic IP is disassociated, its volumes detached.
    - ``running`` and shut off by the guest (``shutdown``) or powered off (``destroyed``): ``stopped``, with
      EC2's ``Client.InstanceInitiatedShutdown`` / ``Client.UserInitiatedShutdown`` reason; other shut-off
      reasons (saved, unknown, ...) stop it with ``Server.InternalError`` naming libvirt's reason.
    - ``stopped`` and its domain runs: ``running`` (it was started on the node).
    - ``pending`` with no running domain and no failure: stays ``pending`` (a launch may be under way;
      reconcile starts it and records the outcome).

    Not changed, only reported:

    - ``gone``: a ``running``/``stopped`` instance whose domain is not on its node although the node answered.
      EC2 terminates an instance-store instance whose host lost it; here the ledger is the cloud's record
      of what should exist, and the instance keeps everything that makes it (its overlay when the directory
      survived, else a fresh one from its image; its id, addresses, elastic IP and volumes), so reconcile
      defines and starts it again, as it rebuilds a node from nothing or after a ledger restore. Only if that
      start fails (twice) is it terminated, as above.
    - ``crashed``: ``running`` in the ledger, shut off because QEMU crashed or failed: reconcile restarts it.
    - ``unknown``: a domain on a node that the ledger does not place there live (no record, a terminated
      one, or one placed on another node; e.g. after an older ledger was restored). Never removed here: the
      operator decides (reconcile.yml ``-e purge_unknown=true``).
    - ``superseded``: instances whose ledger state changed since the node was polled (``expected``): a concurrent
      operation's intent is newer than the observation, so it is not overturned.

    Idempotent: the same observations a second time change nothing. Returns the lists above, ``before`` and
    ``after`` (the changed instances) and ``msg``.
    """
    nodes = _observations(observations)
    report = dict((key, []) for key in ("launched", "started", "stopped", "terminated", "pending", "gone", "crashed",
                                        "unknown", "superseded"))
    before, after = [], []
    observed_nodes = set(node for node, _e, _d, _f in nodes)
    known = txn.rows("SELECT name FROM nodes ORDER BY name")
    report["unobserved"] = [r["name"] for r in known if r["name"] not in observed_nodes and txn.value(
        "SELECT count(*) FROM instances WHERE node = ? AND state <> 'terminated'", r["name"])]

    def change(row, state, reason, key, entry):
        before.append(view(row))
        if state == "terminated":
            terminate(txn, row, reason)
        else:
            txn.exec("UPDATE instances SET state = ?, reason = ?, updated_at = ? WHERE id = ?", state, reason, now(),
                     row["id"])
        after.append(view(get_instance(txn, row["id"])))
        report[key].append(entry)

    for node, expected, domains, failures in nodes:
        rows = txn.rows("SELECT * FROM instances WHERE node = ? AND state <> 'terminated' ORDER BY id", node)
        placed = set(r["id"] for r in rows)
        for row in rows:
            iid, state = row["id"], row["state"]
            dom = domains.get(iid)
            seen = dom["state"] if dom else "gone"
            why = dom["reason"] if dom else ""
            if expected is not None and expected.get(iid) != state:
                if seen != ("running" if state == "pending" else state):
                    report["superseded"].append({"id": iid, "node": node, "state": state, "observed": seen,
                                                 "why": "its ledger state changed since the node was polled"
                                                 if iid in expected else "launched after the node was polled"})
                continue
            if iid in failures and seen != "running" and state in ("pending", "running"):
                reason = NOT_STARTED % failures[iid]
                change(row, "terminated", reason, "terminated", {"id": iid, "node": node, "reason": reason})
            elif seen == "running":
                if state == "pending":
                    change(row, "running", "", "launched", iid)
                elif state == "stopped":
                    change(row, "running", "observed running on node %s" % node, "started", {"id": iid, "node": node})
            elif seen == "gone":
                if state == "pending":
                    report["pending"].append({"id": iid, "node": node, "observed": "gone"})
                else:
                    report["gone"].append({"id": iid, "node": node, "state": state})
            elif seen == "stopped":
                if state == "pending":
                    report["pending"].append({"id": iid, "node": node, "observed": "stopped"})
                elif state == "running" and why in CRASH_REASONS:
                    report["crashed"].append({"id": iid, "node": node, "reason": why})
                elif state == "running":
                    reason = SHUTOFF_REASONS.get(why)
                    reason = (reason % node if "%s" in reason else reason) if reason else (
                        "Server.InternalError: the domain is shut off on node %s (libvirt: %s)" % (node, why or "unknown"))
                    change(row, "stopped", reason, "stopped", {"id": iid, "node": node, "reason": reason})
            # "stopping": an ACPI shutdown under way; the next poll records where it ends
        for name in sorted(set(domains) - placed):
            other = txn.row("SELECT state, node FROM instances WHERE id = ?", name)
            if other is None:
                ledger = "none"
            elif other["state"] == "terminated":
                ledger = "terminated"
            else:
                ledger = "placed on node %s" % other["node"]
            report["unknown"].append({"id": name, "node": node, "state": domains[name]["state"], "ledger": ledger})
    report["changed"] = bool(before)
    report["before"] = before
    report["after"] = after
    report["msg"] = observation_summary(report)
    return report


def observation_summary(report):
    """One line that says what ``record_observations`` recorded and what it only reports."""
    parts = []
    for key, words in (("launched", "pending -> running"), ("started", "stopped -> running"),
                       ("stopped", "running -> stopped"), ("terminated", "did not start, terminated"),
                       ("pending", "still pending"), ("gone", "gone from their node"),
                       ("crashed", "crashed"), ("unknown", "domains the ledger does not know (left alone)"),
                       ("superseded", "changed since the poll, left as the ledger says")):
        items = report.get(key) or []
        if items:
            ids = ", ".join((i if isinstance(i, str) else "%s on %s" % (i["id"], i["node"])) for i in items)
            parts.append("%s: %s" % (words, ids))
    if report.get("unobserved"):
        parts.append("nodes that did not report: %s" % ", ".join(report["unobserved"]))
    return "; ".join(parts) or "every observed instance is as the ledger says"
