"""Pipeline errors.

PipelineError
├── TransientSyncError    the provider or network may recover: Dramatiq retries
└── PermanentSyncError    retrying cannot help (revoked grant, unknown provider): fail the run
"""

from __future__ import annotations


class PipelineError(Exception):
    pass


class TransientSyncError(PipelineError):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentSyncError(PipelineError):
    pass
