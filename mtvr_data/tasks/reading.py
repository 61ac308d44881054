"""How a benchmark reads an answer: the letter reading mode and the numeric rules of the reference it follows.

Why a value and not a flag per function: the same model output scores differently under different references.
lmms-eval and the MMMU parser read a letter out of prose; VSI-Bench's `thinking-in-space` code takes the first
word; Video-R1's `eval_bench.py` compares the exact string. Training (`answer_reward`) always reads leniently; a
benchmark passes its reference's `Reading` (`mtvr_data.benchmarks.scoring_rules`) to `TaskFamily.metric`, and the
report names the mode that produced each number.

| field     | value         | rule                                                                                 |
|-----------|---------------|--------------------------------------------------------------------------------------|
| `letters` | `lenient`     | `parsing.parse_letter`: the letter the answer commits to, wherever it is written     |
|           | `first_token` | the first space-separated word, trailing "." removed, equals the letter (any case)   |
|           | `exact`       | the answer, stripped, is exactly the letter                                          |
| `numbers` | `tenth`       | the first number of the answer equals the truth at one decimal                       |
|           | `mmmu`        | any number of the answer equals the truth at two decimals (MMMU's open-answer rule)  |
| `mra`     | `official`    | VSI-Bench's code: a threshold t counts when the relative error <= 1 - t              |
|           | `paper`       | the VSI-Bench paper's formula: relative error < 1 - t                                |
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_READING", "LETTER_MODES", "MRA_RULES", "NUMBER_RULES", "Reading"]

LETTER_MODES = ("lenient", "first_token", "exact")
NUMBER_RULES = ("tenth", "mmmu")
MRA_RULES = ("official", "paper")


@dataclass(frozen=True, slots=True)
class Reading:
    """The reading mode of letter answers and the numeric rules (see the module table)."""

    letters: str = "lenient"
    numbers: str = "tenth"
    mra: str = "official"

    def __post_init__(self) -> None:
        for name, allowed in (("letters", LETTER_MODES), ("numbers", NUMBER_RULES), ("mra", MRA_RULES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"Reading.{name} must be one of {allowed}, got {getattr(self, name)!r}")

    @property
    def strict(self) -> bool:
        """Whether letters are read strictly (the answer's form must match the reference's, not only its letter)."""
        return self.letters != "lenient"


DEFAULT_READING = Reading()
