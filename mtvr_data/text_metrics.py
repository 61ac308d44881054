"""Text overlap metrics for free-form and OCR answers: ROUGE-1/2/L F1 and word error rate.

Written here (about 80 lines) rather than taken from `rouge_score` / `jiwer` so the data core has no extra
dependency and the tokenisation is stated once: lower-case after Unicode NFKC, tokens are maximal runs of
letters and digits (`[^\\W_]+`), punctuation and underscores separate tokens and are dropped. So
"The man's hat." -> ["the", "man", "s", "hat"]. Both metrics use this one tokeniser, so a prediction that
differs from the truth only in case or punctuation scores as equal.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

_TOKEN = re.compile(r"[^\W_]+")


def tokenize(text: str) -> list[str]:
    """Lower-cased letter/digit runs of `text` (after NFKC); see the module docstring."""
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).lower())


def _ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _f1(overlap: int, n_pred: int, n_ref: int) -> float:
    if overlap == 0:
        return 0.0
    precision, recall = overlap / n_pred, overlap / n_ref
    return 2 * precision * recall / (precision + recall)


def rouge_n_f1(pred: Sequence[str], ref: Sequence[str], n: int) -> float:
    """ROUGE-N F1 on token lists, n-gram counts clipped (a repeated n-gram matches at most as often as in ref).

    When neither side has an n-gram (both shorter than n tokens) the score is 1.0 if the token lists are
    equal and non-empty, else 0.0. `rouge_score` gives 0 there, which caps a correct one-word answer at a
    ROUGE mean of 2/3; we count the absent n-grams as agreeing instead.
    """
    p, r = _ngrams(pred, n), _ngrams(ref, n)
    if not p and not r:
        return 1.0 if list(pred) == list(ref) and len(pred) > 0 else 0.0
    if not p or not r:
        return 0.0
    return _f1(sum((p & r).values()), sum(p.values()), sum(r.values()))


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


def rouge_l_f1(pred: Sequence[str], ref: Sequence[str]) -> float:
    """ROUGE-L F1: LCS length as the overlap, over the prediction (precision) and reference (recall) lengths."""
    if not pred or not ref:
        return 0.0
    return _f1(lcs_length(pred, ref), len(pred), len(ref))


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
