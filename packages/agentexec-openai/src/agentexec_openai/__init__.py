"""agentexec openai adapter."""
