"""handshake layer."""
