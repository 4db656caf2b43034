"""The release's prebuilt indexes (coinex_chatbot/prebuilt.py): a task process that loads them
answers exactly as one that builds them, and a file of other sources is never used."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import pytest

from coinex_chatbot import prebuilt
from coinex_chatbot.knowledge import KnowledgeBase

DATA = Path(__file__).parent / "data"


@pytest.fixture()
def prebuilt_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "prebuilt.pickle"
    monkeypatch.setattr(prebuilt, "FILE", path)
    return path


@pytest.fixture(scope="module")
def built() -> KnowledgeBase:
    return KnowledgeBase.load(prebuilt=False)


def _questions() -> list[str]:
    """Every question of blind sets v9-v12 (answered and off-topic), in both languages."""
    out: list[str] = []
    for n in (9, 10, 11, 12):
        data = json.loads((DATA / f"blind_v{n}.json").read_text("utf-8"))
        out += [q["q"] for q in data["questions"]] + [q["q"] for q in data["off_topic"]]
    return out


def test_the_prebuilt_indexes_answer_exactly_as_built_ones(
    prebuilt_file: Path, built: KnowledgeBase
) -> None:
    """Written, loaded back (the key matches), and every blind question gets the same answer:
    status, articles, confidence and gate features."""
    prebuilt.write(built.indexes)
    loaded = KnowledgeBase.load()
    assert loaded.prebuilt_note == ""
    assert loaded.indexes is not built.indexes
    questions = _questions()
    assert len(questions) >= 800
    for q in questions:
        a, b = built.answer(q), loaded.answer(q)
        assert (a.top_article_id, a.articles, a.confidence, a.text) == (
            b.top_article_id,
            b.articles,
            b.confidence,
            b.text,
        ), q
    # the tokens are the interned strings again, shared with the classifier's vocabulary
    for lang, index in loaded.indexes.items():
        vocab = loaded._classifiers[lang].vocab
        shared = [t for t in index.rows if t in vocab]
        assert len(shared) > 1000, lang
        assert all(sys.intern(t) is t for t in index.rows), lang
        keys = {id(k) for k in vocab}
        assert all(id(t) in keys for t in shared[:2000]), lang


def test_a_prebuilt_file_of_other_sources_or_unreadable_is_not_used(
    prebuilt_file: Path, built: KnowledgeBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No file, a file of another key (other package files or library versions), a truncated
    file and a file without indexes: each is ignored with its reason, the indexes built."""
    assert KnowledgeBase.load().prebuilt_note == "no prebuilt.pickle"
    with monkeypatch.context() as m:
        m.setattr(prebuilt, "key", lambda: "another release")
        prebuilt.write(built.indexes)
    kb = KnowledgeBase.load()
    assert kb.prebuilt_note == "prebuilt.pickle is of other files or library versions"
    assert kb.answer("How do I reset my 2FA?").top_article_id == "2fa-lost-reset"
    prebuilt.write(built.indexes)
    prebuilt_file.write_bytes(prebuilt_file.read_bytes()[:1000])
    assert KnowledgeBase.load().prebuilt_note.startswith("prebuilt.pickle unreadable: ")
    prebuilt_file.write_bytes(pickle.dumps({"key": prebuilt.key(), "indexes": {"en": 1}}))
    note = KnowledgeBase.load().prebuilt_note
    assert note == "prebuilt file holds no indexes of these languages"


def test_the_key_covers_every_package_file_and_not_the_prebuilt_file(
    prebuilt_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change to any file of the package (code or data) changes the key; the prebuilt file
    itself, byte-compiled files and the libraries' versions as they are do not."""
    package = tmp_path / "pkg"
    (package / "kb").mkdir(parents=True)
    (package / "knowledge.py").write_text("code\n")
    (package / "kb" / "a.json").write_text("[]\n")
    monkeypatch.setattr(prebuilt, "PACKAGE", package)
    monkeypatch.setattr(prebuilt, "FILE", package / "prebuilt.pickle")
    first = prebuilt.key()
    (package / "prebuilt.pickle").write_bytes(b"x")
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "knowledge.cpython-311.pyc").write_bytes(b"y")
    assert prebuilt.key() == first
    (package / "kb" / "a.json").write_text("[{}]\n")
    assert prebuilt.key() != first
    (package / "kb" / "a.json").write_text("[]\n")
    assert prebuilt.key() == first
    monkeypatch.setattr(prebuilt.np, "__version__", "0.0.0")
    assert prebuilt.key() != first
