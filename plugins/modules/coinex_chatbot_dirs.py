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
With ``dirs`` empty it changes nothing: the role's first round trip to a host (tasks/probe.yml). It
also answers, read only: ``packages`` (dpkg: installed or not), ``accounts`` (users: group,
home, shell; groups: exist), ``units`` (systemd: UnitFileState and ActiveState), ``ini`` (values of
options in ini files, None when absent; a section's presence), ``blocks`` (by name, the sha1 of
the text between a blockinfile-style pair of markers, None without them) and ``python`` (version,
machine and the jemalloc library found for that interpreter, or None) and ``commands`` (read-only
commands' exit codes and output), returned under those names.
"""

from __future__ import annotations

import glob
import grp
import hashlib
import os
import pwd
import stat
import subprocess
from concurrent.futures import ThreadPoolExecutor

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
  packages:
    description: Debian packages whose installed state is returned in C(packages) (name -> bool).
    type: list
    elements: str
    default: []
  accounts:
    description: >-
      C(users) (names) and C(groups) (names); returned in C(accounts) as users: name -> {group,
      home, shell} or None, groups: name -> bool.
    type: dict
    default: {}
  units:
    description: systemd units whose UnitFileState and ActiveState are returned in C(units).
    type: list
    elements: str
    default: []
  ini:
    description: >-
      Each C(path), C(section) and optional C(option): the option's value (None when absent), or
      without an option whether the section exists; returned in C(ini) in the same order.
    type: list
    elements: dict
    default: []
  blocks:
    description: >-
      Each C(path), C(marker) (with C({mark}) as blockinfile) and optional C(name) (default: the
      path): sha1 of the lines between the BEGIN and END markers joined by newlines (None without
      both markers), in C(blocks) under its name.
    type: list
    elements: dict
    default: []
  commands:
    description: >-
      Read-only commands to run (name -> argv), e.g. asking a service what it runs; their exit code
      and output in C(commands) (name -> {rc, stdout}; rc 127 when the program is not there).
    type: dict
    default: {}
  python:
    description: >-
      An interpreter: its version, machine and libjemalloc.so.2 under /usr/lib or /usr/lib64, in
      C(python) as a list of words (None when it cannot run).
    type: str
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


PYTHON_PROBE = (
    "import glob, platform; libs = sorted(p for d in ('/usr/lib', '/usr/lib64') for p in "
    "glob.glob(d + '/libjemalloc.so.2') + glob.glob(d + '/*/libjemalloc.so.2')); "
    "print(platform.python_version(), platform.machine(), *libs[:1])"
)


def run(argv: list[str]) -> str | None:
    """stdout of a command; None when it cannot run or fails."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def command(argv: list[str]) -> dict[str, int | str]:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except OSError as error:
        return {"rc": 127, "stdout": "", "stderr": str(error)}
    except subprocess.TimeoutExpired:
        return {"rc": 124, "stdout": "", "stderr": "timed out after 60 s"}
    return {"rc": out.returncode, "stdout": out.stdout, "stderr": out.stderr[-2000:]}


def packages(names: list[str]) -> dict[str, bool]:
    """name -> installed (dpkg's "ii"); dpkg-query exits 1 when it knows one of them not at all."""
    found = dict.fromkeys(names, False)
    if not names:
        return found
    try:
        out = subprocess.run(
            ["dpkg-query", "--show", "--showformat=${Package} ${db:Status-Abbrev}\\n", *names],
            capture_output=True, text=True, timeout=30, check=False,
        ).stdout  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return found
    for line in out.splitlines():
        name, _, status = line.partition(" ")
        if name in found and status.startswith("ii"):
            found[name] = True
    return found


def accounts(spec: dict) -> dict[str, dict]:
    users: dict[str, dict | None] = {}
    for name in spec.get("users") or []:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            users[name] = None
            continue
        try:
            group = grp.getgrgid(entry.pw_gid).gr_name
        except KeyError:
            group = str(entry.pw_gid)
        users[name] = {"group": group, "home": entry.pw_dir, "shell": entry.pw_shell}
    groups = {}
    for name in spec.get("groups") or []:
        try:
            grp.getgrnam(name)
            groups[name] = True
        except KeyError:
            groups[name] = False
    return {"users": users, "groups": groups}


def unit(name: str) -> dict[str, str] | None:
    """A systemd unit's UnitFileState and ActiveState; None without systemctl."""
    out = run(["systemctl", "show", "--property=UnitFileState,ActiveState", "--", name])
    if out is None:
        return None
    props = dict(line.partition("=")[::2] for line in out.splitlines() if "=" in line)
    return {"enabled": props.get("UnitFileState", ""), "active": props.get("ActiveState", "")}


def ini_value(path: str, section: str, option: str | None) -> str | bool | None:
    """As community.general.ini_file reads it: [section] headers, option = value lines."""
    text = read_text(path)
    lines = text.splitlines() if text is not None else []
    current, present, value = None, False, None
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            current = stripped[1:-1].strip()
            present = present or current == section
            continue
        if current != section or option is None or stripped.startswith(("#", ";")):
            continue
        key, sep, val = stripped.partition("=")
        if sep and key.strip() == option:
            value = val.strip()
    return present if option is None else value


def block_sha1(path: str, marker: str) -> str | None:
    try:  # the whole file (Debian's redis.conf is over 100 KiB)
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    begin, end = marker.replace("{mark}", "BEGIN"), marker.replace("{mark}", "END")
    try:
        first = lines.index(begin)
        last = lines.index(end, first + 1)
    except ValueError:
        return None
    return hashlib.sha1("\n".join(lines[first + 1 : last]).encode()).hexdigest()


def main() -> None:
    spec = {
        "dirs": {"type": "list", "elements": "dict", "required": True},
        "default_mode": {"type": "str", "default": "0755"},
        "report": {"type": "list", "elements": "str", "default": []},
        "report_globs": {"type": "list", "elements": "str", "default": []},
        "read": {"type": "list", "elements": "str", "default": []},
        "packages": {"type": "list", "elements": "str", "default": []},
        "accounts": {"type": "dict", "default": {}},
        "units": {"type": "list", "elements": "str", "default": []},
        "ini": {"type": "list", "elements": "dict", "default": []},
        "blocks": {"type": "list", "elements": "dict", "default": []},
        "commands": {"type": "dict", "default": {}},
        "python": {"type": "str"},
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
    params = module.params
    # the programs it asks (dpkg-query, systemctl, the Python probe, the commands) run at the same
    # time: the round trip lasts as long as the slowest of them, not their sum
    with ThreadPoolExecutor(max_workers=8) as pool:
        asked_packages = pool.submit(packages, params["packages"])
        asked_units = {name: pool.submit(unit, name) for name in params["units"]}
        asked_python = (
            pool.submit(run, [params["python"], "-c", PYTHON_PROBE]) if params["python"] else None
        )
        asked = {
            name: pool.submit(command, [str(a) for a in argv])
            for name, argv in params["commands"].items()
        }
        found_files = {path: report(path) for path in reported}
        contents = {path: read_text(path) for path in params["read"]}
        python = asked_python.result() if asked_python else None
        module.exit_json(
            packages=asked_packages.result(),
            accounts=accounts(params["accounts"]),
            units={name: future.result() for name, future in asked_units.items()},
            ini=[ini_value(i["path"], i["section"], i.get("option")) for i in params["ini"]],
            blocks={
                b.get("name") or b["path"]: block_sha1(b["path"], b["marker"])
                for b in params["blocks"]
            },
            python=python.split() if python is not None else None,
            commands={name: future.result() for name, future in asked.items()},
            changed=bool(changed_dirs),
            changed_dirs=changed_dirs,
            absent=absent,
            diff=diff,
            files=found_files,
            contents=contents,
        )


if __name__ == "__main__":
    main()
