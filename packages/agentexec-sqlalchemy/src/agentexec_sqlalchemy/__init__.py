"""agentexec sqlalchemy adapter."""
