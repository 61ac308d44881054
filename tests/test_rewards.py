"""Rewards, the pass rule and the DGRPO weight on hand-computed cases, IoU properties, and the TRL callables."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtvr_data.rewards import (
    IOU_SCALE,
    PassRule,
    best_iou,
    completion_text,
    dgrpo_weight,
    format_reward,
    format_reward_fn,
    make_task_reward_fn,
    mcq_reward,
    numeric_reward,
    ocr_reward,
    pass_rate,
    regression_reward,
    rouge_reward,
    scale_iou,
    task_reward,
    temporal_iou,
    tool_bonus,
    tool_bonus_fn,
    total_reward,
)
from mtvr_data.schema import Sample
from mtvr_data.text_metrics import edit_distance, lcs_length, tokenize, word_error_rate
from tests.test_parsing import FORMAT_DECISIONS


def make_sample(task: str, answer_type: str, answer: str = "", **kw) -> Sample:
    fields = {"id": "s1", "source": "x", "modality": "video", "video": "v.mp4", "question": "q?"}
    fields.update(kw)
    if "span" in fields and "windows" not in fields:
        fields["windows"] = [fields["span"]]
    return Sample(task=task, answer_type=answer_type, answer=answer, **fields)


def answered(answer: str) -> str:
    return f"<think>let me look</think><answer>{answer}</answer>"


MCQ = make_sample("mcq", "letter", "C", options=["p", "q", "r", "s"])
CHARADES = make_sample("tg", "span", source="charades_sta", span=[10.0, 20.0], duration=30.0)
VIDCHAPTERS = make_sample("tg", "span", source="vidchapters", span=[10.0, 20.0])
NEXTGQA = make_sample("gqa", "letter", "C", source="nextgqa", options=["p", "q", "r", "s"], span=[10.0, 20.0])
REXTIME_TEXT = make_sample("gqa", "text", "the man opens the door", source="rextime", span=[10.0, 20.0])


# --- format and tool terms -------------------------------------------------------------------------------------------


def test_format_reward():
    assert format_reward(answered("B")) == 1.0
    assert format_reward("<think>a</think>B") == 0.0
    assert format_reward("<answer>B</answer>") == 0.0


@pytest.mark.parametrize(("case", "text", "code"), FORMAT_DECISIONS, ids=[row[0] for row in FORMAT_DECISIONS])
def test_format_reward_follows_the_documented_decisions(case, text, code):
    # docs/rewards.md: tag-like text in reasoning and white space around the blocks keep the format point
    assert format_reward(text) == (1.0 if code is None else 0.0)


def test_tag_like_text_in_reasoning_does_not_zero_a_well_formed_right_answer():
    out = total_reward(
        MCQ, "<think>a<br>b, and x<y and z>w</think><answer>C</answer>", num_successful_tool_calls=0, tools=False
    )
    assert (out.format, out.task, out.total) == (1.0, 1.0, 2.0)


@pytest.mark.parametrize(("calls", "bonus"), [(0, 0.0), (1, 0.5), (2, 1.0), (3, 1.0), (10, 1.0)])
def test_tool_bonus_counts_at_most_two_calls(calls, bonus):
    assert tool_bonus(calls) == bonus


def test_tool_bonus_refuses_a_negative_count():
    with pytest.raises(ValueError):
        tool_bonus(-1)


# --- answer terms ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "reward"),
    [("C", 1.0), ("(c)", 1.0), ("The answer is (C).", 1.0), ("B", 0.0), ("C or D", 0.0), ("E", 0.0), ("", 0.0)],
)
def test_mcq_reward(answer, reward):
    assert mcq_reward(answer, "C", 4) == reward


@pytest.mark.parametrize("answer", ["B, since option A is wrong", "B, because C is wrong", "B is correct, not C"])
def test_mcq_reward_scores_the_committed_letter_not_one_in_the_explanation(answer):
    assert mcq_reward(answer, "B", 4) == 1.0
    assert mcq_reward(answer, "A", 4) == 0.0 and mcq_reward(answer, "C", 4) == 0.0
    sample = make_sample("mcq", "letter", "B", options=["p", "q", "r", "s"])
    assert task_reward(sample, answered(answer)).value == 1.0
    wrong = make_sample("mcq", "letter", "A", options=["p", "q", "r", "s"])
    assert task_reward(wrong, answered(answer)).value == 0.0


@pytest.mark.parametrize(
    ("pred", "truth", "reward"),
    [
        (3.0, 3.0, 1.0),
        (3.04, 3.0, 1.0),  # equal at one decimal
        (2.96, 3.0, 1.0),
        (2.45, 2.5, 1.0),  # decimal half-up: 2.45 -> 2.5
        (2.6, 3.0, 0.5),  # equal only after rounding to an integer
        (3.4, 3.0, 0.5),
        (2.5, 3.0, 0.5),  # 2.5 -> 3 (half up), not 2 (half even)
        (2.4, 3.0, 0.0),
        (-2.6, -3.0, 0.5),
        (None, 3.0, 0.0),
        (math.nan, 3.0, 0.0),
        (math.inf, math.inf, 0.0),
        (1e27, 1e27, 1.0),  # beyond decimal's default 28 digits
        (1e300, 1e300 + 1e285, 0.0),
    ],
)
def test_numeric_reward(pred, truth, reward):
    assert numeric_reward(pred, truth) == reward


def test_rouge_by_hand():
    # pred [a, man, runs], ref [the, man, runs, fast]
    # R1: overlap 2, P 2/3, R 2/4 -> 4/7; R2: overlap 1 ("man runs"), P 1/2, R 1/3 -> 2/5; RL: LCS 2 -> 4/7
    assert rouge_reward("a man runs", "the man runs fast") == pytest.approx((4 / 7 + 2 / 5 + 4 / 7) / 3)
    # clipped counts: "the" matches once; R1 = RL = 2*(1/3*1/2)/(1/3+1/2) = 0.4; no shared bigram
    assert rouge_reward("the the the", "the cat") == pytest.approx((0.4 + 0.0 + 0.4) / 3)


def test_rouge_is_porter_stemmed_as_in_vital():
    # rouge-score with use_stemmer=True: "running" and "runs" both stem to "run";
    # R1 = RL = 6/7 ([the, man, is, run] vs [the, man, run]), R2 = 2/5 ("the man" only)
    assert rouge_reward("The man is running.", "the man runs") == pytest.approx((6 / 7 + 2 / 5 + 6 / 7) / 3)
    assert round(rouge_reward("The man is running.", "the man runs"), 2) == 0.70
    assert rouge_reward("The man is running.", "the man runs") == pytest.approx(0.7048, abs=1e-4)
    assert rouge_reward("the dogs are barking", "the dog barks") > rouge_reward("the cats meow", "the dog barks")


def test_rouge_matches_the_rouge_score_package():
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for pred, truth in [
        ("The man is running.", "the man runs"),
        ("a man runs", "the man runs fast"),
        ("x y z", "z y x"),
    ]:
        want = sum(s.fmeasure for s in scorer.score(truth, pred).values()) / 3
        assert rouge_reward(pred, truth) == pytest.approx(want)


def test_rouge_edges():
    assert rouge_reward("The man opens the door.", "the man opens the door") == 1.0  # case and punctuation
    assert rouge_reward("Yes", "yes") == 1.0  # one word: no bigrams on either side, counted as agreeing
    assert rouge_reward("yes", "no") == 0.0
    assert rouge_reward("", "the door") == 0.0
    assert rouge_reward("!!!", "the door") == 0.0
    assert 0.0 < rouge_reward("door", "the door") < 1.0


def test_tokenize_lcs_and_edit_distance():
    assert tokenize("The man's HAT, 2x!") == ["the", "man", "s", "hat", "2x"]
    assert lcs_length(["a", "b", "c", "d"], ["b", "d", "a"]) == 2
    assert edit_distance(["a", "b", "c"], ["a", "x", "c", "d"]) == 2


@pytest.mark.parametrize(
    ("pred", "truth", "reward"),
    [
        ("stop here now", "stop here now", 1.0),
        ("STOP, here now.", "stop here now", 1.0),
        ("stop there now", "stop here now", 2 / 3),  # 1 substitution / 3 words
        ("stop here now please", "stop here now", 2 / 3),  # 1 insertion
        ("stop now", "stop here now", 2 / 3),  # 1 deletion
        ("a b c d e f g", "stop here now", 0.0),  # WER 7/3, clipped
        ("", "stop here now", 0.0),
    ],
)
def test_ocr_reward(pred, truth, reward):
    assert ocr_reward(pred, truth) == pytest.approx(reward)


def test_wer_with_an_empty_reference():
    assert word_error_rate("", "") == 0.0
    assert word_error_rate("x", "") == 1.0


@pytest.mark.parametrize(
    ("pred", "truth", "reward"),
    [
        (10.0, 10.0, 1.0),
        (9.0, 10.0, 0.9),
        (11.0, 10.0, 0.9),
        (-9.0, -10.0, 0.9),
        (30.0, 10.0, 0.0),  # 1 - 2 clipped
        (-5.0, 10.0, 0.0),
        (0.0, 0.0, 1.0),  # g == 0: only an exact 0 scores
        (0.1, 0.0, 0.0),
        (None, 10.0, 0.0),
        (math.nan, 10.0, 0.0),
    ],
)
def test_regression_reward(pred, truth, reward):
    assert regression_reward(pred, truth) == pytest.approx(reward)


# --- temporal IoU ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "gt", "iou"),
    [
        ((0, 10), (5, 15), 5 / 15),
        ((2, 4), (0, 10), 0.2),
        ((0, 10), (0, 10), 1.0),
        ((0, 1), (2, 3), 0.0),  # disjoint
        ((0, 1), (1, 2), 0.0),  # touching
        ((5, 5), (0, 10), 0.0),  # a point
        ((5, 5), (5, 5), 0.0),
        ((10, 0), (0, 10), 0.0),  # reversed
        ((math.nan, 5), (0, 10), 0.0),
        ((0, math.inf), (0, 10), 0.0),
        ((-1e308, 1e308), (0, 10), 0.0),  # length overflows
        (None, (0, 10), 0.0),
        ((1, 2, 3), (0, 10), 0.0),
    ],
)
def test_temporal_iou(pred, gt, iou):
    assert temporal_iou(pred, gt) == pytest.approx(iou)


def test_best_iou_takes_the_best_window():
    assert best_iou((30, 40), [[10, 20], [30, 40]]) == 1.0
    assert best_iou((15, 35), [[10, 20], [30, 40]]) == pytest.approx(5 / 25)
    assert best_iou((1, 2), []) == 0.0
    assert best_iou(None, [[1, 2]]) == 0.0


finite = st.floats(-1e6, 1e6, allow_nan=False)
any_float = st.floats(allow_nan=True, allow_infinity=True)
#: Proper windows on an integer grid (exact in floating point).
windows = st.tuples(st.integers(0, 10**6), st.integers(1, 10**5)).map(lambda t: (float(t[0]), float(t[0] + t[1])))


@settings(max_examples=200, deadline=None)
@given(a=st.tuples(any_float, any_float), b=st.tuples(any_float, any_float))
def test_iou_is_symmetric_and_in_unit_interval(a, b):
    iou = temporal_iou(a, b)
    assert 0.0 <= iou <= 1.0
    assert iou == temporal_iou(b, a)


@settings(max_examples=200, deadline=None)
@given(a=windows, b=windows)
def test_iou_is_one_iff_equal(a, b):
    assert (temporal_iou(a, b) == 1.0) == (a == b)
    assert temporal_iou(a, a) == 1.0


@settings(max_examples=200, deadline=None)
@given(gt=windows, cuts=st.lists(st.integers(0, 10**5), min_size=4, max_size=4))
def test_iou_grows_with_overlap(gt, cuts):
    """pred1 inside pred2 inside gt: the bigger prediction overlaps more; outside in, shrinking towards gt helps."""
    s, e = gt
    length = e - s
    x1, x2, x3, x4 = sorted(c % (int(length) + 1) for c in cuts)
    inner, outer = (s + x2, s + x3), (s + x1, s + x4)
    assert temporal_iou(inner, gt) <= temporal_iou(outer, gt) <= temporal_iou(gt, gt)
    wide, wider = (s - x1, e + x1), (s - x4, e + x4)
    assert temporal_iou(wider, gt) <= temporal_iou(wide, gt)
    # sliding a window of gt's length towards gt
    far, near = (s + x4, e + x4), (s + x1, e + x1)
    assert temporal_iou(far, gt) <= temporal_iou(near, gt)


@pytest.mark.parametrize(
    ("iou", "a", "b", "scaled"),
    [
        (0.2, 0.2, 0.8, 0.0),  # at a
        (0.1, 0.2, 0.8, 0.0),  # below a
        (0.8, 0.2, 0.8, 1.0),  # at b
        (0.95, 0.2, 0.8, 1.0),  # above b
        (0.5, 0.2, 0.8, 0.5),
        (0.25, 0.0, 0.5, 0.5),
        (0.0, 0.0, 0.5, 0.0),
        (0.37, 0.0, 1.0, 0.37),  # identity
        (math.nan, 0.2, 0.8, 0.0),
    ],
)
def test_scale_iou(iou, a, b, scaled):
    assert scale_iou(iou, a, b) == pytest.approx(scaled)


@pytest.mark.parametrize(("a", "b"), [(0.8, 0.2), (0.5, 0.5), (math.nan, 1.0)])
def test_scale_iou_refuses_a_bad_scale(a, b):
    with pytest.raises(ValueError):
        scale_iou(0.5, a, b)


def test_iou_scales_per_source():
    assert IOU_SCALE["charades_sta"] == IOU_SCALE["activitynet_captions"] == (0.2, 0.8)
    assert IOU_SCALE["vidchapters"] == (0.0, 0.5)
    assert IOU_SCALE["nextgqa"] == IOU_SCALE["rextime"] == (0.2, 0.8)
    assert "qvhighlights" not in IOU_SCALE


# --- task reward -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "iou", "value", "ok"),
    [
        ("10 - 20 seconds", 1.0, 1.0, True),
        ("12 - 20", 0.8, 1.0, True),
        ("10 - 15", 0.5, 0.5, True),  # raw IoU 0.5 passes
        ("10 - 14", 0.4, (0.4 - 0.2) / 0.6, False),
        ("25 - 30", 0.0, 0.0, False),
    ],
)
def test_grounding_reward(answer, iou, value, ok):
    r = task_reward(CHARADES, answered(answer))
    assert r.iou == pytest.approx(iou) and r.value == pytest.approx(value) and r.span_score == pytest.approx(value)
    assert r.passed is ok and r.reason is None


PROSE_SPANS = [
    "The event starts at 10.0 and ends at 40.0 seconds.",
    "start: 10.0, end: 40.0",
    "Start time 10.0 s, end time 40.0 s",
]


@pytest.mark.parametrize("answer", PROSE_SPANS)
def test_grounding_reads_spans_written_as_prose(answer):
    sample = make_sample("tg", "span", source="charades_sta", span=[10.0, 40.0])
    r = task_reward(sample, answered(answer))
    assert (r.value, r.iou, r.passed, r.parsed, r.reason) == (1.0, 1.0, True, "10.00-40.00", None)
    gqa = make_sample("gqa", "letter", "B", source="nextgqa", options=["p", "q", "r", "s"], span=[10.0, 40.0])
    assert task_reward(gqa, answered(f"{answer} B")).value == 2.0


def test_grounding_pass_uses_raw_iou_not_the_scaled_value():
    r = task_reward(VIDCHAPTERS, answered("10 - 14"))  # IoU 0.4 -> scaled 0.8 with (0, 0.5)
    assert r.value == pytest.approx(0.8) and r.iou == pytest.approx(0.4) and not r.passed
    assert task_reward(VIDCHAPTERS, answered("10 - 14"), iou_scale={"vidchapters": (0.0, 1.0)}).value == pytest.approx(
        0.4
    )


def test_grounding_takes_the_best_window():
    sample = make_sample("tg", "span", span=[10.0, 20.0], windows=[[10.0, 20.0], [30.0, 40.0]])
    assert task_reward(sample, answered("30 - 40")).value == 1.0


def test_grounding_unparseable_and_missing_answers():
    r = task_reward(CHARADES, answered("around the middle"))
    assert (r.value, r.passed, r.reason) == (0.0, False, "unparseable")
    r = task_reward(CHARADES, "<think>it is 10 - 20 seconds</think>")
    assert (r.value, r.reason) == (0.0, "no_answer")
    r = task_reward(CHARADES, "<think>a <answer>10 - 20</answer></think>")  # only inside think
    assert (r.value, r.reason) == (0.0, "no_answer")


def test_grounded_qa_adds_both_terms():
    r = task_reward(NEXTGQA, answered("From 10 to 15 seconds, C"))
    # span: IoU 0.5 -> (0.5 - 0.2) / 0.6 = 0.5; answer: right letter = 1
    assert r.span_score == pytest.approx(0.5) and r.answer_score == 1.0
    assert r.value == pytest.approx(1.5) and r.passed and r.reason is None
    assert r.parsed == "10.00-15.00; C"


def test_grounded_qa_needs_both_to_pass():
    wrong_letter = task_reward(NEXTGQA, answered("From 10 to 20, B"))
    assert wrong_letter.value == pytest.approx(1.0) and wrong_letter.answer_score == 0.0 and not wrong_letter.passed
    no_span = task_reward(NEXTGQA, answered("C"))
    assert no_span.value == 1.0 and no_span.span_score == 0.0 and not no_span.passed and no_span.reason == "no_span"
    weak_span = task_reward(NEXTGQA, answered("From 10 to 14, C"))  # IoU 0.4
    assert weak_span.value == pytest.approx(1 + 1 / 3) and not weak_span.passed
    both = task_reward(NEXTGQA, answered("From 10 to 20, (C)"))
    assert both.value == 2.0 and both.passed


def test_grounded_qa_with_free_text():
    r = task_reward(REXTIME_TEXT, answered("From 10 to 20 seconds, the man opens the door."))
    assert r.value == 2.0 and r.answer_score == 1.0 and r.passed
    r = task_reward(REXTIME_TEXT, answered("From 10 to 20 seconds, ???"))
    assert r.value == 1.0 and r.reason == "unparseable_answer"


@pytest.mark.parametrize(
    ("sample", "answer", "value"),
    [
        (MCQ, "C", 1.0),
        (MCQ, "The answer is (C).", 1.0),
        (MCQ, "B", 0.0),
        (make_sample("open", "number", "3.0"), "3", 1.0),
        (make_sample("open", "number", "3.0"), "about 2.6", 0.5),
        (make_sample("open", "number", "1,200"), "1200 people", 1.0),
        (make_sample("open", "regression", "10"), "9", 0.9),
        (make_sample("open", "ocr", "stop here now"), "stop there now", 2 / 3),
        (make_sample("open", "text", "the man runs fast"), "a man runs", (4 / 7 + 2 / 5 + 4 / 7) / 3),
    ],
)
def test_open_and_mcq_dispatch_on_answer_type(sample, answer, value):
    r = task_reward(sample, answered(answer))
    assert r.value == pytest.approx(value) and r.answer_score == pytest.approx(value) and r.iou is None


def test_only_the_answer_block_counts():
    sample = make_sample("open", "number", "7")
    assert task_reward(sample, "<think>7</think><answer>8</answer>").value == 0.0
    r = task_reward(sample, "<think>7</think><answer>no idea</answer>")
    assert (r.value, r.reason) == (0.0, "unparseable")


def test_a_sample_that_cannot_be_graded_raises():
    with pytest.raises(ValueError, match="not a number"):
        task_reward(make_sample("open", "number", "many"), answered("3"))
    with pytest.raises(ValueError, match="no ground-truth span"):
        task_reward(make_sample("tg", "span"), answered("1 - 2"))


def test_pass_rule():
    rule = PassRule(tg_min_iou=0.7)
    assert not task_reward(CHARADES, answered("10 - 16"), rule=rule).passed  # IoU 0.6
    assert task_reward(CHARADES, answered("10 - 16")).passed
    # open: the reward against min_reward (an integer-rounded number earns 0.5 and passes; 0.0 does not)
    assert task_reward(make_sample("open", "number", "3"), answered("2.6")).passed
    assert not task_reward(make_sample("open", "number", "3"), answered("2.4")).passed
    # gqa: both parts must hold; a perfect span with the wrong letter fails, and so does the right letter far off
    gqa = make_sample("gqa", "letter", "A", options=["p", "q"], span=[0.0, 10.0], windows=[[0.0, 10.0]])
    assert task_reward(gqa, answered("From 0 to 10, A")).passed
    assert not task_reward(gqa, answered("From 0 to 10, B")).passed
    assert not task_reward(gqa, answered("From 20 to 30, A")).passed
    with pytest.raises(ValueError, match="tg_min_iou"):
        PassRule(tg_min_iou=1.5)


# --- total -----------------------------------------------------------------------------------------------------------

TOOL_TEXT = (
    '<think>a</think><tool_call>{"name": "get_video_clip_frame", "arguments": {"start_time": 9, "end_time": 21}}'
    "</tool_call><think>b</think><answer>10 - 20</answer>"
)


def test_total_with_and_without_tools():
    with_tools = total_reward(CHARADES, TOOL_TEXT, num_successful_tool_calls=3, tools=True)
    assert (with_tools.format, with_tools.tool, with_tools.task, with_tools.total) == (1.0, 1.0, 1.0, 3.0)
    without = total_reward(CHARADES, answered("10 - 20"), num_successful_tool_calls=2, tools=False)
    assert (without.format, without.tool, without.task, without.total) == (1.0, 0.0, 1.0, 2.0)
    malformed = total_reward(CHARADES, "<answer>10 - 20</answer>", num_successful_tool_calls=0, tools=False)
    assert (malformed.format, malformed.task, malformed.total) == (0.0, 1.0, 1.0)  # terms are not gated
    assert malformed.detail.iou == 1.0


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=80), calls=st.integers(0, 5), tools=st.booleans())
def test_total_is_bounded(text, calls, tools):
    for sample in (MCQ, CHARADES, make_sample("open", "number", "3")):
        r = total_reward(sample, answered(text), num_successful_tool_calls=calls, tools=tools)
        assert 0.0 <= r.total <= (3.0 if tools else 2.0)
        assert r.total == r.format + r.tool + r.task


# --- pass rate and DGRPO ---------------------------------------------------------------------------------------------


def test_pass_rate():
    assert pass_rate([True, False, False, True]) == 0.5
    assert pass_rate([False] * 8) == 0.0
    with pytest.raises(ValueError):
        pass_rate([])


@pytest.mark.parametrize(("mean", "w"), [(-1.0, 1.0), (0.0, 1.0), (1.0, 1.0), (1.5, 0.75), (2.0, 0.5), (3.0, 0.5)])
def test_dgrpo_weight(mean, w):
    assert dgrpo_weight(mean) == pytest.approx(w)


def test_dgrpo_weight_refuses_nan():
    with pytest.raises(ValueError):
        dgrpo_weight(math.nan)


# --- TRL callables ---------------------------------------------------------------------------------------------------

COLUMNS = {
    "task": ["mcq", "tg", "gqa"],
    "answer_type": ["letter", "span", "letter"],
    "answer": ["C", "", "C"],
    "source": ["longvideo_reason", "charades_sta", "nextgqa"],
    "options": [["p", "q", "r", "s"], [], ["p", "q", "r", "s"]],
    "span": [None, [10.0, 20.0], [10.0, 20.0]],
    "windows": [[], [[10.0, 20.0]], [[10.0, 20.0]]],
    "prompts": ["..."] * 3,  # TRL passes more than the reward reads
}
COMPLETIONS = [answered("C"), answered("10 - 15"), "<answer>From 10 to 20, C</answer>"]
task_reward_fn = make_task_reward_fn()


def test_task_reward_fn_matches_the_scalar_function():
    got = task_reward_fn(COMPLETIONS, **COLUMNS)
    assert got == pytest.approx([1.0, 0.5, 2.0])
    assert task_reward_fn.__name__ == "task_reward"


def test_task_reward_fn_factory():
    only_tg = make_task_reward_fn(tasks=("tg",), iou_scale={"charades_sta": (0.0, 1.0)}, name="tg_reward")
    assert only_tg(COMPLETIONS, **COLUMNS) == [None, pytest.approx(0.5), None]
    assert only_tg.__name__ == "tg_reward"
    missing = {k: v for k, v in COLUMNS.items() if k != "answer_type"}
    with pytest.raises(ValueError, match="answer_type"):
        task_reward_fn(COMPLETIONS, **missing)


def test_format_reward_fn_reads_conversational_completions():
    conversation = [
        {"role": "assistant", "content": TOOL_TEXT.split("<think>b</think>")[0]},
        {"role": "tool", "content": [{"type": "text", "text": "Video clip from 9 to 21 seconds."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "<think>b</think><answer>10 - 20</answer>"}]},
    ]
    assert completion_text(conversation).count("Video clip") == 0
    assert format_reward_fn([conversation, answered("B"), "B"]) == [1.0, 1.0, 0.0]
    assert task_reward_fn([conversation], **{k: v[1:2] for k, v in COLUMNS.items()}) == [1.0]


def test_tool_bonus_fn():
    assert tool_bonus_fn(["", "", ""], num_successful_tool_calls=[0, 1, 5], tools=[True, True, True]) == [0, 0.5, 1.0]
    assert tool_bonus_fn(["", ""], num_successful_tool_calls=[2, 2], tools=[False, True]) == [None, 1.0]
    with pytest.raises(ValueError, match="num_successful_tool_calls"):
        tool_bonus_fn([""])
