"""TLS between tcp and http: decrypts a connection's two byte streams with key
material from NSS key logs and pcapng Decryption Secrets Blocks.

Modules, in the order data flows through them:
- keylog: parses key logs into a `KeyLog` (secrets by client random), counting
  comments and lines it could not read;
- suites: the cipher suites it knows (what each one's record protection is);
- handshake: decodes the handshake messages it needs (hellos, certificates,
  key updates) from bytes;
- schedule: turns a master secret (TLS 1.2, RFC 5246/7627) or traffic secrets
  (TLS 1.3, RFC 8446 section 7) into record keys;
- protection: opens one protected record (AEAD, CBC with HMAC);
- connection: the per-connection state machine, sans-IO: stream bytes in,
  decrypted application data and holes out, plus the handshake facts.

Invariant of the package: plaintext is only ever what a record's integrity
check accepted; anything that could not be opened is a hole, never guessed.
"""
