"""Registers the SQLAlchemy backends with agentexec (imports nothing heavy)."""
