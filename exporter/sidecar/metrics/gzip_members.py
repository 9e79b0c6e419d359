"""The gzip members ``/metrics`` bodies are made of, compressed and inflated with ISA-L.

Every body is gzipped pieces kept between renders (``store.py``: a member per block of each
column's lines; ``deltas.py``: the next-run deltas each second; ``render.py``: the clock part),
and a poll that changes jobs across a store inflates and compresses again every block they
touch. ISA-L (the ``isal`` package) does both about five times faster than zlib, at zlib's
ratio: at 10k jobs, the ``apscheduler_job_info`` column (1.6 MB in 10 blocks) took 3.0 ms to
compress at zlib's level 3 and takes 0.6 ms at ISA-L's level 1, for 117 KB against 119 KB; the
deltas, 0.8 MB every second, 3.6 ms against 0.3 ms. It releases the interpreter lock while it
works, as zlib does. The members are plain RFC 1952 gzip, which any client inflates; each is
dated 0, so equal bytes compress to equal bytes.
"""

from __future__ import annotations

from isal import igzip, isal_zlib

LEVEL = 1
"""ISA-L's levels are 0 to 3; 1 and 2 give the same sizes on metric text, and 3 is six times
slower for 4% less."""

_GZIP = 31  # wbits: one gzip member, 32 KB window


def compress(data: bytes) -> bytes:
    """``data`` as one gzip member."""
    return isal_zlib.compress(data, LEVEL, wbits=_GZIP)


def inflate(member: bytes) -> bytes:
    """The bytes of one gzip member."""
    return isal_zlib.decompress(member, wbits=_GZIP)


def inflate_all(members: bytes) -> bytes:
    """The bytes of gzip members one after the other (a whole body)."""
    return igzip.decompress(members)
