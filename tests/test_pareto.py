"""The shared Pareto filter and hypervolume (used by the driver, the report and the benchmark)."""

from __future__ import annotations

import random

import pytest

from vidnas._pareto import hypervolume, non_dominated


def _all_pairs(points):
    return [not any(all(b <= a for a, b in zip(p, q)) and q != p for q in points) for p in points]


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_non_dominated_equals_the_all_pairs_definition(dims):
    rng = random.Random(dims)
    for _ in range(200):  # small integer grids: many ties and duplicates
        points = [[rng.randint(0, 4) for _ in range(dims)] for _ in range(rng.randint(0, 20))]
        assert non_dominated(points) == _all_pairs(points)


def test_duplicates_on_the_front_are_all_kept():
    assert non_dominated([[1, 2], [1, 2], [2, 1], [2, 2]]) == [True, True, True, False]


def test_hypervolume_of_known_fronts():
    assert hypervolume([[0.0, 0.5], [0.5, 0.0]], [1.0, 1.0]) == pytest.approx(0.75)
    assert hypervolume([[0.0, 0.5], [0.5, 0.0], [0.6, 0.6]], [1.0, 1.0]) == pytest.approx(0.75)  # dominated
    assert hypervolume([[0.0, 0.0, 0.5], [0.5, 0.5, 0.0]], [1.0, 1.0, 1.0]) == pytest.approx(0.625)
    assert hypervolume([[2.0, 2.0]], [1.0, 1.0]) == 0.0  # beyond the reference point
