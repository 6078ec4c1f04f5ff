# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test harness callback: one JSON line per task start, item and task result, written to the file
descriptor EUCA_EVENTS_FD; after each line it waits for one byte on EUCA_ACK_FD, so the reader
(tests/harness/killer.py) can SIGKILL ansible-playbook's process group at exactly that point."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = """
name: crash_events
type: aggregate
short_description: stream task events to a test harness and wait for its go-ahead
description:
  - Used by tests/harness/killer.py only; does nothing unless EUCA_EVENTS_FD and EUCA_ACK_FD are set.
"""

import json
import os

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "crash_events"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self._out = int(os.environ.get("EUCA_EVENTS_FD", "-1"))
        self._ack = int(os.environ.get("EUCA_ACK_FD", "-1"))
        self._play = None

    def _emit(self, kind, task, host=None, status=None, changed=None):
        if self._out < 0:
            return
        line = json.dumps({"kind": kind, "play": self._play, "task": task.get_name(),
                           "action": task.action, "host": host, "status": status, "changed": changed})
        os.write(self._out, (line + "\n").encode())
        if self._ack >= 0 and not os.read(self._ack, 1):
            os._exit(70)  # the harness went away: stop rather than run on unobserved

    def v2_playbook_on_play_start(self, play):
        self._play = play.get_name()

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._emit("start", task)

    def v2_playbook_on_handler_task_start(self, task):
        self._emit("start", task)

    def _result(self, result, status):
        self._emit("end", result._task, result._host.get_name(), status, bool(result._result.get("changed")))

    def v2_runner_on_ok(self, result):
        self._result(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._result(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._result(result, "unreachable")

    def v2_runner_item_on_ok(self, result):
        self._emit("item", result._task, result._host.get_name(), "ok", bool(result._result.get("changed")))

    def v2_runner_item_on_failed(self, result):
        self._emit("item", result._task, result._host.get_name(), "failed")
