# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Options shared by the modules that own a ruleset on the CC (nat, firewall).
    DOCUMENTATION = r"""
options:
  backend:
    description:
      - V(nft) uses nftables, V(iptables) uses C(iptables-restore) (for hosts without nft), V(auto) picks nft when
        the C(nft) program works and iptables otherwise (V(rendered) with V(auto) renders nft).
    type: str
    choices: [auto, nft, iptables]
    default: auto
  generation:
    description:
      - The ledger generation the configuration was read at (what M(euca.cloud.ledger_info) returns). It is recorded
        in the ruleset; an older generation than the recorded one is refused. Without it the recorded one is kept.
      - A newer generation with the same rules is recorded without reporting a change (the data plane is as it was).
    type: int
  namespace:
    description:
      - Act inside this network namespace (it must exist), as the all-in-one sandbox does.
    type: str
  on_invalid:
    description:
      - What to do with an item of O(config) that cannot be applied (or the part of one that cannot).
      - V(fail) refuses the whole run before anything changes.
      - V(skip) leaves it out, converges everything else, warns, and names what it left out, with the reason, in
        RV(left_out); an item left out as a whole keeps what it has now. Only with O(state=merged) or
        O(state=overridden). C(playbooks/network.yml) uses it, so that one tenant's bad record never stops the
        rest of the cloud from converging.
    type: str
    choices: [fail, skip]
    default: fail
"""
