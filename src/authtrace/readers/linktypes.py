"""Link-layer header type numbers shared by the readers and the net layer.

Owns: the LINKTYPE_* values (tcpdump.org "Link-layer header types") that a
`Frame.link_type` may carry, and the private values this project uses for
records that are not link-layer frames at all.

Invariant: a private value is never a registered LINKTYPE value, so the net
layer can recognise it, skip the record and count it.
"""

from __future__ import annotations

LINKTYPE_NULL = 0  # BSD loopback, family in host byte order
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_OPENBSD = 12  # DLT_RAW as some BSDs number it
LINKTYPE_RAW_BSDOS = 14  # DLT_RAW as BSD/OS numbered it
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108  # OpenBSD loopback, family in network byte order
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

# Private values (outside the 16-bit LINKTYPE space): records that carry no
# link-layer frame. The net layer skips them and counts them by value.
LINKTYPE_PRIVATE_BASE = 0x1_0000
# A Network Monitor record whose media type has no LINKTYPE equivalent
# (ETW events from pktmon, network-info, DNS-cache and filter records):
# LINKTYPE_NETMON_MEDIA + the NetMon media type.
LINKTYPE_NETMON_MEDIA = 0x2_0000
# A pcapng systemd Journal Export Block (one journal entry, no packet).
LINKTYPE_SYSTEMD_JOURNAL = 0x3_0000
# A pcapng Custom Block (types 0x00000BAD, 0x40000BAD): Wireshark numbers it
# as a frame, so it is one here too, with its body as data.
LINKTYPE_PCAPNG_CUSTOM = 0x4_0000

NAMES: dict[int, str] = {
    LINKTYPE_NULL: "BSD loopback",
    LINKTYPE_ETHERNET: "Ethernet",
    LINKTYPE_RAW_OPENBSD: "raw IP",
    LINKTYPE_RAW_BSDOS: "raw IP",
    LINKTYPE_RAW: "raw IP",
    LINKTYPE_LOOP: "OpenBSD loopback",
    LINKTYPE_LINUX_SLL: "Linux cooked (SLL)",
    LINKTYPE_IPV4: "raw IPv4",
    LINKTYPE_IPV6: "raw IPv6",
    LINKTYPE_LINUX_SLL2: "Linux cooked v2 (SLL2)",
    LINKTYPE_SYSTEMD_JOURNAL: "systemd journal entry",
    LINKTYPE_PCAPNG_CUSTOM: "pcapng custom block",
}

# Network Monitor media types that are event or metadata records (Wireshark's
# file-format notes for NetMon 2.x): they are frames in the numbering but
# carry no packet.
NETMON_MEDIA_NAMES: dict[int, str] = {
    0xFFE0: "NetMon event (ETW)",
    0xFFFB: "NetMon network info (extended)",
    0xFFFC: "NetMon payload header",
    0xFFFD: "NetMon network info",
    0xFFFE: "NetMon DNS cache",
    0xFFFF: "NetMon filter",
}


def describe(link_type: int) -> str:
    """A short name for a link type, for anomaly messages."""
    if link_type in NAMES:
        return NAMES[link_type]
    if LINKTYPE_NETMON_MEDIA <= link_type < LINKTYPE_NETMON_MEDIA + 0x1_0000:
        media = link_type - LINKTYPE_NETMON_MEDIA
        return NETMON_MEDIA_NAMES.get(media, f"NetMon media type 0x{media:04x}")
    return f"link type {link_type}"
