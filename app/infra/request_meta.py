from dataclasses import dataclass


@dataclass(frozen=True)
class RequestMeta:
    """Where a call came from, for audit rows and throttling; no HTTP types."""

    ip: str
    request_id: str | None = None
    user_agent: str | None = None
