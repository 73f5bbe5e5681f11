"""Reading the files kdns is given (manifests, the config file), with bounds.

`read_regular` reads a regular file of at most `limit` bytes and nothing else: the path is
opened without blocking (a FIFO would otherwise wait for a writer for ever) and the opened
descriptor is checked with fstat, so a path swapped for a FIFO, a device or a directory
between a look and the open is refused too; at most limit + 1 bytes are ever read (a file
that grows while read, or /dev/zero behind a symlink, cannot fill memory).

Parsing what was read, with a node limit, is `kdns.yamlload` (pure: text in, values out);
its names are re-exported here for the readers of files.
"""

from __future__ import annotations

import os
import stat

from kdns.yamlload import (  # noqa: F401 - re-exported for the readers of files
    LOADERS,
    MAX_DEPTH,
    MIB,
    NODE_BYTES,
    PARSER,
    LimitError,
    load_yaml,
    load_yaml_all,
    node_limit,
    yaml_problem,
)

_CHUNK = MIB

_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class FileError(Exception):
    """A file kdns refuses to read; the message says why, without the path."""


class NotRegular(FileError):
    pass


class TooLarge(FileError):
    pass


def kind_of(mode: int) -> str | None:
    """None for a regular file, else what it is ("a FIFO")."""
    if stat.S_ISREG(mode):
        return None
    return _KINDS.get(stat.S_IFMT(mode), "an unknown kind of file")


def not_regular(mode: int) -> str:
    return f"not a regular file ({kind_of(mode)}); only regular files are read"


def too_large(size: int | None, limit: int, option: str) -> str:
    """The message for a file over `limit` bytes; size None: found while reading it."""
    if size is None:
        return f"more than the limit of {limit:,} bytes ({option}) when read"
    return f"{size:,} bytes, more than the limit of {limit:,} ({option})"


def signature(st: os.stat_result) -> tuple[int, int, int]:
    """What says a file changed: (mtime_ns, size, inode)."""
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def read_regular(path: str | os.PathLike, limit: int, option: str = "size limit") -> tuple[bytes, tuple[int, int, int]]:
    """The bytes of a regular file of at most `limit` bytes, and its signature after reading.

    Raises NotRegular, TooLarge (`option` names the limit in the message) or OSError.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegular(not_regular(st.st_mode))
        if st.st_size > limit:
            raise TooLarge(too_large(st.st_size, limit, option))
        os.set_blocking(fd, True)
        chunks, total, want = [], 0, st.st_size + 1  # usually all of it, and the end, at once
        while total <= limit:
            chunk = os.read(fd, min(want, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            want = _CHUNK
        if total > limit:
            raise TooLarge(too_large(None, limit, option))
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return data, signature(os.fstat(fd))
    finally:
        os.close(fd)


def decode(raw: bytes) -> str:
    """UTF-8 text; a FileError naming the line and the byte otherwise."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise FileError(f"line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x})") from None


