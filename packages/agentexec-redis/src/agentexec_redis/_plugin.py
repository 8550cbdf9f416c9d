"""Registers the Redis backends with agentexec (imports nothing heavy)."""
