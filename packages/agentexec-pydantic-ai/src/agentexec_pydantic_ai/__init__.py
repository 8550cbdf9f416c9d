"""agentexec pydantic-ai adapter: ``ax.PydanticAIRunner`` (see :mod:`agentexec_pydantic_ai.runner`)."""
