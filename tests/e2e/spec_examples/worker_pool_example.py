# ruff: noqa  -- the spec's code, verbatim
# spec/worker-pool.md, "Creating a Worker Pool" and "Registering Tasks", as written; only the
# database URL comes from the environment (the test's database) instead of a literal.
import os

from sqlalchemy import create_engine
import agentexec as ax

DATABASE_URL = os.environ["AGENTEXEC_DATABASE_URL"]

# Create database engine
engine = create_engine(DATABASE_URL)

# Create database tables (if they don't exist)
ax.Base.metadata.create_all(engine)

# Create worker pool
pool = ax.Pool(
    engine=engine,
    database_url=DATABASE_URL,
    queue_name=None,  # Uses CONF.queue_name by default
)

from uuid import UUID
from pydantic import BaseModel

class MyContext(BaseModel):
    data: str
    count: int = 1

@pool.task("my_task_name")
async def my_task(agent_id: UUID, context: MyContext) -> str:
    """
    Task handler function.

    Args:
        agent_id: Unique identifier for this task instance
        context: Typed context with task parameters

    Returns:
        Optional result (stored in Redis for pipelines)
    """
    # Your task logic here
    return "result"

@pool.task("risky_task")
async def risky_task(agent_id: UUID, context: MyContext):
    # If this raises...
    raise ValueError("Something went wrong")
    # ...activity becomes ERROR, worker continues

pool.run()  # Blocks until SIGTERM/SIGINT
