"""What storage/exports.py hands the service manager: vblade programs and units, tgt restore scripts."""

import configparser
import shlex
import subprocess
import time

from ansible_collections.euca.cloud.plugins.module_utils.storage import exports

ARGV = ["ip", "netns", "exec", "ns-sc", "vblade", "-m", "d0:0d:00:00:00:01", "3", "0", "aoe-sc", "/srv/vol 100%.img"]
RECORD = {"shelf": 3, "slot": 0, "interface": "aoe-sc", "path": "/srv/vol 100%.img", "macs": ["d0:0d:00:00:00:01"],
          "namespace": "ns-sc", "argv": ARGV[4:]}
VOL = "vol-0000000a"


def blade(manager, tmp_path):
    return exports.Vblade(str(tmp_path / "aoe"), "ns-sc", manager, str(tmp_path / "supervisord.conf"),
                          str(tmp_path / "programs"), str(tmp_path / "units"))


def test_supervisord_program_keeps_its_record_and_quotes_its_command(tmp_path):
    vblade = blade("supervisord", tmp_path)
    program = vblade.service(VOL, dict(RECORD, running=True, pid=7))
    assert program.write() and not program.write()  # unchanged the second time
    assert (tmp_path / "programs" / ("euca-vblade-" + VOL + ".conf")).exists()
    # what gather finds: the programs of this prefix, each with its record
    listed = exports.supervised.definitions("supervisord", vblade.PREFIX, str(tmp_path / "programs"))
    assert list(listed) == ["euca-vblade-" + VOL]
    text = listed["euca-vblade-" + VOL]
    assert vblade._parse(text) == RECORD
    parser = configparser.RawConfigParser(inline_comment_prefixes=None)
    parser.read_string(text)
    section = parser["program:euca-vblade-" + VOL]
    # supervisord expands %(...)s: a literal % is doubled; the command splits back into the argv
    # (ip by its absolute path: supervisord's PATH may be short)
    command = shlex.split(section["command"].replace("%%", "%"))
    assert command[0].endswith("/ip") and command[1:] == ARGV[1:]
    assert section["autorestart"] == "true" and int(section["startretries"]) >= 10
    assert section["killasgroup"] == "true" and section["stopasgroup"] == "true"
    assert section["stdout_logfile"] == str(tmp_path / "aoe" / (VOL + ".log"))
    assert vblade.render([("stop", VOL, RECORD)]) == ["supervisorctl -c %s stop euca-vblade-%s; rm %s" % (
        tmp_path / "supervisord.conf", VOL, tmp_path / "programs" / ("euca-vblade-" + VOL + ".conf"))]


def test_systemd_unit_never_gives_up_and_quotes_its_command(tmp_path):
    vblade = blade("systemd", tmp_path)
    program = vblade.service(VOL, RECORD)
    assert program.write()
    text = exports.supervised.definitions("systemd", vblade.PREFIX, None, str(tmp_path / "units"))["euca-vblade-" + VOL]
    assert vblade._parse(text) == RECORD
    assert "Restart=always" in text and "StartLimitIntervalSec=0" in text
    # systemd expands %-specifiers and $VARIABLES even inside quotes
    execstart = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    assert len(execstart) == 1 and execstart[0].endswith(
        ' netns exec ns-sc vblade -m d0:0d:00:00:00:01 3 0 aoe-sc "/srv/vol 100%%.img"')
    assert vblade.render([("stop", VOL, RECORD)]) == ["systemctl disable --now euca-vblade-%s.service; rm %s" % (
        VOL, tmp_path / "units" / ("euca-vblade-" + VOL + ".service"))]


def test_vblade_given_by_its_absolute_path_is_still_recognised(tmp_path):
    """Without a namespace the manager runs /usr/sbin/vblade: the record's argv still matches it."""
    sleeper = subprocess.Popen(["/bin/sleep", "30"])
    try:
        deadline = time.monotonic() + 30  # until the child has exec'd (its cmdline is python's before)
        while open("/proc/%d/cmdline" % sleeper.pid, "rb").read().split(b"\0")[0] != b"/bin/sleep":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert exports.Vblade._alive({"pid": sleeper.pid, "argv": ["sleep", "30"]})
        assert not exports.Vblade._alive({"pid": sleeper.pid, "argv": ["sleep", "31"]})
        assert not exports.Vblade._alive({"pid": sleeper.pid, "argv": ["/bin/sleep", "sleep", "30"]})
    finally:
        sleeper.kill()
        sleeper.wait()


def test_supervised_extras_leave_a_plain_program_as_it_was(tmp_path):
    """comment, log and kill_group are opt-in: dnsmasq's program file does not change (no restart on upgrade)."""
    plain = exports.supervised.Supervisord("euca-dhcp", ["/bin/true", "x"], "d", programs_dir=str(tmp_path)).render()
    assert "stopasgroup" not in plain and "stdout_logfile" not in plain and plain.count(";") == 1


def test_tgt_restore_script_recreates_the_target_as_gathered(tmp_path):
    tgt = exports.Tgt(str(tmp_path / "socket"), 0)
    target = {"tid": 4, "luns": {0: {"path": None, "bstype": "null"}, 1: {"path": "/srv/v.img", "bstype": "rdwr"}},
              "acl": ["10.0.0.3", "iqn.2010-05.test:node"], "sessions": []}
    assert tgt.save("vol-0000000a", "iqn.2010-05.cloud.euca:vol-0000000a", target)
    assert not tgt.save("vol-0000000a", "iqn.2010-05.cloud.euca:vol-0000000a", target)  # unchanged
    script = (tmp_path / "socket.0.exports" / "vol-0000000a.sh").read_text()
    lines = [shlex.split(line) for line in script.splitlines() if not line.startswith("#")]
    assert lines.pop(0) == ["set", "-e"]
    assert lines == [
        tgt.argv("--op", "new", "--mode", "target", "--tid", 4, "-T", "iqn.2010-05.cloud.euca:vol-0000000a"),
        tgt.argv("--op", "new", "--mode", "logicalunit", "--tid", 4, "--lun", 1, "-b", "/srv/v.img", "--bstype", "rdwr"),
        tgt.argv("--op", "bind", "--mode", "target", "--tid", 4, "-I", "10.0.0.3"),
        tgt.argv("--op", "bind", "--mode", "target", "--tid", 4, "--initiator-name", "iqn.2010-05.test:node")]
    assert tgt.save("vol-0000000a", "iqn.2010-05.cloud.euca:vol-0000000a", None)
    assert not (tmp_path / "socket.0.exports" / "vol-0000000a.sh").exists()


def test_tgtd_argv_replays_the_scripts_then_execs_tgtd(tmp_path):
    """The wrapper with a stand-in tgtadm (it answers at once) and a stand-in tgtd (echo)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "tgtadm").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "tgtadm").chmod(0o755)
    records = tmp_path / "socket.7.exports"
    records.mkdir()
    (records / "vol-0000000a.sh").write_text("echo restored > %s\n" % (tmp_path / "done"))
    argv = exports.tgtd_argv("127.0.0.1:3260", None, 7)
    assert argv[-6:] == ["tgtd", "-f", "-C", "7", "--iscsi", "portal=127.0.0.1:3260"]
    argv = argv[:argv.index("tgtd")] + ["echo", "tgtd-ran"]
    env = {"PATH": "%s:/usr/bin:/bin" % bin_dir, "TGT_IPC_SOCKET": str(tmp_path / "socket")}
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "tgtd-ran"
    for _ in range(100):
        if (tmp_path / "done").exists():
            break
        subprocess.run(["sleep", "0.05"])
    assert (tmp_path / "done").read_text().strip() == "restored"
