"""A private supervisord for tests: its own configuration, socket, pid file and program directory.

Roles are pointed at it with common_supervisor_conf / common_supervisor_programs_dir, so the
host's supervisor (if any) is never touched. stop() shuts it down (its programs first) and
kills it by pid if it does not go.
"""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

CONF = """\
[unix_http_server]
file={d}/supervisor.sock
chmod=0700
[supervisord]
logfile={d}/supervisord.log
pidfile={d}/supervisord.pid
childlogdir={d}
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://{d}/supervisor.sock
[include]
files = {d}/programs/*.conf
"""


class Supervisor:
    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.programs = self.dir / "programs"
        self.programs.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "supervisord.conf"
        self.conf.write_text(textwrap.dedent(CONF).format(d=self.dir))

    @property
    def role_vars(self) -> dict:
        """What roles need to use this supervisord."""
        return {"common_service_manager": "supervisord", "common_supervisor_conf": str(self.conf),
                "common_supervisor_programs_dir": str(self.programs)}

    def ctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["supervisorctl", "-c", str(self.conf), *args], capture_output=True, text=True)

    def pid(self, program: str) -> int:
        out = self.ctl("pid", program).stdout.strip()
        return int(out) if out.isdigit() else 0

    def stop(self) -> None:
        pidfile = self.dir / "supervisord.pid"
        self.ctl("shutdown")
        if not pidfile.exists():
            return
        pid = int(pidfile.read_text())
        for _ in range(150):
            if not os.path.exists("/proc/%d" % pid):
                return
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
