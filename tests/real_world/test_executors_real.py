"""clustrix.Executor and the joblib backend on the real Slurm cluster.

scikit-learn's own code, unchanged but for the ``parallel_config`` line, must find the same model
as its serial run, with every fit a call of ONE clustrix map (an array of Slurm workers); an
Executor's map is one array too, its ``chunksize`` the calls each array task gets.
"""

from __future__ import annotations

import os
import sys

import cloudpickle
import joblib
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC

import clustrix

pytestmark = [pytest.mark.real_world, pytest.mark.cluster_group("slurm")]

cloudpickle.register_pickle_by_value(sys.modules[__name__])

# 12 points, 3 folds: 36 fits.
GRID = {"C": [0.1, 1, 10, 100], "gamma": [1e-4, 1e-3, 1e-2]}


class SweepError(Exception):
    """Raised by a call: it must come back with this type."""


def array_ids(value: int) -> tuple[int, str, str]:
    if value < 0:
        raise SweepError(f"negative {value}")
    return value, os.environ["SLURM_ARRAY_JOB_ID"], os.environ["SLURM_ARRAY_TASK_ID"]


@pytest.fixture
def slurm(cluster_profile) -> str:
    return cluster_profile("slurm")


def test_grid_search_through_joblib_finds_the_serial_runs_model(slurm, submissions):
    X, y = load_digits(return_X_y=True)
    serial = GridSearchCV(SVC(), GRID, cv=3).fit(X, y)
    # A worker keeps scikit-learn imported from one fit to the next: more than Slurm's default 100 MB.
    with joblib.parallel_config(backend="clustrix", profile=slurm, memory="1GB"):
        search = GridSearchCV(SVC(), GRID, cv=3, n_jobs=-1).fit(X, y)
    assert search.best_params_ == serial.best_params_
    assert search.best_score_ == serial.best_score_
    assert list(search.cv_results_["mean_test_score"]) == list(serial.cv_results_["mean_test_score"])
    # Every fit went to Slurm, all in one submission: calls "<array id>#<index>" of one map.
    assert len(submissions.job_ids) == len(GRID["C"]) * len(GRID["gamma"]) * 3
    assert len({job_id.partition("#")[0] for job_id in submissions.job_ids}) == 1


def test_executor_map_is_one_slurm_array_with_results_in_order(slurm):
    with clustrix.Executor(profile=slurm, cores=1) as executor:
        results = list(executor.map(array_ids, range(8)))
        assert [value for value, _, _ in results] == list(range(8))
        assert len({array for _, array, _ in results}) == 1
        chunked = list(executor.map(array_ids, range(6), chunksize=3))
        assert [value for value, _, _ in chunked] == list(range(6))
        tasks = [task for _, _, task in chunked]
        assert tasks[0] == tasks[1] == tasks[2] != tasks[3] == tasks[4] == tasks[5]
        with pytest.raises(SweepError, match="negative -1"):
            list(executor.map(array_ids, [1, -1, 2]))
