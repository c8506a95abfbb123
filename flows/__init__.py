"""Prefect flows: they sequence tasks and hold no logic of their own."""
