"""tcp layer: TCP segments in capture order -> per-connection, per-direction streams."""

from authtrace.tcp.reassembly import TcpReassembler

__all__ = ["TcpReassembler"]
