"""A research pipeline: plan, fan out to parallel searches, rank, write a report.

    uv run python examples/pipeline_research.py            # embedded SQLite file, worker processes
    uv run python examples/pipeline_research.py --memory   # in-memory backends, workers on a thread

Each step of ``ResearchPipeline`` receives what the previous one returned (a tuple is unpacked
into arguments). The "search" step enqueues one task per source and awaits them all with
``ax.gather``; the "rank" step takes the findings as ``*findings`` and enqueues a deep dive only
when the evidence is thin.

The pool has ONE worker with ONE task slot, and three pipelines run at once: this works because
pipelines run on their own lane (``<queue>:pipelines``) with their own slots, so a pipeline
waiting on its searches never holds the slot the searches need. Progress is printed from each
pipeline's activity (one line per step, with its percentage). A last run shows ``pipeline.run``
inline, in this process, with no activity recorded.

With AGENTEXEC_REDIS_URL / AGENTEXEC_DATABASE_URL set it uses those instead of the SQLite file.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from uuid import UUID

import agentexec as ax
import anyio
from pydantic import BaseModel

SOURCES = ("filings", "news", "patents", "reviews", "forums")


class Topic(BaseModel):
    company: str
    depth: int = 3


class Search(BaseModel):
    company: str
    source: str


class Finding(BaseModel):
    source: str
    fact: str
    relevance: float


class Draft(BaseModel):
    company: str
    facts: list[str]


class Report(BaseModel):
    company: str
    summary: str
    sources: list[str]


def build(pool: ax.Pool) -> ax.Pipeline:
    """Register the tasks the pipeline fans out to, and the pipeline itself, on ``pool``."""

    @pool.task("search_source")
    async def search_source(agent_id: UUID, context: Search) -> Finding:
        await anyio.sleep(random.uniform(0.02, 0.1))  # stands in for an LLM or web call
        rng = random.Random(f"{context.company}/{context.source}")
        return Finding(
            source=context.source,
            fact=f"{context.company} appears in {context.source} ({rng.randint(2, 40)} mentions)",
            relevance=round(rng.random(), 2),
        )

    @pool.task("deep_dive")
    async def deep_dive(agent_id: UUID, context: Search) -> Finding:
        await ax.activity.aupdate(agent_id, f"Digging into {context.source}", percentage=50)
        await anyio.sleep(0.05)
        return Finding(source=context.source, fact=f"{context.company}: verified in depth", relevance=1.0)

    @pool.task("write_report")
    async def write_report(agent_id: UUID, context: Draft) -> Report:
        await anyio.sleep(0.02)
        return Report(
            company=context.company,
            summary="; ".join(context.facts),
            sources=sorted({fact.split(" in ")[-1].split(" ")[0] for fact in context.facts}),
        )

    pipeline = ax.Pipeline(pool)

    class ResearchPipeline(pipeline.Base):
        @pipeline.step(0, description="Plan the research")
        async def plan(self, topic: Topic) -> tuple[str, list[str]]:
            return topic.company, list(SOURCES[: topic.depth])

        @pipeline.step(1, description="Search every source in parallel")
        async def search(self, company: str, sources: list[str]) -> tuple[Finding, ...]:
            tasks = [await ax.enqueue("search_source", Search(company=company, source=s)) for s in sources]
            return await ax.gather(*tasks)

        @pipeline.step(2, description="Rank the findings (deep dive when evidence is thin)")
        async def rank(self, *findings: Finding) -> Draft:
            ranked = sorted(findings, key=lambda f: f.relevance, reverse=True)
            company = ranked[0].fact.split(" appears")[0]
            if ranked[0].relevance < 0.5:  # conditional step: more work only when needed
                extra = await ax.enqueue("deep_dive", Search(company=company, source=ranked[0].source))
                ranked.insert(0, await ax.get_result(extra))
            return Draft(company=company, facts=[f.fact for f in ranked[:3]])

        @pipeline.step(3, description="Write the report")
        async def report(self, draft: Draft) -> Report:
            return await ax.get_result(await ax.enqueue("write_report", draft))

    return pipeline


def make_pool(memory: bool) -> ax.Pool:
    ax.CONF.num_workers = 1
    ax.CONF.worker_concurrency = 1  # one task slot: pipelines still never starve their children
    if memory:
        from agentexec.runtime import build_backends

        url = "memory://pipeline-research"
        return ax.Pool(backends=build_backends({"queue": url, "results": url, "events": url, "activity": url}))
    import sqlalchemy
    from agentexec.runtime import configured_urls

    engine = sqlalchemy.create_engine(configured_urls()["activity"])
    ax.Base.metadata.create_all(engine)  # once per database; Alembic in production
    return ax.Pool(engine=engine)


async def watch(tasks: list[ax.Task], names: list[str], timeout: float = 60) -> None:
    """Print each pipeline's new activity lines until all are finished."""
    seen = [0] * len(tasks)
    with anyio.fail_after(timeout):
        while True:
            done = 0
            for i, task in enumerate(tasks):
                detail = await ax.activity.adetail(task.agent_id)
                if detail is None:
                    continue
                for log in detail.logs[seen[i]:]:
                    pct = "" if log.percentage is None else f"{log.percentage:3d}% "
                    print(f"  [{names[i]:<8}] {log.status.value:<8} {pct}{log.message}")
                seen[i] = len(detail.logs)
                done += detail.status in (ax.Status.COMPLETE, ax.Status.ERROR)
            if done == len(tasks):
                return
            await anyio.sleep(0.05)


async def main(pipeline: ax.Pipeline) -> int:
    companies = ["Acme", "Globex", "Initech"]
    started = time.monotonic()
    tasks = [await pipeline.enqueue(context=Topic(company=c, depth=4)) for c in companies]
    print(f"Enqueued {len(tasks)} research pipelines on {tasks[0].queue_name!r}:")
    await watch(tasks, companies)
    reports = await ax.gather(*tasks, timeout=60)
    print(f"\nAll {len(reports)} pipelines finished in {time.monotonic() - started:.2f}s on one task slot:")
    for report in reports:
        print(f"  {report.company}: {report.summary}")

    print("\nInline, in this process (no activity): pipeline.run(None, Topic(...))")
    inline = await pipeline.run(None, Topic(company="Hooli", depth=2))
    print(f"  {inline.company}: {inline.summary}")
    ok = all(isinstance(r, Report) for r in [*reports, inline])
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memory", action="store_true", help="use in-process memory backends")
    args = parser.parse_args()
    pool = make_pool(args.memory)
    research = build(pool)
    pool.start()
    try:
        code = anyio.run(main, research)
    finally:
        pool.shutdown(timeout=10)
    sys.exit(code)
