"""The work: Dramatiq actors and the broker, providers, analytics, the scheduler."""

__all__ = ["PipelineSettings"]

from pipeline.settings import PipelineSettings
