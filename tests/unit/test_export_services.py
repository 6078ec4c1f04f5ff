"""What storage/exports.py hands the service manager: vblade programs and units, tgt restore scripts."""

import configparser
import shlex
import subprocess

from ansible_collections.euca.cloud.plugins.module_utils.storage import exports

ARGV = ["ip", "netns", "exec", "ns-sc", "vblade", "-m", "d0:0d:00:00:00:01", "3", "0", "aoe-sc", "/srv/vol 100%.img"]
RECORD = {"shelf": 3, "slot": 0, "interface": "aoe-sc", "path": "/srv/vol 100%.img", "macs": ["d0:0d:00:00:00:01"],
          "namespace": "ns-sc", "argv": ARGV[4:]}


def blade(manager):
    return exports.Vblade("/run/test/aoe", "ns-sc", manager)


def comment(vblade):
    return "euca.cloud sc_export: the AoE export of vol-0000000a\n%s%s" % (vblade.MARK, exports.json.dumps(RECORD))


def test_supervisord_program_keeps_its_record_and_quotes_its_command(tmp_path):
    manager = exports.Supervisord(str(tmp_path / "supervisord.conf"), str(tmp_path))
    vblade = blade(manager)
    manager.write("euca-vblade-vol-0000000a", ARGV, comment(vblade), "/run/test/aoe/vol-0000000a.log")
    assert manager.names("euca-vblade-") == ["euca-vblade-vol-0000000a"]
    text = manager.read("euca-vblade-vol-0000000a")
    assert vblade._parse(text) == RECORD
    parser = configparser.RawConfigParser(inline_comment_prefixes=None)
    parser.read_string(text)
    program = parser["program:euca-vblade-vol-0000000a"]
    # supervisord expands %(...)s: a literal % is doubled; the command splits back into the argv
    assert shlex.split(program["command"].replace("%%", "%")) == ARGV
    assert program["autorestart"] == "true" and int(program["startretries"]) >= 10


def test_systemd_unit_never_gives_up_and_quotes_its_command(tmp_path):
    manager = exports.Systemd(str(tmp_path))
    vblade = blade(manager)
    manager.write("euca-vblade-vol-0000000a", ARGV, comment(vblade), "/unused")
    text = manager.read("euca-vblade-vol-0000000a")
    assert vblade._parse(text) == RECORD
    assert "Restart=always" in text and "StartLimitIntervalSec=0" in text
    assert 'ExecStart=ip netns exec ns-sc vblade -m d0:0d:00:00:00:01 3 0 aoe-sc "/srv/vol 100%%.img"' in text


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
