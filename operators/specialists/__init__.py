"""Specialist signal producers that run on the consumer's CPU before any model call."""
