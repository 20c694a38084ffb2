"""Reading pytest-benchmark's timings in a way that also works under --benchmark-disable."""


def timed_ms(benchmark, statistic: str = "median") -> float:
    """`statistic` (median, min, mean, ...) of the timed rounds, in milliseconds.

    NaN under --benchmark-disable, where pytest-benchmark runs the function once as a smoke test
    and times nothing (benchmark.stats is None); the summary tables then print nan.
    """
    if benchmark.stats is None:
        return float("nan")
    return getattr(benchmark.stats.stats, statistic) * 1e3
