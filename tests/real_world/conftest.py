"""Every real-world test keeps its own journal and names its profile itself: nothing of one test's
jobs, and no profile a user exported, reaches another."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _own_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLUSTRIX_JOURNAL", str(tmp_path / "journal.jsonl"))
    monkeypatch.delenv("CLUSTRIX_PROFILE", raising=False)
