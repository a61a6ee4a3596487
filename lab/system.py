"""Machine-facing helpers of the lab: installing packages, /etc/hosts, processes and tcpdump.

Invariants: a process is only ever stopped through the pid (and the session it leads) that this
module got when starting it; every wait is bounded by a timeout; the /etc/hosts block the lab
adds is delimited by markers and removed on exit, also when a previous run left it behind.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from lab.topology import ALL_HOSTS, capture_filter

APT_PACKAGES: tuple[str, ...] = (
    "krb5-kdc",
    "krb5-admin-server",
    "krb5-user",
    "apache2",
    "apache2-utils",
    "libapache2-mod-auth-gssapi",
    "gss-ntlmssp",
    "nginx",
    "squid",
    "haproxy",
    "chromium",  # headless browser: its NTLM NEGOTIATE, with an auth-server allow-list
    "faketime",  # a client whose clock is wrong, for Kerberos clock skew
    "curl",
    "tcpdump",
    "libkrb5-dev",  # python-gssapi builds against it when no wheel fits
)
# module name -> pip distribution
PIP_PACKAGES: dict[str, str] = {
    "requests": "requests",
    "requests_ntlm": "requests-ntlm",
    "gssapi": "gssapi",
    "requests_gssapi": "requests-gssapi",
    "spnego": "pyspnego",
    "krb5": "krb5",  # pyspnego needs it (with gssapi) to try Kerberos in Negotiate
}
REQUIRED_COMMANDS: tuple[str, ...] = (
    "krb5kdc",
    "kdb5_util",
    "kadmin.local",
    "kinit",
    "apache2",
    "htpasswd",
    "htdigest",
    "nginx",
    "squid",
    "haproxy",
    "chromium",
    "faketime",
    "curl",
    "tcpdump",
    "tshark",
)
HOSTS_FILE = Path("/etc/hosts")
HOSTS_BEGIN = "# authtrace-lab begin"
HOSTS_END = "# authtrace-lab end"


class LabError(RuntimeError):
    """A step of the lab failed; the message says which and why."""


def log(message: str) -> None:
    print(f"[lab] {message}", flush=True)


def _missing_commands() -> list[str]:
    paths = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return [c for c in REQUIRED_COMMANDS if shutil.which(c, path=paths) is None]


def ensure_installed(timeout: float = 900.0) -> None:
    """Install the Debian and PyPI packages the lab needs, only when something is missing."""
    missing = _missing_commands()
    if missing or not Path("/etc/gss/mech.d/mech.ntlmssp.conf").exists():
        log(f"apt-get install (missing: {', '.join(missing) or 'gss-ntlmssp'})")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["apt-get", "update", "-q"], timeout=timeout, env=env)
        run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *APT_PACKAGES],
            timeout=timeout,
            env=env,
        )
    wanted = [dist for mod, dist in PIP_PACKAGES.items() if importlib.util.find_spec(mod) is None]
    if wanted:
        log(f"pip install {' '.join(wanted)}")
        run([sys.executable, "-m", "pip", "install", "-q", *wanted], timeout=timeout)
    still = _missing_commands()
    if still:
        raise LabError(f"commands still missing after install: {', '.join(still)}")


def run(
    argv: Sequence[str],
    *,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion within ``timeout`` seconds and return its output."""
    try:
        done = subprocess.run(
            list(argv),
            env=dict(env) if env is not None else None,
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{argv[0]} did not finish within {timeout:.0f}s") from exc
    if check and done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise LabError(f"{' '.join(argv[:3])} exited {done.returncode}: {' | '.join(tail)}")
    return done


@contextmanager
def lab_hosts() -> Iterator[None]:
    """Add the lab's names to /etc/hosts for the duration of the block, then remove them."""
    remove_lab_hosts()
    lines = [HOSTS_BEGIN, *(f"{h.address} {h.name}" for h in ALL_HOSTS), HOSTS_END]
    original = HOSTS_FILE.read_text()
    if original and not original.endswith("\n"):
        original += "\n"
    HOSTS_FILE.write_text(original + "\n".join(lines) + "\n")
    try:
        yield
    finally:
        remove_lab_hosts()


def remove_lab_hosts() -> None:
    """Drop the marked lab block from /etc/hosts (left by this run or an interrupted one)."""
    text = HOSTS_FILE.read_text()
    if HOSTS_BEGIN not in text:
        return
    kept: list[str] = []
    inside = False
    for line in text.splitlines():
        if line.strip() == HOSTS_BEGIN:
            inside = True
        elif line.strip() == HOSTS_END:
            inside = False
        elif not inside:
            kept.append(line)
    HOSTS_FILE.write_text("\n".join(kept) + "\n")


@dataclass
class Service:
    """A server process the lab started; ``stop`` signals exactly this pid (and its session)."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    stopped: bool = field(default=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 10.0) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # The process leads its own session (start_new_session), so its group id is its
            # pid: this reaches the workers it forked and nothing else.
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=timeout)

    def alive(self) -> bool:
        return self.process.poll() is None


def start_service(
    name: str, argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None
) -> Service:
    log(f"start {name}: {' '.join(argv[:2])}")
    out = log_path.open("ab")
    try:
        process = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
    finally:
        out.close()
    return Service(name, process, log_path)


def wait_for_port(service: Service, address: str, port: int, timeout: float = 20.0) -> None:
    """Wait until ``address:port`` accepts TCP connections, or fail with the service's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not service.alive():
            raise LabError(f"{service.name} exited early: {tail_of(service.log_path)}")
        try:
            with socket.create_connection((address, port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.1)
    raise LabError(f"{service.name} not listening on {address}:{port} after {timeout:.0f}s")


def tail_of(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextmanager
def tcpdump(pcap: Path, log_path: Path, timeout: float = 10.0) -> Iterator[None]:
    """Capture lab traffic on ``lo`` into ``pcap`` while the block runs.

    ``--immediate-mode`` is needed on this machine, or the capture comes out empty; ``-Z root``
    keeps tcpdump from dropping to a user that cannot write into the lab's directory.
    """
    pcap.parent.mkdir(parents=True, exist_ok=True)
    if pcap.exists():
        pcap.unlink()
    argv = [
        "tcpdump",
        "-i",
        "lo",
        "-n",
        "-s",
        "0",
        "-U",
        "--immediate-mode",
        "-Z",
        "root",
        "-w",
        str(pcap),
        capture_filter(),
    ]
    log_path.write_text("")
    service = start_service("tcpdump", argv, log_path)
    try:
        deadline = time.monotonic() + timeout
        while "listening on" not in log_path.read_text(errors="replace"):
            if not service.alive() or time.monotonic() > deadline:
                raise LabError(f"tcpdump did not start: {tail_of(log_path)}")
            time.sleep(0.05)
        yield
        time.sleep(0.5)  # let the last FIN/ACKs reach the capture
    finally:
        service.stop()
