#!/usr/bin/python
"""Directories of the coinex_chatbot role in one module call (tasks/layout.yml).

``ansible.builtin.file`` with ``state: directory`` in a loop costs a module round trip per
directory; this makes each directory of ``dirs`` exist with its owner, group and mode in one call
(``owner`` and ``group`` may be left out: unchanged; ``mode`` defaults to ``default_mode``).
Check mode changes nothing and reports what would change; ``absent`` lists the directories that
still do not exist: in check mode, the ones the run would create.

In the same call it reports the state of the files the role manages (``report``: paths;
``report_globs``: glob patterns, e.g. log files), so that later tasks run only where a file differs
from what the run would write (filter ``coinex_chatbot_in_place``), not a stat round trip each.
A report is taken before anything else of the run changes a file: it is for the deploy's first
pass over each file, not for a file the run has already written.

Returns: changed; ``changed_dirs`` (each path that was, or would be, created or changed);
``absent``; a diff of the changed directories (before/after: state, owner, group, mode); and
``files``: path -> {state: absent | file | directory | link | other, owner, group, mode, sha1 (a
regular file), target (a link)} for each reported path and each glob match; ``contents``: path ->
text (None when absent) of each ``read`` file.
"""

from __future__ import annotations

import glob
import grp
import hashlib
import os
import pwd
import stat

from ansible.module_utils.basic import AnsibleModule

MAX_READ = 64 * 1024

DOCUMENTATION = r"""
module: coinex_chatbot_dirs
short_description: Make several directories exist with their owner, group and mode, in one call
description: Used by the coinex_chatbot role's tasks/layout.yml, not a file task per directory.
options:
  dirs:
    description: The directories, each with C(path) and optional C(owner), C(group), C(mode).
    type: list
    elements: dict
    required: true
  default_mode:
    description: The mode of a directory that gives none.
    type: str
    default: "0755"
  report:
    description: Paths whose state (and a regular file's sha1) is returned in C(files). Read only.
    type: list
    elements: str
    default: []
  report_globs:
    description: Glob patterns whose matches are returned in C(files) like C(report). Read only.
    type: list
    elements: str
    default: []
  read:
    description: >-
      Small text files (up to 64 KiB, no secrets: the result is shown with -v) whose content is
      returned in C(contents). Read only.
    type: list
    elements: str
    default: []
author: coinex_chatbot maintainers
"""


def describe(path: str) -> dict[str, str]:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return {"state": "absent"}
    if not stat.S_ISDIR(st.st_mode):
        return {"state": "not a directory"}
    owner, group = names(st)
    return {
        "state": "directory",
        "owner": owner,
        "group": group,
        "mode": f"{stat.S_IMODE(st.st_mode):04o}",
    }


def names(st: os.stat_result) -> tuple[str, str]:
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return owner, group


def report(path: str) -> dict[str, str]:
    """The state of one path, not following a link; a regular file's sha1 (as Ansible's stat)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return {"state": "absent"}
    owner, group = names(st)
    found = {"owner": owner, "group": group, "mode": f"{stat.S_IMODE(st.st_mode):04o}"}
    if stat.S_ISLNK(st.st_mode):
        return found | {"state": "link", "target": os.readlink(path)}
    if stat.S_ISDIR(st.st_mode):
        return found | {"state": "directory"}
    if not stat.S_ISREG(st.st_mode):
        return found | {"state": "other"}
    sha1 = hashlib.sha1()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 16), b""):
                sha1.update(block)
    except OSError:  # not readable by this user: the file task finds out
        return found | {"state": "file", "sha1": ""}
    return found | {"state": "file", "sha1": sha1.hexdigest()}


def read_text(path: str) -> str | None:
    """A small text file's content; None when it is absent, unreadable, large or not text."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_READ + 1)
    except OSError:
        return None
    if len(data) > MAX_READ:
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None


def main() -> None:
    spec = {
        "dirs": {"type": "list", "elements": "dict", "required": True},
        "default_mode": {"type": "str", "default": "0755"},
        "report": {"type": "list", "elements": "str", "default": []},
        "report_globs": {"type": "list", "elements": "str", "default": []},
        "read": {"type": "list", "elements": "str", "default": []},
    }
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    changed_dirs, absent, before, after = [], [], {}, {}
    for item in module.params["dirs"]:
        path = item.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            module.fail_json(msg=f"every directory needs an absolute path, got {item!r}")
        mode = item.get("mode") or module.params["default_mode"]
        if mode is not None and not isinstance(mode, str):
            module.fail_json(
                msg=f"{path}: give the mode as a quoted string such as '0750', got {mode!r}"
            )
        was = describe(path)
        if was["state"] == "not a directory":
            module.fail_json(msg=f"{path} exists and is not a directory")
        if was["state"] == "absent":
            absent.append(path)
            if not module.check_mode:
                try:
                    os.makedirs(path, exist_ok=True)
                except OSError as error:
                    module.fail_json(msg=f"cannot create {path}: {error.strerror}")
        args = module.load_file_common_arguments(
            {"path": path, "owner": item.get("owner"), "group": item.get("group"), "mode": mode}
        )
        differs = was["state"] == "absent"
        if not (module.check_mode and differs):
            differs = module.set_fs_attributes_if_different(args, differs)
        if differs:
            changed_dirs.append(path)
            now = (
                describe(path)
                if not module.check_mode
                else {"state": "directory"}
                | {
                    k: v
                    for k, v in item.items()
                    if k in ("owner", "group", "mode") and v is not None
                }
            )
            before[path], after[path] = was, now
    # check mode created nothing: what is still absent is what the run would create
    absent = [path for path in absent if not os.path.isdir(path)]
    diff = {"before": before, "after": after} if changed_dirs else {}
    reported = list(module.params["report"])
    for pattern in module.params["report_globs"]:
        reported.extend(sorted(glob.glob(pattern)))
    files = {path: report(path) for path in reported}
    contents = {path: read_text(path) for path in module.params["read"]}
    module.exit_json(
        changed=bool(changed_dirs),
        changed_dirs=changed_dirs,
        absent=absent,
        diff=diff,
        files=files,
        contents=contents,
    )


if __name__ == "__main__":
    main()
