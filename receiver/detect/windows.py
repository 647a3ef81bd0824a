"""Causal rolling-window primitives over time-major matrices (points x series), in numpy.

Windows are stated in seconds over a shared, non-decreasing time axis; every result at row
``i`` uses rows ``<= i`` only. NaN means "no sample" and is ignored.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

# Largest number of samples a rolling median looks at (bounds memory: points x series x this).
MAX_MEDIAN_POINTS = 4096
# A rolling mean/median is only defined when this share of its window's rows are samples.
MIN_COVERAGE = 0.8


def to_seconds(timestamps: npt.ArrayLike) -> FloatArray:
    """Unix seconds as float64 from datetime64 values or numbers."""
    arr = np.asarray(timestamps)
    if np.issubdtype(arr.dtype, np.datetime64):
        ns = arr.astype("datetime64[ns]").astype(np.int64)
        return np.asarray(ns, dtype=np.float64) / 1e9
    return np.asarray(arr, dtype=np.float64)


def accumulate(
    op: np.ufunc, f: npt.NDArray[Any], out: npt.NDArray[Any] | None = None
) -> npt.NDArray[Any]:
    """`op.accumulate(f, axis=0)`; row by row when rows are wide (several times faster there)."""
    if f.ndim == 1 or f.shape[0] < 2 or f[0].size < 64:
        return np.asarray(op.accumulate(f, axis=0, out=out))
    res = np.empty_like(f) if out is None else out
    res[0] = f[0]
    for i in range(1, f.shape[0]):
        op(res[i - 1], f[i], out=res[i])
    return res


def window_start(t: FloatArray, span: float, *, closed: bool) -> IntArray:
    """Per row i, the first row j with t[j] >= t[i] - span (closed) or > (open)."""
    side: Literal["left", "right"] = "left" if closed else "right"
    return np.searchsorted(t, t - span, side=side).astype(np.intp)


def past_extreme(f: FloatArray, start: IntArray, op: np.ufunc) -> FloatArray:
    """`op`-reduce (np.fmin / np.fmax) of f[start[i]:i] per row i; NaN when empty.

    A running accumulate when every window starts at row 0 (the usual poller case), else a
    sparse table (O(n log n) memory per series).
    """
    n = f.shape[0]
    out = np.full(f.shape, np.nan)
    if n < 2:
        return out
    if not start.any():
        acc = accumulate(op, f)
        out[1:] = acc[:-1]
        return out
    stop = np.arange(n, dtype=np.intp)
    length = stop - start
    levels = [f]
    k = 1
    while 2 * k <= n:
        prev = levels[-1]
        levels.append(op(prev[: n - 2 * k + 1], prev[k : n - k + 1]))
        k *= 2
    rows = np.flatnonzero(length > 0)
    lev = np.floor(np.log2(length[rows])).astype(np.intp)
    for li in np.unique(lev):
        sel = rows[lev == li]
        table = levels[int(li)]
        out[sel] = op(table[start[sel]], table[stop[sel] - (1 << int(li))])
    return out


class PrefixSums:
    """Running sums and counts of the non-NaN values, shared by several windows."""

    def __init__(self, x: FloatArray) -> None:
        valid = ~np.isnan(x)
        self.sums = np.zeros((x.shape[0] + 1, *x.shape[1:]))
        self.counts = np.zeros((x.shape[0] + 1, *x.shape[1:]))
        accumulate(np.add, np.where(valid, x, 0.0), out=self.sums[1:])
        accumulate(np.add, valid.astype(np.float64), out=self.counts[1:])

    def count(self, start: IntArray, stop: IntArray) -> FloatArray:
        """Non-NaN values in rows start[i]..stop[i]-1."""
        res: FloatArray = self.counts[stop] - self.counts[start]
        return res

    def mean(self, start: IntArray, stop: IntArray) -> FloatArray:
        """Mean of rows start[i]..stop[i]-1; NaN where too few of them are samples."""
        cnt = self.count(start, stop)
        with np.errstate(invalid="ignore", divide="ignore"):
            res: FloatArray = (self.sums[stop] - self.sums[start]) / cnt
        res[_sparse(cnt, stop - start)] = np.nan
        return res


def _sparse(valid: npt.NDArray[Any], rows: IntArray) -> npt.NDArray[np.bool_]:
    """Windows where under MIN_COVERAGE of the rows hold a sample (e.g. just after a NaN gap):
    a mean of few samples wanders more than the history it is compared with."""
    need = rows.reshape(-1, *([1] * (valid.ndim - 1)))
    res: npt.NDArray[np.bool_] = (valid == 0) | (valid < MIN_COVERAGE * need)
    return res


def count_valid(f: FloatArray, start: IntArray, stop: IntArray) -> FloatArray:
    """Number of non-NaN values of f[start[i]:stop[i]] per row i."""
    return PrefixSums(f).count(start, stop)


def rolling_mean(
    x: FloatArray, t: FloatArray, span: float, prefix: PrefixSums | None = None
) -> FloatArray:
    """Mean of x over (t_i - span, t_i]; O(n) with prefix sums (pass them to share them)."""
    if span <= 0:
        return x
    start = window_start(t, span, closed=False)
    stop = np.arange(1, x.shape[0] + 1)
    return (prefix or PrefixSums(x)).mean(start, stop)


def rolling_median(
    x: FloatArray, t: FloatArray, span: float, prefix: PrefixSums | None = None
) -> FloatArray:
    """Median of x over (t_i - span, t_i]; the value itself when span <= 0."""
    del prefix  # same signature as rolling_mean
    if span <= 0:
        return x
    stack = stack_window(x, t, span, include_current=True)
    res = nanmedian_last(stack)
    rows = np.arange(1, x.shape[0] + 1) - window_start(t, span, closed=False)
    res[_sparse((~np.isnan(stack)).sum(axis=-1), rows)] = np.nan
    return res


def stack_window(x: FloatArray, t: FloatArray, span: float, *, include_current: bool) -> FloatArray:
    """(points, series, k) stack of the samples in each row's window; NaN pads the rest.

    The window is (t_i - span, t_i] with the current row, or the same window minus row i.
    """
    n = x.shape[0]
    start = window_start(t, span, closed=False)
    first = 0 if include_current else 1
    widest = int((np.arange(n) - start).max(initial=0)) + 1 - first
    k = max(1, min(MAX_MEDIAN_POINTS, widest))
    out = np.full((*x.shape, k), np.nan)
    for lag in range(first, min(first + k, n)):
        rows = np.arange(lag, n)
        rows = rows[rows - lag >= start[rows]]
        out[rows, ..., lag - first] = x[rows - lag]
    return out


def nanmedian_last(stack: FloatArray) -> FloatArray:
    """Median over the last axis ignoring NaN; NaN where all are NaN (no warning)."""
    if not np.isnan(stack).any():
        return np.asarray(np.median(stack, axis=-1), dtype=np.float64)
    has = ~np.isnan(stack).all(axis=-1)
    out = np.full(stack.shape[:-1], np.nan)
    if has.any():
        out[has] = np.nanmedian(stack[has], axis=-1)
    return out
