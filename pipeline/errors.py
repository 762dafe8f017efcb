"""Pipeline errors.

PipelineError
├── TransientSyncError    the provider or network may recover: Dramatiq retries
│   └── AccessTokenRejectedError  a 401 before the token's expiry: the retry refreshes first
└── PermanentSyncError    retrying cannot help (unknown provider, bad request): fail the run
    └── RefreshFailedError  the provider refused the refresh token: the user must reconnect
"""

from __future__ import annotations


class PipelineError(Exception):
    pass


class TransientSyncError(PipelineError):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AccessTokenRejectedError(TransientSyncError):
    """The provider answered 401 to a data request: the access token is bad before its expiry
    (revoked, or rotated by a refresh elsewhere).  Transient: the next attempt refreshes."""


class PermanentSyncError(PipelineError):
    pass


class RefreshFailedError(PermanentSyncError):
    """The provider refused the refresh token: the user must reconnect."""
