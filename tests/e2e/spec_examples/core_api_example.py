# ruff: noqa  -- the spec's code, verbatim
# spec/core-api.md, the Pool example, as written (SQLite file in the working directory, no
# Redis: the embedded SQL transport). ResearchContext is the one of spec/task-lifecycle.md.
from uuid import UUID

from pydantic import BaseModel
from sqlalchemy import create_engine
import agentexec as ax


class ResearchContext(BaseModel):
    company: str
    focus_areas: list[str] = []
    max_sources: int = 10


engine = create_engine("sqlite:///agents.db")
ax.Base.metadata.create_all(engine)

pool = ax.Pool(
    engine=engine,
    database_url="sqlite:///agents.db"
)

@pool.task("research")
async def research(agent_id: UUID, context: ResearchContext):
    ax.activity.update(agent_id, "Starting phase 1", percentage=0)
    return f"Researched {context.company}"

pool.run()  # Blocks until SIGTERM/SIGINT
