"""Text overlap metrics for free-form and OCR answers: ROUGE-1/2/L F1 and word error rate.

ROUGE is Google's `rouge-score` package with the Porter stemmer (`use_stemmer=True`), as VITAL's released reward
computes it: its tokeniser lower-cases, keeps runs of ASCII letters and digits, and stems tokens longer than 3
characters, so "The man is running." vs "the man runs" scores (6/7 + 2/5 + 6/7) / 3 = 0.705 (0.514 unstemmed).
One deliberate difference: when both sides are the same single (stemmed) token, ROUGE-2 counts as 1, not 0 (see
`rouge_f1`). Non-ASCII letters are dropped by that tokeniser (as in VITAL), see docs/rewards.md.

WER (and the "is there any text" checks of rewards and eval) use this module's own tokeniser instead: lower-case
after Unicode NFKC, tokens are maximal runs of letters and digits (`[^\\W_]+`), punctuation and underscores
separate tokens and are dropped. So "The man's hat." -> ["the", "man", "s", "hat"].
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence
from typing import Any

_TOKEN = re.compile(r"[^\W_]+")


def tokenize(text: str) -> list[str]:
    """Lower-cased letter/digit runs of `text` (after NFKC); see the module docstring."""
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).lower())


#: The ROUGE variants VITAL averages for free-form answers (docs/papers.md, "rewards and DGRPO").
ROUGE_TYPES: tuple[str, ...] = ("rouge1", "rouge2", "rougeL")


@functools.cache
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer  # imported on first use: it pulls in nltk (~1 s)

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


@functools.cache
def _rouge_tokenizer() -> Any:
    from rouge_score import tokenizers

    return tokenizers.DefaultTokenizer(use_stemmer=True)


def rouge_tokenize(text: str) -> list[str]:
    """The tokens ROUGE compares: `rouge-score`'s default tokeniser with the Porter stemmer.

    >>> rouge_tokenize("The man is running.")
    ['the', 'man', 'is', 'run']
    """
    return _rouge_tokenizer().tokenize(text)


def rouge_f1(pred: str, ref: str) -> dict[str, float]:
    """ROUGE-1, ROUGE-2 and ROUGE-L F1 of `pred` against `ref` (`rouge-score`, stemmed), keyed by `ROUGE_TYPES`.

    When both sides are the same single token, `rouge-score` gives ROUGE-2 = 0 (neither side has a bigram),
    which caps an exactly right one-word answer at a mean of 2/3; we count the absent bigrams as agreeing (1.0).

    >>> {k: round(v, 4) for k, v in rouge_f1("The man is running.", "the man runs").items()}
    {'rouge1': 0.8571, 'rouge2': 0.4, 'rougeL': 0.8571}
    """
    scores = _rouge_scorer().score(ref, pred)  # rouge-score's order: (target, prediction)
    out = {name: float(scores[name].fmeasure) for name in ROUGE_TYPES}
    if out["rouge1"] == 1.0 and len(rouge_tokenize(pred)) == 1:
        out["rouge2"] = 1.0
    return out


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (O(len(a) * len(b)) time, O(len(b)) memory)."""
    if len(a) < len(b):
        a, b = b, a
    row = [0] * (len(b) + 1)
    for x in a:
        prev_diag = 0
        for j, y in enumerate(b, start=1):
            prev_diag, row[j] = row[j], (prev_diag + 1 if x == y else max(row[j], row[j - 1]))
    return row[-1]


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    """Levenshtein distance between token lists (substitution, insertion, deletion each cost 1)."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        prev_diag, row[0] = row[0], i
        for j, y in enumerate(b, start=1):
            prev_diag, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev_diag + (x != y))
    return row[-1]


def word_error_rate(pred: str, ref: str) -> float:
    """(substitutions + deletions + insertions) / reference words, on `tokenize`d words; can exceed 1.

    An empty reference gives 0.0 for an empty prediction and 1.0 for anything else (no division by zero).
    """
    p, r = tokenize(pred), tokenize(ref)
    if not r:
        return 0.0 if not p else 1.0
    return edit_distance(p, r) / len(r)
