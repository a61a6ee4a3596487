"""readers layer: capture files in, numbered frames out.

Public API: `open_capture(source) -> Capture` (iterable of `Frame`, with
`.format` and `.anomalies`) and `CaptureError`. Formats: pcap (all byte
orders and resolutions), pcapng, Network Monitor 1.x/2.x (its ETW event frames
unwrapped), Windows ETL traces (netsh trace, pktmon), each optionally
gzip-compressed; detection is by content, never by file name.
"""

from authtrace.readers.base import CaptureError, Frame
from authtrace.readers.capture import Capture, open_capture

__all__ = ["Capture", "CaptureError", "Frame", "open_capture"]
