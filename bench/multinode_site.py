#!/usr/bin/env python3
"""P11/P12: playbooks/site.yml deploying the example inventory's seven bare hosts (molecule/multinode),
and its no-op rerun.

Untimed setup: `molecule create -s multinode` builds (or takes from its cache) the base image and the
local apt repository, and starts the hosts: bare Debian 12 systems with systemd, sshd and python3,
each in network namespaces of this bench (prefix eub-*). Timed:
  deploy  `molecule converge`: site.yml over ssh from bare hosts to a converged cloud (every package
          the roles need installed through apt from the local repository, the ledger, Walrus, tgtd,
          libvirtd under systemd, the network);
  rerun   `molecule converge` again: it must change nothing (changed=0 on every host).
Teardown (also on failure): `molecule destroy` removes the hosts and the namespaces.

Baselines: OpenStack-Ansible's all-in-one takes 30-50 minutes and ats-deploy's 20-30, each on one
host; seven hosts from nothing here must take at most 15 minutes on 2 cores (goal). A rerun only
checks, so it takes at most half the deploy.
Prints:
  P11 multi-host site.yml from bare hosts: <s> s (goal <= 900)
  P12 multi-host site.yml no-op rerun vs deploy: <ratio> x (goal <= 0.5)
"""

import os
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BIN = os.path.dirname(sys.executable)
DEPLOY_GOAL = 900.0
RERUN_GOAL = 0.5


def molecule(step, env, timeout=3600):
    """Run one molecule step of the scenario; (seconds, CompletedProcess)."""
    started = time.monotonic()
    done = subprocess.run([os.path.join(BIN, "molecule"), step, "-s", "multinode"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    return time.monotonic() - started, done


def changed(stdout):
    """changed= summed over the PLAY RECAP of a run."""
    recap = stdout.split("PLAY RECAP")[-1]
    return sum(int(line.split("changed=")[1].split()[0]) for line in recap.splitlines() if "changed=" in line)


def main():
    work = tempfile.mkdtemp(prefix="euca-bench-multinode-")
    env = dict(os.environ, NO_COLOR="1", ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
               EUCA_MULTINODE_PREFIX="eub" + uuid.uuid4().hex[:4], MOLECULE_EPHEMERAL_DIRECTORY=work,
               PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    try:
        took, made = molecule("create", env)
        if made.returncode != 0:
            raise SystemExit("molecule create failed:\n%s\n%s" % (made.stdout[-4000:], made.stderr[-2000:]))
        print("setup: hosts up in %.1f s (molecule create, untimed)" % took, flush=True)
        deploy, first = molecule("converge", env)
        if first.returncode != 0:
            raise SystemExit("site.yml (deploy) failed:\n%s\n%s" % (first.stdout[-6000:], first.stderr[-2000:]))
        print("deploy: %.1f s, changed=%d" % (deploy, changed(first.stdout)), flush=True)
        rerun, second = molecule("converge", env)
        if second.returncode != 0 or changed(second.stdout) != 0:
            raise SystemExit("the no-op rerun of site.yml failed or changed something:\n%s" % second.stdout[-6000:])
        print("rerun: %.1f s, changed=0" % rerun, flush=True)
    finally:
        _, done = molecule("destroy", env, timeout=900)
        if done.returncode != 0:
            print("teardown: molecule destroy failed:\n%s" % done.stdout[-3000:], file=sys.stderr)
    ratio = rerun / deploy
    print("P11 multi-host site.yml from bare hosts: %.1f s (goal <= %d)" % (deploy, DEPLOY_GOAL))
    print("P12 multi-host site.yml no-op rerun vs deploy: %.2f x (goal <= %.1f)" % (ratio, RERUN_GOAL))
    return 0 if deploy <= DEPLOY_GOAL and ratio <= RERUN_GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
