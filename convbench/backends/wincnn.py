"""Winograd minimal-filtering transforms F(m, r), generated exactly from interpolation points.

The Toom–Cook construction of Lavin & Gray 2016 ("Fast Algorithms for Convolutional Neural
Networks", CVPR; the method of Lavin's *wincnn*), in `fractions.Fraction` arithmetic so the
matrices are exact and the identity they satisfy can be checked exactly.

Linear convolution of an ``r``-tap filter ``g`` with an ``m``-tap signal ``h`` is the product
of two polynomials, of degree ``alpha - 1`` with ``alpha = m + r - 1``. Toom–Cook evaluates both
factors at ``alpha - 1`` finite points ``p_i`` and at infinity (the leading coefficient),
multiplies the ``alpha`` values pointwise, and interpolates with Lagrange's formula::

    y(x) = sum_i y(p_i) * L_i(x) / N_i  +  y(inf) * prod_j (x - p_j)
    L_i(x) = prod_{j != i} (x - p_j),    N_i = prod_{j != i} (p_i - p_j)

Minimal filtering F(m, r) — ``m`` outputs of an ``r``-tap correlation from ``alpha`` inputs,
``o[j] = sum_k d[j + k] g[k]`` — is the transpose of that algorithm, giving
``o = AT @ ((G @ g) * (BT @ d))`` with

* ``G``  (alpha × r): row i = ``p_i^k / N_i`` (k = 0..r-1); infinity row = last tap,
* ``BT`` (alpha × alpha): row i = ascending coefficients of ``L_i``; infinity row = those of
  ``prod_j (x - p_j)``,
* ``AT`` (m × alpha): column i = ``p_i^j`` (j = 0..m-1); infinity column = ``[0, …, 0, 1]``.

Each ``1/N_i`` may move between row i of ``G`` and row i of ``BT`` (any row scaling of the pair
gives a valid algorithm); like wincnn we keep it in ``G``, which is applied once per weight.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from fractions import Fraction

Matrix = tuple[tuple[Fraction, ...], ...]

_H = Fraction(1, 2)
_Q = Fraction(1, 4)

# Empirically most accurate point sets of Barabasz, Anderson, Soodhalter & Gregg 2020, "Error
# analysis and improving the accuracy of Winograd convolution for deep neural networks",
# ACM TOMS 46(4) (arXiv:1803.10986), keyed by the number of finite points (m + r - 2); they
# were selected for r = 3, i.e. F(2,3) … F(8,3). Infinity is always added as the last point.
BARABASZ_POINTS: dict[int, tuple[Fraction, ...]] = {
    n: tuple(Fraction(p) for p in pts)
    for n, pts in {
        3: (0, -1, 1),
        4: (0, -1, 1, _H),
        5: (0, -1, 1, _H, -2),
        6: (0, -1, 1, _H, -2, -_H),
        7: (0, -1, 1, _H, -_H, 2, -2),
        8: (0, -1, 1, _H, -_H, 2, -2, -_Q),
        9: (0, -1, 1, _H, -_H, 2, -2, -_Q, 4),
    }.items()
}


def default_points(n: int) -> tuple[Fraction, ...]:
    """``n`` distinct finite interpolation points, chosen for floating-point accuracy.

    The Barabasz et al. set where they give one; otherwise the usual ordering of small powers
    of two and their reciprocals: ``0, -1, 1, 1/2, -1/2, 2, -2, 1/4, -1/4, 4, -4, …``.
    """
    if n < 0:
        raise ValueError(f"number of points must be >= 0, got {n}")
    if n in BARABASZ_POINTS:
        return BARABASZ_POINTS[n]
    points = [Fraction(0), Fraction(-1), Fraction(1)]
    e = 1
    while len(points) < n:
        for base in (Fraction(1, 2**e), Fraction(2**e)):
            points += [base, -base]
        e += 1
    return tuple(points[:n])


@dataclass(frozen=True)
class WinogradTransform:
    """The exact matrices of F(m, r): ``o = AT @ ((G @ g) * (BT @ d))`` for correlation."""

    m: int
    r: int
    points: tuple[Fraction, ...]  # the finite points; infinity is the last row/column
    AT: Matrix
    G: Matrix
    BT: Matrix

    @property
    def alpha(self) -> int:
        """Input tile length ``m + r - 1`` = number of multiplications per tile."""
        return self.m + self.r - 1


def _poly_from_roots(roots) -> list[Fraction]:
    """Ascending coefficients of ``prod (x - root)``."""
    coeffs = [Fraction(1)]
    for root in roots:
        shifted = [Fraction(0), *coeffs]  # x * p(x)
        for i, c in enumerate(coeffs):
            shifted[i] -= root * c
        coeffs = shifted
    return coeffs


@functools.lru_cache(maxsize=256)
def winograd_transform(m: int, r: int, points: tuple | None = None) -> WinogradTransform:
    """Generate F(m, r) from ``m + r - 2`` distinct finite points (default: `default_points`).

    Points may be ints, Fractions or decimal strings; they are converted to `Fraction`.
    """
    if m < 1 or r < 1:
        raise ValueError(f"F(m, r) needs m >= 1 and r >= 1, got F({m}, {r})")
    n = m + r - 2
    pts = default_points(n) if points is None else tuple(Fraction(p) for p in points)
    if len(pts) != n:
        raise ValueError(f"F({m}, {r}) needs {n} finite points, got {len(pts)}")
    if len(set(pts)) != n:
        raise ValueError(f"interpolation points must be distinct, got {pts}")
    alpha = n + 1

    at = [[p**j for p in pts] + [Fraction(int(j == m - 1))] for j in range(m)]
    g_rows, bt_rows = [], []
    for i, p in enumerate(pts):
        others = pts[:i] + pts[i + 1 :]
        denom = Fraction(1)
        for q in others:
            denom *= p - q
        g_rows.append([p**k / denom for k in range(r)])
        lagrange = _poly_from_roots(others)  # degree n - 1: pad to alpha coefficients
        bt_rows.append(lagrange + [Fraction(0)] * (alpha - len(lagrange)))
    g_rows.append([Fraction(int(k == r - 1)) for k in range(r)])
    bt_rows.append(_poly_from_roots(pts))

    def freeze(rows) -> Matrix:
        return tuple(tuple(row) for row in rows)

    return WinogradTransform(m, r, pts, freeze(at), freeze(g_rows), freeze(bt_rows))


def matvec(a: Matrix, v) -> list[Fraction]:
    """Exact matrix-vector product (for checking the identity)."""
    return [sum((x * y for x, y in zip(row, v, strict=True)), Fraction(0)) for row in a]
