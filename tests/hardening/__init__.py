"""Regression tests, one file per hazard of issue 10 (misuse, damage, interruption)."""
