"""Metrics (one definition each) and plots."""
