"""Languages of the help centre: which ones, CJK ranges, detection and the search tokenisers.

Imports nothing heavy (bm25s' stopword list, the Chinese lexicon and jieba are loaded on first
tokenisation), so the web processes, which only detect the language of a question, stay free of
the search stack.

Tokens (``tokenize``; the index and the questions are tokenised alike):
* English: lowercase ``[a-z0-9]+`` words; stopwords removed (bm25s' English list plus chat
  filler such as "pls", "hi", "keeps"); a light suffix stemmer (plurals, -ing, -ed, -al,
  final -e/-y); a small domain thesaurus folds customer words into help-centre words
  ("log in" -> login, "declined" -> reject, "take out" / "send ... out" -> withdraw,
  "BSC" -> bep20); intent markers ("how do I" -> qhow, "how long" -> qlong, "why" -> qwhy)
  kept as tokens, as they tell sibling articles apart (how to verify / why rejected / how long
  the review takes); plus pairs of content words at most two words apart, in either order
  ("limit_order", and cancel_withdraw for "cancel a pending withdrawal"), so phrases outrank
  scattered words.
* Chinese: segmented into words by jieba (``jieba-py``, its dictionary read from its wheel and
  cut to its 7,000 most frequent words, plus every word of the domain lexicon ``zh_words.txt``,
  which outrank them; no guessing of unknown words), each lexicon word read as its canonical
  form (提币, 转出, 往外转 -> 提现; 币安链 -> bep20; 身份验证器 -> 谷歌验证器; 怎么, 如何 -> qhow);
  function words (的, 了, 吗, 什么, ...) cut the text into stretches; every stretch gives its
  character unigrams and bigrams (so a word missing from the lexicon still matches) and each
  lexicon word of 3+ characters is a token too. Latin words inside Chinese ("2FA", "API",
  "USDT", "fee") are English tokens, those the lexicon gives a Chinese form read as it ("fee"
  -> 手续费, "kyc" -> 身份认证); a lone "U" is USDT.

Tokenising the packaged help centre (articles and phrasings, about 7,000 texts) takes over a
second of CPU, which every worker process would spend when it boots. ``tokens.json.gz``, written
with ``classifier.npz`` (``python -m coinex_chatbot.knowledge``), holds those texts' tokens and
Latin words, and jieba's cut dictionary; it is used only while its fingerprint (this module's
source, the lexicon, the jieba and bm25s versions) matches, and any other text is tokenised
here as before.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import itertools
import json
import logging
import re
from importlib import metadata, resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jieba

LANGUAGES: tuple[str, ...] = ("en", "zh")

CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK ideographs (a regex class body)
CJK_RE = re.compile(f"[{CJK}]")
CJK_RUN_RE = re.compile(f"[{CJK}]+")
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
    # what kind of answer is asked for: kept as tokens, they tell sibling articles apart
    (r"\bhow\s+(?:long|many\s+(?:hours|days|minutes))\b", " qlong "),
    (
        r"\bhow\s+(?:do|can|to|should|would|could)\b|\bsteps?\s+to\b"
        r"|\bwhere\s+(?:is|do|can)\b",
        " qhow ",
    ),
    # "how long does it take": the verb adds nothing to qlong (but "take profit" stays)
    (r"(\bqlong\b[^.?!]*?)\b(?:take|takes|took|taking)\b(?![- ]?profit)", r"\1"),
    (r"\bwhy\b|\bhow\s+come\b", " qwhy "),
    (r"\be[- ]?mail", "email"),
    (r"\b(?:log|logged|logging|sign|signed|signing)[- ]?(?:in|on)(?:to)?\b", "login"),
    (r"\b(?:take|took|taking|cash|cashing)[- ]out\b", "withdraw"),
    # "send my SOL out", "moved 50 usdt out" -> withdraw; "sent 1 BTC in" -> deposit
    (
        r"\b(?:send|sent|sending|sends|move|moved|moving|moves|transfer|transferred|transferring"
        r"|pull|pulled|get|got|getting)\b((?:\s+[\w.]+){0,3}?)\s+(?:out|off)\b(?!\s+of\b)",
        r"withdraw\1",
    ),
    (
        r"\b(?:send|sent|sending|move|moved|moving|transfer|transferred|bring|brought|put)\b"
        r"((?:\s+[\w.]+){0,3}?)\s+in\b(?=\s*(?:$|[,.!?]|to\b|as\b|from\b|and\b|but\b))",
        r"deposit\1",
    ),
    # "get my coins off coinex", "transfer btc from coinex to my wallet", "get my usdt out of
    # here" -> withdraw (first: "out of here" is no "here" of a deposit); "move my usdt from
    # binance to coinex", "send eth here" -> deposit
    (
        r"\b(?:send|sent|sending|move|moved|moving|transfer|transferred|transferring|get|got"
        r"|getting|take|took|taking|pull|pulled)\b((?:\s+[\w.']+){0,3}?)\s+(?:off|out\s+of"
        r"|from)\s+(?:the\s+)?(?:coinex|exchange|here|platform)\b",
        r"withdraw\1",
    ),
    (
        r"\b(?:send|sent|sending|move|moved|moving|transfer|transferred|transferring|bring"
        r"|brought|get|got|getting)\b((?:\s+[\w.']+){0,5}?)\s+(?:(?:in)?to\s+(?:my\s+)?coinex"
        r"|(?:over\s+)?here)\b(?!\s+(?:user|users|account\s+of))",
        r"deposit\1",
    ),
    # "send my btc to my ledger" -> withdraw; "bring usdt over from okx" -> deposit
    (
        r"\b(?:send|sent|sending|move|moved|moving|transfer|transferred|transferring|get|got)\b"
        r"((?:\s+[\w.']+){0,3}?)\s+to\s+(?:my\s+)?(?:own\s+)?(?:cold\s+|hardware\s+)?"
        r"(?:wallet|ledger|trezor|metamask|phantom|trustwallet|exodus|tronlink)\b",
        r"withdraw\1 wallet",
    ),
    (r"\b(?:bring|brought|bringing)\b((?:\s+[\w.']+){0,3}?)\s+over\b", r"deposit\1"),
    (r"\boutgoing\b|\btransfers?\s+out\b", "withdraw"),
    (r"\bincoming\b|\btransfers?\s+in\b(?!\s+(?:between|from\s+my\s+sub))", "deposit"),
    (r"\b(?:top|topped|topping)[- ]?up\b", "deposit"),
    # "fund my account", "add funds", "put my eth into coinex" -> deposit
    (
        r"\bfund(?:ing|ed)?\s+(?:my|the|your)\s+(?:coinex\s+)?(?:account|wallet)\b"
        r"|\b(?:add|adding|added)\s+(?:some\s+|more\s+)?(?:funds?|money|crypto|coins?)\b",
        "deposit",
    ),
    (r"\b(?:put|putting)\b((?:\s+[\w.]+){0,3}?)\s+(?:into|onto)\b", r"deposit\1"),
    (r"\b(?:sign|signed|signing)[- ]?up\b|\bregistration\b|\bregistering\b", "register"),
    (r"\b(?:show|showed|shows|showing|turn|turned)[- ]up\b", "arrive"),
    (r"\btwo[- ]factor\b|\b2[- ]step\b|\btwo[- ]step\b", "2fa"),
    (r"\bsub[- ]accounts?\b", "subaccount"),
    (r"\bgoogle[- ]auth(?:enticator)?\b|\bauth[- ]app\b", "authenticator"),
    (r"\bbinance[- ]smart[- ]chain\b|\bbnb[- ]chain\b|\bbsc\b|\bbep[- ]20\b", "bep20"),
    (r"\btron\b|\btrc[- ]20\b", "trc20"),
    (r"\btrust[- ]wallet\b", "trustwallet"),
    (r"\berc[- ]20\b", "erc20"),
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
    "fee": "fees charge charges charged commission commissions cost costs costing",
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
# Chinese characters and words that carry no topic: segmented like words, then dropped.
_ZH_STOP_WORDS = (
    "怎么办",
    "怎么样",
    "什么",
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
    "多少",
    "时候",
    "是什么",
    "有没有",
    "可不可以",
    "要不要",
    "这个",
    "那个",
    "一个",
    "现在",
    "但是",
    "然后",
    "因为",
    "所以",
    "如果",
    "就是",
    "还有",
    "啥",
    "咋",
    "咋办",
    "干嘛",
)
_ZH_STOP_CHARS = frozenset("的了吗呢吧啊呀嘛哦哈我你您他她它是在就都也么个这那请哪和与及或")


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


INTENTS = frozenset(("qhow", "qlong", "qwhy"))


PAIR_WINDOW = 2  # a word pairs with each of the next this many content words


def word_pairs(words: list[str]) -> list[tuple[int, int, str]]:
    """(i, j, token) for the pairs of content words at most ``PAIR_WINDOW`` apart, the token
    independent of their order ("cancel a pending withdrawal" and "withdrawal cancel" share
    cancel_withdraw)."""
    return [
        (i, j, "_".join(sorted((words[i], words[j]))))
        for i in range(len(words))
        for j in range(i + 1, min(len(words), i + 1 + PAIR_WINDOW))
        if words[i] != words[j]
    ]


def _bigrams(words: list[str]) -> list[str]:
    return [token for _, _, token in word_pairs(words)]


def latin_part(text: str) -> str:
    """``text`` without its CJK runs (the Latin words of a Chinese text)."""
    return CJK_RUN_RE.sub(" ", text)


@functools.cache
def _zh_lexicon() -> tuple[dict[str, str], dict[str, str], int]:
    """(Chinese word -> canonical form, Latin token -> canonical form, longest word) of
    ``zh_words.txt``; the function words are words whose canonical form is empty."""
    words: dict[str, str] = {w: "" for w in _ZH_STOP_WORDS}
    latin: dict[str, str] = {}
    text = resources.files(__package__).joinpath("zh_words.txt").read_text(encoding="utf-8")
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        canonical, _, variants = line.rpartition("=") if "=" in line else ("", "", line)
        canonical = canonical.strip()
        for word in variants.split() if canonical else line.split():
            if CJK_RE.search(word):
                words.setdefault(word, canonical or word)
            elif canonical:
                for _, token in en_pairs(word):
                    latin.setdefault(token, canonical)
        if canonical and CJK_RE.search(canonical):
            words.setdefault(canonical, canonical)
    return words, latin, max(map(len, words))


JIEBA_MIN_FREQ = 1000  # jieba's words at least this frequent (7k of 350k) join the lexicon's
LEXICON_FREQ = 100_000  # the lexicon's words outrank jieba's general words


@functools.cache
def _jieba() -> jieba.Tokenizer:
    """A jieba tokenizer over jieba's own dictionary (read from its wheel), cut to the words of
    frequency >= ``JIEBA_MIN_FREQ`` to keep a worker's memory small, plus every word of the
    domain lexicon. Built in memory: no cache file is written."""
    import io

    import jieba

    jieba.setLogLevel(logging.WARNING)
    words, _, _ = _zh_lexicon()
    lines = [f"{word} {LEXICON_FREQ}".encode() for word in words]
    cache = _cache()
    kept = cache["jieba"] if cache else _jieba_words()
    lines += [line.encode() for line in kept if line.split(" ", 1)[0] not in words]
    tokenizer = jieba.Tokenizer()
    tokenizer.FREQ, tokenizer.total = tokenizer.gen_pfdict(io.BytesIO(b"\n".join(lines)))
    tokenizer.initialized = True
    return tokenizer


def _jieba_words() -> list[str]:
    """The "word freq" lines of jieba's dictionary with freq >= ``JIEBA_MIN_FREQ``."""
    with resources.files("jieba").joinpath("_data/dict.txt").open("rb") as dictionary:
        return [
            f"{word} {freq}"
            for word, freq, *_ in (line.decode().split(" ", 2) for line in dictionary)
            if int(freq) >= JIEBA_MIN_FREQ
        ]


def _segment(run: str) -> list[str]:
    """``run`` cut into words by jieba (its dictionary's most frequent words and the lexicon's,
    no guessing of unknown words); characters no word covers are pieces of their own."""
    return list(_jieba().cut(run, HMM=False))


def _zh_pieces(text: str) -> list[str | list[str]]:
    """The CJK runs of ``text`` as canonical lexicon words (str) and runs of characters that no
    word covers (list of characters); "" where a function word or a non-CJK character was."""
    words, _, _ = _zh_lexicon()
    pieces: list[str | list[str]] = []
    loose: list[str] = []
    for run in CJK_RUN_RE.findall(text):
        for piece in _segment(run):
            word = words.get(piece, piece)
            if len(word) == 1 and piece not in _ZH_STOP_CHARS:
                loose.append(word)
                continue
            if loose:
                pieces.append(loose)
                loose = []
            pieces.append(word if piece not in _ZH_STOP_CHARS else "")
        if loose:
            pieces.append(loose)
            loose = []
        pieces.append("")
    return pieces


def zh_tokens(text: str) -> list[str]:
    """Chinese tokens of ``text`` (see the module docstring): the unigrams and bigrams of each
    stretch between function words, its lexicon words read as their canonical forms, plus the
    lexicon words of 3+ characters whole and each lexicon word paired with the question's
    intent markers (qhow_充值)."""
    tokens: list[str] = []
    stretch: list[str] = []

    def flush() -> None:
        chars = "".join(stretch)
        tokens.extend(chars)
        tokens.extend(chars[i : i + 2] for i in range(len(chars) - 1))
        stretch.clear()

    pieces = _zh_pieces(text)
    intents = sorted({p for p in pieces if isinstance(p, str) and p in INTENTS})
    for piece in pieces:
        if isinstance(piece, list):
            stretch.extend(piece)
        elif not piece or not CJK_RE.match(piece):  # a boundary, or a Latin canonical form
            flush()
            tokens.extend(t for _, t in en_pairs(piece))
        else:
            stretch.append(piece)
            if len(piece) > 2:
                tokens.append(piece)
            # what is asked about the word ("怎么充值" -> qhow_充值), wherever the intent stands
            tokens.extend(f"{intent}_{piece}" for intent in intents)
    flush()
    return tokens


def zh_units(text: str) -> list[tuple[str, tuple[str, ...]]]:
    """What a Chinese question is made of, for the confidence: (unit, tokens that show it in an
    article). A lexicon word is shown by itself; a character no word covers by a bigram of its
    run (single characters match nearly anything, so they do not count on their own)."""
    units: list[tuple[str, tuple[str, ...]]] = []
    for piece in _zh_pieces(text):
        if isinstance(piece, list):
            for i, ch in enumerate(piece):
                around = piece[max(0, i - 1) : i + 2]
                units.append((ch, tuple(a + b for a, b in itertools.pairwise(around))))
        elif not piece:
            continue
        elif CJK_RE.match(piece):
            units.append((piece, (piece,)))
        else:
            units.extend((t, (t,)) for _, t in en_pairs(piece))
    return units


_LONE_U_RE = re.compile(r"(?<![A-Za-z])[Uu](?![A-Za-z])")


def zh_latin_pairs(text: str) -> list[tuple[str, str]]:
    """(word, token) for the Latin words of a Chinese text, as ``en_pairs``; a token the lexicon
    gives a Chinese form ("fee" -> 手续费, "kyc" -> 身份认证) is read as it, a lone "U" as usdt."""
    _, latin, _ = _zh_lexicon()
    pairs = en_pairs(_LONE_U_RE.sub(" usdt ", latin_part(text)))
    return [(word, latin.get(token, token)) for word, token in pairs]


def tokenize(text: str, lang: str) -> list[str]:
    """Tokens of ``text`` for the index of ``lang`` (see the module docstring)."""
    if (cache := _cache()) and (hit := cache["tokens"][lang].get(_key(text))) is not None:
        return hit.split()
    return _tokenize(text, lang)


def _tokenize(text: str, lang: str) -> list[str]:
    if lang == "zh":
        return zh_tokens(text) + [t for _, t in zh_latin_pairs(text)]
    words = [t for _, t in en_pairs(text)]
    return words + _bigrams(words)


def latin_pairs(text: str, lang: str) -> list[tuple[str, str]]:
    """(word as written, indexed token) for the Latin words of a text of ``lang``."""
    if (cache := _cache()) and (hit := cache["latin"][lang].get(_key(text))) is not None:
        words = hit.split()
        return list(zip(words[::2], words[1::2], strict=True))
    return _latin_pairs(text, lang)


def _latin_pairs(text: str, lang: str) -> list[tuple[str, str]]:
    return zh_latin_pairs(text) if lang == "zh" else en_pairs(latin_part(text))


# ----- the packaged tokens ---------------------------------------------------------------------
TOKEN_CACHE = "tokens.json.gz"
log = logging.getLogger(__name__)


def _key(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=10).hexdigest()


def fingerprint() -> str:
    """What the tokens depend on: this module, the lexicon, jieba's and bm25s' versions."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(resources.files(__package__).joinpath("zh_words.txt").read_bytes())
    for dist in ("jieba-py", "bm25s"):
        digest.update(f"{dist}=={metadata.version(dist)}".encode())
    return digest.hexdigest()


_state: dict[str, dict | None] = {}  # "cache": the packaged tokens, read on first use


def _cache() -> dict | None:
    if "cache" not in _state:
        _state["cache"] = _read_cache()
    return _state["cache"]


def _read_cache() -> dict | None:
    """The packaged tokens if they are this code's (see the module docstring), else None."""
    try:
        with resources.files(__package__).joinpath(TOKEN_CACHE).open("rb") as f:
            data = json.loads(gzip.decompress(f.read()))
    except FileNotFoundError:
        return None
    if data.get("fingerprint") != fingerprint():
        log.warning("%s is not this tokeniser's: the help centre is tokenised at load", TOKEN_CACHE)
        return None
    return data


def settle() -> None:
    """After the help centre is indexed: build jieba's tokenizer now (not on a worker's first
    Chinese question), then let the packaged tokens go: questions are tokenised here."""
    _jieba()
    _state["cache"] = None


def build_cache(texts: dict[str, list[str]]) -> bytes:
    """``tokens.json.gz`` for ``texts`` (language -> texts): their tokens and Latin words,
    tokenised here (never read from a cache), and jieba's cut dictionary."""
    _state["cache"] = None  # an older file is not read, not even for jieba's dictionary
    data: dict = {"fingerprint": fingerprint(), "jieba": _jieba_words(), "tokens": {}, "latin": {}}
    for lang in LANGUAGES:
        tokens, latin = data["tokens"].setdefault(lang, {}), data["latin"].setdefault(lang, {})
        for text in texts.get(lang, []):
            key = _key(text)
            tokens[key] = " ".join(_checked(_tokenize(text, lang)))
            latin[key] = " ".join(_checked([w for pair in _latin_pairs(text, lang) for w in pair]))
    return gzip.compress(json.dumps(data, ensure_ascii=False, sort_keys=True).encode(), mtime=0)


def _checked(tokens: list[str]) -> list[str]:
    if bad := [t for t in tokens if not t or t != t.strip() or len(t.split()) != 1]:
        raise ValueError(f"tokens with white space cannot be stored: {bad[:3]}")
    return tokens
