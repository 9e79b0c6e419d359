"""Schedules: the bounded fire-time walks and the human schedule text."""
