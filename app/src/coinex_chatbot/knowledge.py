"""Help-centre knowledge base: BM25 retrieval over the corpus (``corpus.py``) and a confidence.

Retrieval (``bm25s``, Lucene BM25, k1=1.2, b=0.75, one index per language)
    Each article is indexed as title x ``TITLE_WEIGHT`` + body + keywords, tokenised by
    ``language.tokenize`` (English stemmed words and bigrams, Chinese character n-grams).

    * A query word missing from the vocabulary, of >= ``FUZZY_MIN_LEN`` letters, within one edit
      (two from 8 letters; Damerau-Levenshtein, same first letter) of an indexed word is read as
      that word ("withdrawl", "recieve") with weight 1 - 0.2 x edits.
    * Score of an article = sum over distinct query tokens of weight x the token's bm25s score;
      numbers and coin tickers weigh ``MINOR_WEIGHT`` (they choose among articles, but must not
      outvote the words that say what the problem is).

Confidence (0..1); the worker escalates below ``CHATBOT_CONFIDENCE_THRESHOLD`` (default 0.35)
    IDF(t) = ln(1 + (N - df + 0.5) / (df + 0.5)), df = 0 for a word the corpus never uses (so an
    unknown word weighs the most); s1 >= s2 are the two best article scores.

    * coverage C: the IDF-weighted share of the question's units found in the best article.
      Units are English content words (not bigrams, numbers or tickers; a typo match counts its
      weight) and, for Chinese, the question's characters, a character counting as found only
      when a bigram containing it occurs in the article (single characters match nearly
      anything). An off-topic question ("weather in Paris", "推荐一部好看的电影") is made of
      words the help centre never uses, so C is near 0; a real question is mostly covered.
    * strength R = s1 / sum of IDF over all query tokens: BM25 normalised by the query's own
      upper bound (the Lucene term-frequency factor is < 1, so no article reaches it); it rewards
      articles that use the query terms repeatedly and in the title.
    * margin M = (s1 - s2) / s1: how clearly the best article beats the runner-up.

    confidence = clip(C ** 1.5 x (0.65 + 0.35 x M) + 0.35 x R, 0, 1). Coverage dominates, so an
    article that covers little of the question cannot pass however high its raw score; margin and
    strength separate a clear answer from a vague one. With no usable token it is 0.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np

from .corpus import load_records
from .language import (
    CJK_RE,
    LANGUAGES,
    detect_language,
    en_pairs,
    latin_part,
    tokenize,
    wordset,
    zh_tokens,
)

TITLE_WEIGHT = 3
FUZZY_MIN_LEN = 6
MINOR_WEIGHT = 0.3
MAX_TYPO_LOOKUPS = 16
BM25_K1 = 1.2
BM25_B = 0.75

# Coin tickers: they help ranking (XRP -> memo) but do not make a question on-topic.
_TICKERS = wordset(
    """
    btc eth usdt usdc trx bnb sol xrp doge ltc ada xlm eos atom ton matic avax shib bch dai busd
    tusd cet
    """
)

_FALLBACK = {
    "en": "Sorry, I could not find a help-centre article that answers this question.",
    "zh": "抱歉，没有找到能回答这个问题的帮助中心文章。",
}


@dataclass(frozen=True)
class Article:
    id: str
    topic: str
    title: str
    body: str
    lang: str


@dataclass(frozen=True)
class Answer:
    text: str
    articles: list[dict]
    confidence: float
    lang: str
    top_article_id: str | None

    def as_dict(self) -> dict:
        return {
            "text": self.text,
            "articles": self.articles,
            "confidence": self.confidence,
            "lang": self.lang,
            "top_article_id": self.top_article_id,
        }


class _LanguageIndex:
    """BM25 index of one language plus the document frequencies the confidence needs."""

    def __init__(self, articles: list[Article], keywords: list[list[str]], lang: str) -> None:
        self.lang = lang
        docs = [
            tokenize(" ".join([a.title] * TITLE_WEIGHT), lang)
            + tokenize(a.body, lang)
            + [t for phrase in kws for t in tokenize(phrase, lang)]
            for a, kws in zip(articles, keywords, strict=True)
        ]
        self.doc_sets = [frozenset(d) for d in docs]
        self.n_docs = len(docs)
        self.df: dict[str, int] = {}
        for tokens in self.doc_sets:
            for token in tokens:
                self.df[token] = self.df.get(token, 0) + 1
        # Latin words as written in the articles, for typo matching: word -> indexed token.
        self.surface: dict[str, str] = {}
        for a, kws in zip(articles, keywords, strict=True):
            for text in (a.title, a.body, *kws):
                self.surface.update(en_pairs(latin_part(text)))
        self.by_initial: dict[str, list[str]] = {}
        for word in sorted(self.surface):
            if word.isalpha():
                self.by_initial.setdefault(word[0], []).append(word)
        self.bm25 = bm25s.BM25(k1=BM25_K1, b=BM25_B, method="lucene")
        self.bm25.index(docs, show_progress=False)

    def idf(self, token: str) -> float:
        df = self.df.get(token, 0)
        return math.log(1 + (self.n_docs - df + 0.5) / (df + 0.5))

    def parse(self, text: str) -> list[tuple[str, str, float]]:
        """The question's distinct tokens as (token, indexed-or-original token, weight).

        A Latin word whose token is not indexed, of >= ``FUZZY_MIN_LEN`` letters, within one
        edit (two from 8 letters; Damerau-Levenshtein, same first letter) of a word of the
        articles is read as a typo of it ("pendng" -> "pending"), with weight 1 - 0.2 x edits;
        other unknown tokens stay as they are (weight 1) and never match.
        """
        words: list[tuple[str, str, float]] = []
        lookups = 0  # bounded, so a long message of gibberish stays fast
        for word, token in en_pairs(latin_part(text) if self.lang == "zh" else text):
            match = None
            if token not in self.df and lookups < MAX_TYPO_LOOKUPS:
                lookups += 1
                match = self._typo_of(word)
            if match is None:
                words.append((token, token, 1.0))
            else:
                words.append((token, self.surface[match[0]], 1.0 - 0.2 * match[1]))
        if self.lang == "zh":
            extra = [(t, t, 1.0) for t in zh_tokens(text)]
        else:
            extra = [
                (f"{a}_{b}", f"{ra}_{rb}", min(wa, wb))
                for (a, ra, wa), (b, rb, wb) in itertools.pairwise(words)
                if a != b
            ]
        out: dict[str, tuple[str, str, float]] = {}
        for item in words + extra:
            if item[0] not in out or out[item[0]][2] < item[2]:
                out[item[0]] = item
        return list(out.values())

    def _typo_of(self, token: str) -> tuple[str, int] | None:
        if len(token) < FUZZY_MIN_LEN or not token.isascii() or not token.isalpha():
            return None
        if token in self.surface:
            return None
        limit = 1 if len(token) < 8 else 2
        best: tuple[str, int] | None = None
        for word in self.by_initial.get(token[0], ()):
            if abs(len(word) - len(token)) > limit:
                continue
            distance = _edit_distance(token, word, limit)
            if distance <= limit and (best is None or distance < best[1]):
                best = (word, distance)
        return best

    def scores(self, query: list[tuple[str, str, float]]) -> np.ndarray:
        """BM25 score of every article: the sum of each query token's bm25s score, weighted.

        Typo matches count with their weight; numbers and coin tickers with ``MINOR_WEIGHT``
        (they pick among articles about one coin, but must not outvote the words that say what
        the problem is).
        """
        weights: dict[str, float] = {}
        for _, tok, w in query:
            if tok in self.df:
                if tok.isdigit() or tok in _TICKERS:
                    w *= MINOR_WEIGHT
                weights[tok] = max(weights.get(tok, 0.0), w)
        total = np.zeros(self.n_docs, dtype=np.float32)
        for tok, w in weights.items():
            total += w * np.asarray(self.bm25.get_scores([tok]), dtype=np.float32)
        return total

    def components(
        self, query: list[tuple[str, str, float]], scores: np.ndarray
    ) -> tuple[float, float, float]:
        """(coverage, strength, margin) of the best article for ``query``; see the module doc."""
        if not query or scores.size == 0:
            return 0.0, 0.0, 0.0
        order = np.argsort(-scores, kind="stable")
        s1 = float(scores[order[0]])
        if s1 <= 0:
            return 0.0, 0.0, 0.0
        s2 = float(scores[order[1]]) if scores.size > 1 else 0.0
        top = self.doc_sets[int(order[0])]
        weights: dict[str, float] = {}  # unit -> idf
        covered: dict[str, float] = {}  # unit -> share of it found in the top article
        for _, tok, w in query:
            if self.lang == "zh" and CJK_RE.match(tok):
                # Chinese: the units are the question's characters; a character is covered when
                # a bigram containing it occurs in the article (single characters match nearly
                # anything, so they do not count on their own).
                for ch in tok:
                    weights[ch] = self.idf(ch)
                if len(tok) == 2 and tok in top:
                    for ch in tok:
                        covered[ch] = 1.0
            elif _is_unit(tok):
                weights[tok] = self.idf(tok)
                if tok in top:
                    covered[tok] = max(covered.get(tok, 0.0), w)
        if not weights:  # only numbers / coin tickers: judge on them
            weights = {tok: self.idf(tok) for _, tok, _ in query}
            covered = {tok: w for _, tok, w in query if tok in top}
        total = sum(weights.values())
        coverage = sum(weights[u] * covered.get(u, 0.0) for u in weights) / total
        everything = sum(self.idf(tok) for _, tok, _ in query)
        return coverage, min(1.0, s1 / everything), (s1 - s2) / s1

    def confidence(self, query: list[tuple[str, str, float]], scores: np.ndarray) -> float:
        coverage, strength, margin = self.components(query, scores)
        value = coverage**1.5 * (0.65 + 0.35 * margin) + 0.35 * strength
        return float(min(1.0, max(0.0, value)))


def _edit_distance(a: str, b: str, limit: int) -> int:
    """Damerau-Levenshtein (optimal string alignment) distance, cut off above ``limit``."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = 0 if ca == cb else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


def _is_unit(token: str) -> bool:
    """Latin tokens that say what the question is about, for the coverage measure.

    Adjacent-word bigrams only help ranking, and numbers and coin tickers say which coin or how
    much, not what the problem is.
    """
    return "_" not in token and not token.isdigit() and token not in _TICKERS


class KnowledgeBase:
    """The bilingual help centre with one BM25 index per language."""

    def __init__(self, records: list[dict]) -> None:
        self._ids: list[str] = []
        self._articles: dict[str, list[Article]] = {lang: [] for lang in LANGUAGES}
        keywords: dict[str, list[list[str]]] = {lang: [] for lang in LANGUAGES}
        for record in records:
            self._ids.append(record["id"])
            for lang in LANGUAGES:
                part = record[lang]
                keywords[lang].append(list(part.get("keywords", [])))
                self._articles[lang].append(
                    Article(
                        id=record["id"],
                        topic=record["topic"],
                        title=part["title"].strip(),
                        body=part["body"].strip(),
                        lang=lang,
                    )
                )
        self._indexes = (
            {lang: _LanguageIndex(self._articles[lang], keywords[lang], lang) for lang in LANGUAGES}
            if records
            else {}
        )

    # ----- loading -------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Path | None = None) -> KnowledgeBase:
        """The articles of ``corpus.load_records(path)`` (default: the packaged corpus), indexed."""
        return cls(load_records(path))

    # ----- introspection -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    @property
    def languages(self) -> tuple[str, ...]:
        return LANGUAGES if self._ids else ()

    def article(self, article_id: str, lang: str = "en") -> Article:
        return self._articles[_lang(lang)][self._ids.index(article_id)]

    # ----- retrieval -----------------------------------------------------------------------
    def _rank(self, text: str) -> tuple[str, list[tuple[str, str, float]], np.ndarray]:
        query_lang = detect_language(text)
        index = self._indexes.get(query_lang)
        if index is None:
            return query_lang, [], np.zeros(0, dtype=np.float32)
        query = index.parse(text)
        return query_lang, query, index.scores(query)

    def search(self, text: str, lang: str | None = None, k: int = 3) -> list[tuple[Article, float]]:
        """Best ``k`` articles for ``text`` with their BM25 scores, best first.

        The query is matched against the index of its own (detected) language; the returned
        articles are in ``lang`` if given, else in the question's language. Articles with a zero
        score are left out.
        """
        _, _, scores = self._rank(text)
        out_lang = _lang(lang) if lang else detect_language(text)
        order = np.argsort(-scores, kind="stable")[: max(0, k)]
        return [
            (self._articles[out_lang][int(i)], float(scores[i])) for i in order if scores[i] > 0
        ]

    def answer(self, text: str, lang: str | None = None) -> Answer:
        """Answer ``text`` with the best article (title, blank line, body) and a confidence."""
        query_lang, query, scores = self._rank(text)
        out_lang = _lang(lang) if lang else query_lang
        order = [int(i) for i in np.argsort(-scores, kind="stable")[:3] if scores[i] > 0]
        if not order:
            return Answer(_FALLBACK[out_lang], [], 0.0, out_lang, None)
        confidence = self._indexes[query_lang].confidence(query, scores)
        best = self._articles[out_lang][order[0]]
        return Answer(
            text=f"{best.title}\n\n{best.body}",
            articles=[
                {"id": self._ids[i], "title": self._articles[out_lang][i].title} for i in order
            ],
            confidence=round(confidence, 4),
            lang=out_lang,
            top_article_id=best.id,
        )


def _lang(lang: str) -> str:
    if lang not in LANGUAGES:
        raise ValueError(f"unsupported language {lang!r}; expected one of {LANGUAGES}")
    return lang


@functools.lru_cache(maxsize=1)
def get_knowledge_base() -> KnowledgeBase:
    """The packaged knowledge base, loaded and indexed once per process."""
    return KnowledgeBase.load()
