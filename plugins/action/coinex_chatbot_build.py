"""Action of coinex.chatbot.coinex_chatbot_build: the controller's app wheel and wheelhouses
(roles/coinex_chatbot/files/build_wheelhouse.py), checked in this process first.

A no-op deploy finds everything already built. Asking the script through ``command`` costs a
module run and a Python start on the controller (0.5 s of a 5 s no-op); this action loads the
script and calls its ``cached`` here, which hashes the app source and the lock, looks for the
app wheel and each target's wheelhouse and archive, and reads the checkout's git state. Only when
something is missing does it run the script (``argv``: the interpreter, the script and its
options), with the role's controller Python, as the command task did. The result has the command
module's keys (rc, stdout, stderr, cmd) either way, and ``in_process`` says which path it took.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase


def load_script(path: str) -> Any:
    spec = importlib.util.spec_from_file_location("coinex_chatbot_build_wheelhouse", path)
    if spec is None or spec.loader is None:
        raise AnsibleActionFail(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True  # it writes only to the controller's cache, as before
    _VALID_ARGS = frozenset(("argv",))

    def run(self, tmp: Any = None, task_vars: dict | None = None) -> dict:
        result = super().run(tmp, task_vars)
        argv = [str(a) for a in self._task.args.get("argv") or []]
        if len(argv) < 2:
            raise AnsibleActionFail("argv: the controller's Python, build_wheelhouse.py, options")
        found = load_script(argv[1]).cached(argv[2:])
        if found is not None:
            rc, stdout, stderr = 0, json.dumps(found), ""
        else:
            proc = subprocess.run(argv, capture_output=True, text=True, check=False)
            rc, stdout, stderr = proc.returncode, proc.stdout.strip(), proc.stderr
        result |= {"rc": rc, "stdout": stdout, "stderr": stderr, "cmd": argv, "changed": False}
        result["in_process"] = found is not None
        if rc != 0:
            result |= {"failed": True, "msg": f"non-zero return code {rc}"}
        return result
