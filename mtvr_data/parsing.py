"""Reading model output: tag blocks, the format rule, tool calls, answers, letters, spans and numbers.

Everything a model writes is untrusted text. Every function here is total: it returns a value or a short
reason code (`None` / an `error` field), never raises on any input string, and runs in time linear in
the input (no nested quantifiers that can backtrack). Rewards (`mtvr_data.rewards`), the rollout loop and
the grader all call these, so an output is read the same way when it is generated, graded and trained on.

The output shape (VITAL) is `<think>..</think><answer>..</answer>` or
`<think>..</think><tool_call>{..}</tool_call><think>..</think><answer>..</answer>` with (tool_call, think)
repeated. Only the `<answer>` block is read for the answer; numbers in thinking or tool calls never count.
A turn is expected to keep its stop string (`</tool_call>`, `</answer>`): an answer whose block was never
closed is not an answer.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from mtvr_data.timecode import TimeFormatError, parse_seconds

#: The only tags a well-formed assistant text may contain.
KNOWN_TAGS: tuple[str, ...] = ("think", "tool_call", "answer")
#: Tool calls longer than this (characters of JSON) are refused before parsing.
MAX_TOOL_CALL_CHARS = 4096
#: Times above this (about 11.6 days) are not a plausible answer about a video.
MAX_SECONDS = 1e6

#: Anything that looks like an XML-ish tag: `<name ...>` or `</name ...>` (names start with a letter, so
#: "a < b" and "<5 s" are text). Attributes and inner spaces make a known tag malformed, not a different one.
_TAG = re.compile(r"<(/?)([A-Za-z][\w:.-]*)([^<>]*)>")
#: Chat-template end-of-turn tokens a decoder may leave after the last block; they are not the model's text.
_END_OF_TURN = re.compile(r"<\|(?:im_end|endoftext|eot_id)\|>")


@dataclass(frozen=True, slots=True)
class Block:
    """One top-level tagged block of an assistant text: its tag name and the raw text between the tags."""

    kind: str
    content: str


@dataclass(frozen=True, slots=True)
class _Tag:
    closing: bool
    name: str
    exact: bool
    start: int
    end: int


def _tags(text: str) -> list[_Tag]:
    return [
        _Tag(
            closing=m.group(1) == "/",
            name=m.group(2).lower(),
            exact=m.group(3) == "" and m.group(2).islower(),
            start=m.start(),
            end=m.end(),
        )
        for m in _TAG.finditer(text)
    ]


def _known(tags: list[_Tag]) -> list[_Tag]:
    return [t for t in tags if t.name in KNOWN_TAGS and t.exact]


def parse_blocks(text: str) -> list[Block]:
    """The closed top-level `think`/`tool_call`/`answer` blocks of `text`, in order (lenient).

    Only exact known tags count; anything else (unknown tags, loose text) is ignored here and judged by
    `check_format`. A known tag opened inside an open block is nested: it belongs to the outer block's
    content and never becomes a block of its own, so an `<answer>` written inside `<think>` is not an
    answer. A block still open at the end of the text is dropped (it was cut off).
    """
    blocks: list[Block] = []
    stack: list[_Tag] = []
    for tag in _known(_tags(text)):
        if not tag.closing:
            stack.append(tag)
        elif stack and stack[-1].name == tag.name:
            opened = stack.pop()
            if not stack:
                blocks.append(Block(opened.name, text[opened.end : tag.start]))
        # A stray or mismatched closing tag is ignored in lenient reading.
    return blocks


def check_format(text: str, *, final: bool = True) -> str | None:
    """`None` when `text` is well formed, else the first reason code found (strict VITAL rule).

    Well formed: only exact `<think>`, `<tool_call>`, `<answer>` tags as structure, each closed, none nested, only
    white space outside and between blocks, think first, no kind twice in a row, and the sequence
    think (tool_call think)* answer. With `final=False` (a turn that stops at a tool call) the sequence is
    think (tool_call think)* tool_call. Block contents are not judged here (an unparseable tool call
    earns no tool bonus; an empty answer earns no task reward): tag-like text inside an open block (`<br>`,
    `a<b and c>d`, `<Think>`) is content, while an exact known tag there is `nested_tag`. After the last
    block, chat end-of-turn tokens (`<|im_end|>`, `<|endoftext|>`) count as white space. The decisions and how
    they differ from VITAL's released code are in docs/rewards.md.

    Codes: `empty`, `unknown_tag`, `malformed_tag` (a known tag with attributes or spaces), `nested_tag`,
    `unexpected_close_tag`, `mismatched_tag`, `unclosed_tag`, `text_outside_tags`, `must_start_with_think`,
    `repeated_block`, `answer_not_last`, `answer_after_tool_call`, `must_end_with_answer`,
    `must_end_with_tool_call`.

    >>> check_format("<think>look</think><answer>B</answer>") is None
    True
    >>> check_format("<think>look</think>B")
    'text_outside_tags'
    """
    if not text.strip():
        return "empty"
    kinds: list[str] = []
    opened: _Tag | None = None
    pos = 0
    for tag in _tags(text):
        if opened is not None and not (tag.name in KNOWN_TAGS and tag.exact):
            continue  # tag-like text inside a block ("<br>", "a<b and c>d") is content, judged by its own reader
        if tag.name not in KNOWN_TAGS:
            return "unknown_tag"
        if not tag.exact:
            return "malformed_tag"
        if not tag.closing:
            if opened is not None:
                return "nested_tag"
            if text[pos : tag.start].strip():
                return "text_outside_tags"
            opened = tag
        else:
            if opened is None:
                return "unexpected_close_tag"
            if opened.name != tag.name:
                return "mismatched_tag"
            kinds.append(tag.name)
            opened = None
            pos = tag.end
    if opened is not None:
        return "unclosed_tag"
    if _END_OF_TURN.sub("", text[pos:]).strip():
        return "text_outside_tags"
    return _check_sequence(kinds, final=final)


def _check_sequence(kinds: list[str], *, final: bool) -> str | None:
    if not kinds:
        return "text_outside_tags"  # non-blank text without a single tag
    if kinds[0] != "think":
        return "must_start_with_think"
    for prev, cur in zip(kinds, kinds[1:], strict=False):
        if prev == cur:
            return "repeated_block"
        if prev == "answer":
            return "answer_not_last"
        if prev == "tool_call" and cur != "think":
            return "answer_after_tool_call"
    if final and kinds[-1] != "answer":
        return "must_end_with_answer"
    if not final and kinds[-1] != "tool_call":
        return "must_end_with_tool_call"
    return None


# --- tool calls ------------------------------------------------------------------------------------------------------

_TOOL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True, slots=True)
class ToolCallParse:
    """A parsed Hermes-style tool call, or why it could not be parsed.

    `error is None` means the call is well formed: `name` is a plausible identifier and `arguments` a dict.
    The name is NOT checked against a registry and argument values are NOT checked (paths, ranges): that
    is the executor's job, and it rejects unknown tools. On error `arguments` is None, and `name` is kept
    when it could be read, for logs only. `arguments_was_string` records that the model wrote the
    arguments as a JSON string holding an object (accepted, see `parse_tool_call`).
    """

    name: str | None
    arguments: dict[str, Any] | None
    error: str | None = None
    arguments_was_string: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


class _Reject(ValueError):
    """JSON the tool-call reader refuses (NaN/Infinity constants, duplicate keys)."""


def _no_constants(name: str) -> Any:
    raise _Reject(name)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Reject(f"duplicate key {key!r}")
        out[key] = value
    return out


def _loads(raw: str) -> tuple[Any, str | None]:
    """Strict JSON: no NaN/Infinity (not JSON), no duplicate keys (ambiguous); errors become `not_json`."""
    try:
        return json.loads(raw, parse_constant=_no_constants, object_pairs_hook=_unique_keys), None
    except (ValueError, RecursionError):  # JSONDecodeError and _Reject are ValueErrors
        return None, "not_json"


def parse_tool_call(raw: str) -> ToolCallParse:
    """Read the JSON of one `<tool_call>` block: `{"name": str, "arguments": {...}}`.

    Decisions: only the keys "name" and "arguments" are allowed (`unexpected_keys`); a missing
    "arguments" means no arguments (`{}`; the executor then reports the missing ones); "arguments" given
    as a JSON *string* that holds an object (Qwen and others sometimes double-encode) is accepted and
    decoded, flagged by `arguments_was_string`, since the intent is unambiguous and refusing it would
    punish the content for an encoding detail; any other string or type is `arguments_not_object`.
    NaN/Infinity and duplicate keys are `not_json`. Codes: `too_long`, `not_json`, `not_object`,
    `unexpected_keys`, `missing_name`, `bad_name`, `arguments_not_object`.

    >>> parse_tool_call('{"name": "get_video_clip_frame", "arguments": {"start_time": 1, "end_time": 5}}').arguments
    {'start_time': 1, 'end_time': 5}
    """
    if len(raw) > MAX_TOOL_CALL_CHARS:
        return ToolCallParse(None, None, "too_long")
    obj, err = _loads(raw.strip())
    if err is not None:
        return ToolCallParse(None, None, err)
    if not isinstance(obj, dict):
        return ToolCallParse(None, None, "not_object")
    name = obj.get("name")
    readable = name if isinstance(name, str) and _TOOL_NAME.match(name) else None
    if set(obj) - {"name", "arguments"}:
        return ToolCallParse(readable, None, "unexpected_keys")
    if "name" not in obj:
        return ToolCallParse(None, None, "missing_name")
    if readable is None:
        return ToolCallParse(None, None, "bad_name")
    args = obj.get("arguments", {})
    was_string = isinstance(args, str)
    if was_string:
        args, err = _loads(args)
        if err is not None:
            return ToolCallParse(readable, None, "arguments_not_object")
    if not isinstance(args, dict):
        return ToolCallParse(readable, None, "arguments_not_object")
    return ToolCallParse(readable, args, None, arguments_was_string=was_string)


def tool_calls(text: str) -> list[ToolCallParse]:
    """Every top-level `<tool_call>` block of `text`, parsed, in order (calls nested in think do not count)."""
    return [parse_tool_call(b.content) for b in parse_blocks(text) if b.kind == "tool_call"]


def extract_answer(text: str) -> str | None:
    """The stripped content of the LAST top-level `<answer>` block; None if there is none.

    An `<answer>` inside `<think>` (or any other open block) and an answer block never closed do not count.

    >>> extract_answer("<think>maybe <answer>A</answer></think><answer> B </answer>")
    'B'
    """
    answers = [b.content for b in parse_blocks(text) if b.kind == "answer"]
    return answers[-1].strip() if answers else None


# --- option letters --------------------------------------------------------------------------------------------------

_MARKUP = re.compile(r"[*`_]")
#: The whole answer is one letter, maybe bracketed and punctuated: "B", "(B)", "[b]", "B.", "B)".
_BARE = re.compile(r"^[(\[]?([A-Za-z])[)\]]?[.:)]?$")
#: The answer starts with an upper-case letter token: "B) text", "B. text", "(B) text", "B, since ...", "B is ...".
#: Not followed by a word character, an apostrophe, a bracket or "-word" ("X-ray", "B's" are words).
_LEADING = re.compile(r"^(?:[(\[]([A-Z])[)\]]|([A-Z])(?![\w'(\[]|-\w))")
#: Right after a letter: a list of letters ("A or B", "B and C", "A/B", "B, C"), which commits to none.
_LIST_AFTER = re.compile(
    r"[)\].:]?\s*(?:(?:or|and|nor)\b|/|&)\s*[(\[]?[A-Z](?![\w'])|[)\]]?\s*,\s*[(\[]?[A-Z][)\]]?\s*(?:$|,|\b(?:or|and)\b)"
)
#: "A" / "I" followed by a lower-case word is the article / pronoun ("A person", "I think"), not a letter, except
#: before a conjunction ("A or B") and, for "A", before "is"/"was" ("A is correct").
_ARTICLE_AFTER = re.compile(r"\s+(?!(?:or|and|nor)\b)[a-z]")
_A_IS = re.compile(r"\s+(?:is|was)\b")
#: An explicit commitment: "answer is (B)", "Answer: B", "final answer = C", "the correct choice is D",
#: "the best option is B", "I pick (C)", "I choose option B", "go with B".
#: The letter after a commitment or "option": upper case, or lower case when bracketed ("option (b)") or when it
#: ends the answer ("The answer is: b"), so prose ("the answer is a person") never yields one.
_NAMED_LETTER = r"(?:[(\[]?([A-Z])(?![\w'])|[(\[]([a-z])[)\]]|([a-z])(?=[.!]?$))"
_COMMIT = re.compile(
    r"(?:\b(?i:answer|(?:correct|right|best|final)\s+(?:option|choice))\b\s*"
    r"(?:(?i:is|was|would\s+be|should\s+be|must\s+be)\b\s*)?(?:[:=]\s*)?"
    r"|\b(?i:pick|choose|select|go\s+with)\b\s*)"
    r"(?:(?i:option|choice)\s+)?" + _NAMED_LETTER
)
#: Weaker mentions, read only when nothing above decided: "option B", "option (b)", "choice C", a bracketed letter.
_MENTION = re.compile(r"\b(?i:option|choice)\s+" + _NAMED_LETTER + r"|[(\[]([A-Z])[)\]]")
#: A letter the answer rules out ("Not A, it is B", "rather than (C)"): never the one it commits to.
_NEGATED = re.compile(
    r"\b(?i:not|isn't|rather\s+than|instead\s+of)\s+(?:(?i:option|choice)\s+)?[(\[]?([A-Z])(?![\w'])"
)
#: A one-letter token.
_LONE = re.compile(r"(?<![\w'])([A-Z])(?![\w'])")


def _is_article(text: str, letter: str, end: int) -> bool:
    """Whether the upper-case `letter` token ending at `end` is the word "A" / "I" rather than an option letter."""
    if letter not in "AI" or not _ARTICLE_AFTER.match(text, end):
        return False
    return not (letter == "A" and _A_IS.match(text, end))


def _one(found: set[str]) -> str | None:
    return found.pop() if len(found) == 1 else None


def _named(m: re.Match[str]) -> str:
    """The letter of a `_COMMIT` / `_MENTION` match, upper case (whichever of its letter groups matched)."""
    return next(g for g in m.groups() if g is not None).upper()


def _committed_letter(text: str) -> str | None:
    if m := _BARE.match(text):
        return m.group(1).upper()
    if (m := _LEADING.match(text)) and not (m.group(2) and _is_article(text, m.group(2), m.end())):
        return None if _LIST_AFTER.match(text, m.end()) else (m.group(1) or m.group(2))
    commits = list(_COMMIT.finditer(text))
    if commits:
        if any(_LIST_AFTER.match(text, m.end()) for m in commits):
            return None
        return _one({_named(m) for m in commits})
    found = {_named(m) for m in _MENTION.finditer(text)}
    found |= {m.group(1) for m in _LONE.finditer(text) if not _is_article(text, m.group(1), m.end())}
    return _one(found - {m.group(1) for m in _NEGATED.finditer(text)})


def parse_letter(answer: str, num_options: int | None = None) -> str | None:
    """The option letter an answer COMMITS to, or None when it commits to none, several, or one out of range.

    A letter the answer only mentions while explaining ("B, since option A is wrong", "B is correct, not C")
    never decides. Rule, the first step that applies decides:
    1. the whole answer is one letter, bracketed or punctuated or not, either case ("b", "(B)", "B.");
    2. the answer starts with an upper-case letter token: a label "B)", "B.", "B:", "(B)", "B," or the letter as
       a subject "B is ..."; that letter, whatever the explanation after it names. A list at the start
       ("A or B", "B and C", "A/B", "B, C") commits to none (None). "A"/"I" followed by a lower-case word is the
       article/pronoun ("A person ...", "I think ...") and not a label, except "A is"/"A was";
    3. an explicit commitment anywhere: "answer is (B)", "Answer: B", "the correct choice is D", "I pick (C)" -
       exactly one distinct letter, and not followed by a list ("answer is (B) or (C)"), else None. A commitment
       outranks the article rule, so "Answer: A man ..." reads as A;
    4. otherwise the letters the answer mentions - "option B", bracketed "(B)", upper-case one-letter tokens
       (article/pronoun "A"/"I" excluded as in step 2) - less those it rules out ("Not A, it is B": "not",
       "isn't", "rather than", "instead of" before a letter), exactly one distinct letter, else None.
    Lower case letters count in step 1, and in steps 3-4 right after a commitment or "option" when bracketed
    ("option (b)") or ending the answer ("The answer is: b"), so prose ("the answer is a person") never yields
    one. Markdown (* ` _) is ignored.
    The decided letter must be among the first `num_options` letters when that is given. The reward
    (`rewards.mcq_reward`) and the benchmark metric (`eval_metrics`) both score letters with `letter_score`.

    >>> parse_letter("The answer is (B)."), parse_letter("B, since option A is wrong"), parse_letter("A or B")
    ('B', 'B', None)
    """
    letter = _committed_letter(_MARKUP.sub("", answer).strip())
    if letter is None or (num_options is not None and not 0 <= ord(letter) - ord("A") < num_options):
        return None
    return letter


def letter_score(answer: str, truth_letter: str, num_options: int | None) -> tuple[float, str | None]:
    """(1.0 if the letter `answer` commits to equals the true letter else 0.0, the letter read or None).

    The one scoring rule for option letters, shared by the task reward and the benchmark metrics.

    >>> letter_score("C, because B is wrong", "c", 4)
    (1.0, 'C')
    """
    letter = parse_letter(answer, num_options)
    return (1.0 if letter is not None and letter == truth_letter.strip().upper() else 0.0), letter


# --- spans -----------------------------------------------------------------------------------------------------------

#: A time: clock "mm:ss(.f)" / "hh:mm:ss(.f)" or plain seconds. Validated by `timecode.parse_seconds`.
_TIME = r"\d+(?::\d+){1,2}(?:\.\d+)?|\d+(?:\.\d+)?"
_UNIT = r"(?:\s*(?:seconds|second|secs|sec|s)\b)?"
_JOIN = r"\s*(?:-|–|—|~|\bto\b|\band\b|\buntil\b|\btill\b|\bthrough\b)\s*"
#: A labelled start or end in prose: "starts at", "start:", "start time", "begins at", "end time is", "ends at".
_START_LABEL = r"\b(?:start|begin)(?:s|ing)?(?:\s+time)?(?:\s+(?:at|is|from))?\s*[:=]?\s*"
_END_LABEL = r"\b(?:end|finish)(?:s|es|ing)?(?:\s+time)?(?:\s+(?:at|is))?\s*[:=]?\s*"
#: Between a labelled start and its end: punctuation, then optional "and"/"then", "it", "the".
_LABEL_GAP = r"[\s,;]*(?:(?:and|then)\s+)?(?:it\s+)?(?:the\s+)?"
#: Not preceded by a word character, '.', ':' or '-' (so "-5" and "x5" never start a pair). The third form is the
#: prose span "starts at 10 and ends at 40 seconds", "start: 10, end: 40", "start time 10 s, end time 40 s".
_PAIR_RE = (
    rf"(?<![\w.:\-])(?P<a>{_TIME}){_UNIT}{_JOIN}(?P<b>{_TIME}){_UNIT}"
    rf"|[\[(]\s*(?P<c>{_TIME}){_UNIT}\s*,\s*(?P<d>{_TIME}){_UNIT}\s*[\])]"
    rf"|{_START_LABEL}(?P<e>{_TIME}){_UNIT}{_LABEL_GAP}{_END_LABEL}(?P<f>{_TIME}){_UNIT}"
)
_PAIR = re.compile(_PAIR_RE, re.IGNORECASE)
_LEAD_IN = re.compile(r"^\s*(?:from|between)?\s*$", re.IGNORECASE)
_LEAD_OUT = re.compile(r"\b(?:from|between)\s*$", re.IGNORECASE)
_REST_START = re.compile(r"^[\s,.;:]+")


def _time(token: str) -> float | None:
    try:
        value = parse_seconds(token)
    except TimeFormatError:
        return None
    return value if math.isfinite(value) and 0.0 <= value <= MAX_SECONDS else None


def _spans(text: str) -> list[tuple[tuple[float, float], int, int]]:
    """Valid (start, end) pairs in text order, with their character range; pairs do not overlap."""
    out = []
    for m in _PAIR.finditer(text):
        start = _time(m.group("a") or m.group("c") or m.group("e"))
        end = _time(m.group("b") or m.group("d") or m.group("f"))
        if start is not None and end is not None and start <= end:
            out.append(((start, end), m.start(), m.end()))
    return out


def parse_span(answer: str) -> tuple[float, float] | None:
    """The LAST valid (start, end) pair of seconds in the answer, or None (VITAL: "the last pair with S <= E").

    Pairs: "24.3 - 30.4 seconds", "24.3-30.4", "from 24.3 to 30.4", "between 24.3s and 30.4s",
    "[24.3, 30.4]", clocks "01:05 - 01:12.5" and "1:02:03 - 1:02:09", and labelled prose "starts at 24.3 and ends
    at 30.4 seconds", "start: 24.3, end: 30.4", "Start time 24.3 s, end time 30.4 s". Valid: both times finite, in
    [0, 1e6] s and start <= end; a negative number ("-5 to 10") never starts a pair. Pairs are found left to
    right without overlap, so in "10 - 20, 40 - 30" the reversed last pair is skipped and (10, 20) wins.

    >>> parse_span("first 1-2, finally from 00:24.5 to 00:30 seconds")
    (24.5, 30.0)
    """
    found = _spans(answer)
    return found[-1][0] if found else None


def parse_grounded(answer: str) -> tuple[tuple[float, float] | None, str]:
    """A grounded-QA answer "From S to E, <answer>" as (span, answer text).

    A span at the start (after an optional "From"/"Between") is the span and the text after it (leading
    comma/period/colon and white space removed) is the answer, so "From 3 to 7 seconds B" works. Otherwise
    the last valid pair anywhere is the span and the answer is the text with that pair cut out. No span:
    (None, the whole answer stripped).

    >>> parse_grounded("From 12.5 to 20.0 seconds, the man opens the door.")
    ((12.5, 20.0), 'the man opens the door.')
    """
    found = _spans(answer)
    if not found:
        return None, answer.strip()
    first_span, first_start, first_end = found[0]
    if _LEAD_IN.match(answer[:first_start]):
        return first_span, _REST_START.sub("", answer[first_end:]).strip()
    span, start, end = found[-1]
    rest = (_LEAD_OUT.sub("", answer[:start]) + " " + answer[end:]).strip()
    return span, " ".join(rest.split())


# --- numbers ---------------------------------------------------------------------------------------------------------

#: A number: optional sign (only at a word start), thousands with commas or plain digits, decimals, and an
#: optional "/denominator" fraction.
_NUMBER = re.compile(
    r"(?<![\w.])(?P<sign>[-−+])?(?P<int>\d{1,3}(?:,\d{3})+(?!\d)|\d+)?(?P<frac>\.\d+)?"
    r"(?:\s*/\s*(?P<den>\d+(?:\.\d+)?))?"
)


def parse_number(answer: str) -> float | None:
    """The FIRST number of the answer, as a float; None if there is none.

    Why first: the `<answer>` block holds the final answer (revisions belong in `<think>`), and after the
    answer's number come qualifiers ("4 out of 5", "12 m in 3 s"). Accepted: signs ("-3.5"), commas as
    thousands separators ("1,234.5"), leading-dot decimals (".5"), fractions ("3/4" -> 0.75), and
    percentages as the bare number ("50%" -> 50). Number words are not read. A fraction with a zero
    denominator or a non-finite value is skipped.

    >>> parse_number("About 1,234.5 people"), parse_number("3/4 of them"), parse_number("none")
    (1234.5, 0.75, None)
    """
    return next(iter(parse_numbers(answer)), None)


def parse_numbers(answer: str) -> list[float]:
    """Every number of the answer, in text order, read as `parse_number` reads the first (MMMU's open-answer rule
    checks them all: "speed 20 m/s after 5 s" holds 20 and 5).

    >>> parse_numbers("speed 20 m/s after 5 s")
    [20.0, 5.0]
    """
    out: list[float] = []
    for m in _NUMBER.finditer(answer):
        if m.group("int") is None and m.group("frac") is None:
            continue
        value = float((m.group("int") or "0").replace(",", "") + (m.group("frac") or ""))
        if m.group("den") is not None:
            den = float(m.group("den"))
            if den == 0:
                continue
            value /= den
        if m.group("sign") in ("-", "−"):
            value = -value
        if math.isfinite(value):
            out.append(value)
    return out
