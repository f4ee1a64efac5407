"""Baselines run side by side with skillbank on the same data and compute."""
