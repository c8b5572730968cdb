"""The joblib backend ``"clustrix"`` on the ``local`` backend: joblib's batches as real jobs."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import joblib
import pytest

from clustrix import ConfigError


class TaskError(Exception):
    """Raised by a task: it must come back with this type."""


def nap_then_ident(seconds: float, value: object) -> tuple[object, str]:
    time.sleep(seconds)
    return value, os.environ["CLUSTRIX_JOB_ID"]


def fail_on_three(value: int) -> int:
    if value == 3:
        raise TaskError(f"bad task {value}")
    return value


def test_parallel_runs_the_tasks_as_one_map_with_results_in_order(local_profile, submissions):
    sleeps = [0.9, 0.6, 0.3, 0.0, 0.0, 0.0, 0.0, 0.0]
    with joblib.parallel_config(backend="clustrix", profile=local_profile()):
        results = joblib.Parallel()(joblib.delayed(nap_then_ident)(s, i) for i, s in enumerate(sleeps))
    assert [value for value, _ in results] == list(range(len(sleeps)))
    # One call per joblib batch, all submitted together: calls "<batch>#<index>" of one batch,
    # run by that batch's workers.
    assert len(submissions.job_ids) == len(sleeps)
    assert len({job_id.partition("#")[0] for job_id in submissions.job_ids}) == 1
    assert {job_id.partition(":")[0] for _, job_id in results} == {submissions.job_ids[0].partition("#")[0]}


def test_a_task_exception_comes_back_with_its_own_type(local_profile):
    with joblib.parallel_config(backend="clustrix", profile=local_profile()):
        with pytest.raises(TaskError, match="bad task 3"):
            joblib.Parallel()(joblib.delayed(fail_on_three)(i) for i in range(6))
        # The backend is left working for the next Parallel.
        assert joblib.Parallel(n_jobs=2)(joblib.delayed(fail_on_three)(i) for i in range(3)) == [0, 1, 2]


def test_a_bad_profile_is_refused_at_parallel_config(local_profile):
    local_profile()
    with pytest.raises(ConfigError, match="unknown profile 'nope'"):
        joblib.parallel_config(backend="clustrix", profile="nope")


def test_n_jobs_zero_is_refused(local_profile):
    with (
        joblib.parallel_config(backend="clustrix", profile=local_profile()),
        pytest.raises(ConfigError, match="n_jobs=0"),
    ):
        joblib.Parallel(n_jobs=0)(joblib.delayed(abs)(-1) for _ in range(2))


@pytest.mark.parametrize("order", ["import clustrix, joblib", "import joblib, clustrix"])
def test_import_clustrix_registers_the_name_without_importing_joblib(order):
    script = (
        "import sys\nimport clustrix\nassert 'joblib' not in sys.modules, 'import clustrix imported joblib'\n"
        if order.startswith("import clustrix")
        else "import joblib, clustrix, sys\n"
    ) + (
        "import joblib.parallel\n"
        "assert 'clustrix' in joblib.parallel.BACKENDS\n"
        "assert 'clustrix.joblib_backend' not in sys.modules, 'registered eagerly'\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_without_joblib_the_backend_says_what_to_install():
    script = "import sys\nsys.modules['joblib'] = None\nimport clustrix.joblib_backend\n"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "ImportError: clustrix's joblib backend needs joblib" in out.stderr
    assert "pip install 'clustrix-core[joblib]'" in out.stderr
