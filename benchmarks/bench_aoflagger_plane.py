"""AOFlagger's own cost per time-frequency plane, in 1 and in 2 processes (issue 10's 2x target).

    python benchmarks/bench_aoflagger_plane.py [N_PLANES]

A plane is what akflag mode='aoflagger' gives the library per baseline and scan of the benchmark MS of
bench_flag.py: 1024 channels x 10 integrations, 8 images (4 correlations, real and imaginary), Gaussian
noise, strategy 'generic'.  Prints wall and CPU time per plane for one process and for two processes
(spawned) sharing the planes; on a loaded machine the CPU time per plane is the meaningful figure (the
wall time then depends on the other jobs).  Compare with the benchmark MS's read+write floor per plane
(README "Flagging": 4.72 s / 3159 planes = 1.5 ms).
"""

import multiprocessing as mp
import os
import sys
import time

import numpy as np

NC, NT = 1024, 10


def work(n, seed=0):
    import aoflagger as ao

    fl = ao.AOFlagger()
    st = fl.load_strategy_file(fl.find_strategy_file(ao.TelescopeId.Generic))
    planes = np.random.default_rng(seed).normal(size=(8, NC, NT)).astype(np.float32)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        im = fl.make_image_set(NT, NC, 8)
        for k in range(8):
            im.set_image_buffer(k, planes[k])
        st.run(im, fl.make_flag_mask(NT, NC, False))
    return time.perf_counter() - t0, time.process_time() - c0


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    print("load average:", os.getloadavg())
    work(5)
    w, c = work(n)
    print(f"1 process:   {1e3 * w / n:.2f} ms wall, {1e3 * c / n:.2f} ms CPU per plane ({n} planes)")
    with mp.get_context("spawn").Pool(2) as pool:
        pool.starmap(work, [(5, 1), (5, 2)])
        t0 = time.perf_counter()
        res = pool.starmap(work, [(n // 2, 1), (n - n // 2, 2)])
        w2 = time.perf_counter() - t0
    c2 = sum(r[1] for r in res)
    print(f"2 processes: {1e3 * w2 / n:.2f} ms wall, {1e3 * c2 / n:.2f} ms CPU per plane; "
          f"wall speed-up {w / w2:.2f}")
    print("load average:", os.getloadavg())


if __name__ == "__main__":
    main()
