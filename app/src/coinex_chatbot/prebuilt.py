"""The packaged knowledge base's indexes, built once per release instead of once per process.

    python -m coinex_chatbot.prebuilt     # writes prebuilt.pickle next to this module

Building the two BM25 indexes takes a task process about a second of CPU at every start, and a
host starts WS of them at once (a deploy, a rolling restart). The role's release step runs this
module once, with the release's own Python, right after the app is installed
(roles/coinex_chatbot/files/release_venv.py ``--prebuild``). A process then unpickles the
indexes in about 50 ms (``knowledge.get_knowledge_base``).

The file is used only when its key is this process's: a hash of every file of the package (code
and data, this file left out) and of the Python, numpy and bm25s versions. Any other file (none,
another key, unreadable) is ignored and the indexes are built as without it; the reason is
returned for the caller to log. The file is written by the installer (root) and only read by the
app, like the package's code next to it.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import tempfile
from pathlib import Path
from typing import Any

import bm25s
import numpy as np

PACKAGE = Path(__file__).resolve().parent
FILE = PACKAGE / "prebuilt.pickle"
SKIPPED_DIRS = {"__pycache__"}


def key() -> str:
    """What the indexes are built from: the package's files and the libraries' versions."""
    h = hashlib.sha256(f"{sys.version}\0{np.__version__}\0{bm25s.__version__}\0".encode())
    for root, dirs, names in os.walk(PACKAGE):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in sorted(names):
            path = Path(root) / name
            if path == FILE or name.endswith((".pyc", ".part")):
                continue
            h.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0")
            h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def load() -> tuple[Any | None, str]:
    """(the pickled indexes, "") when the file is there with this process's key, else
    (None, why not)."""
    try:
        with FILE.open("rb") as f:
            stored = pickle.load(f)
    except FileNotFoundError:
        return None, f"no {FILE.name}"
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
        return None, f"{FILE.name} unreadable: {type(exc).__name__}: {exc}"
    if not isinstance(stored, dict) or stored.get("key") != key():
        return None, f"{FILE.name} is of other files or library versions"
    return stored["indexes"], ""


def write(indexes: Any, path: Path | None = None) -> None:
    """The indexes with this process's key, written atomically (0644) to ``path`` (``FILE``)."""
    path = path or FILE
    fd, part = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    with os.fdopen(fd, "wb") as f:
        pickle.dump({"key": key(), "indexes": indexes}, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.chmod(part, 0o644)
    os.replace(part, path)


def main() -> int:
    from .knowledge import KnowledgeBase

    write(KnowledgeBase.load(prebuilt=False).indexes)
    print(f"wrote {FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
