"""Session-wide fixtures shared by the test modules."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo corpus, built once per test session (a few seconds on 2 cores); its root holds manifest.json."""
    from mtvr_data.demo_corpus import build_demo_corpus

    root = tmp_path_factory.mktemp("demo_corpus")
    build_demo_corpus(root)
    return root
