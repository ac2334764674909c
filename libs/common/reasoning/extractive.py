"""The extractive reasoner: observations, summaries and peer cards without any model.

:class:`ExtractiveReasoner` implements :class:`~libs.common.reasoning.port.Reasoner` with plain
Python (``re`` and the standard library). It is deterministic (the same request always gives the
same answer), keeps no state between calls (safe to call concurrently from any number of tasks or
threads), does no I/O, and needs no network. It is the default reasoner when no LLM is
configured. ``custom_instructions`` are accepted and ignored: there is no model to instruct.

Extraction (``extract``)
------------------------
Only messages whose ``speaker`` is ``request.observed`` are read; anything else in ``messages`` is
ignored, so another peer's words can never become an observation about ``observed``. ``context``
is used only to find whom the speaker is talking to (see *second person*). Each message goes
through these steps:

1. **Protection.** URLs, e-mail addresses, bare domains, ``@mentions`` and double-quoted passages
   are set aside before any rewriting and put back verbatim at the end: nothing inside them is
   split, dated or pronoun-resolved (``My boss said "I quit"`` keeps its quote).
2. **Segmentation.** Lines are split on line breaks (a line that does not end a sentence and is
   followed by a lower-case line is a soft wrap and is joined). Bullets (``-``, ``*``, ``•``,
   ``1.``, ``2)``, ``a)``) start a new unit; a line ending with ``:`` followed by bullets is a
   header: items without a first-person pronoun are prefixed with it (``My hobbies:`` / ``- chess``
   → ``alice's hobbies: chess``). Sentences end at ``.``, ``!``, ``?``, ``…`` followed by a space,
   except after abbreviations (``Dr.``, ``Mr.``, ``e.g.``, ``i.e.``, ``vs.``, ``St.``, initials
   such as ``J.``; ``etc.``, ``a.m.``, ``U.S.``, ``Inc.`` only end a sentence when the next word is
   capitalised); ``!``/``?`` directly followed by a capital (``great!I``) also end one; decimals
   and URLs never split; an emoji ends a sentence when a capitalised word follows it or when
   three or more words stand on each side of it; a missing final punctuation mark is fine. Emoji
   and emoticons are then removed (as are private-use code points in the input, which the
   protection step uses internally).
3. **Chit-chat.** Leading interjections are dropped (``Haha, yes!``, ``Well``, ``Actually``,
   ``btw``, ``Ugh,``), as are vocatives naming a known participant (``Bob,`` when bob is the
   observer or speaks in ``context``), trailing ``lol``/``haha``/``thx`` and tag questions (``…,
   right?``). A sentence is dropped when what is left is empty, consists only of
   greeting/thanks/acknowledgement/laughter words (``ok``, ``thanks a lot``, ``sounds good``,
   ``good night``), is a known phatic phrase (``I see``, ``I'm fine``, ``me too``, ``I don't
   know``, ``that's great``, ``let me know …``), or has no content word at all.
4. **Questions** (a final ``?``, or an inverted opening such as ``do you``/``can I``/``what is``)
   state nothing as fact, so they are dropped, except: requests for recommendations become
   ``alice asked for a recommendation for a vegan restaurant``; requests for tips/advice/ideas
   become ``alice asked for tips on …``; and questions that mention the speaker (a first-person
   pronoun) are kept as ``alice asked: should alice quit alice's job?``.
5. **Requests and suggestions.** ``let's X`` → ``alice proposed to X``. An imperative asking for
   something (``tell``, ``remind``, ``send``, ``help``, ``recommend``… first) → ``alice asked bob
   to remind alice to …`` (``someone`` when the addressee is unknown). Advice to the listener
   (``try the pasta``) is dropped unless it mentions the speaker (``come visit me`` → ``alice
   said: come visit alice``). Subject-less chat (``Went to the gym``, ``Love this song``, ``Just
   got promoted``) gets the speaker as subject.
6. **Compound sentences** are split on ``and``, ``but``, ``;`` and spaced dashes when both sides
   are clauses: the left side opens with a subject or has a verb-like word (``My friend and I
   went`` stays whole), and the right side opens with a subject
   (``I``, ``we``, ``he``, ``she``, ``they``, ``it``, ``there``, ``my X <verb>``, ``Name
   <verb>s``), optionally after ``then``/``also``/``now``. ``I like tea and coffee`` stays whole;
   ``I like tea and I hate coffee`` gives two statements. A right-hand ``he``/``she``/``they`` that
   follows ``my <noun phrase> <verb>`` on the left becomes that noun phrase (``My sister lives in
   Paris and she is a nurse`` → ``alice's sister is a nurse``). ``so``/``because`` are not split
   (the cause stays with its effect). A sentence-initial time phrase (``Yesterday, I …``) moves to
   the end and is shared by every clause that has no time phrase of its own.
7. **Absolute dates.** Relative time expressions are rewritten against the message's
   ``created_at`` (its own time zone; naive datetimes are taken as they are): ``today``/
   ``tonight``/``yesterday``/``tomorrow`` (± ``morning``/``afternoon``/``evening``/``night``),
   ``this morning``, ``last night``, ``the day before yesterday``/``after tomorrow`` → ``on
   2026-11-20`` / ``on the morning of 2026-11-20``; ``last/this/next week`` → ``during the week of
   <Monday>``; ``… weekend`` → ``on the weekend of <Saturday>``; ``last/this/next month`` → ``in
   October 2026``; ``… year`` → ``in 2025``; ``N days ago``/``in N days`` → ``on <date>``; ``N
   weeks ago`` → ``around <date>``; ``N months ago`` → ``in <Month YYYY>``; ``N years ago`` → ``in
   <YYYY>``; ``a few days ago`` → ``a few days before <date>``; ``last/next/this Friday``; a bare
   ``(on) Friday``; ``in May``/``since May``/``last May``; ``May 3``/``the 3rd of May``; ``last/
   this/next summer`` (spring, summer, fall/autumn). A preceding preposition is kept (``until
   tomorrow`` → ``until 2026-11-21``). Rules for ambiguous ones: ``next Friday`` is the first
   Friday strictly after the message date and ``last Friday`` the last one strictly before it;
   ``this Friday`` is the Friday of the message's Monday-Sunday week (a week later if the
   sentence is future tense and that day is already past); a bare ``Friday`` is the previous one
   when the sentence is past tense (a past-tense verb, no future marker) and otherwise the next
   one; ``in May``/``May 3`` take the most recent May (up to the current month/day) for a past
   sentence and the next one (from the current month/day) otherwise; ``every Monday`` and
   ``Mondays`` are habits and stay as they are, and so does a month and day in a sentence about
   something yearly (``birthday``, ``anniversary``, ``every``, ``annual``). Dates already
   absolute are left alone.
8. **Pronouns.** First person is resolved to the speaker's peer name, with verb agreement:
   ``I`` → ``alice`` (``I am``/``I'm`` → ``alice is``, ``I've`` → ``alice has``, ``I'll`` →
   ``alice will``, ``I'd`` → ``alice had`` before a past participle, else ``alice would``, ``I
   like`` → ``alice likes``, ``I don't`` → ``alice doesn't``; ``I`` after ``and``/``or`` keeps the
   plural verb: ``Bob and I are``), ``me`` → ``alice``, ``my``/``mine`` → ``alice's``, ``myself``
   → ``themself`` when the speaker's name already appears before it, else ``alice``; ``we`` and
   ``us`` → ``alice and others`` (a plural subject, so verbs keep agreeing), ``our``/``ours`` →
   ``alice's`` (``our house`` → ``alice's house``), ``ourselves`` → ``themselves``. Inverted
   questions are agreed too (``do I`` → ``does alice``). Chat spellings ``im``/``ive``/``u``/``ur``
   are understood; ``US`` (upper case) and ``a mine`` are not pronouns.
   **Second person**: the addressee is the author of the latest ``context`` message before this
   message by someone other than the speaker. When known, ``you``/``your``/``yours`` become that
   peer (``I love you`` → ``alice loves bob``; ``you are`` → ``bob is``); when unknown they are
   left as they are. Independently of that, a statement whose subject is the listener (it opens
   with ``you``/``your``) and that does not mention the speaker is dropped: it is about someone
   else, not about ``observed``.
9. **Attribution.** A statement that does not mention the speaker after resolution is reported
   speech: ``The weather is nice`` → ``alice said the weather is nice``.
10. **Clean-up and de-duplication.** Trailing ``.``/``!`` are removed (questions keep ``?``);
    whitespace is collapsed; statements shorter than three words are dropped; statements longer
    than ``max_statement_chars`` (default 240) are cut at a word boundary and end with ``…``.
    Statements are de-duplicated case-, whitespace- and punctuation-insensitively, within the
    request and against ``request.known``. Every observation has ``level="explicit"`` and
    ``source_message_ids=[<its message id>]``.

Summaries (``summarize``)
-------------------------
Lines are ``speaker: sentence`` (first person kept, relative dates made absolute, chit-chat
removed). Each sentence of the new messages gets a salience score: content words (up to 12), +2
for a number, +2 for a first-person statement, +1 per proper noun (up to 3), -2 for a question.
``short`` keeps the best sentence of each message and at most 8 new lines; ``long`` keeps up to 3
per message and at most 40 new lines. Budget rule (o200k tokens, strict):

1. The newest message's best sentence is taken first and may use the whole budget (it is cut
   with ``truncate_to_tokens`` only if it alone exceeds ``max_tokens``): new beats old.
2. The previous summary is reserved ``min(its size, max_tokens // 2)``; the other new lines are
   chosen by salience (ties: newer first) within what is left after that reserve.
3. Whatever the new lines leave goes to the previous summary (so it gets at least about half the
   budget when it is large, and more when there is little new). It is split into lines (and
   lines over 60 tokens into sentences) and compressed by keeping its most salient units that fit
   (ties: newer kept); if none fits, its most salient unit is truncated, or dropped when fewer
   than 8 tokens would remain.
4. A repeated sentence is kept where it was said last; a new line already in the previous summary
   is skipped, except for the newest message's (the previous summary may be compressed away).

Output is the previous summary's kept lines followed by the new lines in chronological order, one
per line; ``count_tokens(result) <= max_tokens`` always holds (``""`` when ``max_tokens <= 0``;
the previous summary unchanged when it fits and the new messages are only chit-chat).

Peer cards (``update_peer_card``)
---------------------------------
A fact is kept only if it matches a stable-fact pattern, each with an *attribute key*: name, age,
birth year, birthday, where one lives (``lives in``, ``moved to``, ``is based in``), origin,
birthplace, job (``works as``, ``is a <occupation>``), employer, studies, relationship status,
family members and pets (``alice's sister lives in Paris`` → ``Sister lives in Paris``, keyed by
relation and verb), diet, allergies, preferences (``likes``/``loves``/``enjoys``/``hates``/
``dislikes``/``prefers``/``is a fan of`` …, keyed by their object, so ``Hates coffee`` replaces
``Likes coffee``), favourites, goals (``wants``/``plans``/``hopes to``…), languages, what they
play or learn, possessions (``has a dog``), nationality and ``is a <noun>``. New observations must
be about ``observed`` (they start with its name or ``the user``; ``… said that she …`` is
unwrapped) and are rendered in card form without the name (``Lives in Berlin``, ``Age: 34``,
``Allergic to peanuts``); a trailing date qualifier is dropped. Current facts keep their wording;
those that match no pattern are kept as they are. A new fact with the same key as an existing one
replaces it in place (newest wins); identical facts are merged (the first wording is kept); a
relative-clause tail (``…, which …``) is cut. Facts are at most 120 characters. The card is
ordered by tier (1: identity, location, job, studies, family, health and diet; 2: preferences,
favourites, goals, languages, skills, possessions; 3: ``is a <noun>`` and unrecognised facts),
then by attribute (name, age, location, job, employer, …), then by first appearance. Over
``max_facts``, facts are removed from the highest tier first; within it, facts not confirmed by
the new observations go before those that were, then the less important attribute, then the one
lower on the card.

Answers (``answer``)
--------------------
The dialectic's answer is the best retrieved evidence, quoted with its date, or an abstention;
the rules are in :mod:`libs.common.reasoning.answers`. ``response_format`` needs a model and
raises :class:`~libs.common.reasoning.port.UnsupportedRequestError`.

Speed, measured on the 2-core dev machine (shared, under load): ``extract`` ≈ 0.2-0.25 ms per
150-200-character chat message; ``summarize`` ≈ 3 ms for 20 messages plus a previous summary;
``update_peer_card`` ≈ 1.3 ms for 15 current facts and 57 observations.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from libs.common.reasoning.answers import extractive_answer, word_chunks
from libs.common.reasoning.port import (
    AnswerRequest,
    ExtractionRequest,
    Observation,
    PeerCardRequest,
    SummaryRequest,
    TranscriptLine,
    UnsupportedRequestError,
)
from libs.common.tokens import count_tokens, truncate_to_tokens

__all__ = ["ExtractiveReasoner"]

DEFAULT_MAX_STATEMENT_CHARS = 240
MAX_FACT_CHARS = 120

# --------------------------------------------------------------------------------------------
# Word lists
# --------------------------------------------------------------------------------------------


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_STOPWORDS = _words(
    """a an the and or but if then else so of to in on at by for with about from into over after
    before under between through during without within as than too very can could would should
    will shall may might must do does did done doing have has had having be is am are was were
    been being it its this that these those there here what which who whom whose when where why
    how all any both each few more most other some such no nor not only own same just also now
    i me my mine myself we us our ours ourselves you your yours yourself he him his she her hers
    they them their theirs i'm i've i'll i'd im ive you're you've you'll you'd we're we've we'll
    it's that's there's really yes yeah ok okay oh well lol like get got go going gonna thing
    things stuff lot bit kind sort u ur let's lets up out again still even much many"""
)

_CHITCHAT_WORDS = _words(
    """hi hello hey hiya heya yo sup howdy greetings thanks thank thx ty tysm cheers appreciate
    appreciated much so very lot lots you u ok okay k kk okie alright sure yes yeah yep yup ya
    yea no nope nah cool nice great awesome perfect good fine right true exactly agreed indeed
    totally absolutely definitely lol lmao rofl haha hahaha hehe xd wow omg oh ah oops whoa yay
    bye goodbye cya later see soon take care night morning evening afternoon gm gn welcome
    problem np worries sounds makes sense got it understood noted the a an too me same here hmm
    um uh er well and please have day weekend all again for that this is was wonderful amazing
    fantastic lovely sweet glad happy to hear dear friend buddy man dude guys everyone"""
)

_PHATIC = (
    "i see",
    "i agree",
    "i know",
    "i guess",
    "i guess so",
    "i think so",
    "i hope so",
    "i don't know",
    "i dunno",
    "i'm not sure",
    "i am not sure",
    "not sure",
    "i understand",
    "i get it",
    "i got it",
    "i mean",
    "i'm good",
    "i'm fine",
    "i'm ok",
    "i'm okay",
    "i'm great",
    "i'm well",
    "i am good",
    "i am fine",
    "i am well",
    "i'm doing well",
    "i'm doing good",
    "i'm doing great",
    "i'm doing fine",
    "i'm doing ok",
    "me too",
    "same here",
    "you too",
    "how are you",
    "how are you doing",
    "how about you",
    "and you",
    "what about you",
    "how is it going",
    "how's it going",
    "what's up",
    "nice to meet you",
    "good to know",
    "let me know",
    "let me think",
    "let me check",
    "let me see",
    "no worries",
    "my pleasure",
    "glad to hear that",
    "glad to hear it",
    "that makes sense",
    "makes sense",
    "i love it",
    "i like it",
    "i love that",
    "i like that",
    "i love this",
    "i like this",
    "i appreciate it",
    "i appreciate that",
    "i appreciate you",
    "i will",
    "i do",
    "i did",
    "i am",
    "i can",
    "i have",
    "i was",
    "i would",
    "i'd love to",
    "i'd like that",
    "sounds like a plan",
    "will do",
    "fair enough",
    "of course",
    "no problem",
    "talk to you later",
    "talk soon",
    "good luck",
    "hope you are well",
    "hope you're well",
    "i hope you are well",
    "i hope you're well",
    "i hope you're doing well",
    "hope you're doing well",
    "i'm back",
    "i'm here",
    "i'm sorry",
    "sorry about that",
    "my bad",
    "you're welcome",
    "you are welcome",
    "i'm glad",
    "i'm so glad",
    "i'm happy to hear that",
    "i can't wait",
    "can't wait",
    "i'm in",
    "count me in",
    "i'm listening",
    "i'm all ears",
    "i bet",
    "i suppose",
    "i suppose so",
    "i think",
    "i hope",
    "just kidding",
    "jk",
    "kidding",
    "no way",
    "oh my god",
    "for real",
    "really",
    "seriously",
    "i know right",
    "same",
    "not bad",
    "not much",
    "nothing much",
    "all good",
    "it's fine",
    "it's ok",
    "it's okay",
    "no idea",
    "never mind",
    "nevermind",
    "whatever",
)

_LY_VERBS = _words("fly reply apply rely supply comply multiply ally rally tally bully imply")
_ADVERBS = _words(
    """really also just usually always never often sometimes still actually totally absolutely
    definitely kinda sorta only even generally mostly rarely seldom personally honestly truly
    literally currently now already recently finally occasionally normally typically basically
    probably certainly clearly seriously simply mainly especially constantly regularly
    sincerely secretly obviously no-longer"""
)
_MODALS = _words(
    """can could will would shall should may might must cannot ought dare can't couldn't won't
    wouldn't shouldn't mustn't mightn't didn't wasn't weren't isn't aren't hasn't hadn't"""
)
_PAST_IRREGULAR = _words(
    """was were had did went got made said took came saw knew thought told found gave felt
    became left kept began brought bought ran wrote sat stood lost paid met sent built spent ate
    drank drove flew forgot fell grew heard held hid hung led lent lit meant rode rang rose sang
    sank shook shot slept spoke stole stuck swam taught tore threw understood woke wore won broke
    chose caught fought sought dealt dug fed fled froze mistook overslept began swore bit blew
    drew forgave hurt cost shut spread bet quit put cut hit set let read been gone done seen
    taken given eaten written driven known grown shown flown fallen forgotten gotten"""
)
_ED_NOT_PAST = _words(
    """need needed feed bed red seed speed indeed weed breed bleed proceed exceed succeed embed
    shed wed excited interested tired married bored scared worried stressed supposed pleased
    surprised amazed annoyed confused engaged obsessed relaxed exhausted concerned disappointed
    prepared booked scheduled planned retired related based allowed required involved
    qualified experienced advanced detailed limited talented"""
)
_ED_BASE_VERBS = _words(
    "need feed bleed breed proceed exceed succeed speed seed embed heed shred weed"
)
_NO_CONJ = (
    _MODALS
    | _PAST_IRREGULAR
    | _words(
        """not too to and or the a an myself alone both all either neither here there so then
        as than that this it also guys two three personally yet"""
    )
)
_IRREGULAR_3SG = {
    "am": "is",
    "have": "has",
    "do": "does",
    "don't": "doesn't",
    "dont": "doesn't",
    "haven't": "hasn't",
    "havent": "hasn't",
    "go": "goes",
    "ain't": "isn't",
    "are": "is",
    "aren't": "isn't",
}
_YOU_PAST = {"were": "was", "weren't": "wasn't"}
_SUBORDINATORS = _words(
    """that because if when since as while whether so and but or than where unless though
    although before after until once think hope guess know bet believe feel said heard wish
    whenever wherever cause cuz"""
)
_INVERTING_AUX = {
    "do": "does",
    "don't": "doesn't",
    "dont": "doesn't",
    "am": "is",
    "have": "has",
    "haven't": "hasn't",
    "aren't": "isn't",
    "are": "is",
    "were": "was",
    "weren't": "wasn't",
}
_OTHER_AUX = _words(
    """does did can could will would should shall may might must is was has had didn't can't
    couldn't won't wouldn't shouldn't isn't wasn't hasn't hadn't doesn't"""
)
_REQUEST_VERBS = _words(
    """tell give show help send remind explain teach book order schedule write call text email
    bring buy get make find fetch share describe list summarize summarise translate fix plan
    draft prepare"""
)
_ADVICE_VERBS = _words(
    """try watch read listen visit go come look consider remember don't never always take
    stop keep enjoy be have see meet join grab hit ask check"""
)
_IMPLICIT_I_VERBS = {
    "love": "love",
    "loved": "loved",
    "hate": "hate",
    "miss": "miss",
    "need": "need",
    "want": "want",
    "wanna": "want to",
    "think": "think",
    "feel": "feel",
    "hope": "hope",
    "wish": "wish",
    "enjoy": "enjoy",
    "prefer": "prefer",
    "gonna": "am going to",
    "been": "have been",
    "having": "am having",
    "going": "am going",
    "heading": "am heading",
    "working": "am working",
    "trying": "am trying",
    "planning": "am planning",
    "thinking": "am thinking",
    "feeling": "am feeling",
    "moving": "am moving",
    "starting": "am starting",
    "learning": "am learning",
}
_PARTICIPLE_AFTER_D = _words(
    """been had done gone seen left made got gotten forgotten known taken given eaten written
    finished started already"""
)
_OCCUPATIONS = _words(
    """engineer developer programmer teacher nurse doctor physician surgeon dentist lawyer
    attorney accountant architect designer artist writer author journalist editor chef cook
    baker waiter waitress bartender barista pilot driver mechanic electrician plumber carpenter
    farmer scientist researcher professor lecturer student manager consultant analyst
    entrepreneur founder ceo cto cfo salesperson marketer photographer musician singer actor
    actress dancer pharmacist therapist psychologist psychiatrist veterinarian vet librarian
    firefighter officer soldier paramedic cashier clerk secretary assistant intern freelancer
    banker economist translator tutor coach trainer administrator technician scientist
    biologist chemist physicist mathematician statistician tester recruiter director
    executive owner contractor builder cleaner caregiver counselor counsellor professor
    teacher's pastor priest rabbi imam judge sheriff detective"""
)
_RELATIONS = (
    "best friend|sister|brother|mother|mom|mum|father|dad|parents|wife|husband|partner|spouse|"
    "boyfriend|girlfriend|fiance|fiancee|fiancé|fiancée|son|daughter|kids|children|child|baby|"
    "grandmother|grandma|grandfather|grandpa|grandparents|aunt|uncle|cousin|niece|nephew|family|"
    "dog|cat|pet|roommate|boss|twin|friend"
)

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_MONTH_ABBR = {
    "jan": 1,
    "feb": 2,
    "mar": 3,
    "apr": 4,
    "jun": 6,
    "jul": 7,
    "aug": 8,
    "sep": 9,
    "sept": 9,
    "oct": 10,
    "nov": 11,
    "dec": 12,
}
_NUMBER_WORDS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "fifteen": 15,
    "twenty": 20,
    "thirty": 30,
}

# --------------------------------------------------------------------------------------------
# Regular expressions
# --------------------------------------------------------------------------------------------

_TRANSLATE = str.maketrans(
    {
        "\u2019": "'",
        "\u2018": "'",
        "\u02bc": "'",
        "\u2032": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u00ab": '"',
        "\u00bb": '"',
        "\u00a0": " ",
        "\u2009": " ",
        "\u202f": " ",
        "\u3000": " ",
        "\u2026": "...",
        "\u200b": "",
        "\u200c": "",
        "\ufeff": "",
        "\r": "",
        "\t": " ",
    }
)
_MASK_BASE = 0xF0000
_MASK_RE = re.compile("[\U000f0000-\U000ffffd]")
_URL_RE = re.compile(
    r"""(?:https?://|www\.)[^\s<>"]*[^\s<>".,;:!?)\]']"""
    r"|\b[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|io|dev|ai|app|co|edu|gov|me|info|xyz)\b"
    r"""(?:/[^\s<>"]*[^\s<>".,;:!?)\]'])?""",
    re.I,
)
_AT_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+|(?<!\w)@\w+")
_QUOTE_RE = re.compile(r'"[^"\n]{1,300}"')
_DOMAIN_HINT_RE = re.compile(
    r"\.(?:com|org|net|io|dev|ai|app|co|edu|gov|me|info|xyz)\b|https?://|www\.", re.I
)
_EMOJI_RE = re.compile(
    "[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\u2300-\u23ff\ufe0e\ufe0f\u200d"
    "\u3030\u303d\u3297\u3299\u2190-\u21ff\u2700-\u27bf]+"
)
_EMOTICON_RE = re.compile(r"(?<!\S)(?:[:;=]-?[)(DPpOo3/\\|\]\[*]+|[xX]D+|<3+|\^_?\^|:'\()(?!\S)")
_EMOTICON_HINT = frozenset(":;=<^")
_SPACES_RE = re.compile(r"[ ]{2,}")
_BULLET_RE = re.compile(r"^\s*(?:[-*•·‣◦▪\u2013\u2014+]|\d{1,3}[.)]|[a-z]\))\s+")
_BANG_UPPER_RE = re.compile(r"([!?])(?=[A-Z])")
_LINE_END_RE = re.compile(r"[.!?:;]\W*$")
_LAST_WORD_RE = re.compile(r"([A-Za-z']+)(\s+)$")
_SENTENCE_END_RE = re.compile(r"(\.{2,}|[.!?]+)([\"')\]]*)(\s+|$)")
_EMOJI_BOUNDARY = "\u2063"
_EMOJI_MID_RE = re.compile("\\s*\u2063+\\s*(?=[a-z])")
_EMOJI_SPLIT_RE = re.compile("\\s*\u2063+\\s*(?=[A-Z\"']|$)")
_ABBREV_NEVER = _words(
    """dr mr mrs ms prof st jr sr vs e.g i.e cf approx fig no nos vol dept est mt ft gen col lt
    sgt capt rev hon pres gov sen rep eg ie viz al"""
)
_ABBREV_MAYBE = _words(
    """etc inc ltd co corp jan feb mar apr jun jul aug sep sept oct nov dec mon tue tues wed thu
    thur thurs fri sat sun min max ave blvd rd"""
)
_DOTTED_ACRONYM_RE = re.compile(r"(?:[a-z]\.)+[a-z]")
_WORD_RE = re.compile(r"[A-Za-z0-9\U000f0000-\U000ffffd]+(?:'[A-Za-z]+)?")
_NORM_RE = re.compile(r"[^a-z0-9\U000f0000-\U000ffffd]+")
_LAUGH_RE = re.compile(r"(?:(?:ha|he|hi|ah)+h?|lo+l(?:o+l)*|lmf?ao+|rofl|xd+|kek|heh)")
_THAT_GREAT_RE = re.compile(
    r"(?:that|this|it|thats|its|so)(?: is| was| sounds| looks| seems)?"
    r"(?: so| really| very| pretty| super| totally| absolutely| quite)?"
    r" (?:great|good|cool|nice|awesome|amazing|funny|interesting|true|right|fair|fine|perfect|"
    r"wonderful|fantastic|lovely|sad|terrible|awful|crazy|wild|hilarious|sweet|fun|ok|okay|"
    r"brilliant|excellent|helpful|useful|smart|weird|strange|tough|rough|exciting|cute|"
    r"a good idea|a great idea|a plan|so true)(?: to hear| to know)?"
)
_LEADING_FILLER_RE = re.compile(
    r"^(?:(?:hi|hello|hey|hiya|heya|yo|oh|ah|well|um+|uh+|hmm+|wow|omg|lol|lmao|ha(?:ha)+|"
    r"he(?:he)+|yeah|btw|by the way|honestly|actually|anyway|anyways|tbh|to be honest|fwiw|"
    r"and|but|also|plus|then|sounds (?:good|great|fun|perfect|like a plan)|"
    r"okay|ok|alright|please|so|oh well|oh no|oh yeah|hey there|hi there|hello there|"
    r"good morning|good evening|good afternoon|dear|ugh|meh|argh|ooh|aww|phew|damn|dang|welp|"
    r"oof|ahh|basically|literally|frankly|seriously|ok so|okay so)\b[\s,!.:;-]*"
    r"|(?:no|yes|yep|yup|nope|nah|sure|right|cool|nice|great|awesome|true|exactly|thanks|"
    r"thank you|thanks a lot|thank you so much|like|you know|i mean|morning|ok then|"
    r"got it|fair enough|no worries|not really|not exactly|kind of|sort of|like i said|"
    r"as i said|like i told you|as i mentioned|"
    r"indeed|totally|absolutely|definitely|of course|sorry|perfect|haha)\s*[,!.:;-]+\s*)+",
    re.I,
)
_TRAILING_FILLER_RE = re.compile(
    r"[\s,]*(?:\b(?:lol|lmao|haha+|hehe+|xd|tbh|haha|rofl|thx|thanks|ty|pls|please)\b[\s!.]*)+$",
    re.I,
)
_VOCATIVE_RE = re.compile(r"^([\w.-]+)\s*(?:[,!:]+\s*|$)")
_TRAILING_HINTS = ("lol", "lmao", "haha", "hehe", "xd", "tbh", "rofl", "thx", "thanks", "ty", "pl")
_TAG_QUESTION_RE = re.compile(
    r",\s*(?:right|huh|eh|no|yeah|you know|ok|okay|innit|isn't it|don't you think|"
    r"(?:\w+n't|is|are|was|were|do|does|did|have|has|can|will|would)\s+"
    r"(?:i|you|it|we|they|he|she|there))\s*\?+\s*$",
    re.I,
)
_FIRST_PERSON_RE = re.compile(
    r"(?<![\w'-])(?:i|i'm|i've|i'll|i'd|im|ive|me|my|mine|myself|we|we're|we've|we'll|we'd|"
    r"us|our|ours|ourselves|let's)(?![\w'-])(?!\.\w)",
    re.I,
)
_FIRST_PERSON_SUBJECT_RE = re.compile(
    r"^(?:i|i'm|i've|i'll|i'd|(?-i:im|ive)|we|we're|we've|we'll|my|our)(?![\w'])", re.I
)
_SECOND_SUBJECT_RE = re.compile(
    r"^(?:you|your|you're|you've|you'll|you'd|(?-i:u|ur)|yours|you guys|y'all)(?![\w'.])", re.I
)
_PRONOUN_RE = re.compile(
    r"(?<![\w'-])(I'm|I've|I'll|I'd|Im|Ive|I|me|my|mine|myself|we're|we've|we'll|we'd|we|us|"
    r"our|ours|ourselves|you're|you've|you'll|you'd|you|your|yours|yourself|yourselves|u|ur)"
    r"(?![\w'-])(?!\.\w)",
    re.I,
)
_NEXT_WORD_RE = re.compile(r"(\s+)([A-Za-z][A-Za-z']*)")
_QUESTION_START_RE = re.compile(
    r"^(?:(?:do|does|did|can|could|would|will|should|shall|is|are|am|was|were|have|has|may|"
    r"might|won't|wouldn't|don't|doesn't|didn't|isn't|aren't|can't|couldn't|shouldn't)\s+"
    r"(?:you|u|i|we|they|he|she|it|there|anyone|someone|anybody|somebody|y'all)\b"
    r"|(?:what|where|when|why|who|whom|which|how)(?:'s|'re|\s+(?:is|are|was|were|do|does|did|"
    r"can|could|would|should|will|about|much|many|long|often|come|far|old))\b)",
    re.I,
)
_RECOMMEND_RES = (
    re.compile(
        r"^(?:(?:can|could|would|will)\s+(?:you|u|someone|anyone|somebody|anybody)\s+"
        r"(?:please\s+)?|please\s+)?(?:recommend|suggest)\s+(?:me\s+|us\s+)?(?P<np>.+)$",
        re.I,
    ),
    re.compile(
        r"^(?:do|does|got)\s+(?:you|u|anyone|someone|anybody|somebody)\s+(?:have|know)\s+"
        r"(?:any|a)\s+(?:good\s+)?(?:recommendations?|suggestions?|recs?)\s+(?:for|on)\s+"
        r"(?P<np>.+)$",
        re.I,
    ),
    re.compile(
        r"^(?:any|got any)\s+(?:good\s+)?(?:recommendations?|suggestions?|recs?)\s+(?:for|on)\s+"
        r"(?P<np>.+)$",
        re.I,
    ),
    re.compile(
        r"^(?:what|which)(?:'s|\s+is|\s+are|'re)\s+(?P<np>(?:a|an|some|the)\s+(?:good|great|nice|"
        r"decent|best)\s+.+)$",
        re.I,
    ),
)
_TIPS_RE = re.compile(
    r"^(?:(?:do|does|can|could|would)\s+(?:you|u|anyone|someone)\s+(?:have|give\s+me|share|"
    r"know)\s+)?(?:any\s+|some\s+)?(?:good\s+)?(?P<kind>tips|advice|ideas|pointers)\s+"
    r"(?:for|on|about)\s+(?P<np>.+)$",
    re.I,
)
_LETS_RE = re.compile(r"^let'?s\s+(?P<rest>.+)$", re.I)
_CALL_ME_RE = re.compile(r"^(?:you can\s+)?call me\s+(?P<name>[A-Z][\w-]*)$")
_CLAUSE_SEP_RE = re.compile(r"\s*;\s*|,?\s+(?:and|but)\s+|\s+[-\u2013\u2014]+\s+", re.I)
_CLAUSE_SUBJECT_RE = re.compile(
    r"^(?:(?:then|also|now|still|so|yet|even|actually)\s+)?"
    r"(?:(?:i|i'm|i've|i'll|i'd|im|ive|we|we're|we've|we'll|we'd|he|she|they|he's|she's|"
    r"they're|it's|there's|there|you|you're)\s+\S"
    r"|it\s+(?:is|was|has|had|will|would|can|could|does|did|seems|looks|tastes)\b"
    r"|(?:my|our)\s+(?P<np>\w+(?:\s+\w+){0,3})"
    r"|(?-i:[A-Z][a-z]+)\s+(?:is|was|has|had|will|can|could|would|does|did|\w+s|\w+ed)\b)",
    re.I,
)
_VERBISH_RE = re.compile(
    r"^(?:is|was|are|were|has|had|have|will|would|can|could|does|did|do|should|may|might|"
    r"must|isn't|wasn't|doesn't|didn't|won't|can't|\w{2,}[^s]s|\w+ed)$",
    re.I,
)
_POSSESSIVE_NP_RE = re.compile(
    r"^(?:my|our)\s+(?P<np>[A-Za-z]+(?:\s+[A-Za-z]+){0,2}?)\s+"
    r"(?=(?:is|was|are|were|has|had|have|will|would|can|could|does|did|lives|works|\w+ed)\b)",
    re.I,
)
_CLAUSE_LEAD_RE = re.compile(r"^(?:(?:and|but|then|also|so|plus|yet)\s+)+", re.I)
_ACRONYM_END_RE = re.compile(r"(?:\b[A-Za-z]\.)+[A-Za-z]\.$|\b(?:etc|Inc|Ltd|Jr|Sr|Co)\.$")
_THIRD_PRONOUN_RE = re.compile(r"^(?:he|she|they)\b", re.I)
_TRAILING_PUNCT_RE = re.compile(r"[\s.,;:!\-\u2013\u2014]+$")
_LEADING_PUNCT_RE = re.compile(r"^[\s.,;:!\-\u2013\u2014)\]]+")

# --- dates ---------------------------------------------------------------------------------

_WD = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_MONTH_FULL = (
    r"(?:january|february|march|april|(?-i:May)|june|july|august|september|october|november|"
    r"december)"
)
_MONTH_ANY = _MONTH_FULL[:-1] + r"|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec)"
_PART = r"(?:morning|afternoon|evening|night)"
_NUM = (
    r"(?:\d{1,3}|an?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|"
    r"twenty|thirty|a\s+couple\s+of|a\s+couple|couple\s+of|a\s+few|few|several)"
)
_UNIT = r"(?:minute|hour|day|week|month|year)s?"
_PREP_BEFORE_RE = re.compile(
    r"\b(?:on|for|until|till|by|since|from|before|after|during|through|starting)\s+$", re.I
)
_NO_YEAR = r"(?!\s*,?\s*\d)"

_P_DAYREL = r"(?:the\s+)?day\s+(?P<dr>before\s+yesterday|after\s+tomorrow)"
_P_DAYWORD = rf"(?P<dw>yesterday|today|tomorrow|tonight)(?:\s+(?P<part>{_PART}))?"
_P_PART = r"(?P<rel>this|last)\s+(?P<part>morning|afternoon|evening|night)"
_P_RELWD = (
    rf"(?P<rel>last|next|this\s+coming|this\s+past|this|coming)\s+(?P<wd>{_WD})"
    rf"(?:\s+(?P<part>{_PART}))?"
)
_P_WD = rf"(?<!every\s)(?<!each\s)(?P<wd>{_WD})(?:\s+(?P<part>{_PART}))?"
_P_RELUNIT = r"(?P<rel>last|this|next|coming)\s+(?P<unit>week|weekend|month|year)"
_P_AGO = rf"(?P<n>{_NUM})\s+(?P<unit>{_UNIT})\s+(?P<dir>ago|from\s+now)"
_P_IN = rf"in\s+(?P<n>{_NUM})\s+(?P<unit>{_UNIT})(?!\s+(?:ago|old))"
_P_SEASON = r"(?P<rel>last|this|next)\s+(?P<season>spring|summer|fall|autumn)"
_P_MONTHDAY = (
    rf"(?P<m>{_MONTH_ANY})\.?\s+(?P<d>\d{{1,2}})(?:st|nd|rd|th)?(?![\d:])(?!\s*,?\s*\d{{4}})"
)
_P_DAYMONTH = (
    rf"(?:the\s+)?(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<m>{_MONTH_FULL})\b"
    rf"(?!\s*,?\s*\d{{4}})"
)
_P_RELMONTH = rf"(?P<rel>last|next|this|coming)\s+(?P<m>{_MONTH_FULL})\b{_NO_YEAR}"
_P_INMONTH = (
    rf"(?P<lead>(?:in|since|until|till|by|during|from|through|before|after)\s+"
    rf"(?:early\s+|late\s+|mid-?\s*)?)(?P<m>{_MONTH_FULL})\b{_NO_YEAR}"
)

_ALPHA_RE = re.compile(r"[a-z]+")
_UNIT_WORDS = _words("minute minutes hour hours day days week weeks month months year years")
_WEEKDAY_WORDS = frozenset(_WEEKDAYS)
_MONTH_WORDS = frozenset(_MONTHS) | frozenset(_MONTH_ABBR)
_DATE_TRIGGERS = (
    _words("yesterday today tomorrow tonight morning afternoon evening night weekend ago")
    | _words("spring summer fall autumn")
    | _UNIT_WORDS
    | _WEEKDAY_WORDS
    | _MONTH_WORDS
)
_LEADING_TIME_RE = re.compile(
    r"^(?P<t>(?:(?:earlier|later)\s+)?(?:"
    + "|".join(
        re.sub(r"\(\?P<\w+>", "(?:", p)
        for p in (
            _P_DAYREL,
            _P_DAYWORD,
            _P_PART,
            _P_RELWD,
            r"(?:on\s+)?" + _P_WD,
            _P_RELUNIT,
            _P_AGO,
            _P_IN,
            _P_SEASON,
            r"(?:on\s+)?" + _P_MONTHDAY,
            r"(?:on\s+)?" + _P_DAYMONTH,
            _P_RELMONTH,
            r"in\s+" + _MONTH_FULL,
        )
    )
    + r"))\s*,?\s+(?=(?:i|we|my|our|me|you|he|she|they|it|there|im|ive|[A-Z])\b|[A-Z])",
    re.I,
)
_FUTURE_RE = re.compile(
    r"(?:\b(?:will|won't|shall|gonna|going\s+to|plan(?:s|ning)?\s+to|want(?:s)?\s+to|"
    r"hope(?:s)?\s+to|intend(?:s)?\s+to|tomorrow|next|upcoming|soon|coming|later|"
    r"would\s+like)\b|'ll\b)",
    re.I,
)

_SEASON_MONTHS = {"spring": (3, 5), "summer": (6, 8), "fall": (9, 11), "autumn": (9, 11)}

# --- peer cards ----------------------------------------------------------------------------

_TEMPORAL_TAIL_RE = re.compile(
    r"\s+(?:(?:on|in|during|around|since|by|as\s+of|until|before|after)\s+)"
    r"(?:the\s+(?:morning|afternoon|evening|night|week|weekend)\s+of\s+)?"
    rf"(?:\d{{4}}(?:-\d{{2}}(?:-\d{{2}})?)?|{_MONTH_FULL}\s+\d{{4}}|"
    r"(?:spring|summer|fall|autumn)\s+\d{4})\s*$",
    re.I,
)
_RELATIVE_TAIL_RE = re.compile(
    r",\s*(?:which|who|whom|but|so|and|because|since|although|though|while)\b", re.I
)
_BORN_RE = re.compile(r"^(?:was\s+)?born\s+(?:in|on)\b", re.I)
_REPORTED_RE = re.compile(
    r"^(?:said|mentioned|stated|noted|explained|shared|revealed|told\s+\w+)\s+that\s+"
    r"(?:she|he)\s+",
    re.I,
)
_PREF_RE = re.compile(
    r"^(?:(?:really|also|absolutely|totally|just|still|genuinely|actually|truly)\s+)*"
    r"(?P<verb>likes|loves|enjoys|adores|hates|dislikes|detests|prefers|can't\s+stand|"
    r"cannot\s+stand|doesn't\s+like|does\s+not\s+like|doesn't\s+enjoy|does\s+not\s+enjoy|"
    r"is\s+(?:a\s+)?(?:big\s+|huge\s+)?fan\s+of|is\s+not\s+a\s+fan\s+of|isn't\s+a\s+fan\s+of|"
    r"is\s+into|is\s+passionate\s+about|is\s+obsessed\s+with|avoids)\s+(?P<obj>.+)$",
    re.I,
)
_PREF_CANON = (
    (re.compile(r"^(?:likes)$", re.I), "Likes"),
    (re.compile(r"^(?:loves|adores)$", re.I), "Loves"),
    (re.compile(r"^enjoys$", re.I), "Enjoys"),
    (re.compile(r"^(?:hates|detests|can't\s+stand|cannot\s+stand)$", re.I), "Hates"),
    (
        re.compile(
            r"^(?:dislikes|doesn't\s+like|does\s+not\s+like|doesn't\s+enjoy|does\s+not\s+enjoy|"
            r"is\s+not\s+a\s+fan\s+of|isn't\s+a\s+fan\s+of)$",
            re.I,
        ),
        "Dislikes",
    ),
    (re.compile(r"^prefers$", re.I), "Prefers"),
    (re.compile(r"^is\s+(?:a\s+)?(?:big\s+|huge\s+)?fan\s+of$", re.I), "Is a fan of"),
    (re.compile(r"^is\s+into$", re.I), "Is into"),
    (re.compile(r"^is\s+passionate\s+about$", re.I), "Is passionate about"),
    (re.compile(r"^is\s+obsessed\s+with$", re.I), "Is obsessed with"),
    (re.compile(r"^avoids$", re.I), "Avoids"),
)
_GOAL_RE = re.compile(
    r"^(?:(?:really|also|still|eventually|someday|one\s+day)\s+)*"
    r"(?P<verb>wants|hopes|plans|intends|aims|dreams|is\s+planning|is\s+hoping|is\s+trying|"
    r"would\s+like|wishes|is\s+saving\s+up|is\s+saving|is\s+going)\s+to\s+(?P<obj>.+)$",
    re.I,
)
_FAMILY_RE = re.compile(rf"^(?P<rel>{_RELATIONS})(?P<rest>(?::|'s\s+|\s+).+)$", re.I)


@dataclass(frozen=True, slots=True)
class _Fact:
    key: tuple[str, ...]
    text: str
    tier: int


@dataclass(slots=True)
class _CardEntry:
    key: tuple[str, ...]
    text: str
    tier: int
    slot: int
    updated: int


@dataclass(slots=True)
class _MessageContext:
    speaker: str
    addressee: str | None
    today: date
    names: frozenset[str] = frozenset()
    masks: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Candidate:
    msg_index: int
    sent_index: int
    line: str
    score: int
    tokens: int


# --------------------------------------------------------------------------------------------
# The reasoner
# --------------------------------------------------------------------------------------------


class ExtractiveReasoner:
    """A :class:`~libs.common.reasoning.port.Reasoner` that needs no model (see module docs)."""

    name: str = "extractive"

    def __init__(self, *, max_statement_chars: int = DEFAULT_MAX_STATEMENT_CHARS) -> None:
        if max_statement_chars < 20:
            raise ValueError(f"max_statement_chars must be >= 20, got {max_statement_chars}")
        self._max_chars = max_statement_chars

    async def extract(self, request: ExtractionRequest) -> list[Observation]:
        """Explicit observations about ``request.observed`` from its own messages."""
        return self.extract_sync(request)

    async def summarize(self, request: SummaryRequest) -> str:
        """``previous`` plus the salient new lines, within ``request.max_tokens``."""
        return self.summarize_sync(request)

    async def update_peer_card(self, request: PeerCardRequest) -> list[str]:
        """``current`` merged with the stable facts among ``new_observations``."""
        return self.update_peer_card_sync(request)

    async def answer(self, request: AnswerRequest) -> str:
        """The best evidence as a short answer with dates, or an abstention (see
        :mod:`libs.common.reasoning.answers`). ``response_format`` needs a model: refused."""
        return self.answer_sync(request)

    async def stream_answer(self, request: AnswerRequest) -> AsyncIterator[str]:
        """:meth:`answer` in word chunks."""
        for chunk in word_chunks(self.answer_sync(request)):
            yield chunk

    # -- synchronous implementations (pure functions of the request) --------------------------

    def extract_sync(self, request: ExtractionRequest) -> list[Observation]:
        """Synchronous :meth:`extract` (CPU only; suitable for a worker thread)."""
        seen: set[str] = {_dedup_key(text) for text in request.known}
        observations: list[Observation] = []
        names = frozenset(
            line.speaker.lower() for line in request.context if line.speaker != request.observed
        ) | frozenset({request.observer.lower()} - {request.observed.lower()})
        for message in request.messages:
            if message.speaker != request.observed:
                continue
            ctx = _MessageContext(
                speaker=request.observed,
                addressee=_addressee(message, request.context, request.observed),
                today=message.created_at.date(),
                names=names,
            )
            for statement in self._statements(message.content, ctx):
                key = _dedup_key(statement)
                if not key or key in seen:
                    continue
                seen.add(key)
                observations.append(
                    Observation(
                        content=statement,
                        level="explicit",
                        source_message_ids=[message.message_id],
                    )
                )
        return observations

    def summarize_sync(self, request: SummaryRequest) -> str:
        """Synchronous :meth:`summarize`."""
        return _summarize(request)

    def update_peer_card_sync(self, request: PeerCardRequest) -> list[str]:
        """Synchronous :meth:`update_peer_card`."""
        return _update_card(request)

    def answer_sync(self, request: AnswerRequest) -> str:
        """Synchronous :meth:`answer`."""
        if request.response_format is not None:
            raise UnsupportedRequestError(
                "response_format needs an LLM: the extractive reasoner cannot fill a JSON schema"
            )
        return extractive_answer(request)

    # -- extraction internals -------------------------------------------------------------------

    def _statements(self, content: str, ctx: _MessageContext) -> list[str]:
        text = _protect(_normalize_text(content), ctx.masks)
        out: list[str] = []
        for unit, header in _units(text):
            for sentence in _split_sentences(unit):
                out.extend(self._sentence_statements(sentence, header, ctx))
        return out

    def _sentence_statements(self, raw: str, header: str | None, ctx: _MessageContext) -> list[str]:
        sentence = _strip_fillers(raw, ctx)
        if not sentence or _is_chitchat(sentence, ctx.names):
            return []
        body = sentence.rstrip(" ?!")
        if not _ACRONYM_END_RE.search(body):
            body = body.rstrip(" .")
        for pattern in _RECOMMEND_RES:
            match = pattern.match(body)
            if match:
                np = self._rewrite(_clean_np(match.group("np")), ctx, header=None)
                return [self._finish(f"{ctx.speaker} asked for a recommendation for {np}", ctx)]
        match = _TIPS_RE.match(body)
        if match:
            np = self._rewrite(_clean_np(match.group("np")), ctx, header=None)
            kind = match.group("kind").lower()
            return [self._finish(f"{ctx.speaker} asked for {kind} on {np}", ctx)]
        if _QUESTION_START_RE.match(sentence) or (
            sentence.endswith("?") and not _FIRST_PERSON_SUBJECT_RE.match(sentence)
        ):
            if not _FIRST_PERSON_RE.search(body):
                return []
            question = self._rewrite(body, ctx, header=None)
            return [self._finish(f"{ctx.speaker} asked: {_lower_first(question)}?", ctx)]
        match = _CALL_ME_RE.match(body)
        if match and match.group("name").lower() not in _WEEKDAYS:
            return [self._finish(f"{ctx.speaker}'s name is {match.group('name')}", ctx)]
        match = _LETS_RE.match(body)
        if match:
            rest = self._rewrite(match.group("rest"), ctx, header=None)
            return [self._finish(f"{ctx.speaker} proposed to {_lower_first(rest)}", ctx)]

        body, lead_time = _split_leading_time(body)
        clauses = _split_clauses(body)
        statements: list[str] = []
        for clause in clauses:
            clause_text = _CLAUSE_LEAD_RE.sub("", clause.strip(" ,;:-"))
            if not clause_text or _is_chitchat(clause_text, ctx.names):
                continue
            if lead_time and not _has_time_words(clause_text):
                clause_text = f"{clause_text} {lead_time}"
            statement = self._clause_statement(clause_text, header, ctx)
            if statement:
                statements.append(statement)
        return statements

    def _clause_statement(self, clause: str, header: str | None, ctx: _MessageContext) -> str:
        has_first = _FIRST_PERSON_RE.search(clause) is not None
        if _SECOND_SUBJECT_RE.match(clause) and not has_first:
            return ""
        if not _has_content(clause):
            return ""
        first = clause.split(None, 1)[0].lower().strip(",")
        if first == "please":
            clause = clause.split(None, 1)[1] if " " in clause else ""
            first = clause.split(None, 1)[0].lower().strip(",") if clause else ""
        if not clause:
            return ""
        words = clause.split(None, 2)
        if (
            len(words) > 1
            and first in _ADVERBS
            and (words[1].lower() in _IMPLICIT_I_VERBS or _looks_past(words[1].lower()))
        ):
            clause = f"I {_lower_first(clause)}"  # "Just got promoted" -> "I just got promoted"
            has_first = True
        elif first in _IMPLICIT_I_VERBS or (
            first not in _REQUEST_VERBS and first not in _ADVICE_VERBS and _looks_past(first)
        ):
            rest = clause.split(None, 1)[1] if " " in clause else ""
            verb = _IMPLICIT_I_VERBS.get(first, first)
            clause = f"I {verb} {rest}".strip()
            has_first = True
        elif first in _REQUEST_VERBS:
            who = ctx.addressee or "someone"
            rest = self._rewrite(_lower_first(clause), ctx, header=None)
            return self._finish(f"{ctx.speaker} asked {who} to {rest}", ctx)
        elif first in _ADVICE_VERBS:
            if not has_first:
                return ""
            rest = self._rewrite(_lower_first(clause), ctx, header=None)
            return self._finish(f"{ctx.speaker} said: {rest}", ctx)
        text = _lower_first_stopword(
            self._rewrite(clause, ctx, header=None if has_first else header)
        )
        if not _mentions(text, ctx.speaker):
            text = f"{ctx.speaker} said {text}"
        return self._finish(text, ctx)

    def _rewrite(self, text: str, ctx: _MessageContext, *, header: str | None) -> str:
        text = _resolve_dates(text, ctx.today)
        text = _resolve_pronouns(text, ctx.speaker, ctx.addressee)
        if header:
            text = f"{_resolve_pronouns(header, ctx.speaker, ctx.addressee)} {text}"
        return text

    def _finish(self, text: str, ctx: _MessageContext) -> str:
        text = _restore(text, ctx.masks)
        text = _SPACES_RE.sub(" ", text).strip()
        question = text.endswith("?")
        keep_dot = _ACRONYM_END_RE.search(text) is not None
        text = _TRAILING_PUNCT_RE.sub("", text.rstrip("?")) + (
            "?" if question else "." if keep_dot else ""
        )
        if text.lower() == f"{ctx.speaker} is {ctx.speaker}".lower():
            text = f"{ctx.speaker}'s name is {text[len(ctx.speaker) + 4 :]}"
        if len(text.split()) < 3:
            return ""
        return _clip(text, self._max_chars)


# --------------------------------------------------------------------------------------------
# Text helpers
# --------------------------------------------------------------------------------------------


def _normalize_text(text: str) -> str:
    text = unicodedata.normalize("NFC", text).translate(_TRANSLATE)
    if not text.isascii():
        text = _MASK_RE.sub("", text)  # the private-use code points that masks are made of
    return text


def _protect(text: str, masks: list[str]) -> str:
    def repl(match: re.Match[str]) -> str:
        masks.append(match.group(0))
        return chr(_MASK_BASE + len(masks) - 1)

    if len(masks) > 60000:  # pragma: no cover - absurd input; leave the rest unprotected
        return text
    if '"' in text:
        text = _QUOTE_RE.sub(repl, text)
    if "@" in text:
        text = _AT_RE.sub(repl, text)
    if "." in text and _DOMAIN_HINT_RE.search(text):
        text = _URL_RE.sub(repl, text)
    return text


def _restore(text: str, masks: Sequence[str]) -> str:
    if not masks:
        return text
    return _MASK_RE.sub(lambda m: masks[ord(m.group(0)) - _MASK_BASE], text)


def _units(text: str) -> list[tuple[str, str | None]]:
    """Lines and bullet items (with the header they belong to), soft wraps joined."""
    units: list[tuple[str, str | None]] = []
    header: str | None = None
    pending_header: str | None = None
    current = ""
    current_header: str | None = None
    for raw_line in text.split("\n"):
        line = raw_line.strip()
        if not line:
            if current:
                units.append((current, current_header))
                current = ""
            if pending_header is not None:
                units.append((pending_header, None))
                pending_header = None
            header = None
            continue
        bullet = _BULLET_RE.match(line)
        if bullet:
            if current:
                units.append((current, current_header))
                current = ""
            if pending_header is not None:
                header = pending_header
                pending_header = None
            current = line[bullet.end() :]
            current_header = header
            continue
        if pending_header is not None:
            units.append((pending_header, None))
            pending_header = None
        if (
            current
            and line[:1].islower()
            and not _LINE_END_RE.search(current)
            and current_header is None
        ):
            current = f"{current} {line}"
            continue
        if current:
            units.append((current, current_header))
            current = ""
        header = None
        if line.endswith(":"):
            pending_header = line
            continue
        current = line
        current_header = None
    if current:
        units.append((current, current_header))
    if pending_header is not None:
        units.append((pending_header, None))
    return units


def _split_sentences(text: str) -> list[str]:
    if not text.isascii():
        text = _EMOJI_RE.sub(f" {_EMOJI_BOUNDARY} ", text)
    if not _EMOTICON_HINT.isdisjoint(text) or "xD" in text or "XD" in text:
        text = _EMOTICON_RE.sub(f" {_EMOJI_BOUNDARY} ", text)
    if _EMOJI_BOUNDARY not in text:
        return _split_on_punctuation(_SPACES_RE.sub(" ", text).strip())
    pieces: list[str] = []
    text = _EMOJI_MID_RE.sub(_emoji_mid_boundary, text)
    for chunk in _EMOJI_SPLIT_RE.split(text):
        chunk = _SPACES_RE.sub(" ", chunk.replace(_EMOJI_BOUNDARY, " ")).strip()
        if chunk:
            pieces.extend(_split_on_punctuation(chunk))
    return pieces


def _emoji_mid_boundary(match: re.Match[str]) -> str:
    """An emoji between two runs of 3+ words ends a sentence even before a lower-case word."""
    before = match.string[: match.start()].split()
    after = match.string[match.end() :].split()
    if len(before) >= 3 and len(after) >= 3:
        return ". "
    return " "


def _split_on_punctuation(text: str) -> list[str]:
    if "!" in text or "?" in text:
        text = _BANG_UPPER_RE.sub(r"\1 ", text)  # "great!I" -> "great! I"
    out: list[str] = []
    start = 0
    for match in _SENTENCE_END_RE.finditer(text):
        punct = match.group(1)
        if punct == "." and not _period_ends_sentence(text, match.start(1), match.end()):
            continue
        piece = text[start : match.end(2)].strip()
        if piece:
            out.append(piece)
        start = match.end()
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return out


def _period_ends_sentence(text: str, dot: int, after: int) -> bool:
    before = text[:dot]
    last = before.rsplit(None, 1)[-1] if before.strip() else ""
    last = last.lstrip("(\"'[").lower()
    if not last:
        return True
    following = text[after : after + 1]
    next_upper = following.isupper() or following.isdigit() or following in "\"'"
    if last in _ABBREV_NEVER:
        return False
    if len(last) == 1 and last.isalpha():
        return last == "i" and not before.endswith(".")
    if _DOTTED_ACRONYM_RE.fullmatch(last) or last in _ABBREV_MAYBE:
        return next_upper
    return True


def _strip_fillers(sentence: str, ctx: _MessageContext) -> str:
    text = sentence.strip()
    for _ in range(3):
        before = text
        text = _LEADING_FILLER_RE.sub("", text).lstrip()
        text = _strip_vocative(text, ctx)
        if text == before:
            break
    tail = text[-24:].lower()
    if any(word in tail for word in _TRAILING_HINTS):
        text = _TRAILING_FILLER_RE.sub("", text)
    if "?" in tail:
        text = _TAG_QUESTION_RE.sub("", text)
    text = _LEADING_PUNCT_RE.sub("", text)
    return text.strip()


def _strip_vocative(text: str, ctx: _MessageContext) -> str:
    """Drop a leading ``Bob,`` / ``Bob!`` addressed to a known participant."""
    if not ctx.names:
        return text
    match = _VOCATIVE_RE.match(text)
    if match and match.group(1).lower() in ctx.names:
        return text[match.end() :]
    return text


def _norm_words(text: str) -> str:
    return _NORM_RE.sub(" ", text.lower().replace("'", "")).strip()


_PHATIC_NORMALIZED = frozenset(_norm_words(p) for p in _PHATIC)


def _is_chitchat(text: str, names: frozenset[str] = frozenset()) -> bool:
    if _MASK_RE.search(text):
        return False
    norm = _norm_words(text)
    if not norm:
        return True
    if (
        norm in _PHATIC_NORMALIZED
        or _THAT_GREAT_RE.fullmatch(norm)
        or norm.startswith(("let me know", "lmk ", "keep me posted", "let me think"))
    ):
        return True
    return all(w in _CHITCHAT_WORDS or w in names or _LAUGH_RE.fullmatch(w) for w in norm.split())


def _has_content(text: str) -> bool:
    for word in _WORD_RE.findall(text):
        low = word.lower()
        if low not in _STOPWORDS and not _LAUGH_RE.fullmatch(low):
            return True
    return False


def _looks_past(word: str) -> bool:
    if word in _PAST_IRREGULAR:
        return word not in {"read", "put", "cut", "hit", "set", "let", "quit", "hurt", "cost"}
    return (
        len(word) > 3
        and word.endswith("ed")
        and word.isalpha()
        and word not in _ED_NOT_PAST
        and word not in _ED_BASE_VERBS
    )


def _is_past_sentence(text: str) -> bool:
    for word in _WORD_RE.findall(text.lower()):
        if word in {"was", "were", "did", "had", "didn't", "wasn't", "weren't"} or _looks_past(
            word
        ):
            return True
    return False


def _lower_first(text: str) -> str:
    if not text:
        return text
    first = text.split(None, 1)[0]
    if first == "I" or first.startswith("I'") or (len(first) > 1 and first[1:2].isupper()):
        return text
    return text[0].lower() + text[1:]


def _lower_first_stopword(text: str) -> str:
    first = text.split(None, 1)[0] if text else ""
    if first.lower().split("'", 1)[0] in _STOPWORDS and first != "I" and not first.startswith("I'"):
        return text[0].lower() + text[1:]
    return text


def _clean_np(np: str) -> str:
    return np.strip().rstrip(" ?!.,")


def _mentions(text: str, name: str) -> bool:
    if not name:
        return False
    low = text.lower()
    target = name.lower()
    index = low.find(target)
    while index >= 0:
        before = low[index - 1] if index > 0 else " "
        after_index = index + len(target)
        after = low[after_index] if after_index < len(low) else " "
        if not (before.isalnum() or before in "_-") and not (after.isalnum() or after in "_-"):
            return True
        index = low.find(target, index + 1)
    return False


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit * 0.6:
        cut = cut[:space]
    return _TRAILING_PUNCT_RE.sub("", cut) + "…"


def _dedup_key(text: str) -> str:
    return _NORM_RE.sub(" ", text.lower().replace("'", "")).strip()


def _addressee(
    message: TranscriptLine, context: Sequence[TranscriptLine], speaker: str
) -> str | None:
    best: TranscriptLine | None = None
    for line in context:
        if line.speaker == speaker or line.created_at > message.created_at:
            continue
        if best is None or line.created_at >= best.created_at:
            best = line
    return best.speaker if best is not None else None


# --------------------------------------------------------------------------------------------
# Clauses
# --------------------------------------------------------------------------------------------


def _split_leading_time(text: str) -> tuple[str, str]:
    match = _LEADING_TIME_RE.match(text)
    if not match:
        return text, ""
    lead = match.group("t")
    first = lead.split(None, 1)[0].lower()
    if first not in _WEEKDAYS and first not in _MONTHS:
        lead = lead[0].lower() + lead[1:]
    return text[match.end() :], lead


def _split_clauses(text: str) -> list[str]:
    clauses: list[str] = []
    start = 0
    for match in _CLAUSE_SEP_RE.finditer(text):
        left = text[start : match.start()]
        right = text[match.end() :]
        if not _is_clause(right) or not _left_is_clause(left):
            continue
        clauses.append(left)
        start = match.end()
    clauses.append(text[start:])
    if len(clauses) > 1:
        np_match = _POSSESSIVE_NP_RE.match(clauses[0].strip())
        if np_match:
            owner = clauses[0].strip().split(None, 1)[0].lower()
            phrase = f"{owner} {np_match.group('np')}"
            for i in range(1, len(clauses)):
                clauses[i] = _THIRD_PRONOUN_RE.sub(phrase, clauses[i].lstrip(), count=1)
    return clauses


def _is_verbish(word: str) -> bool:
    low = word.lower()
    return (
        _VERBISH_RE.match(low) is not None
        or low in _PAST_IRREGULAR
        or low in _IRREGULAR_3SG
        or low in _MODALS
    )


def _is_clause(text: str) -> bool:
    match = _CLAUSE_SUBJECT_RE.match(text)
    if not match:
        return False
    np = match.group("np")
    if np is None:
        return True
    words = np.split()
    return any(_is_verbish(w) for w in words[1:])


def _left_is_clause(left: str) -> bool:
    words = _WORD_RE.findall(left)
    if len(words) < 2:
        return False
    return _is_clause(left.strip()) or any(_is_verbish(w) for w in words[1:])


# --------------------------------------------------------------------------------------------
# Pronouns
# --------------------------------------------------------------------------------------------


def _previous_word(text: str, index: int) -> str:
    """The word right before ``index`` ("" at the start or after punctuation)."""
    j = index - 1
    while j >= 0 and text[j] == " ":
        j -= 1
    end = j + 1
    while j >= 0 and (text[j].isalpha() or text[j] == "'"):
        j -= 1
    return text[j + 1 : end].lower()


def _match_case(original: str, new: str) -> str:
    if original[:1].isupper():
        return new[:1].upper() + new[1:]
    return new


def _conjugate(word: str) -> str:
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    if word.endswith(("s", "sh", "ch", "x", "z", "o")):
        return word + "es"
    return word + "s"


def _third_person(word: str, *, second: bool) -> str | None:
    low = word.lower()
    if second and low in _YOU_PAST:
        return _YOU_PAST[low]
    if low in _IRREGULAR_3SG:
        if not second and low in {"are", "aren't"}:
            return None
        return _IRREGULAR_3SG[low]
    if (
        low in _NO_CONJ
        or low in _ADVERBS
        or "'" in low
        or not low.isalpha()
        or (low.endswith("ed") and low not in _ED_BASE_VERBS)
        or low.endswith("ing")
        or (word[:1].isupper() and word != word.capitalize() and not word.isupper())
    ):
        return None
    return _conjugate(low)


def _is_adverb(word: str) -> bool:
    low = word.lower()
    return low in _ADVERBS or (len(low) > 4 and low.endswith("ly") and low not in _LY_VERBS)


def _agree(text: str, pos: int, *, second: bool) -> tuple[str, int]:
    """Verb agreement for a singular third-person subject just replaced before ``pos``."""
    chunks: list[str] = []
    cur = pos
    for step in range(3):
        match = _NEXT_WORD_RE.match(text, cur)
        if match is None:
            break
        word = match.group(2)
        if step < 2 and _is_adverb(word):
            chunks.append(match.group(0))
            cur = match.end()
            continue
        new = _third_person(word, second=second)
        if new is None:
            break
        new = new.upper() if len(word) > 1 and word.isupper() else _match_case(word, new)
        chunks.append(match.group(1) + new)
        return "".join(chunks), match.end()
    return "", pos


def _resolve_pronouns(text: str, speaker: str, addressee: str | None) -> str:
    out: list[str] = []
    pos = 0
    possessive = f"{speaker}'s"
    group = f"{speaker} and others"
    while True:
        match = _PRONOUN_RE.search(text, pos)
        if match is None:
            break
        out.append(text[pos : match.start()])
        word = match.group(0)
        low = word.lower()
        end = match.end()
        prev = _previous_word(text, match.start())
        replacement: str | None = None
        agree_second: bool | None = None
        if (
            word in {"US", "IM", "U", "Ive", "IVE"}
            or (low == "mine" and prev in {"a", "the", "gold", "coal", "land", "salt", "this"})
            or (low in {"u", "ur"} and addressee is None)
        ):
            replacement = word
        elif low == "i":
            replacement = speaker
            if prev in {"and", "or", "nor"}:
                pass
            elif prev in _INVERTING_AUX or prev in _OTHER_AUX:
                _fix_inverted_aux(out, prev)
            else:
                agree_second = False
        elif low in {"i'm", "im"}:
            replacement = f"{speaker} is"
        elif low in {"i've", "ive"}:
            replacement = f"{speaker} has"
        elif low == "i'll":
            replacement = f"{speaker} will"
        elif low == "i'd":
            nxt = _NEXT_WORD_RE.match(text, end)
            participle = nxt is not None and (
                nxt.group(2).lower() in _PARTICIPLE_AFTER_D
                or nxt.group(2).lower().endswith(("ed", "en"))
            )
            replacement = f"{speaker} {'had' if participle else 'would'}"
        elif low == "me":
            replacement = speaker
        elif low in {"my", "mine", "our", "ours"}:
            replacement = possessive
        elif low == "myself":
            replacement = "themself" if _mentions("".join(out), speaker) else speaker
        elif low in {"we", "us"}:
            replacement = group
        elif low == "we're":
            replacement = f"{group} are"
        elif low == "we've":
            replacement = f"{group} have"
        elif low == "we'll":
            replacement = f"{group} will"
        elif low == "we'd":
            replacement = f"{group} would"
        elif low == "ourselves":
            replacement = "themselves" if _mentions("".join(out), speaker) else group
        elif addressee is None:
            replacement = word
        elif low in {"you", "u"}:
            replacement = addressee
            nxt = _NEXT_WORD_RE.match(text, end)
            next_word = nxt.group(2).lower() if nxt else ""
            if prev in _INVERTING_AUX or prev in _OTHER_AUX:
                _fix_inverted_aux(out, prev)
            elif prev in {"and", "or", "nor"}:
                pass
            elif (
                prev == ""
                or prev in _SUBORDINATORS
                or next_word in _IRREGULAR_3SG
                or next_word in _YOU_PAST
            ):
                agree_second = True
        elif low == "you're":
            replacement = f"{addressee} is"
        elif low == "you've":
            replacement = f"{addressee} has"
        elif low == "you'll":
            replacement = f"{addressee} will"
        elif low == "you'd":
            replacement = f"{addressee} would"
        elif low in {"your", "yours", "ur"}:
            replacement = f"{addressee}'s"
        elif low in {"yourself", "yourselves"}:
            replacement = "themself" if _mentions("".join(out), addressee) else addressee
        else:  # pragma: no cover - every alternative of _PRONOUN_RE is handled above
            replacement = word
        out.append(replacement)
        pos = end
        if agree_second is not None:
            agreed, new_pos = _agree(text, pos, second=agree_second)
            if agreed:
                out.append(agreed)
                pos = new_pos
    out.append(text[pos:])
    return "".join(out)


def _fix_inverted_aux(out: list[str], prev: str) -> None:
    new = _INVERTING_AUX.get(prev)
    if new is None:
        return
    joined = "".join(out)
    match = _LAST_WORD_RE.search(joined)
    if match is None:
        return
    out[:] = [joined[: match.start(1)] + _match_case(match.group(1), new) + match.group(2)]


# --------------------------------------------------------------------------------------------
# Dates
# --------------------------------------------------------------------------------------------

_Render = tuple[str, str]


def _iso(day: date) -> str:
    return day.isoformat()


def _on_day(day: date, part: str | None = None) -> _Render:
    if part:
        return f"on the {part.lower()} of {_iso(day)}", f"the {part.lower()} of {_iso(day)}"
    return f"on {_iso(day)}", _iso(day)


def _month_name(month: int) -> str:
    return _MONTHS[month - 1].capitalize()


def _in_month(year: int, month: int) -> _Render:
    return f"in {_month_name(month)} {year}", f"{_month_name(month)} {year}"


def _add_months(year: int, month: int, delta: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + delta
    return index // 12, index % 12 + 1


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _number(text: str) -> int | None:
    low = " ".join(text.lower().split())
    if low.isdigit():
        return int(low)
    if low in {"a couple of", "a couple", "couple of"}:
        return 2
    return _NUMBER_WORDS.get(low)


def _month_number(text: str) -> int:
    low = text.lower().rstrip(".")
    if low in _MONTH_ABBR:
        return _MONTH_ABBR[low]
    return _MONTHS.index(low) + 1


@dataclass(frozen=True, slots=True)
class _DateCtx:
    today: date
    future: bool
    past: bool
    tense_known: bool = True


def _r_dayrel(m: re.Match[str], c: _DateCtx) -> _Render:
    delta = -2 if m.group("dr").lower().startswith("before") else 2
    return _on_day(c.today + timedelta(days=delta))


def _r_dayword(m: re.Match[str], c: _DateCtx) -> _Render:
    word = m.group("dw").lower()
    part = m.group("part")
    delta = {"yesterday": -1, "today": 0, "tomorrow": 1, "tonight": 0}[word]
    if word == "tonight":
        part = "night"
    return _on_day(c.today + timedelta(days=delta), part)


def _r_part(m: re.Match[str], c: _DateCtx) -> _Render:
    part = m.group("part").lower()
    rel = m.group("rel").lower()
    delta = -1 if rel == "last" else 0
    return _on_day(c.today + timedelta(days=delta), part)


def _r_relwd(m: re.Match[str], c: _DateCtx) -> _Render:
    rel = " ".join(m.group("rel").lower().split())
    target = _WEEKDAYS.index(m.group("wd").lower())
    current = c.today.weekday()
    if rel in {"last", "this past"}:
        delta = -((current - target) % 7 or 7)
    elif rel in {"next", "coming", "this coming"}:
        delta = (target - current) % 7 or 7
    else:  # "this": the day of the current Monday-Sunday week
        delta = target - current
        if delta < 0 and c.future:
            delta += 7
    return _on_day(c.today + timedelta(days=delta), m.group("part"))


def _r_wd(m: re.Match[str], c: _DateCtx) -> _Render:
    target = _WEEKDAYS.index(m.group("wd").lower())
    current = c.today.weekday()
    if c.past and not c.future:
        delta = -((current - target) % 7 or 7)
    else:
        delta = (target - current) % 7 or 7
    return _on_day(c.today + timedelta(days=delta), m.group("part"))


def _r_relunit(m: re.Match[str], c: _DateCtx) -> _Render:
    rel = m.group("rel").lower()
    unit = m.group("unit").lower()
    step = {"last": -1, "this": 0, "next": 1, "coming": 1}[rel]
    if unit == "week":
        monday = _monday(c.today) + timedelta(weeks=step)
        return f"during the week of {_iso(monday)}", f"the week of {_iso(monday)}"
    if unit == "weekend":
        saturday = _monday(c.today) + timedelta(days=5, weeks=step)
        return f"on the weekend of {_iso(saturday)}", f"the weekend of {_iso(saturday)}"
    if unit == "month":
        return _in_month(*_add_months(c.today.year, c.today.month, step))
    year = c.today.year + step
    return f"in {year}", str(year)


def _r_ago(m: re.Match[str], c: _DateCtx) -> _Render:
    sign = -1 if m.group("dir").lower() == "ago" else 1
    return _shift(m.group("n"), m.group("unit"), sign, c)


def _r_in(m: re.Match[str], c: _DateCtx) -> _Render:
    return _shift(m.group("n"), m.group("unit"), 1, c)


def _shift(n_text: str, unit_text: str, sign: int, c: _DateCtx) -> _Render:
    unit = unit_text.lower().rstrip("s")
    n = _number(n_text)
    if n is None:  # "a few", "several": keep it vague, but anchored
        words = " ".join(n_text.lower().split())
        phrase = f"{words} {unit}s {'before' if sign < 0 else 'after'} {_iso(c.today)}"
        return phrase, phrase
    if unit in {"minute", "hour"}:
        return _on_day(c.today + timedelta(hours=sign * n if unit == "hour" else 0))
    if unit == "day":
        return _on_day(c.today + timedelta(days=sign * n))
    if unit == "week":
        day = c.today + timedelta(weeks=sign * n)
        return f"around {_iso(day)}", f"around {_iso(day)}"
    if unit == "month":
        return _in_month(*_add_months(c.today.year, c.today.month, sign * n))
    year = c.today.year + sign * n
    return f"in {year}", str(year)


def _r_season(m: re.Match[str], c: _DateCtx) -> _Render:
    rel = m.group("rel").lower()
    season = m.group("season").lower()
    first, last = _SEASON_MONTHS[season]
    year = c.today.year
    if rel == "last":
        year = year if c.today.month > last else year - 1
    elif rel == "next":
        year = year if c.today.month < first else year + 1
    return f"in {season} {year}", f"{season} {year}"


def _month_year(month: int, day: int | None, c: _DateCtx, rel: str | None) -> int:
    today = c.today
    here = (today.month, today.day if day is not None else 0)
    there = (month, day if day is not None else 0)
    year = today.year
    if rel == "last":
        return year if there < (today.month, 0 if day is None else today.day) else year - 1
    if rel in {"next", "coming"}:
        return year if there > here else year + 1
    if rel == "this":
        return year
    if c.past and not c.future:
        return year if there <= here else year - 1
    return year if there >= here else year + 1


def _r_monthday(m: re.Match[str], c: _DateCtx) -> _Render:
    month = _month_number(m.group("m"))
    day_number = int(m.group("d"))
    year = _month_year(month, day_number, c, None)
    try:
        return _on_day(date(year, month, day_number))
    except ValueError:
        return m.group(0), m.group(0)


def _r_relmonth(m: re.Match[str], c: _DateCtx) -> _Render:
    month = _month_number(m.group("m"))
    return _in_month(_month_year(month, None, c, m.group("rel").lower()), month)


_DateRule = tuple[
    frozenset[str], re.Pattern[str], Callable[[re.Match[str], _DateCtx], _Render], bool
]
# (trigger words, pattern, renderer, needs the sentence's tense)
_DATE_RULES: tuple[_DateRule, ...] = (
    (
        frozenset({"yesterday", "tomorrow"}),
        re.compile(rf"\b{_P_DAYREL}\b", re.I),
        _r_dayrel,
        False,
    ),
    (
        frozenset({"yesterday", "today", "tomorrow", "tonight"}),
        re.compile(rf"\b{_P_DAYWORD}\b", re.I),
        _r_dayword,
        False,
    ),
    (
        frozenset({"morning", "afternoon", "evening", "night"}),
        re.compile(rf"\b{_P_PART}\b", re.I),
        _r_part,
        False,
    ),
    (_WEEKDAY_WORDS, re.compile(rf"\b{_P_RELWD}\b", re.I), _r_relwd, True),
    (_WEEKDAY_WORDS, re.compile(rf"\b{_P_WD}\b", re.I), _r_wd, True),
    (
        frozenset({"week", "weekend", "month", "year"}),
        re.compile(rf"\b{_P_RELUNIT}\b", re.I),
        _r_relunit,
        False,
    ),
    (frozenset({"ago", "now"}), re.compile(rf"\b{_P_AGO}\b", re.I), _r_ago, False),
    (_UNIT_WORDS, re.compile(rf"\b{_P_IN}\b", re.I), _r_in, False),
    (
        frozenset({"spring", "summer", "fall", "autumn"}),
        re.compile(rf"\b{_P_SEASON}\b", re.I),
        _r_season,
        False,
    ),
    (_MONTH_WORDS, re.compile(rf"\b{_P_MONTHDAY}", re.I), _r_monthday, True),
    (_MONTH_WORDS, re.compile(rf"\b{_P_DAYMONTH}", re.I), _r_monthday, True),
    (_MONTH_WORDS, re.compile(rf"\b{_P_RELMONTH}", re.I), _r_relmonth, True),
)
_IN_MONTH_RE = re.compile(rf"\b{_P_INMONTH}", re.I)


# A month and day in a sentence with these words recur every year: they get no year.
_RECURRING_WORDS = frozenset({"birthday", "anniversary", "every", "each", "annual", "annually"})


def _has_time_words(text: str) -> bool:
    return not _DATE_TRIGGERS.isdisjoint(_ALPHA_RE.findall(text.lower()))


def _resolve_dates(text: str, today: date) -> str:
    words = set(_ALPHA_RE.findall(text.lower()))
    if _DATE_TRIGGERS.isdisjoint(words):
        return text
    ctx: _DateCtx | None = None
    recurring = not _RECURRING_WORDS.isdisjoint(words)
    for triggers, pattern, render, needs_tense in _DATE_RULES:
        if triggers.isdisjoint(words) or (recurring and render is _r_monthday):
            continue
        if ctx is None:
            ctx = _date_ctx(text, today, tense=needs_tense)
        elif needs_tense and not ctx.tense_known:
            ctx = _date_ctx(text, today, tense=True)
        text = pattern.sub(_date_replacer(render, ctx), text)
    if not _MONTH_WORDS.isdisjoint(words):
        if ctx is None or not ctx.tense_known:
            ctx = _date_ctx(text, today, tense=True)
        month_ctx = ctx

        def month_repl(m: re.Match[str]) -> str:
            month = _month_number(m.group("m"))
            year = _month_year(month, None, month_ctx, None)
            return f"{m.group('lead')}{_month_name(month)} {year}"

        text = _IN_MONTH_RE.sub(month_repl, text)
    return text


def _date_ctx(text: str, today: date, *, tense: bool) -> _DateCtx:
    if not tense:
        return _DateCtx(today=today, future=False, past=False, tense_known=False)
    return _DateCtx(
        today=today,
        future=_FUTURE_RE.search(text) is not None,
        past=_is_past_sentence(text),
        tense_known=True,
    )


def _date_replacer(
    render: Callable[[re.Match[str], _DateCtx], _Render], ctx: _DateCtx
) -> Callable[[re.Match[str]], str]:
    def repl(m: re.Match[str]) -> str:
        with_prep, bare = render(m, ctx)
        start = m.start()
        if _PREP_BEFORE_RE.search(m.string, max(0, start - 12), start):
            return bare
        return with_prep

    return repl


# --------------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------------

_SUMMARY_LIMITS = {"short": (1, 8), "long": (3, 40)}
_MIN_FRAGMENT_TOKENS = 8  # a previous-summary line cut shorter than this is dropped instead


def _salience(sentence: str) -> int:
    words = _WORD_RE.findall(sentence)
    content = [w for w in words if w.lower() not in _STOPWORDS]
    score = min(len(content), 12)
    if any(ch.isdigit() for ch in sentence):
        score += 2
    if _FIRST_PERSON_RE.search(sentence):
        score += 2
    proper = sum(1 for w in words[1:] if w[:1].isupper() and w != "I")
    score += min(proper, 3)
    if sentence.rstrip().endswith("?"):
        score -= 2
    return score


def _summary_sentences(line: TranscriptLine, names: frozenset[str]) -> list[str]:
    masks: list[str] = []
    ctx = _MessageContext(
        speaker=line.speaker, addressee=None, today=line.created_at.date(), names=names
    )
    text = _protect(_normalize_text(line.content), masks)
    ctx.masks = masks
    out: list[str] = []
    for unit, header in _units(text):
        for raw in _split_sentences(unit):
            sentence = _strip_fillers(raw, ctx)
            if not sentence or _is_chitchat(sentence, names) or not _has_content(sentence):
                continue
            if header:
                sentence = f"{header} {sentence}"
            sentence = _resolve_dates(sentence, ctx.today)
            sentence = _SPACES_RE.sub(" ", _restore(sentence, masks)).strip()
            out.append(sentence)
    return out


def _summarize(request: SummaryRequest) -> str:
    budget = request.max_tokens
    if budget <= 0:
        return ""
    per_message, max_lines = _SUMMARY_LIMITS.get(request.kind, _SUMMARY_LIMITS["long"])
    previous = (request.previous or "").strip()
    prev_units = _previous_units(previous) if previous else []
    prev_keys = {_dedup_key(u) for u in prev_units}

    candidates: list[_Candidate] = []
    seen: set[str] = set()
    names = frozenset(m.speaker.lower() for m in request.messages)
    last_index = len(request.messages) - 1
    # Newest first, so a repeated sentence is kept where it was said last; the newest message
    # is never skipped as "already in the previous summary" (that summary may be compressed).
    for msg_index in range(last_index, -1, -1):
        message = request.messages[msg_index]
        sentences = _summary_sentences(message, names)
        scored: list[tuple[int, int, str]] = []
        for sent_index, sentence in enumerate(sentences):
            key = _dedup_key(f"{message.speaker}: {sentence}")
            if not key or key in seen or (key in prev_keys and msg_index != last_index):
                continue
            seen.add(key)
            scored.append((_salience(sentence), sent_index, sentence))
        scored.sort(key=lambda item: (-item[0], item[1]))
        for score, sent_index, sentence in scored[:per_message]:
            line = f"{message.speaker}: {sentence}"
            candidates.append(
                _Candidate(msg_index, sent_index, line, score, count_tokens(line) + 1)
            )

    prev_tokens = count_tokens(previous) if previous else 0
    new_budget = budget - min(prev_tokens, budget // 2)
    chosen: list[_Candidate] = []
    used = 0
    if candidates:
        newest_index = max(c.msg_index for c in candidates)
        newest = min(
            (c for c in candidates if c.msg_index == newest_index),
            key=lambda c: (-c.score, c.sent_index),
        )
        # The newest message's best line may use the whole budget: new beats old.
        if newest.tokens <= budget:
            chosen.append(newest)
            used += newest.tokens
        elif budget > 1:
            cut = truncate_to_tokens(newest.line, budget - 1)
            if cut.strip():
                chosen.append(
                    _Candidate(
                        newest.msg_index,
                        newest.sent_index,
                        cut,
                        newest.score,
                        count_tokens(cut) + 1,
                    )
                )
                used += chosen[-1].tokens
        rest = sorted(
            (c for c in candidates if c is not newest),
            key=lambda c: (-c.score, -c.msg_index, c.sent_index),
        )
        for cand in rest:
            if len(chosen) >= max_lines:
                break
            if used + cand.tokens <= new_budget:
                chosen.append(cand)
                used += cand.tokens
    chosen.sort(key=lambda c: (c.msg_index, c.sent_index))
    new_lines = [c.line for c in chosen]

    prev_budget = budget - used
    kept_prev = _compress(prev_units, prev_budget) if prev_units else []
    result = "\n".join(kept_prev + new_lines)
    # Joining can change token boundaries slightly; enforce the bound exactly.
    while count_tokens(result) > budget and (kept_prev or len(new_lines) > 1):
        if kept_prev:
            kept_prev = _drop_least(kept_prev)
        else:
            new_lines = new_lines[1:]
        result = "\n".join(kept_prev + new_lines)
    if count_tokens(result) > budget:
        result = truncate_to_tokens(result, budget)
    return result


def _previous_units(previous: str) -> list[str]:
    units: list[str] = []
    for line in previous.split("\n"):
        line = line.strip()
        if not line:
            continue
        if count_tokens(line) > 60:
            units.extend(_split_on_punctuation(line))
        else:
            units.append(line)
    return units


def _drop_least(units: list[str]) -> list[str]:
    index = min(range(len(units)), key=lambda i: (_salience(units[i]), i))
    return units[:index] + units[index + 1 :]


def _compress(units: list[str], budget: int) -> list[str]:
    """The most salient previous units that fit ``budget`` (ties: newer kept), in order."""
    if budget <= 0:
        return []
    costs = [count_tokens(u) + 1 for u in units]
    if sum(costs) <= budget:
        return units
    order = sorted(range(len(units)), key=lambda i: (-_salience(units[i]), -i))
    kept: set[int] = set()
    used = 0
    for index in order:
        if used + costs[index] <= budget:
            kept.add(index)
            used += costs[index]
    if kept:
        return [u for i, u in enumerate(units) if i in kept]
    if budget - 1 < _MIN_FRAGMENT_TOKENS:
        return []
    cut = truncate_to_tokens(units[order[0]], budget - 1)
    return [cut] if cut.strip() else []


# --------------------------------------------------------------------------------------------
# Peer cards
# --------------------------------------------------------------------------------------------


def _norm_key(text: str) -> str:
    words = _dedup_key(text).split()
    while words and words[0] in {"a", "an", "the", "some", "my", "his", "her", "their"}:
        words = words[1:]
    return " ".join(words)


def _article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def _short(obj: str, max_words: int = 8) -> str | None:
    obj = _RELATIVE_TAIL_RE.split(obj, maxsplit=1)[0]
    obj = obj.strip().rstrip(" .,;:!")
    if not obj or len(obj.split()) > max_words:
        return None
    return obj


def _parse_fact(text: str, name: str, *, card_form: bool) -> _Fact | None:
    fact = " ".join(text.split()).rstrip(" .!")
    if not fact:
        return None
    subject = re.match(rf"^(?:{re.escape(name)}|the user|user)(?P<poss>'s)?(?:\s+|$)", fact, re.I)
    if subject:
        possessive = subject.group("poss") is not None
        predicate = fact[subject.end() :]
        if not possessive:
            predicate = _REPORTED_RE.sub("", predicate)
    elif card_form:
        possessive = False
        predicate = fact
    else:
        return None
    if not _BORN_RE.match(predicate):
        predicate = _TEMPORAL_TAIL_RE.sub("", predicate).strip()
    if not predicate or re.search(r"\b\d{4}-\d{2}-\d{2}\b", predicate):
        return None
    return _parse_predicate(predicate, name, possessive=possessive)


def _parse_predicate(p: str, name: str, *, possessive: bool) -> _Fact | None:
    low = p.lower()
    if possessive or re.match(r"^(?:name|age|birthday|job|goal|favou?rite)\b", low):
        m = re.match(r"^name(?:\s+is|:)\s*(?P<x>.+)$", p, re.I)
        if m and (x := _short(m.group("x"), 4)):
            return _Fact(("name",), f"Name: {x}", 0)
        m = re.match(r"^age(?:\s+is|:)\s*(?P<x>\d{1,3})\b", p, re.I)
        if m and 0 < int(m.group("x")) < 130:
            return _Fact(("age",), f"Age: {m.group('x')}", 0)
        m = re.match(r"^birthday(?:\s+is|:)\s*(?:on\s+)?(?P<x>.+)$", p, re.I)
        if m and (x := _short(m.group("x"), 5)):
            return _Fact(("birthday",), f"Birthday: {x}", 0)
        m = re.match(r"^(?:job|occupation|profession)(?:\s+is|:)\s*(?:an?\s+)?(?P<x>.+)$", p, re.I)
        if m and (x := _short(m.group("x"), 6)):
            return _Fact(("job",), f"Works as {_article(x)} {x}", 0)
        m = re.match(r"^goal(?:\s+is|:)\s*(?:to\s+)?(?P<x>.+)$", p, re.I)
        if m and (x := _short(m.group("x"), 12)):
            return _Fact(("goal", _norm_key(x)), f"Goal: {x}", 1)
        m = re.match(r"^favou?rite\s+(?P<c>\w+(?:\s+\w+)?)(?:\s+is|:)\s*(?P<x>.+)$", p, re.I)
        if m and (x := _short(m.group("x"), 6)):
            cat = m.group("c").lower()
            return _Fact(("favorite", cat), f"Favorite {cat}: {x}", 1)
    m = _FAMILY_RE.match(p)
    if m and (possessive or p[:1].isupper() or ":" in m.group("rest")):
        rel = m.group("rel").lower()
        rest = m.group("rest")
        named = re.match(
            r"^(?::\s*|'s\s+name\s+is\s+|\s+is\s+(?:named|called)\s+)(?P<x>[A-Z][\w-]*"
            r"(?:\s+[A-Z][\w-]*)?)$",
            rest,
        )
        if named:
            return _Fact(("family", rel, "name"), f"{_cap(rel)}: {named.group('x')}", 0)
        body = _short(rest, 12)
        if body is None or body.startswith(("'s ", ":")) or not _is_verbish(body.split()[0]):
            return None
        verb = body.split()[0].lower()
        return _Fact(("family", rel, verb), f"{_cap(rel)} {body}", 0)
    if possessive:
        return None

    m = re.match(r"^(?:is\s+called|goes\s+by|is\s+named)\s+(?P<x>.+)$", p, re.I)
    if m and (x := _short(m.group("x"), 4)):
        return _Fact(("name",), f"Name: {x}", 0)
    m = re.match(
        r"^(?:is\s+)?(?P<x>\d{1,3})(?:\s*(?:years?\s+old|yo|y/o|years\s+of\s+age|-years?-old))?$",
        p,
        re.I,
    ) or re.match(r"^(?:just\s+)?turned\s+(?P<x>\d{1,3})$", p, re.I)
    if m and 0 < int(m.group("x")) < 130:
        return _Fact(("age",), f"Age: {m.group('x')}", 0)
    m = re.match(
        r"^(?:currently\s+|now\s+|still\s+)?(?:lives|is\s+living|resides|is\s+based|is\s+located|"
        r"lives\s+now)\s+in\s+(?P<x>.+)$"
        r"|^(?:recently\s+|just\s+)?(?:moved|relocated|has\s+moved)\s+to\s+(?P<y>.+)$",
        p,
        re.I,
    )
    if m and (x := _short(m.group("x") or m.group("y"), 6)):
        return _Fact(("location",), f"Lives in {x}", 0)
    m = re.match(r"^(?:was\s+)?born\s+in\s+(?P<x>.+)$", p, re.I)
    if m and (x := _short(m.group("x"), 6)):
        if re.fullmatch(r"\d{4}", x):
            return _Fact(("birth_year",), f"Born in {x}", 0)
        return _Fact(("birthplace",), f"Born in {x}", 0)
    m = re.match(r"^(?:was\s+)?born\s+on\s+(?P<x>.+)$", p, re.I)
    if m and (x := _short(m.group("x"), 5)):
        return _Fact(("birthday",), f"Birthday: {x}", 0)
    m = re.match(
        r"^(?:is\s+|comes\s+)?(?:originally\s+)?from\s+(?P<x>.+)$|^grew\s+up\s+in\s+(?P<y>.+)$",
        p,
        re.I,
    )
    if m and (x := _short(m.group("x") or m.group("y"), 6)):
        return _Fact(("origin",), f"From {x}", 0)
    m = re.match(r"^(?:works|is\s+working|is\s+employed)\s+as\s+(?:an?\s+)?(?P<x>.+)$", p, re.I)
    if m and (x := _short(m.group("x"), 6)):
        return _Fact(("job",), f"Works as {_article(x)} {x}", 0)
    m = re.match(r"^(?:works|is\s+working)\s+(?:at|for)\s+(?P<x>.+)$", p, re.I)
    if m and (x := _short(m.group("x"), 6)):
        return _Fact(("employer",), f"Works at {x}", 0)
    m = re.match(r"^is\s+(?P<x>retired|unemployed|self-employed|a\s+stay-at-home\s+\w+)$", p, re.I)
    if m:
        return _Fact(("job",), f"Is {m.group('x')}", 0)
    m = re.match(r"^(?:studies|is\s+studying|majors\s+in|is\s+majoring\s+in)\s+(?P<x>.+)$", p, re.I)
    if m and (x := _short(m.group("x"), 6)):
        return _Fact(("study",), f"Studies {x}", 0)
    m = re.match(
        r"^is\s+(?P<s>married|engaged|single|divorced|widowed|dating|in\s+a\s+relationship)"
        r"(?P<x>(?:\s+(?:to|with)\s+.+)?)$",
        p,
        re.I,
    )
    if m and _short(m.group(0), 10):
        return _Fact(("relationship",), f"Is {m.group('s').lower()}{m.group('x')}", 0)
    m = re.match(
        r"^is\s+(?:an?\s+)?(?P<x>vegan|vegetarian|pescatarian|pescetarian|omnivore|carnivore)$"
        r"|^(?:eats|follows|is\s+on)\s+an?\s+(?P<y>\w+(?:[\s-]\w+)?)\s+diet$",
        p,
        re.I,
    )
    if m:
        kind = (m.group("x") or m.group("y")).lower()
        if m.group("x"):
            return _Fact(("diet", "main"), f"Is {kind}", 0)
        return _Fact(("diet", "main"), f"Follows {_article(kind)} {kind} diet", 0)
    m = re.match(
        r"^is\s+(?P<x>gluten-free|lactose[\s-]intolerant|kosher|halal|keto|celiac|coeliac|"
        r"diabetic|sober|teetotal)$",
        p,
        re.I,
    )
    if m:
        return _Fact(("diet", m.group("x").lower()), f"Is {m.group('x').lower()}", 0)
    m = re.match(
        r"^(?:is\s+)?allergic\s+to\s+(?P<x>.+)$|^has\s+an?\s+(?P<y>[\w\s-]+?)\s+allergy$", p, re.I
    )
    if m and (x := _short(m.group("x") or m.group("y"), 6)):
        return _Fact(("allergy", _norm_key(x)), f"Allergic to {x}", 0)
    m = _PREF_RE.match(p)
    if m and (x := _short(m.group("obj"), 8)):
        verb = " ".join(m.group("verb").split())
        canon = next((label for rx, label in _PREF_CANON if rx.match(verb)), "Likes")
        return _Fact(("pref", _norm_key(x)), f"{canon} {x}", 1)
    m = _GOAL_RE.match(p)
    if m and (x := _short(m.group("obj"), 12)):
        verb = " ".join(m.group("verb").split())
        return _Fact(("goal", _norm_key(x)), f"{_cap(verb)} to {x}", 1)
    m = re.match(r"^(?:is\s+learning|learns)\s+(?P<x>.+)$", p, re.I)
    if m and (x := _short(m.group("x"), 6)):
        return _Fact(("learning", _norm_key(x)), f"Is learning {x}", 1)
    m = re.match(r"^speaks\s+(?P<x>.+)$", p, re.I)
    if m and (x := _short(m.group("x"), 8)):
        return _Fact(("speaks", _norm_key(x)), f"Speaks {x}", 1)
    m = re.match(r"^plays\s+(?P<x>.+)$", p, re.I)
    if m and (x := _short(m.group("x"), 6)):
        return _Fact(("plays", _norm_key(x)), f"Plays {x}", 1)
    m = re.match(r"^has\s+(?P<n>an?|one|two|three|four|five|six|\d+|no)\s+(?P<x>.+)$", p, re.I)
    if m and (x := _short(m.group("x"), 8)):
        head = re.split(r"\s+(?:named|called|who|that|with|in|at|from)\b|,", x, maxsplit=1)[0]
        head_key = _norm_key(head)
        if head_key.endswith("ren"):  # children
            head_key = head_key[:-3]
        elif head_key.endswith("s") and not head_key.endswith("ss"):
            head_key = head_key[:-1]
        return _Fact(("has", head_key), f"Has {m.group('n').lower()} {x}", 1)
    m = re.match(r"^is\s+(?P<x>[A-Z][a-z]+(?:-[A-Z][a-z]+)?)$", p)
    if m:
        if m.group("x").lower() == name.lower():
            return _Fact(("name",), f"Name: {m.group('x')}", 0)
        return _Fact(("identity", m.group("x").lower()), f"Is {m.group('x')}", 0)
    m = re.match(r"^is\s+(?P<a>an?)\s+(?P<x>[\w\s'-]{2,40})$", p, re.I)
    if m:
        x = m.group("x").strip()
        words = x.lower().split()
        if len(words) <= 4 and words[-1] in _OCCUPATIONS:
            return _Fact(("job",), f"Is {_article(x)} {x}", 0)
        if len(words) <= 3 and words[0] not in {"bit", "little", "lot", "fan", "big", "huge"}:
            return _Fact(("is", _norm_key(x)), f"Is {_article(x)} {x}", 2)
    return None


def _update_card(request: PeerCardRequest) -> list[str]:
    if request.max_facts <= 0:
        return []
    entries: dict[tuple[str, ...], _CardEntry] = {}
    counter = 0

    def put(key: tuple[str, ...], text: str, tier: int, *, new: bool) -> None:
        nonlocal counter
        counter += 1
        text = _clip(text, MAX_FACT_CHARS)
        updated = counter if new else 0
        existing = entries.get(key)
        if existing is None:
            entries[key] = _CardEntry(key, text, tier, counter, updated)
        else:
            if _dedup_key(existing.text) != _dedup_key(text):  # same fact: keep its wording
                existing.text = text
            existing.updated = max(existing.updated, updated)

    for fact_text in request.current:
        if not fact_text.strip():
            continue
        parsed = _parse_fact(fact_text, request.observed, card_form=True)
        clean = " ".join(fact_text.split())
        if parsed is None:
            put(("raw", _dedup_key(clean)), clean, 2, new=False)
        else:
            put(parsed.key, clean, parsed.tier, new=False)
    for observation in request.new_observations:
        parsed = _parse_fact(observation, request.observed, card_form=False)
        if parsed is not None:
            put(parsed.key, parsed.text, parsed.tier, new=True)

    unique: list[_CardEntry] = []
    texts: set[str] = set()
    for entry in sorted(entries.values(), key=lambda e: -e.updated):
        key = _dedup_key(entry.text)
        if key in texts:
            continue
        texts.add(key)
        unique.append(entry)
    unique.sort(key=lambda e: (e.tier, _rank(e.key), e.slot))
    while len(unique) > request.max_facts:
        # Least important first: highest tier, then the least recently confirmed, then the
        # least important attribute, then the last one on the card.
        victim = max(
            range(len(unique)),
            key=lambda i: (unique[i].tier, -unique[i].updated, _rank(unique[i].key), i),
        )
        del unique[victim]
    return [e.text for e in unique]


_ATTRIBUTE_RANK = {
    name: index
    for index, name in enumerate(
        (
            "name",
            "age",
            "location",
            "job",
            "employer",
            "study",
            "origin",
            "identity",
            "birthplace",
            "birth_year",
            "birthday",
            "relationship",
            "family",
            "allergy",
            "diet",
            "pref",
            "favorite",
            "goal",
            "learning",
            "speaks",
            "plays",
            "has",
            "is",
            "raw",
        )
    )
}


def _rank(key: tuple[str, ...]) -> int:
    return _ATTRIBUTE_RANK.get(key[0], len(_ATTRIBUTE_RANK))
