"""The statistics behind each threshold: robust location and spread (median and MAD,
numpy/scipy), Poisson and binomial tails (scipy.stats). No home-made maths.

Each function returns the threshold with the numbers that produced it, so an alert can
say in one sentence why it fired.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# numpy and scipy.stats are imported where they are used: together some 75 MiB of resident
# memory, and every web process imports this module (through the detection views) without
# ever computing a threshold.

# One false alarm per million agent-hours per metric: rare enough that the benign alert
# rate is dominated by true novelty (new tools, new destinations), not by noise.
TAIL_PROBABILITY = 1e-6
MAD_MULTIPLIER = 8.0
# A spike up to half again the busiest hour already seen is ordinary for that agent.
PEAK_MARGIN = 1.5


@dataclass(frozen=True, slots=True)
class Threshold:
    """An alert threshold on an hourly count and how it was derived."""

    value: float
    median: float
    mad: float
    peak: float
    hours: int

    def as_dict(self) -> dict:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


def count_threshold(history: list[int] | list[float], *, floor: float) -> Threshold:
    """The smallest hourly count that is anomalous against `history` (counts of past active hours).

    The largest of: `floor`; median + 8 × MAD (scaled to σ); the count a Poisson process at
    the history's mean rate exceeds with probability 1e-6; 1.5 × the busiest hour seen.
    """
    import numpy as np
    from scipy import stats

    values = np.asarray(history, dtype=float)
    if values.size == 0:
        return Threshold(value=float(floor), median=0.0, mad=0.0, peak=0.0, hours=0)
    median = float(np.median(values))
    mad = float(stats.median_abs_deviation(values, scale="normal"))
    mean = float(values.mean())
    poisson_bound = float(stats.poisson.isf(TAIL_PROBABILITY, max(mean, 1e-3))) + 1.0
    peak = float(values.max())
    value = max(float(floor), median + MAD_MULTIPLIER * mad, poisson_bound, PEAK_MARGIN * peak)
    return Threshold(value=value, median=median, mad=mad, peak=peak, hours=int(values.size))


def volume_threshold(history: list[int] | list[float], *, floor: float) -> Threshold:
    """Like `count_threshold` for volumes (bytes), where a Poisson model does not apply."""
    import numpy as np
    from scipy import stats

    values = np.asarray(history, dtype=float)
    if values.size == 0:
        return Threshold(value=float(floor), median=0.0, mad=0.0, peak=0.0, hours=0)
    median = float(np.median(values))
    mad = float(stats.median_abs_deviation(values, scale="normal"))
    peak = float(values.max())
    value = max(float(floor), median + MAD_MULTIPLIER * mad, PEAK_MARGIN * peak)
    return Threshold(value=value, median=median, mad=mad, peak=peak, hours=int(values.size))


def denial_surprise(denied: int, decided: int, baseline_ratio: float) -> float:
    """P(at least `denied` denials in `decided` decisions) when each is denied with the baseline ratio."""
    from scipy import stats

    ratio = min(max(baseline_ratio, 0.01), 0.99)
    return float(stats.binom.sf(denied - 1, decided, ratio))


def hour_share(profile: list[int], hour: int) -> float:
    """The share of an agent's past calls made in UTC hour `hour` (0..23)."""
    import numpy as np

    counts = np.asarray(profile, dtype=float)
    total = counts.sum()
    return float(counts[hour] / total) if total else 0.0
