"""Means with Student-t confidence intervals over seeds, and the summary table of a grid.

Pure Python: the t quantile is the inverse of the t CDF, which is the regularized incomplete
beta function (Numerical Recipes' continued fraction), inverted by bisection.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

_CF_MAX_ITERATIONS = 10_000
_CF_EPS = 1e-15
_TINY = 1e-300


@dataclass(frozen=True)
class Interval:
    """A mean and its two-sided confidence interval; ``n`` values went into it.

    With ``n == 1`` there is no spread to estimate: ``low == high == mean`` and ``spread`` is
    False. ``n == 0`` (every value was NaN) has NaN for all three numbers.
    """

    mean: float
    low: float
    high: float
    n: int
    confidence: float = 0.95

    @property
    def spread(self) -> bool:
        """Whether the interval was estimated (at least two values)."""
        return self.n >= 2


@dataclass(frozen=True)
class SummaryRow:
    """One grid point's measure over its seeds; ``params`` are ``(path, value)`` pairs."""

    point: int
    params: tuple[tuple[str, object], ...]
    measure: str
    interval: Interval


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _CF_MAX_ITERATIONS + 1):
        m2 = 2 * m
        for aa in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + aa / c
            c = c if abs(c) > _TINY else _TINY
            delta = d * c
            h *= delta
        if abs(delta - 1.0) < _CF_EPS:
            return h
    raise ArithmeticError(f"incomplete beta did not converge (a={a}, b={b}, x={x})")


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function, for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    tail = 0.5 * regularized_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p, by bisection on the CDF."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"probability must be in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    if p == 0.5:
        return 0.0
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        low, high = high, high * 2.0
    while high - low > 1e-12 * high:
        middle = 0.5 * (low + high)
        if t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """The mean of ``values`` (NaNs dropped) and its two-sided Student-t interval.

    Raises:
        ValueError: no values are left once NaNs are dropped, or ``confidence`` is not in (0, 1).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    kept = [float(v) for v in values if not math.isnan(v)]
    n = len(kept)
    if n == 0:
        raise ValueError(f"mean_interval needs at least one value that is not NaN, got {values!r}")
    mean = math.fsum(kept) / n
    if n == 1:
        return Interval(mean, mean, mean, 1, confidence)
    variance = math.fsum((v - mean) ** 2 for v in kept) / (n - 1)
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * math.sqrt(variance / n)
    return Interval(mean, mean - half, mean + half, n, confidence)


def _as_float(value: object) -> float:
    if value is None:
        return math.nan
    if isinstance(value, numbers.Real):
        return float(value)
    raise ValueError(f"a result value must be a number, got {value!r}")


def summarize(
    rows: Iterable[Mapping[str, object]], params: Sequence[str], confidence: float = 0.95
) -> list[SummaryRow]:
    """Groups result rows by (point, measure) and gives each group's mean and interval.

    Rows have ``point``, each of ``params``, ``seed``, ``measure`` and ``value``; ``None``
    values count as NaN. Groups come ordered by point, then by measure in first-seen order; a
    group whose values are all NaN gets an ``Interval`` of NaNs with ``n == 0``.
    """
    values: dict[tuple[int, str], list[float]] = {}
    point_params: dict[int, tuple[tuple[str, object], ...]] = {}
    measure_order: dict[str, int] = {}
    for row in rows:
        try:
            point, measure, value = row["point"], str(row["measure"]), row["value"]
            if not isinstance(point, numbers.Integral):
                raise ValueError(f"a result row's point must be an int, got {point!r}")
            point = int(point)
            point_params.setdefault(point, tuple((p, row[p]) for p in params))
        except KeyError as error:
            raise ValueError(f"result row lacks the column {error}: {dict(row)!r}") from None
        measure_order.setdefault(measure, len(measure_order))
        values.setdefault((point, measure), []).append(_as_float(value))
    summary = []
    for point, measure in sorted(values, key=lambda key: (key[0], measure_order[key[1]])):
        group = values[(point, measure)]
        if all(math.isnan(v) for v in group):
            interval = Interval(math.nan, math.nan, math.nan, 0, confidence)
        else:
            interval = mean_interval(group, confidence)
        summary.append(SummaryRow(point, point_params[point], measure, interval))
    return summary


def _number(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4g}"


def _param_value(value: object) -> str:
    return _number(value) if isinstance(value, float) else str(value)


def format_summary(summary: Sequence[SummaryRow]) -> str:
    """A plain-text table: point, params as ``path=value``, measure, n, mean and interval."""
    confidence = summary[0].interval.confidence if summary else 0.95
    header = ("point", "params", "measure", "n", "mean", f"{confidence:.0%} interval")
    lines: list[tuple[str, ...]] = [header]
    for row in summary:
        interval = row.interval
        params = " ".join(f"{path}={_param_value(v)}" for path, v in row.params) or "-"
        bounds = f"[{_number(interval.low)}, {_number(interval.high)}]" if interval.spread else "-"
        lines.append(
            (str(row.point), params, row.measure, str(interval.n), _number(interval.mean), bounds)
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    right = {0, 3, 4}
    return "\n".join(
        "  ".join(
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in lines
    )
