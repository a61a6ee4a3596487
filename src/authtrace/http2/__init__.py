"""http2: HTTP/2 (RFC 9113) read from a connection's byte streams, sans-IO.

- model.py: what this layer adds to an `Exchange` (stream id, reset, what was
  not decodable) and the error-code names; imports nothing of authtrace.
- frames.py: the frame layer (RFC 9113 sections 4 and 6): bytes in, frames out.
- headers.py: HPACK (RFC 7541) through the `hpack` library, bounded.
- connection.py: one connection: the preface, streams, header blocks, and the
  streams handed on as `Exchange` values on the HTTP/1 model.
"""
