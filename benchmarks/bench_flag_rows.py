"""Per-sample cost of the solve-time bad-value flags and row ratios at narrow and wide rows (issue 16).

    python benchmarks/bench_flag_rows.py

The row kernels take one flat, vectorised loop over a row's samples at every row width
(core/cellflags._bad_row, core/rfi.flat_row_ratios, on the rows of a (row, chan * corr) view): a reshape
per row made the flat loop's fixed cost per row large at 1 channel x 4 correlations (review of session
30), the rows of a 2-d view cost nothing.  Prints ns per sample of flag_bad_values and of row_ratios at
1, 4, 8, 64 and 1024 channels (400000 samples per case x 4 correlations; best of 5, one thread).
"""
import time

import numba
import numpy as np
from numba import njit

from alakazam.core import cellflags, rfi


@njit
def _ratios(d, m, x):
    d2, m2, x2 = rfi.flat_rows(d), rfi.flat_rows(m), rfi.flat_rows(x)
    for r in range(d.shape[0]):
        rfi.flat_row_ratios(d2[r], m2[r], True, x2[r])


def _best(fn, *a):
    fn(*a)
    best = np.inf
    for _ in range(5):
        t0 = time.perf_counter()
        fn(*a)
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    numba.set_num_threads(1)
    rng = np.random.default_rng(3)
    print(f"{'channels':>9} {'bad values ns/sample':>21} {'row ratios ns/sample':>21}")
    for n_chan in (1, 4, 8, 64, 1024):
        shape = (400000 // n_chan, n_chan, 4)
        d = (rng.standard_normal(shape) + 1j).astype(np.complex64)
        m = np.ones(shape, np.complex64)
        w = np.broadcast_to(np.ones((shape[0], 1, 4), np.float32), shape)
        f = np.zeros(shape, bool)
        x = np.empty(shape, np.float32)
        tb = _best(cellflags.flag_bad_values, d, m, w, f) / d.size * 1e9
        tr = _best(_ratios, d, m, x) / d.size * 1e9
        print(f"{n_chan:9d} {tb:21.2f} {tr:21.2f}")


if __name__ == "__main__":
    main()
