"""Wall-clock timing shared by the benchmarks: the median of repeated calls."""
import statistics
import time


def median_seconds(fn, repeats: int) -> float:
  """Median wall time of `repeats` calls of `fn` (which must block until its work is done)."""
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return statistics.median(times)
