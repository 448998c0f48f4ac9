"""Pareto fronts and hypervolume for objective vectors to be minimised.

Shared by the campaign driver (the Pareto set and the progress display), the report
(hypervolume over trials) and the search benchmark.
"""

from __future__ import annotations

from collections.abc import Sequence


def non_dominated(points: Sequence[Sequence[float]]) -> list[bool]:
    """For each point, whether no other point dominates it (all objectives <=, not equal).

    Equal points do not dominate each other, so duplicates on the front are all kept.
    Points are visited in lexicographic order, where any dominator comes before the point
    it dominates, and compared with the front found so far only (domination is transitive):
    O(n log n + n x front size) instead of all pairs.
    """
    order = sorted(range(len(points)), key=lambda i: tuple(points[i]))
    front: list[tuple[float, ...]] = []
    keep = [False] * len(points)
    for i in order:
        p = tuple(points[i])
        if not any(all(a <= b for a, b in zip(f, p)) and f != p for f in front):
            front.append(p)
            keep[i] = True
    return keep


def hypervolume(points, ref) -> float:
    """Exact hypervolume dominated by ``points`` (minimisation) up to ``ref``: a sweep in 2-D,
    slices along the last objective above that, over the non-dominated points only."""
    import numpy as np

    pts = np.asarray([p for p in points if np.all(np.asarray(p) < ref)], dtype=float)
    if len(pts) == 0:
        return 0.0
    pts = pts[non_dominated(pts.tolist())]
    if pts.shape[1] == 1:
        return float(ref[0] - pts[:, 0].min())
    if pts.shape[1] == 2:
        pts = pts[np.argsort(pts[:, 0])]
        volume, best_y = 0.0, ref[1]
        for x, y in pts:
            if y < best_y:
                volume += (ref[0] - x) * (best_y - y)
                best_y = y
        return float(volume)
    pts = pts[np.argsort(pts[:, -1])]
    volume = 0.0
    for i in range(len(pts)):
        upper = pts[i + 1, -1] if i + 1 < len(pts) else ref[-1]
        volume += (upper - pts[i, -1]) * hypervolume(pts[: i + 1, :-1], ref[:-1])
    return float(volume)
