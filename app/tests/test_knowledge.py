"""Knowledge base: corpus shape, language handling, retrieval accuracy and escalation.

Figures are printed on every run, the development set apart from the blind one:

* development: tests/data/heldout.json (questions written apart from the corpus, paraphrased the
  way customers write; tuned on) and the customer phrasings (phrasings/*.json), each asked of an
  index built without its fold (5-fold cross-validation, as the confidence is fitted);
* earlier blind sets: tests/data/blind.json and blind_v2.json ... blind_v8.json, each written
  before a round of work and scored once at its end (docs/answers.md). Then they were folded
  into the training text (v1-v5 in the ninth round, then one set per round): every question of
  theirs is a customer phrasing of its article, every off-topic question one of off_topic.json
  (``test_earlier_blind_sets_are_training_text``). Only their shape is tested;
* blind v10 and v11: tests/data/blind_v10.json and blind_v11.json, scored once at the end of the
  thirteenth and the fourteenth round, training text since the round after
  (``test_earlier_blind_sets_are_training_text``);
* blind v9 and v12: tests/data/blind_v9.json and blind_v12.json (written after blind v8 and v11
  had been scored, before the twelfth and the fifteenth round of work; nothing is fitted on
  them, and nothing near them is in the training text): each scored once at the end of its
  round, printed apart from the development figures, with floors at what that scoring measured.
  The issue's targets are tested on the latest, v12.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import statistics
import time
from importlib import resources
from pathlib import Path

import bm25s
import numpy as np
import pytest

from coinex_chatbot import classifier, language
from coinex_chatbot.config import load_settings
from coinex_chatbot.corpus import load_off_topic, load_phrasings, load_records
from coinex_chatbot.knowledge import (
    BM25_B,
    BM25_K1,
    FEATURES,
    OFF_TOPIC_ALLOWED_SHARE,
    OPERATING_THRESHOLD,
    Answer,
    Article,
    KnowledgeBase,
    _addressed,
    _other_exchange,
    cross_validated,
    detect_language,
    fit_calibration,
    get_knowledge_base,
    packaged_calibration,
    packaged_classifiers,
    packaged_texts,
    train_classifiers,
)
from coinex_chatbot.knowledge import _sparse_scores as _sparse_scores
from coinex_chatbot.language import tokenize

DATA = Path(__file__).parent / "data"
HELDOUT = json.loads((DATA / "heldout.json").read_text("utf-8"))
BLIND = json.loads((DATA / "blind.json").read_text("utf-8"))
BLIND_V2 = json.loads((DATA / "blind_v2.json").read_text("utf-8"))  # see its _comment
BLIND_V3 = json.loads((DATA / "blind_v3.json").read_text("utf-8"))  # see its _comment
BLIND_V4 = json.loads((DATA / "blind_v4.json").read_text("utf-8"))  # see its _comment
BLIND_V5 = json.loads((DATA / "blind_v5.json").read_text("utf-8"))  # see its _comment
# written after blind v5 had been scored, before the ninth round (see its _comment)
BLIND_V6 = json.loads((DATA / "blind_v6.json").read_text("utf-8"))
# written after blind v6 had been scored, before the tenth round (see its _comment)
BLIND_V7 = json.loads((DATA / "blind_v7.json").read_text("utf-8"))
# written after blind v7 had been scored, before the eleventh round (see its _comment)
BLIND_V8 = json.loads((DATA / "blind_v8.json").read_text("utf-8"))
# training text: v1-v5 since the ninth round, v6 since the tenth, v7 since the eleventh, v8 since
# the twelfth (each scored once before)
EARLIER_BLIND = (BLIND, BLIND_V2, BLIND_V3, BLIND_V4, BLIND_V5, BLIND_V6, BLIND_V7, BLIND_V8)
# written after blind v8 had been scored, before the twelfth round (see its _comment)
BLIND_V9 = json.loads((DATA / "blind_v9.json").read_text("utf-8"))
# written after blind v9 had been scored, before the thirteenth round (see its _comment)
BLIND_V10 = json.loads((DATA / "blind_v10.json").read_text("utf-8"))
# written after blind v10 had been scored, before the fourteenth round (see its _comment)
BLIND_V11 = json.loads((DATA / "blind_v11.json").read_text("utf-8"))
# written after blind v11 had been scored, before the fifteenth round (see its _comment)
BLIND_V12 = json.loads((DATA / "blind_v12.json").read_text("utf-8"))
THRESHOLD = load_settings({"CHATBOT_ENV": "local"}).confidence_threshold  # the app's default
CJK = re.compile(r"[\u4e00-\u9fff]")
MIN_ACCURACY = 0.8
SETS = ("questions", "fresh_questions", "blind_questions")  # see the file's _comment
ALL_QUESTIONS = [q for name in SETS for q in HELDOUT[name]]


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return get_knowledge_base()


def _corpus_records() -> list[dict]:
    kb_dir = resources.files("coinex_chatbot").joinpath("kb")
    records: list[dict] = []
    for entry in kb_dir.iterdir():
        assert entry.name.endswith(".json"), f"kb/ holds only *.json (package-data glob): {entry}"
        records.extend(json.loads(entry.read_text(encoding="utf-8")))
    return records


def _accuracy(kb: KnowledgeBase, questions: list[dict], lang: str | None = None) -> float:
    picked = [q for q in questions if lang is None or q["lang"] == lang]
    assert picked, f"no held-out questions for {lang}"
    hits = sum(kb.answer(q["q"]).top_article_id == q["expected"] for q in picked)
    return hits / len(picked)


# ----- corpus ------------------------------------------------------------------------------------
def test_corpus_has_60_bilingual_articles_with_unique_ids(kb: KnowledgeBase) -> None:
    records = _corpus_records()
    ids = [r["id"] for r in records]
    assert len(records) >= 60
    assert len(set(ids)) == len(ids), "duplicate article ids"
    assert len(kb) == len(records)
    assert kb.languages == ("en", "zh")
    for r in records:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", r["id"]), r["id"]
        assert r["topic"].strip()
        for lang in ("en", "zh"):
            assert r[lang]["title"].strip(), (r["id"], lang)
            assert len(r[lang]["body"].strip()) >= 60, (r["id"], lang, "body too short")
        assert CJK.search(r["zh"]["title"]) and CJK.search(r["zh"]["body"]), r["id"]
        assert not CJK.search(r["en"]["title"] + r["en"]["body"]), r["id"]


def test_corpus_covers_the_required_topics() -> None:
    topics = {r["topic"] for r in _corpus_records()}
    required = {"deposits", "withdrawals", "fees", "kyc", "2fa", "api", "security", "spot"}
    assert required | {"futures", "subaccounts", "fiat", "p2p"} <= topics


def test_heldout_expectations_name_real_articles(kb: KnowledgeBase) -> None:
    ids = set(kb)
    for q in ALL_QUESTIONS:
        assert q["expected"] in ids, q
    assert sum(q["lang"] == "en" for q in HELDOUT["questions"]) >= 20
    assert sum(q["lang"] == "zh" for q in HELDOUT["questions"]) >= 20
    assert {q["lang"] for q in HELDOUT["off_topic"]} == {"en", "zh"}
    assert len(HELDOUT["off_topic"]) >= 8


# ----- language ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("How do I withdraw USDT?", "en"),
        ("我的充值没有到账", "zh"),
        ("2FA 丢了怎么办", "zh"),
        ("API密钥", "zh"),
        ("my deposit to 张三 never arrived at the other exchange", "en"),
        ("", "en"),
        ("12345 !!!", "en"),
        ("請問提現要多久", "zh"),
    ],
)
def test_detect_language(text: str, lang: str) -> None:
    assert detect_language(text) == lang


def test_answer_language_follows_the_question(kb: KnowledgeBase) -> None:
    en = kb.answer("my withdrawal has been processing for hours")
    zh = kb.answer("提现处理了好几个小时还没完成")
    assert en.lang == "en" and not CJK.search(en.text)
    assert zh.lang == "zh" and CJK.search(zh.text)
    assert en.top_article_id == zh.top_article_id == "withdrawal-pending"


def test_explicit_language_overrides_detection(kb: KnowledgeBase) -> None:
    plain = kb.answer("I lost my google authenticator phone")
    in_zh = kb.answer("I lost my google authenticator phone", lang="zh")
    assert in_zh.lang == "zh" and CJK.search(in_zh.text)
    assert in_zh.top_article_id == plain.top_article_id == "2fa-lost-reset"
    assert in_zh.confidence == plain.confidence
    assert in_zh.articles[0]["title"] == kb.article("2fa-lost-reset", "zh").title
    with pytest.raises(ValueError):
        kb.answer("hello", lang="fr")


# ----- answers and search ------------------------------------------------------------------------
def test_answer_shape(kb: KnowledgeBase) -> None:
    answer = kb.answer("how do I create an API key for my bot")
    assert isinstance(answer, Answer)
    assert answer.top_article_id == "api-key-create"
    assert 0.0 <= answer.confidence <= 1.0
    assert 1 <= len(answer.articles) <= 3
    assert all(set(a) == {"id", "title"} for a in answer.articles)
    assert answer.articles[0]["id"] == answer.top_article_id
    article = kb.article("api-key-create", "en")
    assert answer.text == f"{article.title}\n\n{article.body}"


def test_search_is_ranked_and_in_the_requested_language(kb: KnowledgeBase) -> None:
    hits = kb.search("futures funding rate every 8 hours", k=5)
    assert 1 <= len(hits) <= 5
    assert hits[0][0].id == "futures-funding-rate"
    scores = [score for _, score in hits]
    assert scores == sorted(scores, reverse=True) and scores[-1] > 0
    assert all(isinstance(a, Article) and a.lang == "en" for a, _ in hits)
    zh_hits = kb.search("futures funding rate every 8 hours", lang="zh", k=2)
    assert [a.id for a, _ in zh_hits] == [a.id for a, _ in hits[:2]]
    assert all(a.lang == "zh" and CJK.search(a.body) for a, _ in zh_hits)


@pytest.mark.parametrize("text", ["", "   ", "??!!", "the and of to", "的了吗"])
def test_questions_without_content_get_zero_confidence(kb: KnowledgeBase, text: str) -> None:
    answer = kb.answer(text)
    assert answer.confidence == 0.0
    assert answer.top_article_id is None and answer.articles == []
    assert answer.text  # a fallback sentence, never empty


def test_typos_still_find_the_article(kb: KnowledgeBase) -> None:
    right = kb.answer("my withdrawal is pending for hours")
    typo = kb.answer("my withdrawl is pendng for hours")
    assert right.top_article_id == typo.top_article_id == "withdrawal-pending"
    assert typo.confidence >= THRESHOLD


def test_wrong_network_in_both_languages(kb: KnowledgeBase) -> None:
    assert kb.answer("sent USDT on the wrong chain").top_article_id == "deposit-wrong-network"
    assert kb.answer("USDT充错链了").top_article_id == "deposit-wrong-network"


# ----- held-out evaluation -----------------------------------------------------------------------
def test_heldout_top1_accuracy(kb: KnowledgeBase, capsys: pytest.CaptureFixture[str]) -> None:
    figures = {
        "en": _accuracy(kb, ALL_QUESTIONS, "en"),
        "zh": _accuracy(kb, ALL_QUESTIONS, "zh"),
        "all": _accuracy(kb, ALL_QUESTIONS),
    }
    per_set = ", ".join(
        f"{name} {_accuracy(kb, HELDOUT[name]):.3f} ({len(HELDOUT[name])})" for name in SETS
    )
    with capsys.disabled():
        print(
            f"\nretrieval top-1 accuracy: {figures['all']:.3f} ({len(ALL_QUESTIONS)} questions; "
            f"en {figures['en']:.3f}, zh {figures['zh']:.3f}; {per_set})"
        )
    for name, value in figures.items():
        assert value >= MIN_ACCURACY, f"{name} top-1 accuracy {value:.3f} < {MIN_ACCURACY}"


def test_off_topic_questions_are_escalated(
    kb: KnowledgeBase, capsys: pytest.CaptureFixture[str]
) -> None:
    confidences = {q["q"]: kb.answer(q["q"]).confidence for q in HELDOUT["off_topic"]}
    with capsys.disabled():
        print(
            f"\noff-topic confidence: max {max(confidences.values()):.3f} (threshold {THRESHOLD})"
        )
    too_sure = {q: c for q, c in confidences.items() if c >= THRESHOLD}
    assert not too_sure, f"off-topic questions would be answered: {too_sure}"


def test_real_questions_are_answered_not_escalated(
    kb: KnowledgeBase, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = [(kb.answer(q["q"]), q["expected"]) for q in ALL_QUESTIONS]
    right = [a.confidence for a, expected in answers if a.top_article_id == expected]
    answered = sum(c >= THRESHOLD for c in right) / len(right)
    off_topic = max(kb.answer(q["q"]).confidence for q in HELDOUT["off_topic"])
    with capsys.disabled():
        print(
            f"\ncorrect answers above the threshold: {answered:.3f}; "
            f"median confidence {statistics.median(right):.3f}"
        )
    assert answered >= 0.75
    assert statistics.median(right) > off_topic + 0.2


# ----- customer phrasings, Chinese words, synonyms ------------------------------------------------
MIN_PHRASINGS = 8  # per article and language


def test_every_article_has_customer_phrasings_in_both_languages(kb: KnowledgeBase) -> None:
    phrasings = load_phrasings()
    assert set(phrasings) == set(kb)
    for aid, parts in phrasings.items():
        for lang in ("en", "zh"):
            questions = parts[lang]
            assert len(questions) >= MIN_PHRASINGS, (aid, lang, len(questions))
            assert len(set(questions)) == len(questions), (aid, lang, "duplicate phrasing")
            title = kb.article(aid, lang).title.lower()
            assert all(q.lower() != title for q in questions), (aid, lang)
            assert all(bool(CJK.search(q)) == (lang == "zh") for q in questions), (aid, lang)


_FILLER = frozenset(
    re.findall(
        r"\w+", "i my me the a an to is it how do can you what s of in on for and your with at"
    )
)


def _shingles(text: str) -> set[str]:
    """The raw words (Latin) and character pairs (Chinese) of ``text``, for near-copy checks."""
    latin = set(re.findall(r"[a-z0-9]+", text.lower())) - _FILLER
    runs = re.findall(r"[\u4e00-\u9fff]+", text)
    return latin | {run[i : i + 2] for run in runs for i in range(len(run) - 1)}


def test_blind_questions_are_not_in_the_training_text() -> None:
    """No phrasing, keyword or off-topic question the model is fitted on comes near a question of
    blind set v9 or v12 (the near-copy measure: word and character-pair overlap >= 0.5)."""
    texts: dict[str, list[str]] = {"en": [], "zh": []}
    for parts in load_phrasings().values():
        for lang in texts:
            texts[lang] += parts[lang]
    for record in load_records():
        for lang in texts:
            texts[lang] += record[lang].get("keywords", [])
    for lang, questions in load_off_topic().items():
        texts[lang] += questions
    scored_and_unscored = (BLIND_V9, BLIND_V12)
    for q in [q for data in scored_and_unscored for q in data["questions"] + data["off_topic"]]:
        mine = _shingles(q["q"])
        for text in texts[q["lang"]]:
            other = _shingles(text)
            assert len(mine & other) / max(1, len(mine | other)) < 0.5, (q["q"], text)


# The one question of the earlier blind sets that is not a phrasing: an English question with a
# Chinese word (phrasings are in their language's script; the app reads it as English).
NOT_FOLDED = frozenset(["USDT提现fee why 1 usdt when im only sending 20?? thats 5% lol"])


def test_earlier_blind_sets_are_training_text() -> None:
    """Blind sets v1-v8, v10 and v11, each scored once and seen since, are training text: each
    question a phrasing of the article it expects, each off-topic question one of
    off_topic.json (v9 is not: the thirteenth round found it tips the issue's own example)."""
    phrasings, off_topic = load_phrasings(), load_off_topic()
    for data in (*EARLIER_BLIND, BLIND_V10, BLIND_V11):
        for q in data["questions"]:
            if q["q"] not in NOT_FOLDED:
                assert q["q"] in phrasings[q["expected"]][q["lang"]], q
        for q in data["off_topic"]:
            assert q["q"] in off_topic[q["lang"]], q


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("提出去的币对方说没收到", {"提现", "没收到", "对方"}),  # 没收到 stays whole: not 没收
        ("USDT提现fee多少", {"提现", "手续费", "usdt"}),
        ("提币 转出 往外转", {"提现"}),
        ("入金 充币 转进来", {"充值"}),
        ("币安链转错了", {"bep20"}),
        ("身份验证器丢了", {"谷歌验证器"}),
        ("谷歌验证器丢了", {"谷歌验证器"}),
        ("场外买U", {"p2p", "usdt"}),
        ("爆仓了", {"强平"}),
    ],
)
def test_chinese_words_and_synonyms(text: str, tokens: set[str]) -> None:
    assert tokens <= set(tokenize(text, "zh"))


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("sent my SOL out to my wallet", {"withdraw"}),
        ("what it costs to move coins out", {"withdraw", "fee"}),
        ("took out 50 usdt", {"withdraw"}),
        ("I sent 0.1 BTC in as a test", {"deposit"}),
        ("sent it via BSC", {"bep20"}),
        ("binance smart chain", {"bep20"}),
        ("TRC-20", {"trc20"}),
    ],
)
def test_english_synonyms(text: str, tokens: set[str]) -> None:
    assert tokens <= set(tokenize(text, "en"))


@pytest.mark.parametrize(
    ("text", "exchange", "addressed"),
    [
        ("moved 300 XRP over from binance, nothing showed up", 1.0, 0.0),
        ("my Gate.io account is locked", 1.0, 0.0),
        ("小狐狸钱包里的币转到你们这边没到账", 1.0, 1.0),
        ("does your app support apple pay", 0.0, 1.0),
        ("sold my phone, how do i sign out of coinex on it", 0.0, 1.0),
        ("这个平台的手续费怎么算", 0.0, 1.0),
        ("how long do i boil an egg", 0.0, 0.0),
        ("my ledgerless wallet", 0.0, 0.0),  # a whole name only
        ("where is the nearest bank", 0.0, 0.0),
    ],
)
def test_gate_only_features(text: str, exchange: float, addressed: float) -> None:
    """other_exchange and addressed: another exchange or wallet named; this one spoken of."""
    assert (_other_exchange(text), _addressed(text)) == (exchange, addressed)


@pytest.mark.parametrize(
    ("text", "lead"),
    [
        ("zumbo asks for my passport before a transfer", 1.0),  # a company the lists do not know
        ("whats the weather like in lisbon", 1.0),
        ("why does zumbo want my address", 1.0),  # the intent marker of "why" is skipped
        ("48213 usdt withdrawal stuck", 0.0),  # a number is skipped
        ("pendng withdrawal for 3 hours", 0.0),  # a typo of a word of the help centre
        ("my coinex withdrawal is pending", 0.0),
        ("陌生词开头的提现问题", 0.0),  # English only
    ],
)
def test_lead_unknown(kb: KnowledgeBase, text: str, lead: float) -> None:
    """lead_unknown: the first content word of an English question is one the help centre never
    uses (or uses in a single text) and no typo of one."""
    _, _, features = kb.features(text)
    assert features is not None
    assert features[FEATURES.index("lead_unknown")] == lead


def test_lead_unknown_counts_a_word_of_a_single_text(kb: KnowledgeBase) -> None:
    """A first word that one text of the help centre uses in passing is barely known: 1; one
    that two texts use is known: 0."""
    index = kb._indexes["en"]
    by_support: dict[int, str] = {}
    for word, token in sorted(index.surface.items()):
        row = index.rows.get(token)
        if word == token and word.isalpha() and len(word) > 6 and row is not None:
            by_support.setdefault(int(index.support_of[row]), word)
    for support, lead in ((1, 1.0), (2, 0.0)):
        _, _, features = kb.features(f"{by_support[support]} withdrawal is stuck")
        assert features is not None
        assert features[FEATURES.index("lead_unknown")] == lead, by_support[support]


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("sent my SOL on the wrong chain, is it gone?", "deposit-wrong-network"),
        ("提出去的币对方说没收到", "withdrawal-not-received"),
        ("what it costs to send coins out", "withdrawal-fees"),
        ("USDT提现fee多少", "withdrawal-fees"),
        (
            "I paid the p2p seller by bank transfer and he has not released",
            "p2p-seller-not-releasing",
        ),
    ],
)
def test_examples_of_customer_wording(kb: KnowledgeBase, question: str, expected: str) -> None:
    assert kb.answer(question).top_article_id == expected


def test_the_deploy_health_question_is_answered_with_its_article(kb: KnowledgeBase) -> None:
    """The role's health gate asks this and needs it answered (not escalated) with this article."""
    answer = kb.answer("How do I reset my 2FA?")
    assert answer.top_article_id == "2fa-lost-reset"
    assert answer.confidence >= THRESHOLD


# ----- calibration -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def folds() -> list[dict]:
    return cross_validated(load_records(), load_phrasings(), load_off_topic())


def test_sparse_scores_are_the_bm25s_scores() -> None:
    docs = [["withdraw", "fee", "fee"], ["deposit", "fee"], ["withdraw", "2fa", "2fa", "reset"]]
    bm25 = bm25s.BM25(k1=BM25_K1, b=BM25_B, method="lucene")
    bm25.index(docs, show_progress=False)
    tokens = sorted({t for d in docs for t in d}, reverse=True)  # not bm25s' own order
    ptr, articles, data = _sparse_scores(bm25, tokens)
    assert len(ptr) == len(tokens) + 1
    for row, token in enumerate(tokens):
        dense = np.zeros(len(docs), dtype=np.float32)
        dense[articles[ptr[row] : ptr[row + 1]]] = data[ptr[row] : ptr[row + 1]]
        assert dense == pytest.approx(bm25.get_scores([token]), abs=1e-6), token
        assert (dense > 0).sum() == sum(token in d for d in docs), token


def test_a_question_scores_the_weighted_sum_of_its_tokens_rows(kb: KnowledgeBase) -> None:
    """``scores`` adds each known token's bm25s row times its weight (typos and tickers weigh
    less), and nothing for a token the index does not know."""
    index = kb._indexes["en"]
    query = [("withdrawal", "withdraw", 1.0), ("fee", "fee", 0.8), ("zzqx", "zzqx", 1.0)]
    expected = np.zeros(index.n_docs, dtype=np.float64)
    for _, token, weight in query[:2]:
        row = index.rows[token]
        span = slice(index.score_ptr[row], index.score_ptr[row + 1])
        expected[index.score_docs[span]] += weight * index.score_data[span]
    assert "zzqx" not in index.rows
    assert index.scores(query) == pytest.approx(expected, rel=1e-6)
    assert index.scores(query).argmax() == expected.argmax() and expected.max() > 0


def test_the_fitted_operating_point_is_the_configured_threshold() -> None:
    assert OPERATING_THRESHOLD == THRESHOLD


def test_packaged_calibration_is_the_fit_on_the_phrasings(folds: list[dict]) -> None:
    """calibration.json and classifier.npz are what ``python -m coinex_chatbot.knowledge`` fits
    today: rerun it after changing the corpus, the phrasings, the off-topic questions or the
    tokenisers."""
    fitted, report = fit_calibration(folds)
    packaged = packaged_calibration()
    trained = train_classifiers(load_records(), load_phrasings(), load_off_topic())
    for lang, shipped in packaged_classifiers().items():
        assert shipped.ids == trained[lang].ids and shipped.vocab == trained[lang].vocab
        assert shipped.bias == pytest.approx(trained[lang].bias, abs=1e-4)
        assert abs(shipped.weights - trained[lang].weights).max() < 1e-2  # stored as float16
    for lang in ("en", "zh"):
        assert fitted.gate[lang] == pytest.approx(packaged.gate[lang], abs=1e-4)
        assert fitted.right[lang] == pytest.approx(packaged.right[lang], abs=1e-4)
        assert fitted.point[lang] == pytest.approx(packaged.point[lang], abs=1e-4)
        assert report[lang]["answered_wrong"] <= 0.05
        assert report[lang]["off_topic"] >= 30
        n_off = report[lang]["off_topic"]
        assert report[lang]["off_topic_answered"] <= OFF_TOPIC_ALLOWED_SHARE * n_off, report[lang]


# ----- packaged tokens ---------------------------------------------------------------------------
def test_the_packaged_tokens_are_the_tokenisers_today() -> None:
    """tokens.json.gz is what ``python -m coinex_chatbot.knowledge --tokens-only`` writes today
    (rerun it after changing language.py, zh_words.txt, the corpus or the phrasings): same
    fingerprint, and every packaged text's tokens and Latin words as the tokeniser gives them."""
    shipped = resources.files("coinex_chatbot").joinpath(language.TOKEN_CACHE).read_bytes()
    try:
        fresh = language.build_cache(packaged_texts())
    finally:
        language._state.clear()  # the next tokenize reads the packaged file again
    assert json.loads(gzip.decompress(shipped)) == json.loads(gzip.decompress(fresh))


def test_an_index_built_from_the_packaged_tokens_is_the_one_built_without_them(
    kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """With a tokeniser that is not the packaged file's (its fingerprint differs) the file is
    left alone, the help centre is tokenised at load, and the answers are the same."""
    language._state.clear()
    monkeypatch.setattr(language, "fingerprint", lambda: "another tokeniser")
    with caplog.at_level("WARNING", logger=language.__name__):
        slow = KnowledgeBase.load()
    assert language._cache() is None
    assert "is not this tokeniser's" in caplog.text
    monkeypatch.undo()
    language._state.clear()
    fast = KnowledgeBase.load()
    assert language._cache() is not None
    for lang in ("en", "zh"):
        a, b = slow._indexes[lang], fast._indexes[lang]
        assert a.rows == b.rows and a.surface == b.surface
        assert (a.score_ptr == b.score_ptr).all() and (a.score_docs == b.score_docs).all()
        assert (a.score_data == b.score_data).all()
        assert a.known == b.known and (a.support_of == b.support_of).all()
        assert (a.df_of == b.df_of).all()
    for q in ALL_QUESTIONS[::4]:
        assert (
            slow.answer(q["q"]).as_dict()
            == fast.answer(q["q"]).as_dict()
            == kb.answer(q["q"]).as_dict()
        )
    language.settle()
    assert language._cache() is None  # a settled process keeps no packaged tokens


def _figures(pairs: list[tuple[float, str | None, list[str], str]]) -> dict[str, float]:
    """(confidence, top article, top 3, expected) -> shares answered right / escalated right /
    answered wrong, and top-1 / top-3."""
    n = len(pairs)
    right = sum(c >= THRESHOLD and top == exp for c, top, _, exp in pairs)
    escalated = sum(c < THRESHOLD and top == exp for c, top, _, exp in pairs)
    wrong = sum(c >= THRESHOLD and top != exp for c, top, _, exp in pairs)
    return {
        "answered right": right / n,
        "escalated right": escalated / n,
        "answered wrong": wrong / n,
        "top-1": (right + escalated) / n,
        "top-3": sum(exp in top3 for _, _, top3, exp in pairs) / n,
    }


def _asked(kb: KnowledgeBase, questions: list[dict]) -> list[tuple[float, str | None, list, str]]:
    out = []
    for q in questions:
        answer = kb.answer(q["q"])
        top3 = [a["id"] for a in answer.articles]
        out.append((answer.confidence, answer.top_article_id, top3, q["expected"]))
    return out


def _line(name: str, figures: dict[str, float], n: int) -> str:
    return f"  {name} ({n}): " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items())


def test_development_figures(
    kb: KnowledgeBase, folds: list[dict], capsys: pytest.CaptureFixture[str]
) -> None:
    calibration = packaged_calibration()
    lines = ["development set (heldout.json; phrasings by 5-fold cross-validation):"]
    for lang in ("en", "zh"):
        held = _asked(kb, [q for q in ALL_QUESTIONS if q["lang"] == lang])
        rows = [r for r in folds if r["lang"] == lang]
        phrased = [
            (calibration.confidence(lang, r["features"]), r["top"], [r["top"]], r["expected"])
            for r in rows
            if r["expected"]
        ]
        off = [calibration.confidence(lang, r["features"]) for r in rows if not r["expected"]]
        held_figures, phrased_figures = _figures(held), _figures(phrased)
        del phrased_figures["top-3"]  # a fold row keeps only its best article
        lines += [
            _line(f"{lang} heldout", held_figures, len(held)),
            _line(f"{lang} phrasings", phrased_figures, len(phrased)),
            f"  {lang} off_topic.json escalated {sum(c < THRESHOLD for c in off)}/{len(off)}",
        ]
        assert held_figures["answered right"] >= 0.7
        assert held_figures["answered wrong"] <= 0.06  # today 1 of 54 (en), 2 of 52 (zh)
        assert phrased_figures["answered wrong"] <= 0.05
        # the operating point lets at most this share come near the cuts (knowledge.py)
        assert sum(c >= THRESHOLD for c in off) <= OFF_TOPIC_ALLOWED_SHARE * len(off)
    with capsys.disabled():
        print("\n" + "\n".join(lines))


# Issue 16's targets, per language: on the blind set, at least this share answered right and at most
# this share answered wrong, and every off-topic question escalated.
BLIND_TARGET_RIGHT, BLIND_TARGET_WRONG = 0.85, 0.05


def _blind(kb: KnowledgeBase, lang: str, data: dict) -> tuple[dict[str, float], int, int]:
    figures = _figures(_asked(kb, [q for q in data["questions"] if q["lang"] == lang]))
    off = [kb.answer(q["q"]).confidence for q in data["off_topic"] if q["lang"] == lang]
    return figures, sum(c < THRESHOLD for c in off), len(off)


def test_blind_set_shape(kb: KnowledgeBase) -> None:
    ids = set(kb)
    for lang in ("en", "zh"):
        questions = [q for q in BLIND["questions"] if q["lang"] == lang]
        assert len(questions) >= 60 and all(q["expected"] in ids for q in questions)
        assert sum(q["lang"] == lang for q in BLIND["off_topic"]) >= 30


# each later blind set: one question per article and language, none from an earlier set
@pytest.mark.parametrize(
    ("data", "earlier"),
    [
        (BLIND_V2, [BLIND]),
        (BLIND_V3, [BLIND, BLIND_V2]),
        (BLIND_V4, [BLIND, BLIND_V2, BLIND_V3]),
        (BLIND_V5, [BLIND, BLIND_V2, BLIND_V3, BLIND_V4]),
        (BLIND_V6, [BLIND, BLIND_V2, BLIND_V3, BLIND_V4, BLIND_V5]),
        (BLIND_V7, [BLIND, BLIND_V2, BLIND_V3, BLIND_V4, BLIND_V5, BLIND_V6]),
        (BLIND_V8, [BLIND, BLIND_V2, BLIND_V3, BLIND_V4, BLIND_V5, BLIND_V6, BLIND_V7]),
        (BLIND_V9, [BLIND, BLIND_V2, BLIND_V3, BLIND_V4, BLIND_V5, BLIND_V6, BLIND_V7, BLIND_V8]),
        (BLIND_V10, [*EARLIER_BLIND, BLIND_V9]),
        (BLIND_V11, [*EARLIER_BLIND, BLIND_V9, BLIND_V10]),
        (BLIND_V12, [*EARLIER_BLIND, BLIND_V9, BLIND_V10, BLIND_V11]),
    ],
    ids=["v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11", "v12"],
)
def test_blind_v2_v3_shape(kb: KnowledgeBase, data: dict, earlier: list[dict]) -> None:
    ids = set(kb)
    for lang in ("en", "zh"):
        questions = [q for q in data["questions"] if q["lang"] == lang]
        assert len(questions) >= 60 and all(q["expected"] in ids for q in questions)
        assert len({q["expected"] for q in questions}) == len(ids), "one question per article"
        assert sum(q["lang"] == lang for q in data["off_topic"]) >= 30
        # the language each question is asked in (blind v4 has an English question quoting a
        # Chinese name: detected as English, as the app would)
        assert all(detect_language(q["q"]) == lang for q in questions)
        assert all(bool(CJK.search(q["q"])) for q in questions if lang == "zh")
    old = {q["q"] for d in earlier for q in d["questions"] + d["off_topic"]}
    assert not old & {q["q"] for q in data["questions"] + data["off_topic"]}


# Each scored blind set's floors, at what its scoring measured (docs/answers.md): one question fewer
# answered right or on top, one more answered wrong or one more off-topic question answered fails.
# Per language: (answered right, top-1) at least, answered wrong at most, off-topic escalated of 36.
BLIND_FLOORS = {
    # v9: written before the twelfth round's work (f8a8147), scored once when that round's model
    # was final (b110a7a). English off-topic was 35 then, 36 since the thirteenth round, whose gate
    # feature (lead_unknown) was found by looking at v9's one off-topic question answered: v9 is
    # no longer blind to it.
    "v9": {
        "en": ((0.88, 0.98), 0.0, 36),  # 64 and 71 of 72, 0 wrong
        "zh": ((0.98, 0.98), 0.014, 36),  # 71 and 71 of 72, 1 wrong
    },
    # v12: written before the fifteenth round's work (3c001be), scored once when that round's
    # model was final (4d619c8)
    "v12": {
        "en": ((0.87, 0.94), 0.0, 36),  # 63 and 68 of 72, none wrong
        "zh": ((0.97, 0.98), 0.0, 36),  # 70 and 71 of 72, none wrong
    },
}
BLIND_SCORED = {"v9": (BLIND_V9, "the twelfth"), "v12": (BLIND_V12, "the fifteenth")}


@pytest.mark.parametrize("name", list(BLIND_FLOORS))
def test_scored_blind_set_figures(
    kb: KnowledgeBase, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data, before = BLIND_SCORED[name]
    lines = [f"blind set {name} (blind_{name}.json; written before {before} round, not fitted on):"]
    measured = {}
    for lang in ("en", "zh"):
        figures, escalated, n_off = measured[lang] = _blind(kb, lang, data)
        n = sum(q["lang"] == lang for q in data["questions"])
        lines += [
            _line(f"{lang} questions", figures, n),
            f"  {lang} off-topic escalated {escalated}/{n_off}",
        ]
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    for lang, (figures, escalated, n_off) in measured.items():
        (right, top1), max_wrong, min_escalated = BLIND_FLOORS[name][lang]
        assert n_off == 36, lang
        assert figures["answered wrong"] <= max_wrong, (lang, figures)
        assert figures["answered right"] >= right, (lang, figures)
        assert figures["top-1"] >= top1, (lang, figures)
        assert escalated >= min_escalated, (lang, escalated, n_off)


# on the latest scored blind set, v12
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_blind_targets(kb: KnowledgeBase, lang: str) -> None:
    figures, escalated, n_off = _blind(kb, lang, BLIND_V12)
    assert figures["answered right"] >= BLIND_TARGET_RIGHT, figures
    assert figures["answered wrong"] <= BLIND_TARGET_WRONG, figures
    assert escalated == n_off, (escalated, n_off)


def test_classifier_learns_and_round_trips(tmp_path: Path) -> None:
    samples = [
        (["withdraw", "fee"], 0),
        (["withdraw", "cost"], 0),
        (["deposit", "miss"], 1),
        (["deposit", "arrive"], 1),
    ]
    model = classifier.train(samples, ["fees", "missing"])
    p = model.probabilities(["withdraw", "unknown-word"])
    assert p.shape == (2,) and p.sum() == pytest.approx(1.0)
    assert p[0] > 0.6 > p[1]
    assert model.probabilities(["deposit"])[1] > 0.6
    assert model.probabilities([]) == pytest.approx([0.5, 0.5], abs=0.05)  # the bias alone
    classifier.save({"en": model}, tmp_path / "c.npz")
    loaded = classifier.load(tmp_path / "c.npz", ["en"])["en"]
    assert loaded.ids == ("fees", "missing") and loaded.vocab == model.vocab
    assert loaded.probabilities(["withdraw"]) == pytest.approx(
        model.probabilities(["withdraw"]), abs=1e-3
    )
    with pytest.raises(ValueError, match="no training samples"):
        classifier.train([], ["fees"])


def test_classifier_weights_are_mapped_from_the_file_and_shared(tmp_path: Path) -> None:
    """The weights of a file ``save`` wrote are mapped read-only from it (np.memmap): the pages
    are the page cache's, one copy for every task process of a host. The packaged classifiers
    are loaded that way. An .npz whose weights are compressed (as np.savez_compressed writes
    one) still loads, into memory, with the same values."""

    model = classifier.train([(["withdraw", "fee"], 0), (["deposit", "miss"], 1)], ["a", "b"])
    classifier.save({"en": model}, tmp_path / "c.npz")
    mapped = classifier.load(tmp_path / "c.npz", ["en"])["en"].weights
    assert isinstance(mapped.base, np.memmap) and not mapped.flags.writeable
    assert np.array_equal(mapped, model.weights.astype(np.float16))
    with np.load(tmp_path / "c.npz") as data:
        np.savez_compressed(tmp_path / "z.npz", **dict(data))
    assert classifier.mapped(tmp_path / "z.npz", "en_weights") is None
    in_memory = classifier.load(tmp_path / "z.npz", ["en"])["en"].weights
    assert in_memory.base is None or not isinstance(in_memory.base, np.memmap)
    assert np.array_equal(in_memory, mapped)
    for model in packaged_classifiers().values():
        assert isinstance(model.weights.base, np.memmap), "the packaged weights are copied"


# ----- loading, caching, speed -------------------------------------------------------------------
def _article(aid: str) -> dict:
    return {
        "id": aid,
        "topic": "test",
        "en": {"title": "Margin call alerts", "body": "How margin call alerts are sent."},
        "zh": {"title": "追加保证金提醒", "body": "追加保证金提醒是如何发送的。"},
    }


def test_load_from_a_directory_and_validation(tmp_path: Path) -> None:
    (tmp_path / "one.json").write_text(json.dumps([_article("margin-alerts")]), "utf-8")
    kb = KnowledgeBase.load(tmp_path)
    assert len(kb) == 1
    assert kb.answer("margin call alerts").top_article_id == "margin-alerts"
    assert kb.answer("追加保证金提醒").top_article_id == "margin-alerts"

    (tmp_path / "two.json").write_text(json.dumps([_article("margin-alerts")]), "utf-8")
    with pytest.raises(ValueError, match="duplicate"):
        KnowledgeBase.load(tmp_path)

    broken = _article("broken")
    del broken["zh"]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.json").write_text(json.dumps([broken]), "utf-8")
    with pytest.raises(ValueError, match=r"zh\.title"):
        KnowledgeBase.load(bad)


def test_singleton_is_cached() -> None:
    assert get_knowledge_base() is get_knowledge_base()


def test_load_and_answer_are_fast() -> None:
    # loaded as a new worker process loads it, from the packaged tokens: an earlier test's load
    # settled them away (``language.settle``), and tokenising the help centre again took 2.6 s
    language._state.clear()
    started = time.process_time()
    kb = KnowledgeBase.load()
    load_seconds = time.process_time() - started
    questions = [q["q"] for q in HELDOUT["questions"] + HELDOUT["off_topic"]]
    started = time.process_time()
    for text in questions:
        kb.answer(text)
    per_answer_ms = (time.process_time() - started) / len(questions) * 1000
    # CPU seconds of this process (the machine may be busy): the index holds about 2600 customer
    # phrasings besides the articles, ~0.6 s
    assert load_seconds < 2.0, f"load + index took {load_seconds:.2f} s of CPU"
    assert per_answer_ms < 10, f"answer() took {per_answer_ms:.1f} ms"
    rng = random.Random(7)  # 2000 characters of distinct unknown words: the typo-matching path
    gibberish = " ".join("".join(rng.choices("abcdeilnorstuw", k=9)) for _ in range(200))[:2000]
    started = time.process_time()
    assert kb.answer(gibberish).confidence < THRESHOLD
    assert time.process_time() - started < 0.1, "a 2000-character message must stay fast"
