"""The help-centre corpus: the knowledge-base records of ``kb/*.json``, loaded and validated,
the customer phrasings of ``phrasings/*.json`` and the off-topic questions of ``off_topic.json``.

Every file is a JSON array of articles ``{"id", "topic", "en": {"title", "body", "keywords"?},
"zh": {...}}``. Ids are unique and shared by both languages, so an article found in one language
can be answered in the other. ``keywords`` (optional) are short phrasings customers use for the
article ("deposit missing", "转错链"); they are indexed, never shown.

Every phrasings file is a JSON object ``{"<article id>": {"en": [...], "zh": [...]}}``: questions
about the article as customers write them (colloquial, indirect, typos, mixed script), indexed
with the article and used to fit the confidence (``knowledge``). ``off_topic.json`` holds
``{"en": [...], "zh": [...]}``, questions the help centre does not answer, for that fit only.

Kept apart from
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


def _sources(path: Path | None, packaged: str) -> list[Traversable | Path]:
    """The ``*.json`` files of ``path`` (a directory or one file), else of the package's
    ``packaged`` directory, sorted by name."""
    if path is None:
        folder = resources.files(__package__).joinpath(packaged)
        return sorted(
            (f for f in folder.iterdir() if f.name.endswith(".json")), key=lambda f: f.name
        )
    path = Path(path)
    return sorted(path.glob("*.json")) if path.is_dir() else [path]


def load_records(path: Path | None = None) -> list[dict]:
    """Every article of ``path`` (a directory of ``*.json`` files or one file), validated.

    Without ``path`` the corpus shipped in the package (``coinex_chatbot/kb``) is used.
    Raises ``ValueError`` on a malformed article or a duplicate id.
    """
    sources = _sources(path, "kb")
    records: list[dict] = []
    for source in sources:
        records.extend(_validate(source.name, json.loads(source.read_text(encoding="utf-8"))))
    seen: set[str] = set()
    for record in records:
        if record["id"] in seen:
            raise ValueError(f"duplicate knowledge-base article id {record['id']!r}")
        seen.add(record["id"])
    return records


def load_phrasings(path: Path | None = None) -> dict[str, dict[str, list[str]]]:
    """Article id -> language -> customer phrasings, from ``path`` (a directory of ``*.json``
    files or one file; default: the package's ``phrasings``). Raises ``ValueError`` on a
    malformed file or an article given in two files."""
    phrasings: dict[str, dict[str, list[str]]] = {}
    for source in _sources(path, "phrasings"):
        data = json.loads(source.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"{source.name}: expected a JSON object of article ids")
        for article_id, parts in data.items():
            if article_id in phrasings:
                raise ValueError(f"{source.name}: phrasings of {article_id!r} given twice")
            if not isinstance(parts, dict) or not all(
                _strings(parts.get(lang, [])) for lang in LANGUAGES
            ):
                raise ValueError(
                    f"{source.name}: {article_id!r} needs lists of strings per language"
                )
            phrasings[article_id] = {lang: list(parts.get(lang, [])) for lang in LANGUAGES}
    return phrasings


def load_off_topic(path: Path | None = None) -> dict[str, list[str]]:
    """Language -> questions the help centre does not answer (default: the packaged
    ``off_topic.json``)."""
    source = Path(path) if path else resources.files(__package__).joinpath("off_topic.json")
    data = json.loads(source.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(_strings(data.get(lang, [])) for lang in LANGUAGES):
        raise ValueError(f"{source.name}: expected lists of strings per language")
    return {lang: list(data.get(lang, [])) for lang in LANGUAGES}


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value)


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
