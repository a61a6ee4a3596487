"""Run the pipeline's layers on a capture up to one stage, to see where the time goes.

This module owns the per-layer probe of the benchmark: `--stage read` only reads frames,
`decode` also decodes link/IP/TCP, `reassemble` also rebuilds TCP streams, `http` also parses
HTTP/1.x. `python3 -m benchmarks.run --stages` times each stage as a child process (so its
figures are the stage's own time and peak RSS); the difference between two stages is the cost
of the layer added. It goes through the layers' public entry points only, and reports a layer
that is not written yet instead of failing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

STAGES = ("read", "decode", "reassemble", "http")


def run(path: Path, stage: str) -> str:
    """Drive the layers up to `stage` over every frame of `path`; a one-line summary."""
    from authtrace.readers.capture import open_capture

    depth = STAGES.index(stage)
    frames = segments = events = messages = 0
    decoder = reassembler = None
    if depth >= 1:
        from authtrace.net.decoder import PacketDecoder
        from authtrace.net.packets import TcpSegment

        decoder = PacketDecoder()
    if depth >= 2:
        from authtrace.tcp.reassembly import TcpReassembler

        reassembler = TcpReassembler()
    http = _HttpStage() if depth >= 3 else None
    with open_capture(path) as capture:
        for frame in capture:
            frames += 1
            if decoder is None:
                continue
            segment = decoder.decode(frame)
            if reassembler is None or not isinstance(segment, TcpSegment):
                continue
            segments += 1
            produced = reassembler.feed(segment)
            events += len(produced)
            if http is not None:
                messages += http.handle(produced)
    if reassembler is not None:
        tail = reassembler.finish()
        events += len(tail)
        if http is not None:
            messages += http.handle(tail)
    return (
        f"{stage}: {frames} frames, {segments} TCP segments, {events} events, {messages} messages"
    )


class _HttpStage:
    """One HTTP parser per connection direction, fed from stream events."""

    def __init__(self) -> None:
        from authtrace.http import parser
        from authtrace.tcp import events

        self.parser = parser
        self.events = events
        self.live: dict[int, tuple[parser.HttpParser, parser.HttpParser]] = {}

    def handle(self, produced: list[object]) -> int:
        events, parser = self.events, self.parser
        done = 0
        for event in produced:
            if isinstance(event, events.StreamData):
                pair = self.live.get(event.connection)
                if pair is None:
                    pair = self.live[event.connection] = (
                        parser.HttpParser(parser.Role.REQUEST, event.connection),
                        parser.HttpParser(parser.Role.RESPONSE, event.connection),
                    )
                to_server = event.direction is events.Direction.TO_SERVER
                side = pair[0] if to_server else pair[1]
                for out in side.feed(event.data, event.first_frame, event.frame, event.timestamp):
                    if isinstance(out, parser.RequestHead):
                        pair[1].push_method(out.method)
                    else:
                        done += 1
            elif isinstance(event, events.StreamGap) and event.connection in self.live:
                pair = self.live[event.connection]
                side = pair[0] if event.direction is events.Direction.TO_SERVER else pair[1]
                done += len(side.gap(event.length, event.frame, event.timestamp))
            elif isinstance(event, events.ConnectionClosed):
                pair = self.live.pop(event.connection, None)
                if pair is not None:
                    for side in pair:
                        done += len(side.close(event.frame, event.timestamp))
        return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=STAGES, required=True)
    parser.add_argument("capture", type=Path)
    args = parser.parse_args(argv)
    try:
        print(run(args.capture, args.stage))
    except ImportError as error:
        print(f"{args.stage}: a layer is not written yet ({error})", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
