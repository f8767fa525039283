"""Simulated Measurement Sets with known truth (``alakazam simulate``)."""

from .simulate import Truth, load_truth, save_truth, simulate_main, simulate_ms  # noqa: F401
