"""A lab that makes authentication captures with real software on the loopback interface.

The lab owns everything under ``lab/`` and the files it writes to ``captures/lab/``. It installs
what it needs (apt-get, pip), starts a Kerberos KDC, Apache (mod_auth_gssapi, mod_auth_basic,
mod_auth_digest), nginx, squid, HAProxy and a second Apache with mod_proxy by hand from
configurations in a temporary directory, drives real clients (curl, requests-ntlm,
requests-gssapi, pyspnego, headless Chromium; faketime for a client with a wrong clock) and
records each scenario with tcpdump on ``lo``.

Invariants: every address it uses is in 127.0.0.0/8 (see ``lab.topology``); every process it
starts is stopped by its pid; every wait has a timeout; a capture is kept only after tshark has
confirmed that it holds what the scenario is meant to show. Run it with ``python3 -m lab``.
"""
