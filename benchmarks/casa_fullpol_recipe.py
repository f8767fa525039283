"""CASA 6.7 timing of the issue-16 expert recipe (the steps of ``bench_flow.py --fullpol``) on the same MS.

    /path/to/casa-venv/bin/python benchmarks/casa_fullpol_recipe.py MS [--out DIR]

Needs casatasks (not a dependency of alakazam; ~/.casa/config.py with measurespath set and the
auto-updates off runs it offline).  Steps, all with parang=True, refant C00:

* solve1: gaincal K (3C286, per scan), gaincal G calmode='p' 60 s (K), bandpass inf combine scan (K, Gp);
* solve2: gaincal G calmode='ap' 120 s on 3C286 + 3C147 (K, B);
* solve3: gaincal KCROSS, polcal Xf, polcal Df on 3C286, inf combine scan (K, B, G [, Kcross, Xf]);
* fluxscale 3C286 -> 3C147; applycal of K, B, G (scaled), Kcross, Xf, Df to every field
  (applymode='calflag', flagbackup=True).

It overwrites the MS's CORRECTED_DATA and writes FLAG: the flag version applycal saved is restored and
deleted at the end.  Prints each task's wall time and the total.
"""
import argparse
import os
import shutil
import time

from casatasks import applycal, bandpass, flagmanager, fluxscale, gaincal, polcal


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ms")
    ap.add_argument("--out", default="casa_fullpol_tables")
    args = ap.parse_args()
    ms, out = args.ms, args.out
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    K, G1, B, G2, Gs, KC, XF, DF = (os.path.join(out, n) for n in ("K", "Gp", "B", "G", "Gs", "Kcross", "Xf",
                                                                   "Df"))
    times = {}

    def run(name, fn, **kw):
        t0 = time.perf_counter()
        fn(**kw)
        times[name] = time.perf_counter() - t0
        print(f"{name:10s} {times[name]:7.1f} s", flush=True)

    common = dict(vis=ms, refant="C00")
    run("K", gaincal, caltable=K, field="3C286", gaintype="K", solint="inf", parang=True, **common)
    run("Gp", gaincal, caltable=G1, field="3C286", gaintype="G", calmode="p", solint="60s", gaintable=[K],
        parang=True, **common)
    run("B", bandpass, caltable=B, field="3C286", solint="inf", combine="scan", gaintable=[K, G1],
        parang=True, **common)
    run("G", gaincal, caltable=G2, field="3C286,3C147", gaintype="G", calmode="ap", solint="120s",
        gaintable=[K, B], parang=True, **common)
    run("Kcross", gaincal, caltable=KC, field="3C286", gaintype="KCROSS", solint="inf", combine="scan",
        gaintable=[K, B, G2], parang=True, **common)
    run("Xf", polcal, caltable=XF, field="3C286", poltype="Xf", solint="inf", combine="scan",
        gaintable=[K, B, G2, KC], **common)
    run("Df", polcal, caltable=DF, field="3C286", poltype="Df", solint="inf", combine="scan",
        gaintable=[K, B, G2, KC, XF], **common)
    run("fluxscale", fluxscale, vis=ms, caltable=G2, fluxtable=Gs, reference="3C286", transfer="3C147")
    run("applycal", applycal, vis=ms, gaintable=[K, B, Gs, KC, XF, DF], parang=True, applymode="calflag",
        flagbackup=True)
    total = sum(times.values())
    blocks = {"solve1": ("K", "Gp", "B"), "solve2": ("G",), "solve3": ("Kcross", "Xf", "Df"),
              "fluxscale": ("fluxscale",), "apply": ("applycal",)}
    for b, names in blocks.items():
        print(f"{b:10s} {sum(times[n] for n in names):7.1f} s")
    print(f"{'total':10s} {total:7.1f} s  (0.1 x CASA: {0.1 * total:.1f} s)")
    versions = flagmanager(vis=ms, mode="list")
    names = [v["name"] for v in versions.values() if isinstance(v, dict) and "name" in v]
    if names:
        flagmanager(vis=ms, mode="restore", versionname=names[-1])
        flagmanager(vis=ms, mode="delete", versionname=names[-1])
        print(f"FLAG restored from {names[-1]} (deleted)")


if __name__ == "__main__":
    main()
