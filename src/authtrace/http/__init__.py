"""http layer: per-direction byte streams -> HTTP/1.x messages -> exchanges."""

from authtrace.http.exchanges import HttpConnectionTracker, HttpDemux
from authtrace.http.parser import HttpParser, Role

__all__ = ["HttpConnectionTracker", "HttpDemux", "HttpParser", "Role"]
