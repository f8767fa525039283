"""Session 46's review of the task interface: inputs a CASA user types that ran without a word.

* A bare number for freqint is Hz (README, tasks_xml/akcal.xml): ``freqint=4`` on 1 MHz channels is one
  bin per channel.  A width under half a channel is now a warning, once per step and SPW, naming the
  channel width and '4ch' / '4MHz'; '4ch' says nothing.
(akapply's correlation warning: tests/test_rowselect.py; akshell's notes: tests/test_casa_hints.py.)
"""

from alakazam.caltasks import akcal


def test_a_frequency_interval_narrower_than_a_channel_is_said(sim_linear, tmp_path, caplog):
    ms, _ = sim_linear
    out = str(tmp_path / "narrow.h5")
    with caplog.at_level("WARNING", logger="alakazam"):
        akcal(vis=ms, caltable=out, field="3C286", jones=["G"], solint="inf", refant="C00", freqint=4,
              spw="0")
    said = [r.getMessage() for r in caplog.records if "narrower than a channel" in r.getMessage()]
    assert len(said) == 1, said
    assert "G0: freq_interval (akcal freqint) 4Hz is 4 Hz" in said[0] and "'4ch' is 4 channels" in said[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="alakazam"):
        akcal(vis=ms, caltable=str(tmp_path / "ch.h5"), field="3C286", jones=["G"], solint="inf",
              refant="C00", freqint="4ch", spw="0")
    assert not [r for r in caplog.records if "narrower than a channel" in r.getMessage()]


def test_the_narrow_interval_warning_once_with_iterations(sim_linear, tmp_path, caplog):
    """With ``iterations`` every step is solved again in each round: the warning was said once per
    round (6 times for two steps and 3 iterations, a review, session 50); now once per step and SPW
    of the call."""
    ms, _ = sim_linear
    with caplog.at_level("WARNING", logger="alakazam"):
        akcal(vis=ms, caltable=str(tmp_path / "it.h5"), field="3C286", jones=["G", "G"],
              solint=["inf", "inf"], freqint=["full", "4Hz"], refant="C00", spw="0", iterations=3)
    said = [r.getMessage() for r in caplog.records if "narrower than a channel" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("G1:"), said
