"""The project's one error hierarchy (docs/design.md §7).

Every error the platform raises on purpose is an :class:`AppraisalError` with a stable,
machine-readable ``code`` (dotted: ``kind.detail``) beside its message for people (zh-CN first,
then English). Programs and tests decide on the type and the code; people read the message.
The gateway turns any of them into an RFC 9457 problem document (``gateway/problems.py``).

It lives in the pure core because every layer may raise these and the core imports nothing.
Existing classes keep ``ValueError`` as a base so that code catching ``ValueError`` still works.
"""

from __future__ import annotations

from typing import ClassVar


class AppraisalError(ValueError):
    """Root of every deliberate error. ``code`` is stable; the message is for people."""

    kind: ClassVar[str] = "error"
    default_code: ClassVar[str] = "error"

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code or self.default_code

    @property
    def message(self) -> str:
        return str(self)


class BadInput(AppraisalError):
    """What a person or a file supplied is wrong: the message names the place and the fix."""

    kind = "bad_input"
    default_code = "input.invalid"


class NotFound(AppraisalError):
    """The thing asked for does not exist here."""

    kind = "not_found"
    default_code = "not_found"


class Conflict(AppraisalError):
    """The request is well-formed but contradicts what the store holds (a version that does not
    move forward, a bundle no longer pending, a later bundle that supersedes this one)."""

    kind = "conflict"
    default_code = "conflict"


class Refused(AppraisalError):
    """A signed message from another node that must be rejected; ``code`` says why."""

    kind = "refused"
    default_code = "envelope.refused"


class TrustFailure(Refused):
    """A signature, certificate, key or revocation check failed; ``code`` names which."""

    kind = "trust"
    default_code = "trust.failed"


class StoreFailure(AppraisalError):
    """The store refused or could not carry out an operation."""

    kind = "store"
    default_code = "store.failed"


class TransportFailure(AppraisalError):
    """NATS or gRPC could not deliver; the operation may be retried."""

    kind = "transport"
    default_code = "transport.failed"


class ConfigError(BadInput):
    """A node configuration that cannot start a node."""

    default_code = "config.invalid"


__all__ = [
    "AppraisalError",
    "BadInput",
    "ConfigError",
    "Conflict",
    "NotFound",
    "Refused",
    "StoreFailure",
    "TransportFailure",
    "TrustFailure",
]
