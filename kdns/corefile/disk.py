"""`DiskReader`: the Corefile front end's door to the real file system (shell tier).

Reads go through kdns.files.read_regular: regular files only, opened without blocking, at
most the reader's byte limit (a FIFO or /dev/zero named by an `import` cannot hang or fill
memory).
"""

from __future__ import annotations

import glob as _glob

from kdns import files
from kdns.corefile.reader import DEFAULT_LIMIT, NotFound, ReadError


class DiskReader:
    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit

    def read(self, path: str) -> bytes:
        try:
            return files.read_regular(path, self.limit, "the Corefile size limit")[0]
        except files.NotRegular as exc:
            raise ReadError("is a directory" if "directory" in str(exc) else str(exc)) from None
        except files.TooLarge:
            raise ReadError(f"larger than {self.limit} bytes") from None
        except FileNotFoundError:
            raise NotFound("no such file") from None
        except OSError as exc:
            raise ReadError(exc.strerror or str(exc)) from None

    def glob(self, pattern: str) -> list[str]:
        return sorted(_glob.glob(pattern, include_hidden=True))

    def describe(self, path: str) -> str:
        return path
