"""A minimal AoE initiator over a raw socket, for tests: nothing on these hosts speaks AoE.

Run inside a namespace: ``python aoe_probe.py IFACE SHELF SLOT``. It broadcasts a Query Config
for e<SHELF>.<SLOT>, then reads sector 0 with an ATA READ SECTORS EXT, and prints JSON:
{"config": {...} or null, "sector0": hex or null, "mac": the target's MAC}.
AoE r11: Ethernet type 0x88A2; header ver/flags, error, major, minor, command, tag.
"""

import json
import os
import socket
import struct
import sys
import time

ETH_P_AOE = 0x88A2


def frame(dst, src, major, minor, command, tag, payload):
    header = struct.pack("!6s6sHBBHBBI", dst, src, ETH_P_AOE, 0x10, 0, major, minor, command, tag)
    data = header + payload
    return data + b"\0" * max(0, 60 - len(data))


def answer(sock, tag, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(9000)
        except socket.timeout:
            return None
        if len(data) < 24:
            continue
        _dst, src, _type, verflags, error, major, minor, command, rtag = struct.unpack("!6s6sHBBHBBI", data[:24])
        if rtag == tag and verflags & 0x08:  # a response to our request
            return {"src": src, "error": error, "major": major, "minor": minor, "command": command, "arg": data[24:]}
    return None


def main():
    iface, shelf, slot = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 2.0
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_AOE))
    sock.bind((iface, ETH_P_AOE))
    mine = sock.getsockname()[4]
    tag = int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF
    sock.send(frame(b"\xff" * 6, mine, shelf, slot, 1, tag, b"\0" * 8))
    config = answer(sock, tag, timeout)
    result = {"config": None, "sector0": None, "mac": None}
    if config:
        bufcnt, firmware, sectors, ver_ccmd, length = struct.unpack("!HHBBH", config["arg"][:8])
        result["config"] = {"shelf": config["major"], "slot": config["minor"], "buffers": bufcnt,
                            "firmware": firmware, "aoe_version": ver_ccmd >> 4}
        result["mac"] = ":".join("%02x" % b for b in config["src"])
        tag += 1
        # ATA: aflags E (LBA48), feature, sector count 1, READ SECTORS EXT (0x24), LBA 0, reserved
        ata = struct.pack("!BBBB6sH", 0x40, 0, 1, 0x24, b"\0" * 6, 0)
        sock.send(frame(config["src"], mine, config["major"], config["minor"], 0, tag, ata))
        read = answer(sock, tag, timeout)
        if read and not read["error"]:
            result["sector0"] = read["arg"][12:12 + 512].hex()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
