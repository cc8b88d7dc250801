"""The musicaas error tree, and its one mapping to gRPC status codes.

Handlers, adapters and numeric code raise these domain errors; exactly one server
interceptor (:mod:`musicaas.runtime.server`) turns them into gRPC status codes, and
anything else becomes ``INTERNAL`` with a generic message (the details go to the log).

::

    MusicaasError                      root of every error this project raises
    ├── InvalidArgument                bad input, can never succeed  -> INVALID_ARGUMENT
    ├── NotFound                       the named thing does not exist -> NOT_FOUND
    ├── AlreadyExists                  a create collided              -> ALREADY_EXISTS
    ├── FailedPrecondition             not in the state needed         -> FAILED_PRECONDITION
    ├── ResourceExhausted              a size or rate limit was hit    -> RESOURCE_EXHAUSTED
    ├── Unauthenticated                no or unknown credentials       -> UNAUTHENTICATED
    ├── PermissionDenied               credentials lack the right      -> PERMISSION_DENIED
    ├── DeadlineExceeded               a downstream call ran out of time -> DEADLINE_EXCEEDED
    └── Unavailable                    a dependency is down; retry     -> UNAVAILABLE

Event consumers use the same tree: :class:`InvalidArgument` (and :class:`NotFound` for a
blob that is gone) terminate the message and publish ``music.tracks.failed``; every
other error naks it with a delay so that it is retried.
"""

from __future__ import annotations

import grpc


class MusicaasError(Exception):
    """Root of every error raised by musicaas code."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    #: True when retrying the same input can never succeed.
    permanent: bool = False

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: When a retry can succeed, in seconds (a rate limit or quota): sent to the caller as
        #: ``google.rpc.RetryInfo`` in the status details (``grpc-status-details-bin``).
        self.retry_after_s = retry_after_s


class InvalidArgument(MusicaasError):
    """Bad input: a malformed file, a value out of range. Never retried."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    permanent = True


class NotFound(MusicaasError):
    """The named track, generation or blob does not exist."""

    code = grpc.StatusCode.NOT_FOUND
    permanent = True


class AlreadyExists(MusicaasError):
    code = grpc.StatusCode.ALREADY_EXISTS
    permanent = True


class FailedPrecondition(MusicaasError):
    """The target is not in the state the call needs (e.g. a track not yet indexed)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(MusicaasError):
    """A size or rate limit was exceeded (e.g. an upload over the size limit)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    permanent = True


class Unauthenticated(MusicaasError):
    code = grpc.StatusCode.UNAUTHENTICATED
    permanent = True


class PermissionDenied(MusicaasError):
    code = grpc.StatusCode.PERMISSION_DENIED
    permanent = True


class DeadlineExceeded(MusicaasError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unavailable(MusicaasError):
    """A dependency (NATS, Triton, Qdrant, another service) is down; retry later."""

    code = grpc.StatusCode.UNAVAILABLE


_BY_CODE = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        ResourceExhausted,
        Unauthenticated,
        PermissionDenied,
        DeadlineExceeded,
        Unavailable,
    )
}


def from_rpc_error(exc: grpc.RpcError, *, what: str) -> MusicaasError:
    """Turn a failed downstream gRPC call into the matching domain error.

    Parameters
    ----------
    exc : grpc.RpcError
        The error raised by a grpc.aio stub call.
    what : str
        The downstream call, for the message (``"analyzer.AnalyzeAudio"``).
    """
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    cls = _BY_CODE.get(code)
    if cls is None:
        return Unavailable(f"{what} failed: {code.name if code else 'UNKNOWN'}")
    if cls in (Unavailable, DeadlineExceeded):
        return cls(f"{what}: {details}")
    return cls(details or f"{what} failed")
