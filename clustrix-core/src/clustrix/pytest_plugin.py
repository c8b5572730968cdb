"""pytest plugin (entry point ``pytest11``): markers for tests that submit real jobs."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "real_world: submits real jobs to a real cluster and checks what happened")
    config.addinivalue_line("markers", "expensive: a real-world test that takes minutes (long jobs, time limits)")
