"""agentexec redis adapter."""
