"""Multiple choice (`mcq`): a question, lettered options, one right letter.

Valid: options present and the answer one of their letters. Written as the letter only. Reward and benchmark
score: 1 when the letter the answer commits to is the true one (`parsing.letter_score`, the one letter rule, in
`answer_terms`). Passes when the reward reaches `PassRule.min_reward`. Everything but validation is the open
question's answer term, so it is inherited from `OpenAnswer`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mtvr_data.tasks.answer_terms import validate_answer
from mtvr_data.tasks.open_answer import OpenAnswer

if TYPE_CHECKING:
    from mtvr_data.schema import Sample


class MultipleChoice(OpenAnswer):
    task = "mcq"

    def validate(self, sample: Sample) -> list[str]:
        return (["missing_options"] if not sample.options else []) + validate_answer(sample)
