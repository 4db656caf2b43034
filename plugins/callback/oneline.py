"""Stdout callback coinex.chatbot.oneline: ansible-core's default output, except that a host Ansible
cannot reach or become root on is one line naming the host and the fix.

- unreachable: an unknown or changed ssh host key ("Host key verification failed"), or any other
  ssh failure (refused, timed out, no route, authentication), instead of the [ERROR] block with its
  "caused by" repeat and the UNREACHABLE! dump;
- sudo refused: a password sudo asks for and the inventory does not give, a wrong one, or a user
  that may not sudo.
Unreachable results of tasks with ignore_unreachable (the ad-hoc playbook's table reports them in
its own line) print nothing here. Everything else is the default callback's.
"""

from __future__ import annotations

import re
from typing import Any

from ansible.plugins.callback.default import CallbackModule as DefaultCallback

DOCUMENTATION = """
    name: oneline
    type: stdout
    short_description: default output, with one line per unreachable host or refused sudo
    description:
      - ansible-core's default stdout callback, except that an unreachable host (unknown host key,
        ssh failure) or a refused sudo (password missing or wrong, user not allowed) is one line
        naming the host and the fix.
    extends_documentation_fragment:
      - default_callback
      - result_format_callback
    requirements:
      - set as stdout in configuration
"""

HOST_KEY = re.compile(
    r"Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|No \S+ host key is known"
)
SUDO_MISSING = re.compile(r"Missing (sudo|su|doas) password|a password is required")
SUDO_WRONG = re.compile(r"Incorrect (sudo|su|doas) password|incorrect password attempt")
SUDO_DENIED = re.compile(
    r"is not in the sudoers file|is not allowed to (run|execute)|may not run sudo"
)


def _text(result: dict) -> str:
    parts = [result.get(k) for k in ("msg", "module_stderr", "module_stdout", "stderr")]
    return " ".join(str(p) for p in parts if p)


def _ssh_reason(text: str) -> str:
    """ssh's own last words, without ansible-core's prefixes."""
    text = re.sub(r"^(Task failed: )?(Failed to connect to the host via ssh: )?", "", text.strip())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("@")]
    return lines[-1] if lines else text


class CallbackModule(DefaultCallback):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "coinex.chatbot.oneline"

    def v2_playbook_on_play_start(self, play: Any) -> None:
        self._oneline_play = play
        super().v2_playbook_on_play_start(play)

    def _where(self, result: Any) -> tuple[str, str, str]:
        """Host name, its ssh address and the ssh command that reaches it, from the inventory."""
        host = result.host
        hostvars: dict = {}
        play = getattr(self, "_oneline_play", None)
        try:
            manager = play.get_variable_manager()
            hostvars = manager.get_vars(play=play, host=host, include_hostvars=False)
        except Exception:  # only the wording of the line depends on it
            hostvars = dict(getattr(host, "vars", {}))
        plain = {
            k: v for k, v in hostvars.items() if isinstance(v, (str, int)) and "{" not in str(v)
        }
        address = str(plain.get("ansible_host") or host.name)
        port = plain.get("ansible_port")
        user = str(result.task_fields.get("remote_user") or plain.get("ansible_user") or "")
        login = "ssh " + (f"-p {port} " if port else "") + (f"{user}@" if user else "") + address
        return host.name, address, login

    def _one_line(self, result: Any, line: str) -> None:
        if self._last_task_banner != result.task._uuid:
            self._print_task_banner(result.task)
        self._display.error(line)

    def v2_runner_on_unreachable(self, result: Any) -> None:
        if result.task.ignore_unreachable:
            return
        name, address, login = self._where(result)
        text = _text(result.result)
        if HOST_KEY.search(text):
            line = (
                f"{name}: its ssh host key ({address}) is not in your known_hosts or has "
                f"changed (host key checking is on): check the key on the host's console "
                f"(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then add it to "
                f"~/.ssh/known_hosts (ssh-keyscan -t ed25519 {address}, after comparing) or "
                f"remove a changed one (ssh-keygen -R {address})"
            )
        else:
            line = (
                f"{name} is unreachable over ssh ({_ssh_reason(text)}): check that it is up "
                f"and that `{login}` works, or leave it out (--limit '!{name}')"
            )
        self._one_line(result, line)

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        text = _text(result.result)
        name, _address, login = self._where(result)
        user = login.rsplit(" ", 1)[-1].split("@")[0] if "@" in login else ""
        who = user or "the ssh user"
        line = ""
        if SUDO_MISSING.search(text):
            line = (
                f"{name}: sudo asks {who} for a password and the inventory gives none: put it "
                f"into vault.yml as vault_ansible_become_password and set "
                f'ansible_become_password: "{{{{ vault_ansible_become_password }}}}" for {name} '
                f"(hosts.yml), or give {who} NOPASSWD sudo"
            )
        elif SUDO_WRONG.search(text):
            line = (
                f"{name}: sudo refused the password the inventory gives for {who} "
                f"(ansible_become_password): correct vault_ansible_become_password "
                f"(ansible-vault edit ... group_vars/all/vault.yml)"
            )
        elif SUDO_DENIED.search(text):
            line = (
                f"{name}: {who} may not use sudo there: add a sudoers rule for it "
                f"(/etc/sudoers.d/{who or 'deploy'}: {who} ALL=(ALL:ALL) ALL, or NOPASSWD: ALL)"
            )
        if not line:
            super().v2_runner_on_failed(result, ignore_errors)
            return
        self._one_line(result, line)
        if ignore_errors:
            self._display.display("...ignoring")
