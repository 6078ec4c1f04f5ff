# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whole-set configuration resources: segments, DHCP, NAT, filter.

Each resource is a set of items keyed by ``key`` and follows one state machine:
gather -> plan -> diff -> apply (ARCHITECTURE §3):

- ``rendered``: validate and render the desired set offline; touches nothing.
- ``merged``: the gathered set with the given items added or replaced.
- ``overridden``: exactly the given items; everything else of ours is removed.
- ``deleted``: the gathered set without the given items (all of ours when none are given).

The plan is a pure value computed from the gathered and the target set; check mode stops
after it; apply executes it once, as one batch. Resources that are applied from the
ledger carry its generation and refuse to apply an older one than the one in place.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.euca.cloud.plugins.module_utils.errors import Conflict, InvalidInput

STATES = ("merged", "overridden", "deleted", "rendered")


class Resource:
    """One kind of whole-set configuration. Subclasses implement the five steps."""

    #: name used in messages ("segment", "elastic IP mapping", ...)
    noun = "item"
    #: the field that identifies an item
    key = "id"
    #: whether the resource records and checks a ledger generation
    generations = False

    def validate(self, items):
        """Check and normalize the desired items; raise InvalidInput before anything changes."""
        raise NotImplementedError

    def validate_contained(self, items):
        """Like :meth:`validate`, but what cannot be applied is left out instead of refused:
        ``(items, problems)``, each problem a dict with ``reason``, and ``key`` when a whole
        item was left out (that item then keeps what is applied now). Resources that cannot
        apply part of a set (the default) refuse like :meth:`validate`."""
        return self.validate(items), []

    def contain_set(self, items):
        """The set ``items`` less what it cannot hold together: ``(items, problems)`` (see
        :meth:`validate_contained`). Default: everything fits."""
        return items, []

    def gather(self):
        """The current items of ours, and the generation in place (or None): ``(items, generation)``."""
        raise NotImplementedError

    def plan(self, before, after, force=False):
        """What must be done to go from ``before`` to ``after`` (both lists of items), as a
        list of commands in the backend's own batch language; empty when nothing differs.
        ``force``: plan the full apply even when nothing differs (to record a newer generation)."""
        raise NotImplementedError

    def records_only(self, plan):
        """Whether ``plan`` does nothing but record the ledger generation (not a change to report)."""
        return False

    def apply(self, plan, after, generation):
        """Execute ``plan`` in one batch; ``after`` and ``generation`` are what it establishes."""
        raise NotImplementedError

    def render(self, items, generation):
        """The complete configuration for ``items`` as the backend would load it (offline)."""
        raise NotImplementedError

    def same(self, old, new):
        """Whether the gathered item ``old`` already is the desired item ``new`` (for the summary)."""
        return old == new


def _by_key(resource, items):
    out = {}
    for item in items:
        if item[resource.key] in out:
            raise InvalidInput("%s %s is given twice" % (resource.noun, item[resource.key]))
        out[item[resource.key]] = item
    return out


def target_items(resource, state, before, desired):
    """The item set ``state`` asks for, given the gathered ``before`` and the ``desired`` items."""
    current = _by_key(resource, before)
    wanted = _by_key(resource, desired)
    if state == "overridden":
        return [wanted[k] for k in sorted(wanted)]
    if state == "merged":
        current.update(wanted)
        return [current[k] for k in sorted(current)]
    if state == "deleted":
        if not desired:
            return []
        return [current[k] for k in sorted(current) if k not in wanted]
    raise InvalidInput("state must be one of %s, not %r" % (", ".join(STATES), state))


def summarize(resource, before, after, plan):
    """What a run changes, by item key: the short form of ``before``/``after``/``commands``.

    At thousands of items the full lists run to megabytes, more than AWX and ansible-runner
    keep per event (runner drops results over 700 KB); the summary stays a few bytes per change.
    """
    old = _by_key(resource, before)
    new = _by_key(resource, after)
    return {
        "added": sorted(k for k in new if k not in old),
        "removed": sorted(k for k in old if k not in new),
        "modified": sorted(k for k in new if k in old and not resource.same(old[k], new[k])),
        "unchanged": sum(1 for k in new if k in old and resource.same(old[k], new[k])),
        "commands": len(plan),
    }


def _contain(resource, before, after, problems):
    """``after`` with each item left out as a whole replaced by what is applied now (if
    anything), then less what the set cannot hold; the problems found on the way are added."""
    current = _by_key(resource, before)
    present = set(item[resource.key] for item in after)
    for problem in problems:
        key = problem.get("key")
        if key is not None and key in current and key not in present:
            after.append(current[key])
            present.add(key)
            problem["kept"] = "as applied before"
    after, more = resource.contain_set(sorted(after, key=lambda item: item[resource.key]))
    problems.extend(more)
    return after


def converge(resource, config, state, check_mode=False, generation=None, contain=False):
    """Run the state machine for ``resource``; returns the module result.

    ``generation`` is the ledger generation the desired set was read at; a resource with
    ``generations`` refuses it when an newer generation is already applied.

    ``contain``: what cannot be applied (a bad item, or part of one) is left out and named in
    the result's ``left_out``; everything else is applied (one tenant's bad record never stops
    the rest of the cloud from converging). Without it, bad input is refused before anything
    changes.
    """
    if state not in STATES:
        raise InvalidInput("state must be one of %s, not %r" % (", ".join(STATES), state))
    contain = contain and state in ("merged", "overridden")
    problems = []
    if contain:
        desired, problems = resource.validate_contained(config or [])
        unique = {}
        for item in desired:
            if item[resource.key] in unique:
                problems.append({"key": None, "item": item[resource.key],
                                 "reason": "%s %s is given twice; the first is applied" % (resource.noun, item[resource.key])})
            else:
                unique[item[resource.key]] = item
        desired = list(unique.values())
    else:
        desired = resource.validate(config or [])
    if state == "rendered":
        return {"changed": False, "rendered": resource.render(desired, generation)}
    before, applied = resource.gather()
    if resource.generations and generation is not None and applied is not None and generation < applied:
        raise Conflict(
            "refusing to apply ledger generation %d: generation %d is already applied here "
            "(another job converged newer state; read the ledger again)" % (generation, applied)
        )
    after = target_items(resource, state, before, desired)
    if contain:
        after = _contain(resource, before, after, problems)
    if resource.generations and generation is None:
        generation = applied
    plan = resource.plan(before, after)
    # Same content, newer generation: record it so an older job cannot roll back past it. The data
    # plane is unchanged, so this is no change to report: a converge that only catches up with ledger
    # writes that did not concern this host stays idempotent (changed=0 on a rerun).
    restamp = (resource.generations and generation is not None and generation != applied
               and (not plan or resource.records_only(plan)))
    if restamp and not plan:
        plan = resource.plan(before, after, force=True)
    result = {
        "changed": bool(plan) and not restamp,
        "before": before,
        "after": after,
        "commands": plan,
        "summary": summarize(resource, before, after, plan),
    }
    if resource.generations:
        result["generation"] = generation
    if contain:
        result["left_out"] = problems
    if plan and not check_mode:
        resource.apply(plan, after, generation)
    return result
