"""scikit-learn's GridSearchCV on Slurm through the joblib backend, against the same grid serial in-process.

    CLUSTRIX_CONFIG=/var/lib/clustrix-test/clustrix.toml .venv/bin/python benchmarks/bench_joblib.py [--n N]

Prints figures, never asserts: the 12-point grid (digits, SVC, cv=3: 36 fits) serial in this
process (the baseline), then with ``joblib.parallel_config(backend="clustrix", profile="slurm", memory="1GB")``
and ``n_jobs=-1``, in turn N times (default 3); medians with their spread (min to max), and the
median of the N ratios side by side (target: below 1x, faster than serial, on the 2-CPU test
cluster). Other jobs on the cluster slow the Slurm figure: run it on an idle cluster.
"""

from __future__ import annotations

import argparse
import statistics

import joblib
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC
from timing import timed

import clustrix  # noqa: F401 - makes backend="clustrix" known to joblib

PROFILE = "slurm"
GRID = {"C": [0.1, 1, 10, 100], "gamma": [1e-4, 1e-3, 1e-2]}


def serial(X, y) -> GridSearchCV:
    return GridSearchCV(SVC(), GRID, cv=3).fit(X, y)


def on_slurm(X, y) -> GridSearchCV:
    with joblib.parallel_config(backend="clustrix", profile=PROFILE, memory="1GB"):
        return GridSearchCV(SVC(), GRID, cv=3, n_jobs=-1).fit(X, y)


def spread(times: list[float]) -> str:
    return f"median {statistics.median(times):6.2f} s (min {min(times):.2f}, max {max(times):.2f})"


def main(n: int) -> None:
    X, y = load_digits(return_X_y=True)
    # Warm both: scikit-learn's first fit, the session, the monitor, the page cache.
    expected = serial(X, y)
    on_slurm(X, y)
    base, measured, wrong = [], [], 0
    for _ in range(n):
        took, _ = timed(lambda: serial(X, y))
        base.append(took)
        took, search = timed(lambda: on_slurm(X, y))
        measured.append(took)
        wrong += (search.best_params_, search.best_score_) != (expected.best_params_, expected.best_score_)
    ratios = [m / b for b, m in zip(base, measured, strict=True)]
    print(f"GridSearchCV, 12 points x 3 folds (36 fits), {n} runs each:")
    print(f"  serial, in this process                   {spread(base)}")
    print(f"  joblib backend on {PROFILE!r}, n_jobs=-1     {spread(measured)}")
    print(
        f"  ratio slurm/serial                        median {statistics.median(ratios):.2f}x "
        f"(min {min(ratios):.2f}, max {max(ratios):.2f}; target < 1x)" + ("  WRONG RESULTS" if wrong else "")
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3, help="runs of each (default 3)")
    main(parser.parse_args().n)
