#!/usr/bin/python
"""Small text files of the coinex_chatbot role written in one module call (tasks/switch.yml).

``ansible.builtin.copy`` with ``content`` costs a stat, a transfer and a module run per file; a
switch writes two (the deployed-state record and the release's ``.went_live``). This writes each
file of ``files`` whose content or mode differs, atomically (a temporary file in the same
directory renamed over it, the existing file's owner and group kept, as ``copy`` does). Check mode
writes nothing and reports what would change. Not for secrets: the contents are the module's
arguments, shown with -v.

Returns: changed; ``changed_files`` (each path that was, or would be, written or given its mode);
and, with --diff, a diff per changed file (before/after: its text; a mode change).
"""

from __future__ import annotations

import os

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: coinex_chatbot_files
short_description: Write several small text files, each only when its content or mode differs
description: Used by the coinex_chatbot role's tasks/switch.yml, not a copy task per file.
options:
  files:
    description: The files, each with C(path), C(content) and optional C(mode).
    type: list
    elements: dict
    required: true
  default_mode:
    description: The mode of a file that gives none.
    type: str
    default: "0644"
"""

MAX_TEXT = 1024 * 1024


def current(path: str) -> tuple[str | None, int | None]:
    """(text, permission bits) of ``path``; (None, None) when it does not exist."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TEXT + 1)
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        return None, None
    return data.decode("utf-8", errors="replace"), mode


def write(module: AnsibleModule, path: str, content: str, mode: int) -> None:
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
        os.chmod(tmp, mode)  # not narrowed by the umask
        module.atomic_move(tmp, path)  # keeps an existing file's owner, group and context
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    os.chmod(path, mode)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "files": {"type": "list", "elements": "dict", "required": True},
            "default_mode": {"type": "str", "default": "0644"},
        },
        supports_check_mode=True,
    )
    changed_files: list[str] = []
    diffs: list[dict] = []
    for item in module.params["files"]:
        path, content = item.get("path"), item.get("content")
        if not isinstance(path, str) or not os.path.isabs(path) or not isinstance(content, str):
            module.fail_json(msg=f"each file needs an absolute path and a text content: {item!r}")
        try:
            mode = int(str(item.get("mode") or module.params["default_mode"]), 8)
        except ValueError:
            module.fail_json(msg=f"{path}: mode must be octal, e.g. '0644': {item.get('mode')!r}")
        text, old_mode = current(path)
        if text == content and old_mode == mode:
            continue
        changed_files.append(path)
        diffs.append(
            {
                "before_header": path,
                "after_header": path,
                "before": ""
                if text is None
                else text + ("" if old_mode == mode else f"(mode {old_mode:04o})\n"),
                "after": content + ("" if old_mode in (mode, None) else f"(mode {mode:04o})\n"),
            }
        )
        if not module.check_mode:
            try:
                write(module, path, content, mode)
            except OSError as exc:
                module.fail_json(msg=f"cannot write {path}: {exc.strerror}")
    result: dict = {"changed": bool(changed_files), "changed_files": changed_files}
    if module._diff and diffs:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
