"""Reading a text file as blocks of raw lines, in bounded memory, whatever bytes it holds.

The ratings parser works on whole blocks of lines at once (Arrow/Polars, never a Python loop per
line). This module only cuts the file into such blocks: it never decodes or interprets the bytes,
and a line longer than a block is skipped (and reported) instead of being held in memory.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

CHUNK_BYTES = 64 * 1024 * 1024
UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class OverlongLine:
    """A line longer than a block: only its start and its length are kept."""

    head: bytes
    length: int


def iter_line_blocks(
    buf: mmap.mmap | bytes,
    start: int,
    chunk_bytes: int = CHUNK_BYTES,
    max_line: int = 0,
    head_bytes: int = 200,
) -> Iterator[bytes | OverlongLine]:
    """Blocks of complete lines of `buf` from `start` on, each block ending in b"\\n".

    Each block is one copy of at most `chunk_bytes` (plus the last line break, added when the file
    lacks it). A line longer than both `chunk_bytes` and `max_line` is skipped and reported as an
    `OverlongLine`, so memory stays bounded whatever the file holds.
    """
    pos, size = start, len(buf)
    while pos < size:
        _release(buf, pos)
        end = pos + chunk_bytes
        if end >= size:
            block = buf[pos:size]
            yield block if block.endswith(b"\n") else block + b"\n"
            return
        last = buf.rfind(b"\n", pos, end)
        if last >= 0:
            yield buf[pos : last + 1]
            pos = last + 1
            continue
        nl = _find_newline(buf, end, chunk_bytes)
        stop = size if nl < 0 else nl
        if stop - pos <= max_line:  # a short line in a tiny chunk: still a normal line
            yield buf[pos:stop] + b"\n"
        else:
            yield OverlongLine(buf[pos : pos + head_bytes], stop - pos)
        pos = stop + 1


def _release(buf: mmap.mmap | bytes, upto: int) -> None:
    """Drop the already-consumed pages of a file mapping from this process (they stay in the page
    cache): otherwise every page read stays resident and a 2 GB file costs 2 GB of RSS."""
    if isinstance(buf, mmap.mmap) and upto >= mmap.PAGESIZE:
        buf.madvise(mmap.MADV_DONTNEED, 0, upto - upto % mmap.PAGESIZE)


def _find_newline(buf: mmap.mmap | bytes, start: int, window: int) -> int:
    """`buf.find(b"\\n", start)`, window by window, releasing each scanned window (bounded RSS)."""
    pos, size = start, len(buf)
    while pos < size:
        nl = buf.find(b"\n", pos, min(pos + window, size))
        if nl >= 0:
            return nl
        pos += window
        _release(buf, pos)
    return -1


def line_array(block: bytes) -> tuple[pa.LargeBinaryArray, np.ndarray]:
    """The block's lines as an Arrow binary array (zero-copy; each element keeps its b"\\n"),
    and the offsets of the line breaks."""
    raw = np.frombuffer(block, dtype=np.uint8)
    breaks = np.flatnonzero(raw == 10)
    offsets = np.empty(len(breaks) + 1, dtype=np.int64)
    offsets[0] = 0
    offsets[1:] = breaks + 1
    arr = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(breaks), [None, pa.py_buffer(offsets), pa.py_buffer(block)]
    )
    return arr, breaks


def lines_with_bytes(breaks: np.ndarray, byte_mask: np.ndarray) -> np.ndarray:
    """Indices (sorted, unique) of the lines holding at least one byte where `byte_mask` is True."""
    positions = np.flatnonzero(byte_mask)
    if len(positions) == 0:
        return positions
    return np.unique(np.searchsorted(breaks, positions, side="left"))


def line_breaks(block: bytes) -> np.ndarray:
    return np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)


def take_lines(block: bytes, idx: np.ndarray) -> bytes:
    """The lines at `idx` (each with its b"\\n"), concatenated in order."""
    arr, _ = line_array(block)
    taken = arr.take(pa.array(idx.astype(np.int64)))
    offsets = np.frombuffer(taken.buffers()[1], dtype=np.int64)[taken.offset : taken.offset + len(taken) + 1]
    return taken.buffers()[2].to_pybytes()[offsets[0] : offsets[-1]]
