"""Runnable experiments with their bundled data and recorded results (see each README)."""
