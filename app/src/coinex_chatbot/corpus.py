"""The help-centre corpus: the knowledge-base records of ``kb/*.json``, loaded and validated.

Every file is a JSON array of articles ``{"id", "topic", "en": {"title", "body", "keywords"?},
"zh": {...}}``. Ids are unique and shared by both languages, so an article found in one language
can be answered in the other. ``keywords`` (optional) are short phrasings customers use for the
article ("deposit missing", "转错链"); they are indexed, never shown. Kept apart from
``knowledge`` (bm25s, numpy) so the web processes, which report the corpus in /readyz, do not
import the search stack.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from .language import LANGUAGES


def load_records(path: Path | None = None) -> list[dict]:
    """Every article of ``path`` (a directory of ``*.json`` files or one file), validated.

    Without ``path`` the corpus shipped in the package (``coinex_chatbot/kb``) is used.
    Raises ``ValueError`` on a malformed article or a duplicate id.
    """
    if path is None:
        sources: list[Traversable | Path] = sorted(
            (
                f
                for f in resources.files(__package__).joinpath("kb").iterdir()
                if f.name.endswith(".json")
            ),
            key=lambda f: f.name,
        )
    else:
        path = Path(path)
        sources = sorted(path.glob("*.json")) if path.is_dir() else [path]
    records: list[dict] = []
    for source in sources:
        records.extend(_validate(source.name, json.loads(source.read_text(encoding="utf-8"))))
    seen: set[str] = set()
    for record in records:
        if record["id"] in seen:
            raise ValueError(f"duplicate knowledge-base article id {record['id']!r}")
        seen.add(record["id"])
    return records


@functools.lru_cache(maxsize=1)
def article_count() -> int:
    """How many articles the packaged corpus has (read once per process)."""
    return len(load_records())


def _validate(name: str, data: object) -> list[dict]:
    if not isinstance(data, list):
        raise ValueError(f"{name}: expected a JSON array of articles")
    for record in data:
        if (
            not isinstance(record, dict)
            or not isinstance(record.get("id"), str)
            or not record["id"]
        ):
            raise ValueError(f"{name}: every article needs a non-empty string 'id'")
        if not isinstance(record.get("topic"), str) or not record["topic"]:
            raise ValueError(f"{name}: article {record['id']!r} needs a 'topic'")
        for lang in LANGUAGES:
            part = record.get(lang)
            if not isinstance(part, dict) or not all(
                isinstance(part.get(key), str) and part[key].strip() for key in ("title", "body")
            ):
                raise ValueError(
                    f"{name}: article {record['id']!r} needs {lang}.title and {lang}.body"
                )
            kws = part.get("keywords", [])
            if not isinstance(kws, list) or not all(isinstance(k, str) for k in kws):
                raise ValueError(
                    f"{name}: article {record['id']!r} {lang}.keywords must be strings"
                )
    return data
