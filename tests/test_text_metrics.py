"""ROUGE is Google's `rouge-score` with the Porter stemmer (VITAL's free-form reward); WER uses our own tokeniser."""

from __future__ import annotations

import pytest

from mtvr_data.text_metrics import ROUGE_TYPES, rouge_f1, rouge_tokenize, tokenize


def test_rouge_tokens_are_stemmed():
    assert rouge_tokenize("The man is running.") == ["the", "man", "is", "run"]
    assert rouge_tokenize("the man runs") == ["the", "man", "run"]


def test_rouge_f1_of_the_vital_pair():
    scores = rouge_f1("The man is running.", "the man runs")
    assert tuple(scores) == ROUGE_TYPES == ("rouge1", "rouge2", "rougeL")
    assert scores == pytest.approx({"rouge1": 6 / 7, "rouge2": 2 / 5, "rougeL": 6 / 7})
    assert sum(scores.values()) / 3 == pytest.approx(0.7048, abs=1e-4)  # 0.5143 without the stemmer


def test_one_word_answers_count_absent_bigrams_as_agreeing():
    assert rouge_f1("Runs", "running") == {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0}  # same stem
    assert rouge_f1("door", "the door")["rouge2"] == 0.0
    assert rouge_f1("yes", "no") == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}


def test_rouge_drops_non_ascii_letters_as_rouge_score_does():
    # documented in docs/rewards.md: VITAL's tokeniser keeps [a-z0-9] only; our own tokeniser keeps them for WER
    assert rouge_tokenize("café 東京") == ["caf"]
    assert tokenize("café 東京") == ["café", "東京"]
    assert rouge_f1("東京", "東京")["rouge1"] == 0.0
