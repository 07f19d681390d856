"""Numerical kernels shared by metrics and alignments (float64 by default)."""
