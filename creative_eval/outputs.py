"""Where commands write: every output path checked before any work starts, and one writer per file at a time.

The checks run when the command line is parsed, before a model loads, so a typo costs nothing and nothing is
half-written: an output is never one of the command's own inputs; a missing folder is created; a folder, a
path under a file or an unwritable place is refused; a JSONL output that already holds another record type is
refused before a line is appended. `writing(path)` holds an exclusive lock (`.<file>.lock` beside it, released
by the system when a process dies) while a command appends, so a second writer waits and then resumes
instead of writing every key again. `replacing(path)` writes a whole file (a direction, an export) under a
temporary name beside it and moves it into place only once complete, so a full disk or a kill never leaves a
half-written file.
"""

from __future__ import annotations

import errno
import os
import re
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from filelock import FileLock, Timeout

from creative_eval.records import file_kind


class OutputError(ValueError):
    """An output path that cannot be written safely; the message names it and the fix."""


def _same(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def _writable_folder(folder: Path, shown: Path) -> None:
    """Create `folder` if missing and prove it accepts a file (os.access says yes to root even on read-only mounts)."""
    blocker = next((a for a in (folder, *folder.parents) if a.exists() and not a.is_dir()), None)
    if blocker is not None:
        raise OutputError(f"{shown}: {blocker} is a file, not a folder; choose a path in a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{shown}: cannot create folder {folder} ({e.strerror}); choose a writable location") from None
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise OutputError(f"{shown}: cannot write in {folder} ({e.strerror}); choose a writable location") from None


def check_file(path: str | Path, *, inputs: Iterable[str | Path] = (), kind: str | None = None) -> Path:
    """An output file that is safe to write: not a folder, not an input, in a writable folder, and (with `kind`,
    for appended JSONL) empty, absent or holding records of that kind only."""
    out = Path(path)
    if out.is_dir():
        raise OutputError(f"{out}: is a folder; pass a file path, e.g. {out / 'out.jsonl'}")
    for source in inputs:
        if source is not None and _same(out, Path(source)):
            raise OutputError(f"{out}: is also this command's input; write to another file")
    _writable_folder(out.parent, out)
    if out.exists() and not os.access(out, os.W_OK):
        raise OutputError(f"{out}: is read-only; make it writable or choose another file")
    if kind is not None and out.is_file():
        try:
            held = file_kind(out)
        except ValueError:
            raise OutputError(f"{out}: exists and is not a JSONL file of {kind} records, so nothing is appended to "
                              "it; choose another output file") from None
        if held not in (None, kind):
            raise OutputError(f"{out}: already holds {held} records, not {kind} records; choose another output file")
    return out


def check_folder(path: str | Path, *, inputs: Iterable[str | Path] = ()) -> Path:
    """An output folder: created when missing; a file in its place, an input or an unwritable place is refused."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: is a file; pass a folder path")
    for source in inputs:
        if source is not None and _same(out, Path(source)):
            raise OutputError(f"{out}: is also this command's input; choose another folder")
    _writable_folder(out, out)
    return out


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Hold the exclusive lock of an output file while appending; a second writer says so on stderr and waits."""
    path = Path(path)
    lock = FileLock(path.parent / f".{path.name}.lock")  # hidden: a run folder lists its records, not its locks
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"creative-eval: another process is writing {path}; waiting for it to finish (then resuming)",
              file=sys.stderr, flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in `path`'s folder to write the whole file to; on success it replaces `path`
    (os.replace: readers see the old file or the new one, never a part). A writer that fails (no space left, a
    file-size limit, any error of the format's library) leaves nothing behind and is raised as an OSError naming
    `path` and the cause; an interrupt removes the temporary file too."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # on disk before it takes the name
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except (ValueError, TypeError):  # the caller's own checks: not a write failure
        tmp.unlink(missing_ok=True)
        raise
    except Exception as e:
        tmp.unlink(missing_ok=True)
        raise OSError(*_cause(e), str(path)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def short_write(tmp: Path) -> OSError:
    """The error of a writer that reported success but left a shorter file (numpy's tofile can lose a failed
    write): at the file-size limit EFBIG, else ENOSPC."""
    import resource

    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    full = soft != resource.RLIM_INFINITY and tmp.stat().st_size >= soft
    return OSError(errno.EFBIG if full else errno.ENOSPC, os.strerror(errno.EFBIG if full else errno.ENOSPC))


def _cause(e: Exception) -> tuple[int, str]:
    """(errno, what went wrong) of a failed write, also from libraries that wrap the OSError in their own error
    (safetensors says `os error 28`)."""
    if isinstance(e, OSError) and e.errno:
        return e.errno, f"not written ({e.strerror})"
    found = re.search(r"(?:code|errno|os error)[:= ]+(\d+)", str(e))
    number = int(found.group(1)) if found else errno.EIO
    what = os.strerror(number) if found else " ".join(str(e).split())[:160]
    return number, f"not written ({what})"
