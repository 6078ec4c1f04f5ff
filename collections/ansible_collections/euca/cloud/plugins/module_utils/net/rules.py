# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Packet-filter plumbing shared by the elastic-IP NAT and the security-group filter.

Two backends, one model (ARCHITECTURE §3, "apply atomically"):

- ``nft``: one table of ours (``ip euca_nat``, ``ip euca_filter``) replaced in one
  ``nft -f -`` transaction (``add table; delete table; table { ... }``), so a packet sees
  either the old ruleset or the new one, never a half-loaded one.
- ``iptables``: our own chains (``EUCA-NAT-*``, ``EUCA-FW-*``), flushed and refilled by one
  ``iptables-restore --noflush``; the jumps from the built-in chains are added only when
  missing, and chains we no longer need are deleted in the same restore.

Every rule of ours carries a comment that starts with a tag: a digest of the chain and the
rule's own text. Reading a ruleset back therefore needs no knowledge of how nft or iptables
print a rule: the ordered tags per chain (plus named map contents) are compared with the
tags of the desired ruleset, so a flushed, deleted or altered rule shows up as drift while
an untouched ruleset compares equal and nothing is written. What follows the tag in the
comment is the payload the resource needs to rebuild its items (``gather``).

The ledger generation a ruleset was applied at is recorded in the ruleset itself: the nft
table comment, or a comment-only rule at the top of the first iptables chain.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import re

from ansible_collections.euca.cloud.plugins.module_utils.errors import EucaError, InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.process import CommandFailed, run

BACKENDS = ("auto", "nft", "iptables")
RECORD = "euca.cloud"
_RECORD = re.compile(r"^euca\.cloud (\S+)(?: generation=(\d+))?$")
_NFT_COMMENT = re.compile(r'\scomment "([^"]*)"$')
_IPT_COMMENT = re.compile(r'--comment (?:"((?:[^"\\]|\\.)*)"|(\S+))')
_PAIR = re.compile(r"([^\s,{}=]+) : ([^\s,{}]+)")
# what may appear in a comment we write: no quotes or escapes to survive both printers
_SAFE_COMMENT = re.compile(r'^[^"\\\n]*$')


def tag(chain, body):
    """The short digest that identifies a rule of ours by its chain and text."""
    return hashlib.sha1(("%s|%s" % (chain, body)).encode("utf-8")).hexdigest()[:10]


def short_id(name, length=12):
    """A stable short id for a name that cannot be used as is (chain names)."""
    return hashlib.sha1(name.encode("utf-8")).hexdigest()[:length]


def record_comment(label, generation):
    """The comment that records which resource owns a ruleset and its ledger generation."""
    if generation is None:
        return "%s %s" % (RECORD, label)
    return "%s %s generation=%d" % (RECORD, label, generation)


def parse_record(comment, label):
    """``(True, generation or None)`` when ``comment`` is our record for ``label``."""
    match = _RECORD.match(comment or "")
    if not match or match.group(1) != label:
        return False, None
    return True, (int(match.group(2)) if match.group(2) is not None else None)


def pick_backend(backend, namespace=None, offline=False):
    """The backend to use: ``auto`` is nft when the ``nft`` program works here, else iptables.

    Offline (``state: rendered``) ``auto`` renders nft without probing anything.
    """
    if backend not in BACKENDS:
        raise InvalidInput("backend must be one of %s, not %r" % (", ".join(BACKENDS), backend))
    if backend != "auto":
        return backend
    if offline:
        return "nft"
    try:
        rc = run(["nft", "list", "tables"], namespace=namespace, check=False)[0]
    except CommandFailed:  # no nft binary at all
        return "iptables"
    return "nft" if rc == 0 else "iptables"


class Rule:
    """One rule: its text (nft body with verdict, or iptables ``(matches, target)``) and the
    payload its comment carries after the tag."""

    def __init__(self, body, payload=""):
        self.body = body
        self.payload = payload

    def text(self):
        """The rule's text without its comment (what the tag digests)."""
        if isinstance(self.body, tuple):
            return " ".join(part for part in self.body if part)
        return self.body

    def comment(self, chain):
        """Tag plus payload, as written into the rule's comment."""
        text = tag(chain, self.text())
        if self.payload:
            text = "%s %s" % (text, self.payload)
        if not _SAFE_COMMENT.match(text):
            raise InvalidInput("cannot write %r into a rule comment (quotes, backslashes and newlines are refused)" % text)
        return text


# --------------------------------------------------------------------------- nftables
class NftChain:
    """A chain of our nft table. ``spec`` is the base-chain line exactly as ``nft list`` prints
    it (``type nat hook prerouting priority dstnat; policy accept;``); None for a regular chain."""

    def __init__(self, name, rules, spec=None, comment=None):
        self.name = name
        self.rules = rules
        self.spec = spec
        self.comment = comment


class NftListing:
    """What ``nft list table`` shows of our table: record, chains and named map contents."""

    def __init__(self):
        self.owned = False
        self.generation = None
        # name -> {"comment": str|None, "spec": str|None, "rules": [comment or None, ...]}
        self.chains = {}
        # name -> set of (key, value)
        self.maps = {}

    def payloads(self, chain, prefix):
        """Payloads of the rules of ``chain`` whose payload starts with ``prefix``."""
        out = []
        for comment in self.chains.get(chain, {}).get("rules", []):
            parts = (comment or "").split(" ", 1)
            if len(parts) == 2 and parts[1].startswith(prefix):
                out.append(parts[1])
        return out


class NftRuleset:
    """Our nft table for one resource (``label``): maps, then chains. ``family`` is the nft
    address family of the table (``ip``; ``bridge`` for the segments' interconnect filter)."""

    def __init__(self, table, label, chains, maps=None, family="ip"):
        self.table = table
        self.label = label
        self.chains = chains
        self.family = family
        # [(name, "type ipv4_addr : ipv4_addr", [(key, value), ...]), ...]
        self.maps = maps or []

    def render(self, generation, listing=None):
        """The ``nft -f`` script that replaces our table in one transaction, as lines."""
        full = "%s %s" % (self.family, self.table)
        lines = ["add table %s" % full, "delete table %s" % full, "table %s {" % full,
                 '\tcomment "%s"' % record_comment(self.label, generation)]
        for name, decl, pairs in self.maps:
            lines.append("\tmap %s {" % name)
            lines.append("\t\t%s" % decl)
            if pairs:
                lines.append("\t\telements = {")
                last = len(pairs) - 1
                for index, (key, value) in enumerate(pairs):
                    lines.append("\t\t\t%s : %s%s" % (key, value, "," if index < last else ""))
                lines.append("\t\t}")
            lines.append("\t}")
        for chain in self.chains:
            lines.append("\tchain %s {" % chain.name)
            if chain.comment:
                lines.append('\t\tcomment "%s"' % chain.comment)
            if chain.spec:
                lines.append("\t\t%s" % chain.spec)
            for rule in chain.rules:
                lines.append('\t\t%s comment "%s"' % (rule.body, rule.comment(chain.name)))
            lines.append("\t}")
        lines.append("}")
        return lines

    def commands(self, generation):
        """The same replacement as :meth:`render`, one complete ``nft`` command per line (for plans
        that list what they run as commands, e.g. segments); still loaded as one ``nft -f -``."""
        full = "%s %s" % (self.family, self.table)
        lines = ["add table %s" % full, "delete table %s" % full,
                 'add table %s { comment "%s" ; }' % (full, record_comment(self.label, generation))]
        for name, decl, pairs in self.maps:
            lines.append("add map %s %s { %s ; }" % (full, name, decl))
            if pairs:
                lines.append("add element %s %s { %s }" % (
                    full, name, ", ".join("%s : %s" % pair for pair in pairs)))
        for chain in self.chains:
            inside = []
            if chain.comment:
                inside.append('comment "%s" ;' % chain.comment)
            if chain.spec:
                inside.append(chain.spec)
            lines.append("add chain %s %s%s" % (full, chain.name, " { %s }" % " ".join(inside) if inside else ""))
        for chain in self.chains:
            lines.extend('add rule %s %s %s comment "%s"' % (full, chain.name, rule.body, rule.comment(chain.name))
                         for rule in chain.rules)
        return lines

    def matches(self, listing):
        """True when the kernel holds exactly this ruleset (record aside)."""
        if listing is None or not listing.owned:
            return False
        if set(listing.chains) != set(c.name for c in self.chains):
            return False
        for chain in self.chains:
            seen = listing.chains[chain.name]
            if seen["comment"] != chain.comment or seen["spec"] != chain.spec:
                return False
            if seen["rules"] != [rule.comment(chain.name) for rule in chain.rules]:
                return False
        if set(listing.maps) != set(name for name, _decl, _pairs in self.maps):
            return False
        for name, _decl, pairs in self.maps:
            if listing.maps[name] != set(pairs):
                return False
        return True


def parse_nft_listing(text, label):
    """Parse ``nft list table`` text output into an :class:`NftListing`."""
    listing = NftListing()
    current = None
    kind = None
    buf = ""
    depth = 0
    map_text = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if current is None:
            if line.startswith('comment "') and line.endswith('"'):
                listing.owned, listing.generation = parse_record(line[9:-1], label)
            elif line.startswith("chain ") and line.endswith("{"):
                current, kind = line.split()[1], "chain"
                listing.chains[current] = {"comment": None, "spec": None, "rules": []}
            elif (line.startswith("map ") or line.startswith("set ")) and line.endswith("{"):
                current, kind = line.split()[1], "map"
                map_text[current] = []
            continue
        if depth == 0 and not buf and line == "}":
            current = None
            continue
        if kind == "map":
            map_text[current].append(line)
            continue
        # a statement may span lines (long anonymous sets): join until the braces balance
        buf = "%s %s" % (buf, line) if buf else line
        depth += line.count("{") - line.count("}")
        if depth > 0:
            continue
        depth = 0
        statement, buf = buf, ""
        chain = listing.chains[current]
        if statement.startswith('comment "') and statement.endswith('"') and not chain["rules"]:
            chain["comment"] = statement[9:-1]
        elif statement.startswith("type ") and " hook " in statement:
            chain["spec"] = statement
        else:
            match = _NFT_COMMENT.search(statement)
            chain["rules"].append(match.group(1) if match else None)
    for name, lines in map_text.items():
        body = " ".join(lines)
        elements = body.split("elements = ", 1)[1] if "elements = " in body else ""
        listing.maps[name] = set(_PAIR.findall(elements))
    return listing


def nft_gather(table, label, namespace=None, family="ip"):
    """Our table (of nft address ``family``) as the kernel holds it, or None when it does not exist."""
    rc, out, err = run(["nft", "list", "table", family, table], namespace=namespace, check=False)
    if rc != 0:
        if "No such file or directory" in err or "does not exist" in err:
            return None
        raise CommandFailed("nft list table %s %s failed (rc=%d): %s" % (family, table, rc, err.strip()),
                            rc=rc, stderr=err)
    return parse_nft_listing(out, label)


def nft_load(lines, namespace=None):
    """Load an nft script in one transaction (``nft -f -``)."""
    run(["nft", "-f", "-"], namespace=namespace, data="\n".join(lines) + "\n")


# --------------------------------------------------------------------------- iptables
class IptChain:
    """A chain of ours in one iptables table; ``parent`` is the built-in chain that jumps
    to it (None for chains reached from our own chains)."""

    def __init__(self, name, rules, parent=None):
        self.name = name
        self.rules = rules
        self.parent = parent


class IptListing:
    """What ``iptables-save -t TABLE`` shows of our chains."""

    def __init__(self):
        self.owned = False
        self.generation = None
        self.chains = {}  # name -> [comment or None, ...]
        self.jumps = set()  # (built-in chain, our chain)

    def payloads(self, chain, prefix):
        """Payloads of the rules of ``chain`` whose payload starts with ``prefix``."""
        out = []
        for comment in self.chains.get(chain, []):
            parts = (comment or "").split(" ", 1)
            if len(parts) == 2 and parts[1].startswith(prefix):
                out.append(parts[1])
        return out


class IptRuleset:
    """Our chains in one iptables table; the first chain holds the record rule."""

    def __init__(self, table, prefix, label, chains):
        self.table = table
        self.prefix = prefix
        self.label = label
        self.chains = chains

    def _line(self, chain, rule):
        matches, target = rule.body
        parts = ["-A", chain]
        if matches:
            parts.append(matches)
        parts.append('-m comment --comment "%s"' % rule.comment(chain))
        parts.append(target)
        return " ".join(parts)

    def render(self, generation, listing=None):
        """The ``iptables-restore --noflush`` input: declare (= create or flush) our chains,
        refill them, add missing jumps, delete chains we no longer use. As lines."""
        names = [c.name for c in self.chains]
        stale = sorted(set(listing.chains) - set(names)) if listing is not None else []
        lines = ["*%s" % self.table]
        lines.extend(":%s - [0:0]" % name for name in names + stale)
        lines.append('-A %s -m comment --comment "%s"' % (names[0], record_comment(self.label, generation)))
        for chain in self.chains:
            lines.extend(self._line(chain.name, rule) for rule in chain.rules)
        for chain in self.chains:
            if chain.parent and (listing is None or (chain.parent, chain.name) not in listing.jumps):
                lines.append("-I %s 1 -j %s" % (chain.parent, chain.name))
        lines.extend("-X %s" % name for name in stale)
        lines.append("COMMIT")
        return lines

    def matches(self, listing):
        """True when the kernel holds exactly these chains and jumps (record aside)."""
        if listing is None or not listing.owned:
            return False
        if set(listing.chains) != set(c.name for c in self.chains):
            return False
        for chain in self.chains:
            if listing.chains[chain.name] != [rule.comment(chain.name) for rule in chain.rules]:
                return False
            if chain.parent and (chain.parent, chain.name) not in listing.jumps:
                return False
        return True


def parse_ipt_listing(text, prefix, label):
    """Parse ``iptables-save -t TABLE`` output into an :class:`IptListing` of our chains."""
    listing = IptListing()
    for line in text.splitlines():
        if line.startswith(":" + prefix):
            listing.chains.setdefault(line[1:].split()[0], [])
            continue
        if not line.startswith("-A "):
            continue
        parts = line.split(None, 2)
        chain = parts[1]
        rest = parts[2] if len(parts) > 2 else ""
        if not chain.startswith(prefix):
            if rest.startswith("-j " + prefix) and len(rest.split()) == 2:
                listing.jumps.add((chain, rest.split()[1]))
            continue
        match = _IPT_COMMENT.search(rest)
        comment = None
        if match:
            comment = match.group(1) if match.group(1) is not None else match.group(2)
        owned, generation = parse_record(comment, label)
        if owned:
            listing.owned, listing.generation = True, generation
            continue
        listing.chains.setdefault(chain, []).append(comment)
    return listing


def ipt_gather(table, prefix, label, namespace=None):
    """Our chains of ``table`` as the kernel holds them, or None when none exist."""
    out = run(["iptables-save", "-t", table], namespace=namespace)[1]
    listing = parse_ipt_listing(out, prefix, label)
    if not listing.chains and not listing.jumps:
        return None
    return listing


def ipt_load(lines, namespace=None):
    """Load our chains in one ``iptables-restore --noflush``."""
    run(["iptables-restore", "--noflush"], namespace=namespace, data="\n".join(lines) + "\n")


# --------------------------------------------------------------------------- addresses
def interface_addresses(interface, namespace=None):
    """IPv4 addresses on ``interface`` as ``(address, prefixlen)``; InvalidInput when the
    interface does not exist (checked before anything is changed)."""
    rc, out, err = run(["ip", "-j", "-4", "addr", "show", "dev", interface], namespace=namespace, check=False)
    if rc != 0:
        raise InvalidInput("public interface %s does not exist%s: %s" % (
            interface, " in namespace %s" % namespace if namespace else "", err.strip()))
    found = []
    try:
        links = json.loads(out or "[]")
    except ValueError:
        raise EucaError("cannot read the addresses of %s: ip -j printed %r" % (interface, out[:200]))
    for link in links:
        for info in link.get("addr_info", []):
            if info.get("family") == "inet":
                found.append((info["local"], int(info["prefixlen"])))
    return found


def ip_batch(lines, namespace=None):
    """Run ``ip`` commands (without the leading ``ip``) in one ``ip -batch -``."""
    run(["ip", "-batch", "-"], namespace=namespace, data="\n".join(lines) + "\n")
