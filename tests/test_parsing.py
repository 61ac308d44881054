"""Model output is untrusted text: the format rule, tool calls, answers, letters, spans and numbers are read
exactly, and bad input gives None or a reason code, never an exception."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtvr_data.parsing import (
    MAX_TOOL_CALL_CHARS,
    Block,
    check_format,
    extract_answer,
    letter_score,
    parse_blocks,
    parse_grounded,
    parse_letter,
    parse_number,
    parse_span,
    parse_tool_call,
    tool_calls,
)

CALL = '{"name": "get_video_clip_frame", "arguments": {"start_time": 10.5, "end_time": 20}}'
TOOL_TRAJECTORY = (
    f"<think>need a closer look</think>\n<tool_call>{CALL}</tool_call>\n<think>it is B</think><answer>B</answer>"
)


# --- format ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "<think>a</think><answer>B</answer>",
        "  <think>\na\n</think>\n\n<answer> B </answer>\n",
        TOOL_TRAJECTORY,
        f"<think>a</think><tool_call>{CALL}</tool_call><think>b</think><tool_call>{CALL}</tool_call>"
        "<think>c</think><answer>B</answer>",
        "<think>5 < 7 and 9 > 8</think><answer>B</answer>",  # comparisons are text, not tags
    ],
)
def test_well_formed(text):
    assert check_format(text) is None


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("B", "text_outside_tags"),
        ("<think>a</think>B", "text_outside_tags"),
        ("<think>a</think> so <answer>B</answer>", "text_outside_tags"),
        ("Sure! <think>a</think><answer>B</answer>", "text_outside_tags"),
        ("<think>a</think><answer>B</answer> done", "text_outside_tags"),
        ("<think>a</think><answer>B", "unclosed_tag"),
        ("<think>a<answer>B</answer>", "nested_tag"),
        ("<think>a <answer>B</answer></think>", "nested_tag"),
        ("<think>a</think></answer>", "unexpected_close_tag"),
        ("<think>a</answer>", "mismatched_tag"),
        ("<think>a</think><tool_response>frames</tool_response><answer>B</answer>", "unknown_tag"),
        ("<Think>a</Think><answer>B</answer>", "malformed_tag"),
        ('<think id="1">a</think><answer>B</answer>', "malformed_tag"),
        ("<answer>B</answer>", "must_start_with_think"),
        ("<think>a</think><think>b</think><answer>B</answer>", "repeated_block"),
        ("<think>a</think><answer>B</answer><answer>C</answer>", "repeated_block"),
        ("<think>a</think><answer>B</answer><think>b</think><answer>C</answer>", "answer_not_last"),
        (f"<think>a</think><tool_call>{CALL}</tool_call><answer>B</answer>", "answer_after_tool_call"),
        ("<think>a</think>", "must_end_with_answer"),
        (f"<think>a</think><tool_call>{CALL}</tool_call>", "must_end_with_answer"),
    ],
)
def test_malformed(text, code):
    assert check_format(text) == code


#: The format decisions of docs/rewards.md, one row per case: (case, text, our code; None = well formed). VITAL's
#: released code accepts every row (format reward 1).
FORMAT_DECISIONS = [
    ("tag_in_think_br", "<think>line one<br>line two</think><answer>B</answer>", None),
    ("tag_in_think_comparison", "<think>a<b and c>d</think><answer>B</answer>", None),
    ("html_pair_in_think", "<think>see <b>this</b></think><answer>B</answer>", None),
    (
        "tag_in_tool_think",
        f"<think>x<br>y</think><tool_call>{CALL}</tool_call><think>p<q>r</think><answer>B</answer>",
        None,
    ),
    ("leading_whitespace", " \n\t<think>a</think><answer>B</answer>", None),
    ("trailing_whitespace", "<think>a</think><answer>B</answer>\n  \n", None),
    ("trailing_end_of_turn_token", "<think>a</think><answer>B</answer><|im_end|>\n", None),
    ("leading_text", "Sure! <think>a</think><answer>B</answer>", "text_outside_tags"),
    ("trailing_text", "<think>a</think><answer>B</answer> done", "text_outside_tags"),
    (
        "tool_call_then_answer",
        f"<think>a</think><tool_call>{CALL}</tool_call><answer>B</answer>",
        "answer_after_tool_call",
    ),
]


@pytest.mark.parametrize(("case", "text", "code"), FORMAT_DECISIONS, ids=[row[0] for row in FORMAT_DECISIONS])
def test_format_decisions(case, text, code):
    assert check_format(text) == code


def test_tag_like_text_in_think_is_content_but_a_known_tag_there_is_nested():
    assert check_format("<think>a <Think> b</think><answer>B</answer>") is None  # not exact: text
    assert check_format("<think>a <tool_call>x</tool_call> b</think><answer>B</answer>") == "nested_tag"
    assert extract_answer("<think>x<br>y</think><answer>B</answer>") == "B"


def test_a_turn_that_stops_at_a_tool_call():
    turn = f"<think>a</think><tool_call>{CALL}</tool_call>"
    assert check_format(turn, final=False) is None
    assert check_format(turn, final=True) == "must_end_with_answer"
    assert check_format("<think>a</think><answer>B</answer>", final=False) == "must_end_with_tool_call"


def test_parse_blocks_is_lenient_and_ignores_nested_blocks():
    text = "junk <think>x <answer>A</answer></think> more <answer>B</answer> <tool_call>{}"
    assert parse_blocks(text) == [Block("think", "x <answer>A</answer>"), Block("answer", "B")]


# --- tool calls ------------------------------------------------------------------------------------------------------


def test_tool_call_ok():
    call = parse_tool_call(CALL)
    assert call.ok and call.name == "get_video_clip_frame"
    assert call.arguments == {"start_time": 10.5, "end_time": 20}
    assert not call.arguments_was_string


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("get_video_clip_frame(1, 2)", "not_json"),
        ('{"name": "f", "arguments": {}', "not_json"),
        ('{"name": "f", "arguments": {"start_time": NaN}}', "not_json"),
        ('{"name": "f", "arguments": {"end_time": Infinity}}', "not_json"),
        ('{"name": "f", "name": "g", "arguments": {}}', "not_json"),
        ("[1, 2]", "not_object"),
        ('"get_video_clip_frame"', "not_object"),
        ('{"name": "f", "arguments": {}, "id": 3}', "unexpected_keys"),
        ('{"arguments": {}}', "missing_name"),
        ('{"name": 7, "arguments": {}}', "bad_name"),
        ('{"name": "", "arguments": {}}', "bad_name"),
        ('{"name": "rm -rf /", "arguments": {}}', "bad_name"),
        ('{"name": "../../bin/sh", "arguments": {}}', "bad_name"),
        ('{"name": "f", "arguments": [1, 2]}', "arguments_not_object"),
        ('{"name": "f", "arguments": "start 1"}', "arguments_not_object"),
        ('{"name": "f", "arguments": "[1, 2]"}', "arguments_not_object"),
        ('{"name": "f", "arguments": null}', "arguments_not_object"),
    ],
)
def test_tool_call_errors(raw, code):
    call = parse_tool_call(raw)
    assert call.error == code and not call.ok
    assert call.arguments is None


def test_tool_call_too_long_is_refused_before_parsing():
    raw = '{"name": "f", "arguments": {"x": "' + "a" * MAX_TOOL_CALL_CHARS + '"}}'
    assert parse_tool_call(raw).error == "too_long"


def test_extra_keys_keep_the_name_for_logs_only():
    call = parse_tool_call('{"name": "get_video_clip_frame", "arguments": {}, "video": "/etc/passwd"}')
    assert call.error == "unexpected_keys" and call.name == "get_video_clip_frame" and call.arguments is None


def test_unknown_tool_name_is_parsed_the_executor_rejects_it():
    call = parse_tool_call('{"name": "delete_all_videos", "arguments": {"confirm": true}}')
    assert call.ok and call.name == "delete_all_videos" and call.arguments == {"confirm": True}


def test_path_like_arguments_are_kept_as_data():
    raw = '{"name": "get_video_clip_frame", "arguments": {"video": "../../etc/passwd", "start_time": "/dev/zero"}}'
    call = parse_tool_call(raw)
    assert call.ok and call.arguments == {"video": "../../etc/passwd", "start_time": "/dev/zero"}


def test_arguments_as_a_json_string_holding_an_object_are_decoded():
    call = parse_tool_call('{"name": "get_video_clip_frame", "arguments": "{\\"start_time\\": 1, \\"end_time\\": 5}"}')
    assert call.ok and call.arguments == {"start_time": 1, "end_time": 5} and call.arguments_was_string


def test_missing_arguments_mean_no_arguments():
    call = parse_tool_call('{"name": "list_tools"}')
    assert call.ok and call.arguments == {}


def test_tool_calls_of_a_text():
    text = f"<think>maybe <tool_call>{CALL}</tool_call></think><tool_call>{CALL}</tool_call><think>b</think>"
    text += "<tool_call>oops</tool_call>"
    calls = tool_calls(text)
    assert [c.error for c in calls] == [None, "not_json"]  # the call inside <think> does not count


# --- answers ---------------------------------------------------------------------------------------------------------


def test_extract_answer_takes_the_last_top_level_answer():
    assert extract_answer(TOOL_TRAJECTORY) == "B"
    assert extract_answer("<think>a</think><answer> A </answer><answer>\nC\n</answer>") == "C"
    assert extract_answer("<think>a</think><answer></answer>") == ""


@pytest.mark.parametrize(
    "text",
    [
        "<think>the answer is <answer>B</answer></think>",  # only inside think
        "<think>the answer is B</think>",
        "<think>a</think><answer>B",  # never closed
        "<think>a</think>B",
        "",
        "<answer B</answer>",
    ],
)
def test_no_answer(text):
    assert extract_answer(text) is None


# --- letters ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "letter"),
    [
        ("B", "B"),
        ("b", "B"),
        ("(B)", "B"),
        ("[B]", "B"),
        ("B.", "B"),
        ("B)", "B"),
        ("**B**", "B"),
        ("B) a man opens the door", "B"),
        ("B. a man opens the door", "B"),
        ("(B) a man opens the door", "B"),
        ("The answer is (B).", "B"),
        ("The answer is: B", "B"),
        ("Answer: B", "B"),
        ("option B", "B"),
        ("The correct choice is D, the red car.", "D"),
        ("I pick (C) because it fits", "C"),
        ("I think C is right", "C"),
        ("A", "A"),
        ("A. A person is cooking", "A"),
        ("A is correct, not C", "A"),  # "A is" is the letter, not the article
        ("Answer: A man walks", "A"),  # a commitment outranks the article rule
        ("I choose option B since A is wrong", "B"),
    ],
)
def test_parse_letter(answer, letter):
    assert parse_letter(answer, 4) == letter


@pytest.mark.parametrize(
    "answer",
    [
        "A or B",
        "B and C",
        "A person is cooking",  # leading article, not option A
        "I think so",
        "The answer is (B) or (C)",
        "the man",
        "",
        "E",  # out of range for 4 options
        "The answer is (F).",
        "answer is a dog",  # lower-case "a" after a cue is an article
    ],
)
def test_parse_letter_refuses(answer):
    assert parse_letter(answer, 4) is None


@pytest.mark.parametrize("answer", ["B, since option A is wrong", "B, because C is wrong", "B is correct, not C"])
def test_parse_letter_reads_the_committed_letter_not_the_explanation(answer):
    assert parse_letter(answer, 4) == "B"
    assert letter_score(answer, "B", 4) == (1.0, "B")
    assert letter_score(answer, "A", 4)[0] == 0.0 and letter_score(answer, "C", 4)[0] == 0.0


@pytest.mark.parametrize(
    "answer", ["B, C", "A/B", "The answer is (B) or (C)", "The answer is B. No, the answer is C."]
)
def test_parse_letter_refuses_lists_and_changed_minds(answer):
    assert parse_letter(answer, 4) is None


def test_letter_range_only_with_num_options():
    assert parse_letter("F") == "F"
    assert parse_letter("F", 6) == "F"
    assert parse_letter("F", 5) is None


# --- spans -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "span"),
    [
        ("24.3 - 30.4 seconds", (24.3, 30.4)),
        ("24.3-30.4", (24.3, 30.4)),
        ("from 24.3 to 30.4", (24.3, 30.4)),
        ("between 24.3s and 30.4s", (24.3, 30.4)),
        ("[24.3, 30.4]", (24.3, 30.4)),
        ("The event happens at 24.3 seconds to 30.4 seconds.", (24.3, 30.4)),
        ("The event starts at 10.0 and ends at 40.0 seconds.", (10.0, 40.0)),
        ("start: 10.0, end: 40.0", (10.0, 40.0)),
        ("Start time 10.0 s, end time 40.0 s", (10.0, 40.0)),
        ("It begins at 00:10 and it ends at 00:40", (10.0, 40.0)),
        ("01:05 - 01:12.5", (65.0, 72.5)),
        ("1:02:03 - 1:02:09.5", (3723.0, 3729.5)),
        ("5 - 5", (5.0, 5.0)),  # S <= E: a point is a pair (its IoU is 0)
        ("10 - 20, no: 30 - 40", (30.0, 40.0)),  # the last pair wins
        ("10 - 20, not 40 - 30", (10.0, 20.0)),  # a reversed last pair is skipped
        ("at 5 seconds, then 10 - 20 seconds", (10.0, 20.0)),
    ],
)
def test_parse_span(answer, span):
    assert parse_span(answer) == pytest.approx(span)


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "no idea",
        "12.5 seconds",
        "nan - 5",
        "NaN to inf",
        "inf - 10",
        "-5 to 10",
        "[-5, 10]",
        "30 - 20",
        "0 - 2000000",  # absurd: > 1e6 s
        "1" * 400 + " - " + "2" * 400,  # overflows to inf
        "1:75 - 2:00",  # clock field out of range
        "5 - 1e400",
    ],
)
def test_parse_span_refuses(answer):
    assert parse_span(answer) is None


def _hundredths(k: int) -> str:
    return f"{k // 100}.{k % 100:02d}"


def _clock(k: int) -> str:
    hours, rest = divmod(k, 360000)
    minutes, rest = divmod(rest, 6000)
    text = f"{minutes:02d}:{rest // 100:02d}.{rest % 100:02d}"
    return f"{hours}:{text}" if hours else text


STYLES = [
    lambda a, b: f"{_hundredths(a)} - {_hundredths(b)} seconds",
    lambda a, b: f"{_hundredths(a)}-{_hundredths(b)}",
    lambda a, b: f"from {_hundredths(a)} to {_hundredths(b)}",
    lambda a, b: f"between {_hundredths(a)}s and {_hundredths(b)}s",
    lambda a, b: f"[{_hundredths(a)}, {_hundredths(b)}]",
    lambda a, b: f"{_clock(a)} - {_clock(b)}",
]
#: Pairs of times in hundredths of a second, start <= end <= 1e6 s.
pairs = st.tuples(st.integers(0, 10**8), st.integers(0, 10**8)).map(sorted)


@settings(max_examples=150, deadline=None)
@given(pair=pairs, style=st.sampled_from(STYLES))
def test_span_round_trip(pair, style):
    a, b = pair
    assert parse_span(style(a, b)) == pytest.approx((a / 100, b / 100), abs=1e-6)


@settings(max_examples=150, deadline=None)
@given(first=pairs, last=pairs, style1=st.sampled_from(STYLES), style2=st.sampled_from(STYLES))
def test_span_last_pair_wins(first, last, style1, style2):
    text = f"At first {style1(*first)}; on a closer look the answer is {style2(*last)}."
    assert parse_span(text) == pytest.approx((last[0] / 100, last[1] / 100), abs=1e-6)
    # a later reversed pair does not replace it
    reversed_tail = f"{text} Not {_hundredths(last[1] + 100)} - {_hundredths(last[0])}."
    assert parse_span(reversed_tail) == pytest.approx((last[0] / 100, last[1] / 100), abs=1e-6)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_parsers_never_raise_on_any_text(text):
    parse_span(text)
    parse_grounded(text)
    parse_letter(text, 5)
    parse_number(text)
    check_format(text)
    extract_answer(text)
    parse_tool_call(text)


# --- grounded answers and numbers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "span", "rest"),
    [
        ("From 12.5 to 20.0 seconds, the man opens the door.", (12.5, 20.0), "the man opens the door."),
        ("From 12.5 to 20 B", (12.5, 20.0), "B"),
        ("from 3s to 7s: (C)", (3.0, 7.0), "(C)"),
        ("[3, 7] C", (3.0, 7.0), "C"),
        ("01:05 - 01:12.5, A", (65.0, 72.5), "A"),
        ("C, during 3 - 7 seconds", (3.0, 7.0), "C, during"),
        ("The answer is C", None, "The answer is C"),
        ("From 9 to 4, C", None, "From 9 to 4, C"),  # reversed span: no span
    ],
)
def test_parse_grounded(answer, span, rest):
    got_span, got_rest = parse_grounded(answer)
    assert got_span == (pytest.approx(span) if span else None)
    assert got_rest == rest


@pytest.mark.parametrize(
    ("answer", "number"),
    [
        ("3", 3.0),
        ("3.5", 3.5),
        ("-2.25", -2.25),
        (".5", 0.5),
        ("1,234", 1234.0),
        ("About 1,234.5 people", 1234.5),
        ("3/4", 0.75),
        ("50%", 50.0),
        ("4 out of 5", 4.0),  # the first number
        ("The answer is 12 m", 12.0),
        ("1/0, so 2", 2.0),  # a zero denominator is skipped
        ("5-3", 5.0),  # a hyphen inside a word is not a sign
    ],
)
def test_parse_number(answer, number):
    assert parse_number(answer) == pytest.approx(number)


@pytest.mark.parametrize("answer", ["", "three", "none", "nan", "inf", "1" * 400])
def test_parse_number_refuses(answer):
    assert parse_number(answer) is None
