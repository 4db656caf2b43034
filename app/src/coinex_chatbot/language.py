"""Languages of the help centre: which ones, CJK ranges, detection and the search tokenisers.

Imports nothing heavy (bm25s' stopword list is read on first tokenisation), so the web processes,
which only detect the language of a question, stay free of the search stack.

Tokens (``tokenize``; the index and the questions are tokenised alike):
* English: lowercase ``[a-z0-9]+`` words; stopwords removed (bm25s' English list plus chat
  filler such as "pls", "hi", "keeps"); a light suffix stemmer (plurals, -ing, -ed, -al,
  final -e/-y); a small domain thesaurus folds customer words into help-centre words
  ("log in" -> login, "declined" -> reject, "take out" -> withdraw); plus bigrams of
  adjacent content words ("limit_order") so phrases outrank scattered words.
* Chinese: the same kind of thesaurus (提币 -> 提现, 爆仓 -> 强平), then each CJK run is cut at
  function characters/words (的, 了, 吗, 怎么, 什么, ...) and every piece gives its character
  unigrams and bigrams; Latin words inside Chinese ("2FA", "API", "USDT") are English tokens.
"""

from __future__ import annotations

import functools
import itertools
import re

LANGUAGES: tuple[str, ...] = ("en", "zh")

CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK ideographs (a regex class body)
CJK_RE = re.compile(f"[{CJK}]")
_CJK_RUN_RE = re.compile(f"[{CJK}]+")
_ASCII_LETTERS_RE = re.compile(r"[A-Za-z]+")
_LATIN_WORD_RE = re.compile(r"[a-z0-9]+")


def detect_language(text: str) -> str:
    """Return "zh" if CJK ideographs make up a meaningful share of ``text``, else "en".

    A Chinese character counts against one Latin word; "zh" wins when the text has at least
    one ideograph and ideographs are at least 20 % of (ideographs + Latin words), so
    "2FA 丢了怎么办" is Chinese while an English sentence quoting one Chinese name is not.
    """
    cjk = len(CJK_RE.findall(text))
    if cjk == 0:
        return "en"
    words = len(_ASCII_LETTERS_RE.findall(text))
    return "zh" if cjk >= 0.2 * (cjk + words) else "en"


def wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


@functools.cache
def _en_stopwords() -> frozenset[str]:
    """bm25s' English stopwords plus chat filler that carries no topic ("hi guys pls help")."""
    from bm25s.stopwords import STOPWORDS_EN_PLUS  # bm25s imports numpy: on first use only

    return (frozenset(STOPWORDS_EN_PLUS) | _EN_FILLER) - {"id", "not", "no"}


_EN_FILLER = wordset(
    """
    hi hello hey pls plz please thanks thank thx ty help guys sir madam ok okay yes yeah u ur
    im ive dont cant can could would should will also still just get got want need know tell
    explain anyone someone something thing things way lot really much many mine now ago
    happen happened happening going coinex does did do is are was what whats why how when
    where which who whom hasnt havent isnt doesnt didnt wont s t ll ve re d m keep kept
    getting say says saying said try tried trying see seem look looking wonder wondering
    possible anymore actually ask asking whether anything everything nothing every since yet
    already
    """
)
# Customer phrasings folded into the help centre's vocabulary, applied to articles and
# questions alike (a small domain thesaurus, not a list of test questions).
_EN_PHRASES = (
    (r"\be[- ]?mail", "email"),
    (r"\b(?:log|logged|logging|sign|signed|signing)[- ]?(?:in|on)(?:to)?\b", "login"),
    (r"\b(?:take|took|taking|cash|cashing)[- ]out\b", "withdraw"),
    (r"\b(?:top|topped|topping)[- ]?up\b", "deposit"),
    (r"\b(?:show|showed|shows|showing|turn|turned)[- ]up\b", "arrive"),
    (r"\btwo[- ]factor\b|\b2[- ]step\b|\btwo[- ]step\b", "2fa"),
    (r"\bsub[- ]accounts?\b", "subaccount"),
    (r"\bgoogle[- ]auth(?:enticator)?\b", "authenticator"),
    (r"\bdestination[- ]tag\b", "memo"),
    (r"\bmargin[- ]call\b", "liquidation"),
)
_EN_PHRASE_RES = tuple((re.compile(p), r) for p, r in _EN_PHRASES)
_EN_SYNONYMS: dict[str, str] = {}
for _canonical, _variants in {
    "withdraw": "withdrawal withdrawals withdrew withdrawn withdrawl withdrawls payout",
    "deposit": "deposits deposited depositing",
    "arrive": "arrived arrives arriving credited credit crediting",
    "reject": "rejected rejection declined decline denied deny refused",
    "freeze": "frozen froze freezing lock locked",
    "hack": "hacked hacker hackers stolen compromised breached",
    "create": "make making made generate generated",
    "cancel": "cancelled canceled cancelling canceling revoke undo",
    "login": "logins signin",
    "fee": "fees charge charges charged commission commissions",
    "fund": "funds money",
    "network": "networks chain chains",
    "memo": "memos tag tags",
    "phone": "mobile cellphone",
    "authenticator": "authy",
    "2fa": "twofa tfa mfa otp",
    "password": "pwd passwd",
    "identity": "id",
    "transaction": "tx txn",
    "account": "acct acc",
    "address": "addr",
    "perpetual": "perp perps",
    "subaccount": "subaccounts",
    "send": "sent sending sends",
    "pay": "paid paying pays payment payments",
    "buy": "bought buying",
    "sell": "sold selling",
    "lose": "lost losing gone disappeared vanished",
}.items():
    for _variant in _variants.split():
        _EN_SYNONYMS[_variant] = _canonical
_EN_SYNONYMS["e"] = ""
# Chinese spellings folded the same way (replaced in the text before tokenising).
_ZH_SYNONYMS = (
    ("强制平仓", "强平"),
    ("爆仓", "强平"),
    ("提币", "提现"),
    ("提款", "提现"),
    ("出金", "提现"),
    ("充币", "充值"),
    ("入金", "充值"),
    ("入账", "到账"),
    ("撤回", "撤销"),
    ("登陆", "登录"),
    ("实名认证", "身份认证"),
    ("实名", "身份认证"),
    ("谷歌验证码", "谷歌验证器"),
)
# Chinese characters and words that carry no topic: text is split at them.
_ZH_STOP_WORDS = (
    "为什么",
    "怎么办",
    "怎么样",
    "怎么",
    "什么",
    "如何",
    "可以",
    "一下",
    "是不是",
    "是否",
    "请问",
    "已经",
    "还是",
    "你们",
    "我们",
    "能不能",
    "为何",
    "哪里",
    "多少",
    "时候",
    "怎样",
)
_ZH_STOP_CHARS = frozenset("的了吗呢吧啊呀嘛哦哈我你您他她它是在就都也么个这那请哪和与及或")
_ZH_SPLIT_RE = re.compile(
    "|".join(map(re.escape, _ZH_STOP_WORDS)) + "|[" + "".join(sorted(_ZH_STOP_CHARS)) + "]"
)


def _stem(word: str) -> str:
    """Light English suffix stemmer: plurals, -ing, -ed, -al, trailing -e; keeps short words."""
    if len(word) <= 3 or word.isdigit():
        return word
    for suffix, repl in (("ies", "y"), ("sses", "ss"), ("ness", ""), ("ments", "ment")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)] + repl
            break
    else:
        if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 4:
            word = word[:-1]
    for suffix in ("ing", "ed", "al"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            word = word[: -len(suffix)]
            if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]  # stopping -> stop
            elif word.endswith("ll"):
                word = word[:-1]  # cancelled -> cancel
            break
    if word.endswith("e") and len(word) > 4:
        word = word[:-1]  # release / released / releasing -> releas
    if word.endswith("y") and len(word) > 4:
        word = word[:-1] + "i"  # verify / verified -> verifi
    return word


def en_pairs(text: str) -> list[tuple[str, str]]:
    """(word, token) for each content word: thesaurus, stopwords and stemming applied."""
    text = text.lower()
    for pattern, repl in _EN_PHRASE_RES:
        text = pattern.sub(repl, text)
    pairs, stopwords = [], _en_stopwords()
    for raw in _LATIN_WORD_RE.findall(text):
        word = _EN_SYNONYMS.get(raw, raw)
        if not word or word in stopwords:
            continue
        stem = _stem(word)
        stem = _EN_SYNONYMS.get(stem, stem)
        if stem not in stopwords:
            pairs.append((word, stem))
    return pairs


def _bigrams(words: list[str]) -> list[str]:
    return [f"{a}_{b}" for a, b in itertools.pairwise(words) if a != b]


def latin_part(text: str) -> str:
    """``text`` without its CJK runs (the Latin words of a Chinese text)."""
    return _CJK_RUN_RE.sub(" ", text)


def zh_tokens(text: str) -> list[str]:
    """Character unigrams and bigrams of the CJK runs of ``text``, cut at function words."""
    for variant, canonical in _ZH_SYNONYMS:
        text = text.replace(variant, canonical)
    tokens: list[str] = []
    for run in _CJK_RUN_RE.findall(text):
        for part in _ZH_SPLIT_RE.split(run):
            tokens.extend(part)
            tokens.extend(part[i : i + 2] for i in range(len(part) - 1))
    return tokens


def tokenize(text: str, lang: str) -> list[str]:
    """Tokens of ``text`` for the index of ``lang`` (see the module docstring)."""
    if lang == "zh":
        return zh_tokens(text) + [t for _, t in en_pairs(latin_part(text))]
    words = [t for _, t in en_pairs(text)]
    return words + _bigrams(words)
