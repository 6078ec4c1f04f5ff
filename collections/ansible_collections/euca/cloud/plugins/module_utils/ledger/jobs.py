# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The dispatcher's queue (ledger table ``jobs``, schema 4) and its plan of playbook runs.

An EC2 request changes the ledger and queues a job in the same transaction (``enqueue``), so a
change and the work that converges the hosts to it are committed together or not at all. The
dispatcher (api/dispatcher.py) claims *every* queued job of one cluster at once (``claim``), turns
them into as few playbook runs as the playbooks allow (``plan``) and records each outcome
(``finish``). While a cluster has a running job it is not claimed again: what is queued meanwhile
waits and is coalesced into the next claim, so a burst of requests costs one run per cluster, not
one run per request.

A job's state: ``queued`` -> ``running`` (claimed, with a run id) -> ``done`` | ``failed`` (with a
short message). A dispatcher killed mid-run leaves its jobs ``running``; ``recover`` queues them
again at the next start, which is safe because every operation playbook is idempotent.

The API reads the queue back: ``active`` gives EC2's transitional states (shutting-down,
attaching, ...) of resources with unfinished jobs, ``failed`` the message of a resource whose last
job failed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import uuid

from ansible_collections.euca.cloud.plugins.module_utils.errors import InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.ledger.schema import now

#: Job kinds, in the order ``plan`` runs them: host teardown first (terminate, stop, detach frees a
#: volume for delete-volume), then creation, then what uses the created (attach, start, reboot), and
#: ``converge`` (playbooks/reconcile.yml) last, since it also converges what the others changed.
#: ``console`` (reading instances' consoles into the ledger) changes no host: it runs after the
#: instance jobs of its claim (a start or reboot first, then the console of what they did) and
#: never brings a reconcile with it.
KINDS = ("terminate", "stop", "detach", "delete-volume", "create-volume", "snapshot", "delete-snapshot",
         "attach", "start", "reboot", "console", "converge")

#: Kinds that change nothing an EC2 client sees as a resource's state: ``active`` and ``failed``
#: leave them out (a console capture in progress is no transitional state of its instance).
READ_KINDS = ("console",)

#: Kinds whose resources are instance ids; one run of their playbook takes all of them.
INSTANCE_KINDS = ("terminate", "stop", "start", "reboot")

PLAYBOOKS = {
    "terminate": "terminate-instances.yml",
    "stop": "stop-instances.yml",
    "start": "start-instances.yml",
    "reboot": "reboot-instances.yml",
    "attach": "attach-volume.yml",
    "detach": "detach-volume.yml",
    "create-volume": "create-volume.yml",
    "delete-volume": "delete-volume.yml",
    "snapshot": "create-snapshot.yml",
    "delete-snapshot": "delete-snapshot.yml",
    "console": "get-console-output.yml",
    "converge": "reconcile.yml",
}

#: EC2's stateReason of an instance its user terminated (what terminate-instances.yml records).
TERMINATE_REASON = "Client.UserInitiatedShutdown: User initiated shutdown"

#: params a kind's playbook cannot run without
_NEEDS = {"attach": ("instance",), "snapshot": ("volume",)}

_COLUMNS = "id, kind, cluster, account, resources, params, state, run, message, created_at"


def _job(row):
    """A job row as a dict, its JSON columns decoded."""
    return {
        "id": int(row["id"]),
        "kind": row["kind"],
        "cluster": row["cluster"],
        "account": row["account"],
        "resources": json.loads(row["resources"]),
        "params": json.loads(row["params"] or "{}"),
        "created_at": row["created_at"],
        "run": row["run"],
    }


def enqueue(txn, kind, cluster, resources, account, params=None):
    """Queue a job for ``cluster``'s hosts in ``txn`` (the request's own transaction); its id."""
    if kind not in KINDS:
        raise InvalidInput("unknown job kind %r; one of %s" % (kind, ", ".join(KINDS)))
    if not cluster:
        raise InvalidInput("a %s job needs the cluster whose hosts converge it" % kind)
    resources = list(resources)
    if not all(isinstance(r, str) and r for r in resources):
        raise InvalidInput("a job's resources are ids (non-empty strings), not %r" % (resources,))
    if kind != "converge" and not resources:
        raise InvalidInput("a %s job needs the ids it acts on" % kind)
    params = dict(params or {})
    for needed in _NEEDS.get(kind, ()):
        if not params.get(needed):
            raise InvalidInput("a %s job needs params[%r]" % (kind, needed))
    found = txn.exec_rows(
        "INSERT INTO jobs (kind, cluster, account, resources, params, state, created_at) "
        "VALUES (?, ?, ?, ?, ?, 'queued', ?) RETURNING id",
        kind, cluster, account, json.dumps(resources), json.dumps(params, sort_keys=True), now(),
    )
    return int(found[0]["id"])


def queued_for(txn, kind, resource_id):
    """The id of a queued job of ``kind`` naming ``resource_id``, or None (so a request coalesces with it)."""
    found = txn.row("SELECT MIN(id) AS id FROM jobs WHERE state = 'queued' AND kind = ? AND resources LIKE ? ESCAPE '\\'",
                    kind, _like(resource_id))
    return int(found["id"]) if found is not None and found["id"] is not None else None


def claimable(txn):
    """Clusters ``claim`` would take now, oldest queued job first (a read: the dispatcher polls with
    it so that an idle queue never takes the ledger's write lock)."""
    rows = txn.rows(
        "SELECT cluster, MIN(id) AS first FROM jobs WHERE state = 'queued' "
        "AND cluster NOT IN (SELECT cluster FROM jobs WHERE state = 'running') "
        "GROUP BY cluster ORDER BY MIN(id)"
    )
    return [r["cluster"] for r in rows]


def claim(txn, cluster=None):
    """Claim every queued job of one cluster that has no running job: ``(cluster, [jobs])``.

    Without ``cluster`` it is the cluster of the oldest such queued job. The jobs become
    ``running`` under one new run id (each job dict carries it as ``run``). ``(None, [])`` when
    there is nothing to claim (or ``cluster`` is busy or idle).
    """
    if cluster is None:
        found = claimable(txn)
        if not found:
            return None, []
        cluster = found[0]
    elif txn.value("SELECT COUNT(*) FROM jobs WHERE cluster = ? AND state = 'running'", cluster):
        return None, []
    run = uuid.uuid4().hex
    rows = txn.exec_rows(
        "UPDATE jobs SET state = 'running', run = ?, started_at = ? WHERE cluster = ? AND state = 'queued' "
        "RETURNING " + _COLUMNS,
        run, now(), cluster,
    )
    if not rows:
        return None, []
    return cluster, sorted((_job(r) for r in rows), key=lambda j: j["id"])


def finish(txn, job_ids, ok, message=None, run=None):
    """Record the outcome of running jobs: ``done`` (``ok``) or ``failed``, with ``message``.

    With ``run`` only jobs still claimed by that run change (a dispatcher whose jobs were
    recovered and claimed again meanwhile cannot overwrite the newer outcome). The number changed.
    """
    ids = [int(i) for i in job_ids]
    if not ids:
        return 0
    sql = "UPDATE jobs SET state = ?, message = ?, finished_at = ? WHERE state = 'running' AND id IN (%s)" % (
        ", ".join("?" * len(ids)))
    args = ["done" if ok else "failed", message, now()] + ids
    if run is not None:
        sql += " AND run = ?"
        args.append(run)
    return txn.exec(sql, *args)


def recover(txn):
    """Queue again the jobs a killed dispatcher left ``running``; how many.

    Redoing them is safe: every playbook finds what was already done and leaves it.
    """
    return txn.exec("UPDATE jobs SET state = 'queued', run = NULL, started_at = NULL WHERE state = 'running'")


def active(txn, resource_ids=None):
    """``{resource id: kind}`` of the resources with a queued or running job (the newest job's kind).

    The API shows EC2's transitional states from it (a ``terminate`` job: shutting-down, ...).
    """
    wanted = None if resource_ids is None else set(resource_ids)
    out = {}
    for row in txn.rows("SELECT kind, resources FROM jobs WHERE state IN ('queued', 'running') ORDER BY id"):
        if row["kind"] in READ_KINDS:
            continue
        for rid in json.loads(row["resources"]):
            if wanted is None or rid in wanted:
                out[rid] = row["kind"]
    return out


def _like(rid):
    """A LIKE pattern matching the JSON list that holds ``rid`` (``%`` and ``_`` taken literally)."""
    escaped = json.dumps(rid).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return "%" + escaped + "%"


def failed(txn, resource_ids):
    """``{resource id: message}`` for each of ``resource_ids`` whose newest finished job failed.

    The history grows with every request, so only the jobs naming these resources are read.
    """
    wanted = list(dict.fromkeys(resource_ids))
    newest = {}
    for start in range(0, len(wanted), 50):
        chunk = wanted[start:start + 50]
        where = " OR ".join(["resources LIKE ? ESCAPE '\\'"] * len(chunk))
        rows = txn.rows(
            "SELECT id, resources, state, message FROM jobs WHERE state IN ('done', 'failed') AND kind NOT IN (%s) "
            "AND (%s)" % (", ".join("?" * len(READ_KINDS)), where),
            *(list(READ_KINDS) + [_like(r) for r in chunk])
        )
        chunk_set = set(chunk)
        for row in rows:
            for rid in json.loads(row["resources"]):
                if rid in chunk_set and (rid not in newest or newest[rid]["id"] < row["id"]):
                    newest[rid] = row
    return dict((rid, row["message"] or "") for rid, row in newest.items() if row["state"] == "failed")


def runs(txn, since_id=0):
    """The finished runs of jobs after ``since_id``: ``[(run id, cluster, [kinds], number of jobs)]``,
    oldest first. A run is finished when none of its jobs is still running."""
    rows = txn.rows(
        "SELECT run, cluster, kind, id, state FROM jobs WHERE id > ? AND run IS NOT NULL ORDER BY id", int(since_id))
    grouped = {}
    for row in rows:
        entry = grouped.setdefault(row["run"], {"cluster": row["cluster"], "kinds": [], "count": 0, "open": False})
        if row["kind"] not in entry["kinds"]:
            entry["kinds"].append(row["kind"])
        entry["count"] += 1
        entry["open"] = entry["open"] or row["state"] == "running"
    return [(run, e["cluster"], sorted(e["kinds"], key=KINDS.index), e["count"])
            for run, e in grouped.items() if not e["open"]]


def _extra_vars(job):
    """The extra vars of a job of a per-resource kind (one playbook run per distinct value)."""
    kind, params = job["kind"], job["params"]
    resource = job["resources"][0]
    if kind == "attach":
        out = {"volume": resource, "instance": params["instance"]}
        if params.get("device"):
            out["device"] = params["device"]
        return out
    if kind == "detach":
        return {"volume": resource, "force": bool(params.get("force", False))}
    if kind == "create-volume":
        return {"volume_id": resource}
    if kind == "delete-volume":
        # EC2's DeleteVolume deletes the volume's data; the playbook's safety catch is for operators
        return {"volume": resource, "force": True}
    if kind == "snapshot":
        return {"snapshot_id": resource, "volume": params["volume"]}
    # delete-snapshot: the API has forgotten the snapshot already; the cluster says which SC holds it
    return {"snapshot": resource, "cluster": job["cluster"]}


def plan(jobs):
    """The playbook runs that converge ``jobs`` (one cluster's claim), in order: a pure value.

    ``[{"playbook": "terminate-instances.yml", "extra_vars": {...}, "jobs": [ids]}, ...]``, ordered by
    ``KINDS``. Jobs of an instance kind merge into one run (``instance_ids`` the union); stop, start
    and reboot leave out instances terminated in the same claim (a run of only those rides with the
    terminate run, whose outcome is theirs). Jobs of a volume or snapshot kind make one run per
    distinct request (their playbooks take one resource). All ``console`` jobs make one
    get-console-output.yml run (``instance_ids`` the union, ``console_store`` on) after the instance
    runs; all ``converge`` jobs make one reconcile.yml run, last (console jobs never bring one).
    """
    by_kind = dict((kind, []) for kind in KINDS)
    for job in sorted(jobs, key=lambda j: j["id"]):
        if job["kind"] not in by_kind:
            raise InvalidInput("job %s has unknown kind %r" % (job["id"], job["kind"]))
        by_kind[job["kind"]].append(job)
    out = []
    terminate_run = None
    terminated = set()
    for kind in KINDS:
        batch = by_kind[kind]
        if not batch:
            continue
        if kind == "converge":
            out.append({"playbook": PLAYBOOKS[kind], "extra_vars": {}, "jobs": [j["id"] for j in batch]})
        elif kind == "console":
            ids = []
            for job in batch:
                ids.extend(r for r in job["resources"] if r not in ids)
            out.append({"playbook": PLAYBOOKS[kind], "extra_vars": {"instance_ids": ids, "console_store": True},
                        "jobs": [j["id"] for j in batch]})
        elif kind in INSTANCE_KINDS:
            ids = []
            for job in batch:
                ids.extend(r for r in job["resources"] if r not in ids and r not in terminated)
            if not ids and terminate_run is not None:
                terminate_run["jobs"].extend(j["id"] for j in batch)
                continue
            extra = {"instance_ids": ids}
            if kind == "terminate":
                extra["euca_terminate_reason"] = TERMINATE_REASON
                terminated.update(ids)
            entry = {"playbook": PLAYBOOKS[kind], "extra_vars": extra, "jobs": [j["id"] for j in batch]}
            if kind == "terminate":
                terminate_run = entry
            out.append(entry)
        else:
            runs_of_kind = {}
            for job in batch:
                extra = _extra_vars(job)
                key = json.dumps(extra, sort_keys=True)
                if key not in runs_of_kind:
                    runs_of_kind[key] = {"playbook": PLAYBOOKS[kind], "extra_vars": extra, "jobs": []}
                    out.append(runs_of_kind[key])
                runs_of_kind[key]["jobs"].append(job["id"])
    return out
