"""A trace file's JSON bytes, read in bounded time and memory whatever the file is.

A trace comes from anywhere: a colleague's upload, a CI artifact, a path typed by hand. So
before anything is parsed: the path must be a regular file (a FIFO would block the read
forever, a device such as /dev/zero would never end); a `.json` larger than the limit is
refused from its size alone; and a gzip is decompressed in steps that stop at the limit, so
a small file that expands to terabytes (a gzip bomb) costs the limit and no more. Every
refusal is a `TraceFormatError`, one sentence naming the fix.
"""
from __future__ import annotations

import stat
import zlib
from pathlib import Path

from analyzers.errors import InputError

__all__ = ["DEFAULT_MAX_BYTES", "TraceFormatError", "read_trace_bytes"]

# 2 GiB of JSON: about 10 million events, 50 times the 200k of a long prefill trace, and about
# 5 GiB at the peak of `analyze` (measured: 2.3x the JSON), which a 16 GiB laptop has to spare.
# A fixed size rather than a share of free memory, so that a file is accepted or refused alike
# on every machine and in every run, whatever else happens to be running.
DEFAULT_MAX_BYTES = 2 * 2**30
LIMIT_OPTION = "--max-trace-mb"  # the `analyze` flag that sets `max_bytes`; named in the refusal
FIX = "pass a complete Kineto trace written by torch.profiler (export_chrome_trace or tensorboard_trace_handler)"
GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20  # compressed bytes per read: large enough that the loop costs nothing next to zlib
_STEP_OUT = 64 << 20  # decompressed bytes per step, at most


class TraceFormatError(InputError):
    """A trace file that cannot be read as a Kineto/Chrome trace; the message names the fix."""


def read_trace_bytes(path: Path, max_bytes: int) -> bytearray:
    """The file's JSON text, decompressed when it is a gzip (detected by content, not name).

    A bytearray, not bytes, so that the parser can empty it the moment it has parsed it
    (`analyzers.trace.decode.decode_frame`): the text is the largest thing alive at that point.
    """
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise TraceFormatError(f"{path} is a folder, not a trace file; pass the .json or .json.gz file inside it.")
        if not stat.S_ISREG(info.st_mode):
            raise TraceFormatError(f"{path} is not a regular file (a pipe, socket or device, which could block or "
                                   f"never end); save the trace to a file and pass that.")
        with open(path, "rb") as fh:
            gzipped = fh.read(2) == GZIP_MAGIC
            fh.seek(0)
            if gzipped:
                return _gunzip(fh, path, max_bytes)
            if info.st_size > max_bytes:
                raise _too_large(path, max_bytes, "is over")
            # size + 1: a file that grew since stat() is read as far as it was, and found truncated
            data = bytearray(info.st_size + 1)
            del data[fh.readinto(data):]
            return data
    except FileNotFoundError:
        raise TraceFormatError(f"{path} does not exist; {FIX}.") from None
    except PermissionError:
        raise TraceFormatError(f"{path} cannot be read: permission denied; make it readable "
                               f"(chmod +r) or copy it somewhere you can read.") from None
    except OSError as exc:  # an I/O error, a name too long, a stale network mount: the system's own words
        raise TraceFormatError(f"{path} cannot be read: {exc.strerror or exc}; check the path and the disk.") from None


def _gunzip(fh, path: Path, max_bytes: int) -> bytearray:
    """Decompress every gzip member, never holding more than max_bytes + 1 decompressed bytes.

    Like `gzip.decompress`: members written one after another (`cat a.gz b.gz`) are one
    stream, and zero padding after the last is ignored; anything else there is corruption.
    Each step yields at most _STEP_OUT bytes, so that one compressed chunk of a bomb (which
    may hold a thousand times its size) is never a temporary copy the size of the limit.
    """
    out = bytearray()
    member = None  # the member being decompressed; None between members
    pending = b""
    try:
        while True:
            if not pending:
                pending = fh.read(_CHUNK)
                if not pending:
                    break
            if member is None:
                pending = pending.lstrip(b"\0")
                if not pending:
                    continue
                member = zlib.decompressobj(wbits=31)  # 31: a gzip header and trailer around deflate data
            # max_length is >= 1 here: 0 would mean "no limit" to zlib
            out += member.decompress(pending, min(max_bytes + 1 - len(out), _STEP_OUT))
            if len(out) > max_bytes:
                raise _too_large(path, max_bytes, "expands past")
            pending, member = (member.unused_data, None) if member.eof else (member.unconsumed_tail, member)
    except zlib.error:
        raise _corrupt(path) from None
    if member is not None:  # the file ended inside a member
        raise _corrupt(path)
    return out


def _corrupt(path: Path) -> TraceFormatError:
    return TraceFormatError(f"{path} is a truncated or corrupt gzip file; copy it again whole or re-record it.")


def _too_large(path: Path, max_bytes: int, verb: str) -> TraceFormatError:
    return TraceFormatError(f"{path} {verb} {_size(max_bytes)} of JSON, the limit, so it was not read further; "
                            f"if it is a real trace, raise the limit with {LIMIT_OPTION} (max_bytes in load_trace).")


def _size(n: int) -> str:
    """In the unit the option takes (MB, meaning MiB) when that is exact, else in bytes."""
    return f"{n >> 20:,} MB" if n >= 2**20 and n % 2**20 == 0 else f"{n:,} bytes"
