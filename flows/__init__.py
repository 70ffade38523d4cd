"""Prefect flows: they call tasks in order and decide nothing a task could decide."""
