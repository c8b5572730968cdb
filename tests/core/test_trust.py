"""Hostile and malformed input at the trust boundaries (issue 18): each case is refused with a
ConfigError naming the key, before anything is staged or submitted.

Cases so far: environment variable names that pass a `$`-anchored check (a trailing newline
would split the job script's `export`), a NUL in an environment value (dropped or cut short by
every environment), and resource strings that used to escape as ValueError/OverflowError
(Unicode digits, sizes past what a float holds).
"""

from __future__ import annotations

import pytest

from clustrix import cluster
from clustrix.errors import ConfigError


def add(x: int, y: int) -> int:
    return x + y


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"env": {"FOO\n": "x"}}, "'FOO\\\\n' is not a valid environment variable name"),
        ({"env": {"FOO\ntouch /tmp/x": "x"}}, "is not a valid environment variable name"),
        ({"env": {"FOO": "a\0b"}}, "a value cannot hold a NUL character"),
        ({"time": "²"}, r"time='²': expected 'HH:MM:SS'"),
        ({"time": "١٢:00:00"}, "expected 'HH:MM:SS'"),
        ({"memory": "9" * 400}, "more than any cluster has"),
        ({"memory": 10**400}, "more than any cluster has"),
        ({"memory": "٣GB"}, "expected a size such as"),
    ],
)
def test_malformed_input_is_a_config_error_and_stages_nothing(local_profile, keys, message):
    name = local_profile()
    with pytest.raises(ConfigError, match=message):
        cluster(profile=name, **keys)(add)(1, 2)
    assert not local_profile.workdir.exists() or list(local_profile.workdir.iterdir()) == []
