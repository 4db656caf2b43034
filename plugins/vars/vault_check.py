"""Vars plugin coinex.chatbot.vault_check: one line when an inventory's vault cannot be opened.

Enabled before host_group_vars (ansible.cfg: vars_plugins_enabled), it looks at the group_vars and
host_vars files host_group_vars is about to read for each group and host. When one of them is
ansible-vault encrypted and no vault password was given, or the one given does not open it, the
run stops with one line naming the file, the hosts that need it and the fix, instead of
ansible-core's bare "Attempting to decrypt but no vault secrets found" / "Decryption failed".
It reads no variables itself (returns {}); each file is tried once per run.
"""

from __future__ import annotations

import os
from typing import Any

from ansible.errors import AnsibleError
from ansible.inventory.group import InventoryObjectType
from ansible.parsing.vault import AnsibleVaultError, is_encrypted_file
from ansible.plugins.vars import BaseVarsPlugin

DOCUMENTATION = """
    name: vault_check
    version_added: "1.0.0"
    short_description: One-line error when an inventory vault file cannot be decrypted
    description:
      - Checks the ansible-vault encrypted files among the inventory's group_vars and host_vars
        before host_group_vars reads them, and fails in one line naming the file, the hosts that
        need it and the fix (no password given, or the wrong one).
      - List it before host_group_vars in vars_plugins_enabled.
    options:
      stage:
        ini:
          - key: stage
            section: vars_vault_check
        env:
          - name: ANSIBLE_VARS_PLUGIN_STAGE
    extends_documentation_fragment:
      - ansible.builtin.vars_plugin_staging
"""

EXTENSIONS = ("", ".yml", ".yaml", ".json")
# path -> None (opens) or the error line, for this process
_CHECKED: dict[str, str | None] = {}


def _files(base: str) -> list[str]:
    """The files host_group_vars reads for one entity: base{,.yml,...} or every file under base/."""
    found = []
    for ext in EXTENSIONS:
        path = base + ext
        if os.path.isfile(path):
            found.append(path)
    if os.path.isdir(base):
        for root, dirs, names in os.walk(base):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            found += [os.path.join(root, n) for n in sorted(names) if not n.startswith(".")]
    return found


def _show(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _hosts(entity: Any) -> str:
    if entity.base_type is InventoryObjectType.HOST:
        return entity.name
    names = sorted(h.name for h in entity.get_hosts())
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    shown = ", ".join(names[:3]) + more
    return f"group {entity.name}" + (f": {shown}" if shown else "")


class VarsModule(BaseVarsPlugin):
    def get_vars(self, loader: Any, path: str, entities: Any, cache: bool = True) -> dict:
        super().get_vars(loader, path, entities)
        inventory_dir = path if os.path.isdir(path) else os.path.dirname(path)
        vault = getattr(loader, "_vault", None)
        for entity in entities:
            sub = "host_vars" if entity.base_type is InventoryObjectType.HOST else "group_vars"
            for file in _files(os.path.join(inventory_dir, sub, entity.name)):
                real = os.path.realpath(file)
                if real not in _CHECKED:
                    _CHECKED[real] = self._check(file, vault, inventory_dir)
                if _CHECKED[real]:
                    raise AnsibleError(_CHECKED[real].format(hosts=_hosts(entity)))
        return {}

    @staticmethod
    def _check(file: str, vault: Any, inventory_dir: str) -> str | None:
        with open(file, "rb") as handle:
            if not is_encrypted_file(handle):
                return None
        password_file = _show(os.path.join(inventory_dir, ".vault_pass"))
        if vault is None or not vault.secrets:
            return (
                f"{_show(file)} is vault-encrypted and no vault password was given "
                f"(needed by {{hosts}}): add --vault-password-file {password_file} "
                f"(`make vault` writes it) or --ask-vault-pass"
            )
        with open(file, "rb") as handle:
            data = handle.read()
        try:
            vault.decrypt(data)
        except AnsibleVaultError:
            return (
                f"{_show(file)} does not decrypt with the vault password given "
                f"(needed by {{hosts}}): give the password it was encrypted with "
                f"(`make vault` keeps it in {password_file})"
            )
        return None
