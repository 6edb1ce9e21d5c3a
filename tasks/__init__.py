"""Prefect tasks: each a few lines around a plain, tested function of ``recognize_me``."""
