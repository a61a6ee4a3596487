"""Entry point: ``python3 -m lab [--only SCENARIO ...] [--keep] [--no-install]``.

Runs every scenario (or the chosen ones), keeps a capture in captures/lab/ only when tshark
confirms it, stops every server it started and removes its /etc/hosts block, then prints a
summary and how long the run took. Exit status 0 when every chosen scenario was kept.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from lab import servers
from lab.scenarios import (
    APACHE,
    BY_NAME,
    HAPROXY,
    KDC,
    MODPROXY,
    NGINX,
    REPO_ROOT,
    SCENARIOS,
    SQUID,
    Scenario,
)
from lab.servers import Lab
from lab.system import LabError, ensure_installed, lab_hosts, log, tail_of, tcpdump
from lab.verify import read_packets

CAPTURES = REPO_ROOT / "captures" / "lab"


def _start(lab: Lab, needed: set[str]) -> None:
    # Apache must come after the KDC (its keytab) and before the proxies (their upstream).
    if KDC in needed or APACHE in needed:
        servers.start_kdc(lab)
    if APACHE in needed:
        servers.start_apache(lab)
    if NGINX in needed:
        servers.start_nginx(lab)
    if SQUID in needed:
        servers.start_squid(lab)
    if HAPROXY in needed:
        servers.start_haproxy(lab)
    if MODPROXY in needed:
        servers.start_apache_proxy(lab)


def _run_one(lab: Lab, scenario: Scenario, out_dir: Path) -> tuple[bool, str]:
    work_pcap = lab.root / f"{scenario.name}.pcap"
    problems: list[str] = []
    for attempt in range(1, scenario.attempts + 1):
        try:
            with tcpdump(work_pcap, lab.root / "tcpdump.out"):
                note = scenario.produce(lab)
            packets = read_packets(work_pcap)
            problems = scenario.check(packets)
        except (LabError, OSError, ValueError) as exc:
            note, problems = "", [str(exc)]
        if not problems:
            target = out_dir / f"{scenario.name}.pcap"
            shutil.move(work_pcap, target)
            size = target.stat().st_size
            return True, f"kept ({size} bytes, {len(packets)} frames; {note})"
        log(f"{scenario.name} attempt {attempt}: {'; '.join(problems)} ({note})")
    return False, "NOT KEPT: " + "; ".join(problems)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m lab", description=__doc__)
    parser.add_argument("--only", action="append", choices=sorted(BY_NAME), default=[])
    parser.add_argument("--keep", action="store_true", help="keep the lab directory (logs)")
    parser.add_argument("--no-install", action="store_true", help="skip apt-get/pip checks")
    parser.add_argument("--out", type=Path, default=CAPTURES, help="where captures go")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("the lab needs root (tcpdump, /etc/hosts, binding port 80/88)")
    started = time.monotonic()
    # On loopback a packet is queued on the CPU of the process that sends it, so with servers
    # and clients on two cores tcpdump writes segments out of order (seen: 15 in one pooling
    # capture, which tshark then could not reassemble). Pinning the lab and everything it
    # starts to one CPU keeps the capture in wire order.
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    chosen = [BY_NAME[n] for n in args.only] if args.only else list(SCENARIOS)
    if not args.no_install:
        ensure_installed()
    args.out.mkdir(parents=True, exist_ok=True)
    lab = servers.prepare(Path(tempfile.mkdtemp(prefix="authtrace-lab-")))
    results: dict[str, tuple[bool, str]] = {}
    try:
        with lab_hosts():
            _start(lab, {s for scenario in chosen for s in scenario.servers})
            for scenario in chosen:
                log(f"scenario {scenario.name}")
                results[scenario.name] = _run_one(lab, scenario, args.out)
                log(f"{scenario.name}: {results[scenario.name][1]}")
    except LabError as exc:
        log(f"lab failed: {exc}")
        for service in lab.services:
            log(f"{service.name} log: {tail_of(service.log_path)}")
    finally:
        lab.stop_all()
        if args.keep:
            log(f"lab directory kept: {lab.root}")
        else:
            shutil.rmtree(lab.root, ignore_errors=True)
    elapsed = time.monotonic() - started
    print()
    for scenario in chosen:
        ok, text = results.get(scenario.name, (False, "not run"))
        print(f"{'ok  ' if ok else 'FAIL'} {scenario.name}: {text}")
    print(f"lab took {elapsed:.1f} s")
    return 0 if all(results.get(s.name, (False, ""))[0] for s in chosen) else 1


if __name__ == "__main__":
    raise SystemExit(main())
