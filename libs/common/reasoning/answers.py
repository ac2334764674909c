"""Answering a question from retrieved evidence without a model (the extractive dialectic).

:func:`extractive_answer` is what :meth:`ExtractiveReasoner.answer
<libs.common.reasoning.extractive.ExtractiveReasoner.answer>` returns. It is a pure function of
the :class:`~libs.common.reasoning.port.AnswerRequest`: deterministic, no I/O, no model.

Keywords
--------
:func:`keywords` lower-cases a text, drops stop words (function words, question words, pronouns,
generic verbs of asking such as ``tell``/``know``/``say``, and time words such as ``today`` or
``yesterday``, which the retrieval resolves as a date range instead), drops peer names, and
reduces each remaining word to a rough stem: a few dozen irregular verb forms map to their base
(``ate`` → ``eat``), then ``-ies``/``-es``/``-s``/``-ing``/``-ed`` endings, a doubled final
consonant and a final ``e`` are removed (``baked``, ``baking`` and ``bake`` all become ``bak``).
The same function is applied to the question and to the evidence, so only consistency matters.

Relevance rule
--------------
An evidence item (or peer-card fact) is **on topic** when it shares at least one keyword with
the question. A question **names** a peer when a peer name occurs in it (``I``/``me``/``my``
name the asker) or when the request has a ``target``; an item is **about** a peer when that
peer wrote the message, or the conclusion is about that peer. Then, in this order:

1. On-topic items exist: the answer is the best of them — most shared keywords first, then the
   retrieval's order (fused rank) — plus on-topic peer-card facts.
2. The question has no keyword of its own (``Tell me about Bob``): what is known about the
   named peers (their card first, then the best items about them), or, when it names nobody,
   the best items overall.
3. Items about a named peer exist but none is on topic (``Can I trust that Alice won't attack
   me?`` when all that is known is that Alice said she will be peaceful): the answer says so
   and gives what is known about that peer.
4. Otherwise it abstains: :data:`ABSTENTION`.

How many items it gives grows with the reasoning level (``minimal`` 1, ``low`` 2, ``medium`` 3,
``high`` 4, ``max`` 5); an item whose keywords are all covered by an item already given is
skipped (a conclusion and the message it came from say the same thing).

Rendering
---------
A message becomes ``bob said on 2026-11-20: I had eggs for breakfast today.`` (messages over
300 characters are cut down to their on-topic sentences); a conclusion is given as it is
(``bob had eggs for breakfast on 2026-11-20.``), with ``(noted on <date>)`` appended when it
carries no date of its own; a card fact as ``From bob's card: Lives in Berlin.``. Dates are UTC.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from libs.common.reasoning.port import AnswerRequest, Evidence, ReasoningLevel

__all__ = [
    "ABSTENTION",
    "ITEMS_PER_LEVEL",
    "NOT_SPECIFICALLY",
    "content_words",
    "extractive_answer",
    "keywords",
    "word_chunks",
]

ABSTENTION = "I don't know anything about that yet."
"""The answer when nothing the asker may know is relevant to the question."""

NOT_SPECIFICALLY = "I don't know anything about that specifically."
"""Opening of an answer that gives related knowledge about the peer instead (rule 3)."""

ITEMS_PER_LEVEL: dict[ReasoningLevel, int] = {
    "minimal": 1,
    "low": 2,
    "medium": 3,
    "high": 4,
    "max": 5,
}

_MAX_QUOTE_CHARS = 300
_MAX_CARD_FACTS = 3


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


_STOP = _wordset(
    """a an the and or but if then else so of to in on at by for with about from into over after
    before under between through during without within as than too very can could would should
    will shall may might must do does did done doing have has had having be is am are was were
    been being it its this that these those there here what which who whom whose when where why
    how whats what's who's where's when's hows how's all any both each few more most other some
    such no nor not only own same just also now ever never again still even much many i me my
    mine myself we us our ours ourselves you your yours yourself yourselves he him his himself
    she her hers herself they them their theirs themselves themself i'm i've i'll i'd im ive
    you're you've you'll you'd we're we've we'll it's that's there's he's she's they're don't
    doesn't didn't won't wouldn't can't cannot couldn't shouldn't isn't aren't wasn't weren't
    haven't hasn't hadn't let's lets really yes yeah ok okay oh well like get gets got getting
    go goes going gonna went thing things stuff lot bit kind sort anything something everything
    nothing anyone someone everyone one ones tell told telling know knows knew known think
    thinks thought remember remembers say says said saying mention mentioned talk talked
    talking ask asked please today tonight yesterday tomorrow morning afternoon evening night
    day days week weeks weekend month months year years ago last next recently lately earlier
    later currently monday tuesday wednesday thursday friday saturday sunday january february
    march april june july august september october november december"""
)

_IRREGULAR = {
    "ate": "eat",
    "eaten": "eat",
    "drank": "drink",
    "drunk": "drink",
    "bought": "buy",
    "brought": "bring",
    "made": "make",
    "saw": "see",
    "seen": "see",
    "met": "meet",
    "ran": "run",
    "took": "take",
    "taken": "take",
    "came": "come",
    "felt": "feel",
    "left": "leave",
    "wrote": "write",
    "written": "write",
    "found": "find",
    "gave": "give",
    "given": "give",
    "kept": "keep",
    "slept": "sleep",
    "spent": "spend",
    "won": "win",
    "lost": "lose",
    "paid": "pay",
    "sold": "sell",
    "sent": "send",
    "built": "build",
    "began": "begin",
    "begun": "begin",
    "caught": "catch",
    "taught": "teach",
    "fought": "fight",
    "flew": "fly",
    "flown": "fly",
    "drove": "drive",
    "driven": "drive",
    "rode": "ride",
    "ridden": "ride",
    "swam": "swim",
    "sang": "sing",
    "sung": "sing",
    "wore": "wear",
    "worn": "wear",
    "broke": "break",
    "broken": "break",
    "chose": "choose",
    "chosen": "choose",
    "forgot": "forget",
    "forgotten": "forget",
    "heard": "hear",
    "held": "hold",
    "led": "lead",
    "lent": "lend",
    "meant": "mean",
    "sat": "sit",
    "stood": "stand",
    "understood": "understand",
    "woke": "wake",
    "woken": "wake",
    "cooked": "cook",
    "children": "child",
    "men": "man",
    "women": "woman",
    "people": "person",
    "mice": "mouse",
    "feet": "foot",
    "teeth": "tooth",
}

_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)*")
_SENTENCE_RE = re.compile(r"[^.!?…\n]+(?:[.!?…]+|\n|$)")
_ISO_DATE_RE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_CHUNK_RE = re.compile(r"\S+\s*|\s+")
_FIRST_PERSON = frozenset({"i", "me", "my", "mine", "myself", "i'm", "i've", "i'll", "i'd"})
_RECIPIENT_VERBS = frozenset({"tell", "show", "give", "remind", "let", "help", "explain"})


def _stem(word: str) -> str:
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    stem = word
    if len(stem) > 5 and stem.endswith("ing"):
        stem = stem[:-3]
    elif len(stem) > 4 and stem.endswith(("ed", "ches", "shes", "xes", "sses", "zes")):
        stem = stem[:-2]
    elif len(stem) > 3 and stem.endswith("s") and not stem.endswith(("ss", "us", "is")):
        stem = stem[:-1]
    if stem != word and len(stem) > 2 and stem[-1] == stem[-2] and stem[-1] not in "lsz":
        stem = stem[:-1]
    if len(stem) >= 4 and stem.endswith("e"):
        stem = stem[:-1]
    return stem


def _tokens(text: str) -> list[str]:
    return _WORD_RE.findall(text.lower().replace("\u2019", "'"))


def keywords(text: str, names: Iterable[str] = ()) -> set[str]:
    """Stemmed content words of ``text``, without stop words and without the peer ``names``."""
    excluded = {n.lower() for n in names}
    out: set[str] = set()
    for token in _tokens(text):
        if token.endswith("'s"):
            token = token[:-2]
        if token in _STOP or token in excluded or len(token) < 2:
            continue
        out.add(_stem(token))
    return out


def content_words(text: str, names: Iterable[str] = ()) -> list[str]:
    """The words :func:`keywords` keeps, as written (lower case, first occurrence order), for
    use as search terms."""
    excluded = {n.lower() for n in names}
    out: dict[str, None] = {}
    for token in _tokens(text):
        if token.endswith("'s"):
            token = token[:-2]
        if token in _STOP or token in excluded or len(token) < 3 or "'" in token:
            continue
        out.setdefault(token, None)
    return list(out)


def named_peers(text: str, peers: Iterable[str], asker: str) -> set[str]:
    """Which of ``peers`` the text names (first-person pronouns name the ``asker``, except the
    recipient ``me`` of ``tell me``, ``show me`` …)."""
    words = [t[:-2] if t.endswith("'s") else t for t in _tokens(text)]
    named = {p for p in peers if p.lower() in words}
    for index, word in enumerate(words):
        if word in _FIRST_PERSON and not (
            word == "me" and index and words[index - 1] in _RECIPIENT_VERBS
        ):
            named.add(asker)
            break
    return named


def word_chunks(text: str) -> list[str]:
    """``text`` split into words with their trailing spaces; ``"".join`` gives ``text`` back."""
    return _CHUNK_RE.findall(text)


def _date(moment: datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.date().isoformat()


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    if text and text[-1] not in ".!?…":
        text += "."
    return text


def _quote(content: str, question: set[str], names: Sequence[str]) -> str:
    text = " ".join(content.split())
    if len(text) <= _MAX_QUOTE_CHARS:
        return text
    sentences = [s.strip() for s in _SENTENCE_RE.findall(text) if s.strip()]
    chosen = [s for s in sentences if keywords(s, names) & question] or sentences[:1]
    out = ""
    for s in chosen:
        if len(out) + len(s) + 1 > _MAX_QUOTE_CHARS:
            break
        out = f"{out} {s}".strip()
    if not out:
        out = chosen[0][: _MAX_QUOTE_CHARS - 1].rstrip() + "…"
    return out


def _render(item: Evidence, question: set[str], names: Sequence[str]) -> str:
    if item.kind == "message":
        who = item.speaker or "someone"
        return _sentence(
            f"{who} said on {_date(item.created_at)}: {_quote(item.content, question, names)}"
        )
    text = " ".join(item.content.split()).rstrip(" .")
    if not _ISO_DATE_RE.search(text):
        text += f" (noted on {_date(item.created_at)})"
    return _sentence(text)


@dataclass(frozen=True)
class _Scored:
    item: Evidence
    rank: int
    words: frozenset[str]
    overlap: int


def extractive_answer(request: AnswerRequest) -> str:
    """The answer of the extractive dialectic (see the module docstring for the rules)."""
    subject = request.target or request.asker
    peers = {request.asker, subject}
    peers.update(e.speaker for e in request.evidence if e.speaker)
    names = sorted(peers)
    question = keywords(request.question, names)
    named = named_peers(request.question, peers, request.asker)
    if request.target:
        named.add(request.target)
    limit = ITEMS_PER_LEVEL.get(request.reasoning_level, 2)

    scored = []
    for rank, item in enumerate(request.evidence):
        words = frozenset(keywords(item.content, names))
        scored.append(_Scored(item, rank, words, len(words & question)))
    card = [(fact, keywords(fact, names)) for fact in request.peer_card if fact.strip()]

    def pick(candidates: list[_Scored]) -> list[_Scored]:
        chosen: list[_Scored] = []
        for cand in candidates:
            if len(chosen) >= limit:
                break
            if cand.words and any(cand.words <= c.words for c in chosen):
                continue
            chosen.append(cand)
        return chosen

    def render(chosen: list[_Scored]) -> list[str]:
        return [_render(c.item, question, names) for c in chosen]

    def about(chosen: list[_Scored], *extra: str) -> str:
        return " and ".join(sorted({c.item.speaker or "" for c in chosen} - {""} | set(extra)))

    def card_lines(facts: list[str]) -> list[str]:
        return [_sentence(f"From {subject}'s card: {f}") for f in facts[:_MAX_CARD_FACTS]]

    on_topic = sorted((s for s in scored if s.overlap), key=lambda s: (-s.overlap, s.rank))
    topical_facts = [f for f, words in card if words & question]
    if on_topic or topical_facts:
        return " ".join(render(pick(on_topic)) + card_lines(topical_facts))

    about_named = pick([s for s in scored if s.item.speaker in named])
    if not question:
        if named:
            facts = card_lines([f for f, _ in card]) if subject in named else []
            if facts or about_named:
                who = about(about_named, *([subject] if facts else []))
                return f"What I know about {who}: " + " ".join(facts + render(about_named))
        elif scored:
            return "What I know: " + " ".join(render(pick(scored)))
        return ABSTENTION
    if about_named:
        return f"{NOT_SPECIFICALLY} What I know about {about(about_named)}: " + " ".join(
            render(about_named)
        )
    return ABSTENTION
