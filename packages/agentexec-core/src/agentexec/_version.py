from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("agentexec-core")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without metadata
    __version__ = "0.0.0"

#: The plugin API version this core speaks; descriptors carry the version they were written for.
PLUGIN_API_VERSION = 1
