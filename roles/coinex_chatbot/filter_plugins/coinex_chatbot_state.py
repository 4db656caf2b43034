"""The probe's report (coinex.chatbot.coinex_chatbot_dirs, tasks/probe.yml), read.

Is a managed file already as the run would write it? `files | coinex_chatbot_in_place(path,
content=..., mode=..., owner=..., group=...)`, where `files` is the probe's report
(coinex.chatbot.coinex_chatbot_dirs, tasks/probe.yml: state, owner, group, mode and sha1 of each
file, taken before the run changed anything). True only when the path is a regular file whose
content (sha1 of the UTF-8 text, as the template and copy modules write it), mode, owner and group
are the ones given (an argument left out is not compared). A path the report does not hold, or an
unreadable file, is not in place: the file task then runs and decides as before.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Callable, Mapping
from typing import Any


def coinex_chatbot_in_place(
    files: Mapping[str, Mapping[str, Any]] | None,
    path: str,
    content: str | None = None,
    mode: str | int | None = None,
    owner: str | None = None,
    group: str | None = None,
) -> bool:
    found = (files or {}).get(path)
    if not found or found.get("state") != "file" or not found.get("sha1"):
        return False
    if content is not None and hashlib.sha1(content.encode()).hexdigest() != found["sha1"]:
        return False
    if mode is not None and int(str(mode), 8) != int(str(found.get("mode")), 8):
        return False
    if owner is not None and owner != found.get("owner"):
        return False
    return group is None or group == found.get("group")


def coinex_chatbot_dirs_in_place(
    files: Mapping[str, Mapping[str, Any]] | None,
    dirs: list[Mapping[str, Any]],
    default_mode: str = "0755",
) -> bool:
    """`files | coinex_chatbot_dirs_in_place(dirs)`: every directory of `dirs` ({path, owner,
    group, mode}, as coinex.chatbot.coinex_chatbot_dirs takes them) is in the report as a directory
    with that owner and group (when given) and mode (default_mode when not given)."""
    for item in dirs:
        found = (files or {}).get(item["path"])
        if not found or found.get("state") != "directory":
            return False
        mode = item.get("mode") or default_mode
        if int(str(mode), 8) != int(str(found.get("mode")), 8):
            return False
        if any(item.get(k) is not None and item[k] != found.get(k) for k in ("owner", "group")):
            return False
    return True


def coinex_chatbot_release_files(
    reported: Mapping[str, Mapping[str, Any]], releases: str
) -> list[dict[str, Any]]:
    """`reported | coinex_chatbot_release_files(releases_dir)`: the release directories and their
    .fingerprint and .failed_gate files in the report, as tasks/releases.yml reads find's files:
    [{path, isdir, checksum}], sorted by path."""
    pattern = re.compile(re.escape(releases.rstrip("/")) + r"/[^/]+(/\.(fingerprint|failed_gate))?")
    return [
        {
            "path": path,
            "isdir": found.get("state") == "directory",
            "checksum": found.get("sha1", ""),
        }
        for path, found in sorted(reported.items())
        if pattern.fullmatch(path) and found.get("state") in ("directory", "file")
    ]


def coinex_chatbot_reported_files(
    reported: Mapping[str, Mapping[str, Any]], patterns: list[str]
) -> list[dict[str, Any]]:
    """`reported | coinex_chatbot_reported_files(glob_patterns)`: the regular files of the report
    that one of the glob patterns matches, as find lists them: [{path, mode, owner, group, sha1}],
    sorted by path."""
    return [
        {"path": path, **found}
        for path, found in sorted(reported.items())
        if found.get("state") == "file" and any(fnmatch.fnmatchcase(path, p) for p in patterns)
    ]


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "coinex_chatbot_in_place": coinex_chatbot_in_place,
            "coinex_chatbot_dirs_in_place": coinex_chatbot_dirs_in_place,
            "coinex_chatbot_release_files": coinex_chatbot_release_files,
            "coinex_chatbot_reported_files": coinex_chatbot_reported_files,
        }
