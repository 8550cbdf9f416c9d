"""Registers the OpenAI runner with agentexec (imports nothing heavy)."""
