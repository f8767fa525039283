"""The simulator's casacore conversions hold ``measures_data.LOCK`` (as parang's anchors and
read_meta's observatory position do): casacore's conversions share state between threads, and
concurrent ones differed by up to 8e-14 rad.  Every ``measures()`` object the simulator makes is
made and used with the lock held (checked by a measures() that refuses to be made without it)."""

import threading

from alakazam import measures_data
from alakazam.sim import simulate as sim


def test_every_simulator_conversion_holds_the_lock(tmp_path, monkeypatch):
    real = measures_data.measures
    made = []

    def guarded():
        assert measures_data.LOCK._is_owned(), "casacore measures used without measures_data.LOCK"
        made.append(threading.get_ident())
        return real()

    monkeypatch.setattr(measures_data, "measures", guarded)
    sim.simulate_ms(str(tmp_path / "l.ms"), n_ant=4, n_ant_extra=0, n_chan=(4,), duration_h=0.1, int_s=60.0,
                    scan_len_s=180.0, dead_ant=False)
    assert len(made) >= 3           # the array centre, the parallactic angle, the sidereal time
