"""Pipelines: multi-step workflows whose steps pass values along (``ax.Pipeline``).

- ``_steps``: step definitions and the checks made when a pipeline class is created;
- ``_engine``: the step loop (progress, checkpoints, resume);
- ``_checkpoint``: how a finished step's value is stored so a redelivered run can resume;
- ``_pipeline``: the ``Pipeline`` facade (``Base``, ``step``, ``run``, ``enqueue``).

An enqueued pipeline runs on its pool's ``pipelines`` lane, a queue with its own worker slots,
so a step awaiting ``ax.gather`` on its children never occupies a slot those children need.
"""

from agentexec.pipeline._checkpoint import CheckpointError
from agentexec.pipeline._engine import PipelineStepError
from agentexec.pipeline._pipeline import KIND, LANE, Pipeline, PipelineBase
from agentexec.pipeline._steps import PipelineDefinitionError, StepDefinition

__all__ = [
    "KIND",
    "LANE",
    "CheckpointError",
    "Pipeline",
    "PipelineBase",
    "PipelineDefinitionError",
    "PipelineStepError",
    "StepDefinition",
]
