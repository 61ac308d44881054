"""The answer term, by answer type: how an answer must be written, its reward and its benchmark score.

Why one module: multiple choice, open questions and grounded QA all end in an answer of one of five types
(letter, number, regression, text, ocr). The reward (a training signal, with partial credit) and the benchmark
metric (what a paper reports) differ in what they count, but read the answer with the same function and decide
the type the same way, here, so a letter can never be read as right by one and wrong by the other.

| type       | format line                        | reward                               | benchmark score        |
|------------|------------------------------------|--------------------------------------|------------------------|
| letter     | the option's letter only           | 1 / 0 (`parsing.letter_score`)       | 1 / 0, by reading mode |
| number     | a number                           | 1 at 0.1, 0.5 at integer rounding    | 1 at 0.1, or MMMU's    |
| regression | a number                           | clip(1 - relative error, 0, 1)       | VSI-Bench's MRA        |
| text       | a short sentence                   | mean of stemmed ROUGE-1/2/L F1       | normalised exact match |
| ocr        | the exact text                     | clip(1 - WER, 0, 1)                  | normalised exact match |

The benchmark score reads as the benchmark's reference does (`tasks.reading.Reading`): the reward always reads
leniently, a benchmark may read letters strictly (`first_token`, `exact`), numbers by MMMU's rule, and MRA by
VSI-Bench's code (`<=`, the default) or its paper (`<`).
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import TYPE_CHECKING

from mtvr_data.parsing import letter_score, parse_number, parse_numbers
from mtvr_data.tasks.base import GroundTruth
from mtvr_data.tasks.reading import DEFAULT_READING, Reading
from mtvr_data.text_metrics import rouge_f1, tokenize, word_error_rate

if TYPE_CHECKING:
    from mtvr_data.schema import Sample

__all__ = [
    "ANSWER_FORMAT",
    "MRA_THRESHOLDS",
    "answer_metric",
    "answer_reward",
    "check_truth",
    "mcq_reward",
    "mean_relative_accuracy",
    "numeric_reward",
    "ocr_reward",
    "regression_reward",
    "rouge_reward",
    "validate_answer",
]

#: How each kind of answer must be written, so the shared parser can read it (mtvr_data.parsing).
ANSWER_FORMAT = {
    "letter": "Answer with the option's letter only.",
    "span": "Answer with the start and end time of the moment, as 'S - E seconds'.",
    "number": "Answer with a number.",
    "regression": "Answer with a number.",
    "text": "Answer with a short sentence.",
    "ocr": "Answer with the exact text.",
}
#: The answer types an answer term scores (`span` is the grounding families' own).
SCORED_TYPES = ("letter", "number", "regression", "text", "ocr")
#: VSI-Bench's MRA confidence thresholds 0.50, 0.55, ..., 0.95.
MRA_THRESHOLDS = tuple(0.5 + 0.05 * i for i in range(10))


# --- scalar rewards --------------------------------------------------------------------------------------------------


def mcq_reward(answer_text: str, truth_letter: str, num_options: int | None) -> float:
    """1.0 if the letter the answer commits to (`parsing.parse_letter`) equals the true letter, else 0.0.

    Scored by `parsing.letter_score`, the same rule the benchmark metrics use.

    >>> mcq_reward("The answer is (C).", "C", 4), mcq_reward("C or D", "C", 4), mcq_reward("B, not C", "C", 4)
    (1.0, 0.0, 0.0)
    """
    return letter_score(answer_text, truth_letter, num_options)[0]


#: Enough digits to quantize any finite float (up to ~1.8e308) exactly; the default 28 raises on large values.
_EXACT = Context(prec=400)


def _round(value: float, places: str) -> Decimal:
    # Round the shortest decimal text of the float, half away from zero, so 2.45 -> 2.5 as a person expects
    # (binary float rounding would give 2.4 for some such values, and Python's round() rounds half to even).
    return Decimal(repr(float(value))).quantize(Decimal(places), rounding=ROUND_HALF_UP, context=_EXACT)


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def numeric_reward(pred: float | None, truth: float | None) -> float:
    """1.0 if round(pred, 1) == round(truth, 1); else 0.5 if round(pred) == round(truth); else 0.0.

    Rounding is decimal, half away from zero. None or non-finite input scores 0.0.

    >>> numeric_reward(3.04, 3), numeric_reward(2.6, 3), numeric_reward(2.4, 3)
    (1.0, 0.5, 0.0)
    """
    if not (_finite(pred) and _finite(truth)):
        return 0.0
    if _round(pred, "0.1") == _round(truth, "0.1"):  # type: ignore[arg-type]
        return 1.0
    return 0.5 if _round(pred, "1") == _round(truth, "1") else 0.0  # type: ignore[arg-type]


def rouge_reward(pred: str, truth: str) -> float:
    """(ROUGE-1 F1 + ROUGE-2 F1 + ROUGE-L F1) / 3, Porter-stemmed as VITAL (`text_metrics.rouge_f1`), in [0, 1].

    >>> round(rouge_reward("The man is running.", "the man runs"), 4)  # "running" and "runs" both stem to "run"
    0.7048
    """
    return sum(rouge_f1(pred, truth).values()) / 3.0


def regression_reward(pred: float | None, truth: float | None) -> float:
    """clip(1 - |p - g| / |g|, 0, 1).

    g == 0: the relative error is undefined, so only an exact 0 prediction scores (1.0), anything else 0.0.
    None or non-finite input scores 0.0.

    >>> regression_reward(9.0, 10.0), regression_reward(30.0, 10.0)
    (0.9, 0.0)
    """
    if not (_finite(pred) and _finite(truth)):
        return 0.0
    assert pred is not None and truth is not None
    if truth == 0:
        return 1.0 if pred == 0 else 0.0
    return min(1.0, max(0.0, 1.0 - abs(pred - truth) / abs(truth)))


def ocr_reward(pred: str, truth: str) -> float:
    """clip(1 - WER, 0, 1), WER = word edit distance / reference words (`text_metrics.word_error_rate`).

    >>> ocr_reward("stop here now", "stop there now")
    0.6666666666666667
    """
    return min(1.0, max(0.0, 1.0 - word_error_rate(pred, truth)))


#: Relative errors and thresholds closer than this are equal: 1 - 0.9 is 0.09999999999999998 in floats, and the
#: rule as written (rel. error 0.1 <= 1 - 0.9) must not be decided by float noise.
_MRA_TIE = 1e-9


def mean_relative_accuracy(pred: float | None, truth: float, *, rule: str = "official") -> float:
    """VSI-Bench's MRA: the share of thresholds t in {0.50, 0.55, ..., 0.95} with |pred - truth| / |truth| <= 1 - t.

    `rule="official"` (default) counts a threshold when the relative error is <= 1 - t, as VSI-Bench's released
    code (`thinking-in-space`, `abs_dist_norm(pred, target) <= 1 - conf_intervs`) does; `rule="paper"` uses the
    paper's strict `<`. They differ only when the error sits exactly on a threshold: 9 for 10 scores 0.9 / 0.8.
    A truth of 0 has no relative error: only an exact 0 scores (1.0). None / non-finite predictions score 0.0.

    >>> mean_relative_accuracy(9.0, 10.0), mean_relative_accuracy(9.0, 10.0, rule="paper")
    (0.9, 0.8)
    """
    if pred is None or not math.isfinite(pred) or not math.isfinite(truth):
        return 0.0
    if truth == 0:
        return 1.0 if pred == 0 else 0.0
    rel = abs(pred - truth) / abs(truth)
    if rule == "paper":
        return sum(1 for t in MRA_THRESHOLDS if rel < 1.0 - t - _MRA_TIE) / len(MRA_THRESHOLDS)
    if rule != "official":
        raise ValueError(f"unknown MRA rule {rule!r}; expected 'official' or 'paper'")
    return sum(1 for t in MRA_THRESHOLDS if rel <= 1.0 - t + _MRA_TIE) / len(MRA_THRESHOLDS)


# --- the answer term of a ground truth -------------------------------------------------------------------------------


def validate_answer(sample: Sample) -> list[str]:
    """Reason codes for an answer that cannot be scored: a letter answer that names no option, options with an
    answer type that is not a letter, a number answer that is not a number, an empty answer."""
    from mtvr_data.schema import OPTION_LETTERS

    out: list[str] = []
    if not sample.answer.strip():
        out.append("missing_answer")
    elif sample.options and sample.answer_type != "letter":
        out.append("options_without_letter_answer")
    elif (
        sample.options
        and sample.answer_type == "letter"
        and (len(sample.answer) != 1 or sample.answer not in OPTION_LETTERS[: len(sample.options)])
    ):
        out.append("unknown_option")
    elif sample.answer_type in ("number", "regression") and parse_number(sample.answer) is None:
        out.append("answer_not_number")
    return out


def _truth_number(truth: GroundTruth) -> float:
    value = parse_number(truth.answer)
    if value is None:
        raise ValueError(f"sample {truth.id}: {truth.answer_type} answer {truth.answer!r} is not a number")
    return value


def check_truth(truth: GroundTruth) -> None:
    """Raise `ValueError` when the truth's own answer cannot be scored (a data bug: a silent 0 would bias
    training): an unknown answer type, or a number answer that is not a number."""
    if truth.answer_type not in SCORED_TYPES:
        raise ValueError(
            f"sample {truth.id}: answer_type {truth.answer_type!r} cannot be scored for task {truth.task!r}"
        )
    if truth.answer_type in ("number", "regression"):
        _truth_number(truth)


def answer_reward(truth: GroundTruth, text: str) -> tuple[float, str | None]:
    """(reward in [0, 1], what was read or None when nothing could be) of an answer text, by the truth's type."""
    check_truth(truth)
    kind = truth.answer_type
    if kind == "letter":
        return letter_score(text, truth.answer, truth.num_options or None)
    if kind in ("number", "regression"):
        value = parse_number(text)
        reward = numeric_reward if kind == "number" else regression_reward
        return reward(value, _truth_number(truth)), None if value is None else f"{value:g}"
    if not tokenize(text):
        return 0.0, None
    return (rouge_reward if kind == "text" else ocr_reward)(text, truth.answer), text


def _norm_text(text: str) -> str:
    return " ".join(tokenize(text))


def _first_token(text: str) -> str:
    """VSI-Bench's `fuzzy_matching`: the first space-separated word, trailing "." removed."""
    return text.strip().split(" ")[0].rstrip(".").strip()


def _strict_letter(text: str, truth: GroundTruth, mode: str) -> tuple[float, str | None]:
    """A letter read strictly: `first_token` (VSI-Bench: "B." and "b" right, "(B)" and "The answer is B" wrong) or
    `exact` (Video-R1's `eval_bench.py`: only "B" itself is right)."""
    read = _first_token(text) if mode == "first_token" else text.strip()
    right = read.lower() == truth.answer.strip().lower() if mode == "first_token" else read == truth.answer.strip()
    return (1.0 if right else 0.0), (read or None)


def _plain_float(token: str) -> float | None:
    """`float(token)` or None (VSI-Bench's `to_float`): "9" reads, "9m" and "about" do not."""
    try:
        value = float(token)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _mmmu_number(text: str, expected: float) -> tuple[float, str | None]:
    """MMMU's open-answer rule for a number: right when ANY number of the answer equals the truth at two decimals
    ("3.14" for 3.1 is wrong; "speed 20 m/s after 5 s" for 5 is right)."""
    values = parse_numbers(text)
    want = _round(expected, "0.01")
    right = any(_round(v, "0.01") == want for v in values)
    return (1.0 if right else 0.0), (", ".join(f"{v:g}" for v in values) or None)


def answer_metric(truth: GroundTruth, text: str, reading: Reading = DEFAULT_READING) -> tuple[float, str | None]:
    """(benchmark score in [0, 1], what was read or None) of an answer text: the same reading as `answer_reward`
    unless the benchmark's reference reads more strictly (`reading`), counted as a benchmark counts it (see the
    module table)."""
    check_truth(truth)
    kind = truth.answer_type
    if kind == "letter":
        if reading.strict:
            return _strict_letter(text, truth, reading.letters)
        return letter_score(text, truth.answer, truth.num_options or None)
    if kind in ("number", "regression"):
        expected = _truth_number(truth)
        # a first-token reference (VSI-Bench) reads the number from the first word only
        value = _plain_float(_first_token(text)) if reading.letters == "first_token" else parse_number(text)
        read = None if value is None else f"{value:g}"
        if kind == "regression":
            return mean_relative_accuracy(value, expected, rule=reading.mra), read
        if reading.numbers == "mmmu":
            return _mmmu_number(text, expected)
        return (1.0 if numeric_reward(value, expected) == 1.0 else 0.0), read
    norm = _norm_text(text)
    if reading.numbers == "mmmu":  # MMMU's rule for a text answer: the normalised truth inside the answer
        want = _norm_text(truth.answer)
        return (1.0 if want and f" {want} " in f" {norm} " else 0.0), (norm or None)
    # free text (text, ocr): normalised exact match; benchmarks that judge free text with a model are not matched
    return (1.0 if norm and norm == _norm_text(truth.answer) else 0.0), (norm or None)
