"""Reading a capture in several processes: the reading half of `analyze`
(`pipeline.judged_connections`) done by worker processes, each owning a part of
the TCP flows, and merged back into what one process gives.

This module owns the workers: starting them (fork), what they send (batches of
judged connections, how far their connection ids are settled, worker 0's bytes
read), the merge of their connections by id and of their `StreamResult`s, and
stopping them (a worker that dies is a `WorkerFailed`, never a hang; Ctrl-C or
any exit of the reader stops them all).

Each worker runs the ordinary Pipeline over all the inputs with an `Ownership`:
it reads every frame, gives every connection the id one process gives
(tcp/reassembly.py keeps the identity of the flows it does not own; the fast
lane takes their frames but the few that can change it before they are
decoded: lane.py, "Flows read elsewhere"), and
reassembles, parses and judges only its own flows; worker 0 also owns what is
not one TCP flow's (UDP, port 88, the frames the decoder cannot read, what the
readers say about the files). Each anomaly carries where it was met
(pipeline.OrderKey), so the merged list is in one process's order.

Invariant: the merged sequence of (stream, timeline) and the merged result are
those of one process. Exceptions, documented where they arise: the order in
which tombstones are forgotten past `TcpReassembler.max_tombstones` closed
connections, TLS not-read groups past `NotReadTally.MAX_GROUPS`, and the
order of Kerberos anomalies when Kerberos over TCP on ports other than 88 is met
by several workers. Memory: main holds the connections not yet safe to hand on
(bounded by the pipes: it reads only from the workers that hold the merge up).
"""

from __future__ import annotations

import heapq
import multiprocessing
import os
import pickle
import signal
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

from authtrace.fastinit import dumps
from authtrace.kerberos.kdc import KdcResult, KdcSummary, exchange_order
from authtrace.pipeline import (
    AT_FINISH,
    AT_FRAME,
    MAX_HTTP_ANOMALIES,
    Ownership,
    Phase,
    Pipeline,
    ProgressReport,
    Source,
    StreamResult,
)
from authtrace.readers.base import CaptureError
from authtrace.spool import Spool
from authtrace.tls.model import NotReadTally

if TYPE_CHECKING:
    from authtrace.handshake.timeline import ConnectionTimeline

# Below this many bytes of input, one process is faster: every worker reads
# every frame, and starting them costs more than the split saves.
MIN_SPLIT_BYTES = 8 << 20
# Automatic --jobs: one worker per usable core but one, at most this many (each
# worker reads the whole capture, so more workers gain less and less). The core
# left is the main process's: it loads every judged connection (fastinit.dumps:
# 0.27 s for the 4k Kerberos capture's, 0.50 s through pickle's own way) and
# links and judges them, so on 2 cores two workers compete with it and the run
# is slower than one process (README, Performance).
MAX_AUTO_JOBS = 4
# Judged connections a worker sends at once (one pickle per batch).
BATCH = 64


class WorkerFailed(Exception):
    """A worker process stopped without finishing (one line, for the CLI)."""


def available() -> bool:
    """Whether workers can be started here (the fork start method)."""
    return "fork" in multiprocessing.get_all_start_methods()


def splittable(sources: Sequence[Source]) -> bool:
    """Inputs workers can read: regular files on disk (each worker opens them
    itself), where fork is available."""
    if not sources or not available():
        return False
    for source in sources:
        if not isinstance(source, str | os.PathLike) or source == "-":
            return False
        try:
            if not os.path.isfile(source):
                return False
        except OSError:
            return False
    return True


def jobs_for(sources: Sequence[Source], requested: int | None) -> int:
    """How many processes to read with: `requested` when given (1: no workers),
    else automatic: the usable cores but one (at most MAX_AUTO_JOBS; 1 when that
    leaves fewer than 2) for regular files of MIN_SPLIT_BYTES or more, else 1."""
    if requested is not None:
        return max(1, requested)
    if not splittable(sources):
        return 1
    try:
        size = sum(
            os.path.getsize(source) for source in sources if isinstance(source, str | os.PathLike)
        )
    except OSError:
        return 1
    if size < MIN_SPLIT_BYTES:
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    jobs = min(cores - 1, MAX_AUTO_JOBS)
    return jobs if jobs >= 2 else 1


@dataclass(frozen=True, slots=True)
class _Batch:
    """What a worker sends as it goes: judged connections (id, stream,
    timeline) in id order; `settled`: every later one has at least this id;
    `read`: bytes read (worker 0's progress), None when it did not say."""

    items: list[tuple[int, int, ConnectionTimeline]]
    settled: int
    read: tuple[int, int | None] | None


@dataclass(frozen=True, slots=True)
class _Done:
    result: StreamResult


@dataclass(frozen=True, slots=True)
class _Failed:
    message: str
    capture_error: bool


def judged_in_workers(
    pipeline: Pipeline, sources: list[Source]
) -> Iterator[tuple[int, ConnectionTimeline]]:
    """`pipeline.judged_connections` read by `pipeline.jobs` workers: the same
    pairs in the same order, and `pipeline.result` filled the same."""
    jobs = pipeline.jobs
    context = multiprocessing.get_context("fork")
    receivers: list[Connection] = []
    workers: list[Any] = []
    # Each reader's KDC messages go to a spool made here, before the fork, so
    # that what it sends holds references into it, not the messages (spool.py:
    # on Kerberos captures they were most of the parent's memory with --jobs).
    # The exchanges hold the spools once merged; until then this list does.
    # Sharing ends with the readers (below, `end_sharing`).
    spools = [Spool(shared=True) for _ in range(jobs)]
    try:
        for index in range(jobs):
            receiver, sender = context.Pipe(duplex=False)
            worker = context.Process(
                target=_work,
                args=(pipeline, Ownership(index, jobs), sources, sender, spools[index]),
                name=f"authtrace-reader-{index}",
                daemon=True,
            )
            with _interrupts_held():
                worker.start()
            sender.close()  # the worker's end: EOF here once the worker is gone
            receivers.append(receiver)
            workers.append(worker)
        yield from _merge(pipeline, receivers, workers)
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
        for worker in workers:
            worker.join(timeout=5)
        for receiver in receivers:
            receiver.close()
        # Every message is read: the exchanges' handles pickle as their
        # values again (the records of the run stay self-contained).
        for spool in spools:
            spool.end_sharing()


@contextmanager
def _interrupts_held() -> Iterator[None]:
    """Ctrl-C held back while a reader is forked, delivered the moment the
    fork is done. The parent runs the at-fork hooks of the modules loaded
    (logging's lock release, ...) right after the fork, and Python prints and
    drops an exception raised inside one: a Ctrl-C that landed there was lost
    and the run went on to the end. (Readers exist only where fork does,
    and pthread_sigmask with it: POSIX.)"""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _merge(
    pipeline: Pipeline, receivers: list[Connection], workers: list[Any]
) -> Iterator[tuple[int, ConnectionTimeline]]:
    """Heap merge by connection id: a connection is handed on once every
    worker still running has settled past its id (as one process hands on a
    connection once every lower id has closed)."""
    jobs = len(receivers)
    settled = [0] * jobs
    results: list[StreamResult | None] = [None] * jobs
    heap: list[tuple[int, int, int, ConnectionTimeline]] = []
    progress = pipeline.progress
    while True:
        while heap and all(results[w] is not None or settled[w] > heap[0][0] for w in range(jobs)):
            _id, _worker, stream, timeline = heapq.heappop(heap)
            yield stream, timeline
        if all(result is not None for result in results):
            break
        # Read only from the workers that hold the merge up: the others wait
        # on their full pipes, which bounds what is held here.
        holding = [
            w for w in range(jobs) if results[w] is None and (not heap or settled[w] <= heap[0][0])
        ]
        for ready in wait([receivers[w] for w in holding]):
            w = next(n for n, receiver in enumerate(receivers) if receiver is ready)
            message = _receive(receivers[w], w, workers[w])
            if isinstance(message, _Batch):
                for cid, stream, timeline in message.items:
                    heapq.heappush(heap, (cid, w, stream, timeline))
                settled[w] = message.settled
                if message.read is not None and progress is not None:
                    progress(ProgressReport(Phase.READING, *message.read))
            elif isinstance(message, _Done):
                results[w] = message.result
            else:
                if message.capture_error:
                    raise CaptureError(message.message)
                raise WorkerFailed(f"reader process {w} failed: {message.message}")
    merge_results(pipeline.result, [result for result in results if result is not None])


def _receive(receiver: Connection, index: int, worker: Any) -> _Batch | _Done | _Failed:
    try:
        message = pickle.loads(receiver.recv_bytes())
    except (EOFError, OSError):
        worker.join(timeout=5)
        code = worker.exitcode
        how = f"exit code {code}" if code is None or code >= 0 else f"signal {-code}"
        raise WorkerFailed(
            f"reader process {index} stopped unexpectedly ({how}); "
            "run again with --jobs 1 to read in one process"
        ) from None
    if not isinstance(message, _Batch | _Done | _Failed):
        raise WorkerFailed(f"reader process {index} sent something unexpected")
    return message


def _work(
    parent: Pipeline,
    ownership: Ownership,
    sources: list[Source],
    sender: Connection,
    spool: Spool | None = None,
) -> None:
    """A worker's whole life (in the forked process): read, judge, send."""
    # Ctrl-C reaches the whole process group: the parent stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Forked while the parent held Ctrl-C back (_interrupts_held): the mask
    # is inherited, and what this process may start should not inherit it.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:
        _read_part(parent, ownership, sources, sender, spool)
    except CaptureError as error:
        _send(sender, _Failed(str(error), capture_error=True))
    except BaseException as error:  # noqa: BLE001 - reported to the parent as one line
        last = traceback.format_exception_only(type(error), error)[-1].strip()
        _send(sender, _Failed(last, capture_error=False))
    finally:
        sender.close()


def _read_part(
    parent: Pipeline,
    ownership: Ownership,
    sources: list[Source],
    sender: Connection,
    spool: Spool | None = None,
) -> None:
    from authtrace.handshake.timeline import build_timeline

    batch: list[tuple[int, int, ConnectionTimeline]] = []
    read: list[tuple[int, int | None] | None] = [None]

    def flush() -> None:
        _send(sender, _Batch(list(batch), pipeline.settled_below, read[0]))
        batch.clear()
        read[0] = None

    def tell(report: ProgressReport) -> None:
        # Called every PROGRESS_EVERY frames: also how the parent learns that
        # this worker's ids moved on while it had no connection to send.
        if ownership.reads_capture:
            read[0] = (report.done, report.total)
        flush()

    pipeline = parent.sibling(ownership, tell, spool)
    streams = pipeline.result.stream_first_ids
    for connection in pipeline.connections(sources):
        batch.append((connection.id, len(streams) - 1, build_timeline(connection)))
        if len(batch) >= BATCH:
            flush()
    flush()
    _send(sender, _Done(pipeline.result))


def _send(sender: Connection, message: _Batch | _Done | _Failed) -> None:
    # fastinit.dumps: what pickle writes, but the judged connections' frozen
    # dataclasses load through their constructors (main loads every one).
    sender.send_bytes(dumps(message))


def merge_results(into: StreamResult, parts: list[StreamResult]) -> None:
    """The workers' results as one process's: what is about the files is
    worker 0's (every worker read every frame), counts are summed, and
    anomalies come in the order they were met (pipeline.OrderKey)."""
    first = parts[0]
    into.captures = list(first.captures)
    into.stream_first_ids = list(first.stream_first_ids)
    into.keylog = first.keylog
    into.other_connections = sum(part.other_connections for part in parts)
    into.http_anomalies = sum(part.http_anomalies for part in parts)
    into.not_read = NotReadTally.merged([part.not_read for part in parts])
    met = heapq.merge(
        *(zip(part.orders or (), part.anomalies, strict=True) for part in parts),
        key=lambda entry: entry[0],
    )
    listed_http = 0
    anomalies = []
    for order, anomaly in met:
        if order[1] in (AT_FRAME, AT_FINISH):  # the HTTP layer's, capped
            listed_http += 1
            if listed_http > MAX_HTTP_ANOMALIES:
                continue
        anomalies.append(anomaly)
    into.anomalies = anomalies
    into.finish_http_anomalies()
    streams = [
        _merge_kdc([part.kdc_streams[s] for part in parts if s < len(part.kdc_streams)])
        for s in range(max(len(part.kdc_streams) for part in parts))
    ]
    into.kdc_streams = streams


def _merge_kdc(parts: list[KdcSummary]) -> KdcSummary:
    """One stream's KDC summary from the workers' (KdcSummary's orders)."""
    exchanges = tuple(heapq.merge(*(part.exchanges for part in parts), key=exchange_order))
    return KdcSummary(
        exchanges=exchanges,
        unanswered=tuple(e for e in exchanges if e.result is KdcResult.UNANSWERED),
        unanswered_connects=tuple(chain.from_iterable(p.unanswered_connects for p in parts)),
        anomalies=tuple(chain.from_iterable(part.anomalies for part in parts)),
        unreadable=tuple(chain.from_iterable(part.unreadable for part in parts)),
    )
