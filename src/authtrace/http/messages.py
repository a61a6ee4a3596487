"""What the HTTP layer yields: requests, responses and their pairing into exchanges.

Header values are kept as written (latin-1 decoded, original order and case of
names) so the wire truth stays next to any interpretation.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Header:
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """frame: frame that carried the first byte of the request line;
    head_frame: frame that completed the header block."""

    method: str
    uri: str
    version: str
    headers: tuple[Header, ...]
    frame: int
    head_frame: int
    timestamp: float
    header_bytes: int
    body_size: int = 0
    complete: bool = True

    def header(self, name: str) -> str | None:
        return _first(self.headers, name)

    def header_all(self, name: str) -> list[str]:
        return _all(self.headers, name)


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """body: kept only when small (error pages) and up to a cap, else None."""

    version: str
    status: int
    reason: str
    headers: tuple[Header, ...]
    frame: int
    head_frame: int
    timestamp: float
    header_bytes: int
    body_size: int = 0
    body: bytes | None = None
    complete: bool = True

    def header(self, name: str) -> str | None:
        return _first(self.headers, name)

    def header_all(self, name: str) -> list[str]:
        return _all(self.headers, name)


@dataclass(frozen=True, slots=True)
class Exchange:
    """A request and the response that answered it on one connection.

    connection: TCP connection id; index: 0-based position on that connection.
    Either side may be None (response without a request seen, or no answer).
    """

    connection: int
    index: int
    request: HttpRequest | None
    response: HttpResponse | None
    interim: tuple[HttpResponse, ...] = field(default=())


def _first(headers: tuple[Header, ...], name: str) -> str | None:
    lowered = name.lower()
    for header in headers:
        if header.name.lower() == lowered:
            return header.value
    return None


def _all(headers: tuple[Header, ...], name: str) -> list[str]:
    lowered = name.lower()
    return [header.value for header in headers if header.name.lower() == lowered]
