"""Prefect flows: they compose tasks and read like a recipe."""
