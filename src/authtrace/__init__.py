"""authtrace: explain HTTP authentication failures (401/407) from packet captures.

The pipeline, one package per layer (data flows one way):

    readers  -> frames from pcap / pcapng / Network Monitor files
    net      -> link, IP and TCP/UDP decoding of one frame
    tcp      -> per-connection, per-direction byte streams with gaps marked
    http     -> sans-IO HTTP/1.x parsing into request/response exchanges
    auth     -> authentication header grammar and token decoders
    kerberos -> Kerberos messages and KDC exchanges
    handshake-> per-connection authentication state and cross-connection links
    diagnose -> rules turning timelines into findings
    report   -> text / JSON renderers

`pipeline` is the one module that wires the layers together.
"""

__version__ = "0.1.0"
