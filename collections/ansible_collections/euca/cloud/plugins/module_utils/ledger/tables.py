# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Readable tables of a ledger view (what playbooks/describe.yml prints, like euca-describe-*)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.euca.cloud.plugins.module_utils.model import rules as model_rules

#: (title, columns, how each row is made from the view) per table, in the order they print
TABLES = (
    ("INSTANCES", ("ID", "NAME", "STATE", "GROUP", "NODE", "PRIVATE IP", "PUBLIC IP", "TYPE", "IMAGE", "KEY",
                   "ACCOUNT"), "instances"),
    ("ADDRESSES", ("PUBLIC IP", "NAME", "INSTANCE", "ACCOUNT"), "elastic_ips"),
    ("VOLUMES", ("ID", "NAME", "SIZE GB", "STATE", "INSTANCE", "DEVICE", "CLUSTER", "ACCOUNT"), "volumes"),
    ("GROUPS", ("NAME", "SEGMENT", "SUBNET", "RULES", "ACCOUNT"), "security_groups"),
    ("KEY PAIRS", ("NAME", "FINGERPRINT", "ACCOUNT"), "keypairs"),
    ("NODES", ("NAME", "CLUSTER", "STATE", "CORES", "MEMORY MB", "INSTANCES"), "nodes"),
)


def _rows(kind, view):
    if kind == "instances":
        public = dict((a["instance"], a["public_ip"]) for a in view.get("elastic_ips", []) if a.get("instance"))
        return [(i["id"], i["name"], i["state"], i["group"], i["node"], i["private_ip"], public.get(i["id"], "-"),
                 i["instance_type"], i["image_id"], i.get("key_name") or "-", i.get("account", "-"))
                for i in view.get("instances", [])]
    if kind == "elastic_ips":
        return [(a["public_ip"], a.get("name") or "-", a.get("instance") or "-", a.get("account", "-"))
                for a in view.get("elastic_ips", [])]
    if kind == "volumes":
        return [(v["id"], v.get("name") or "-", v["size_gb"], v["state"], (v.get("attachment") or {}).get("instance", "-"),
                 (v.get("attachment") or {}).get("device", "-"), v["cluster"], v.get("account", "-"))
                for v in view.get("volumes", [])]
    if kind == "security_groups":
        return [(g["name"], g["segment_id"], g["subnet"], " ".join(model_rules.text(r) for r in g["rules"]) or "-",
                 g.get("account", "-")) for g in view.get("security_groups", [])]
    if kind == "keypairs":
        return [(k["name"], k["fingerprint"], k["account"]) for k in view.get("keypairs", [])]
    return [(n["name"], n["cluster"], n["state"], "%s/%s" % (n["used"]["cores"], n["capacity"]["cores"]),
             "%s/%s" % (n["used"]["memory_mb"], n["capacity"]["memory_mb"]), n["used"]["instances"])
            for n in view.get("nodes", [])]


def table(title, columns, rows):
    """One table as lines: a title, a header and one line per row, columns padded to their widest cell."""
    cells = [list(columns)] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["%s (%d)" % (title, len(rows))]
    for line in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())
    return lines


def describe(view):
    """Every table of a ledger view (what euca.cloud.ledger_info returns), as a list of lines."""
    lines = []
    for title, columns, kind in TABLES:
        if lines:
            lines.append("")
        lines.extend(table(title, columns, _rows(kind, view)))
    return lines
