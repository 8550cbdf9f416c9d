"""pytest plugin of the agentexec conformance kit (loaded through the pytest11 entry point)."""
