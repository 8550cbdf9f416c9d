"""An example third-party agentexec backend (``thirdparty://``). Imports nothing on its own."""
