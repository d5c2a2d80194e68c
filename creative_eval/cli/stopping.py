"""How a command stops early: Ctrl-C (SIGINT), SIGTERM or a full disk, each ending in one line that says what is
saved, with no traceback.

`guard(args)` wraps a command (cli/main.py). A first SIGINT or SIGTERM raises `Interrupted` in the main thread at
the next bytecode boundary: every record is appended in one write() call (`records.append_jsonl`), so the
interrupt lands between records, never inside one; the command's context managers then release its file lock,
and the guard prints `interrupted: 8 of 60 judgements saved in r.jsonl; run the same command again to resume`
(the count read back from the output file) and ends the command with 130 (SIGINT) or 143 (SIGTERM). A second
signal exits at once (os._exit, same status): a line half-written by then is cut by `records.mend_tail` before
the next append. An append or a whole-file write the disk refuses (ENOSPC, EFBIG under a file-size limit,
EDQUOT) ends in one line naming the file, the cause and what the file keeps, with status 2.

A command names what it writes with `saves` (set_defaults; default: `--out` as "records") and, once it knows how
many records it will make, calls `expect(path, total)` for the "of 60".
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from creative_eval.records import iter_jsonl, story_id

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
WHOLE = "written whole"  # the noun of an output made in one piece at the end (a direction, an export)
RESUME = "run the same command again to resume"

_totals: dict[str, int] = {}


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM, raised where the main thread was."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def expect(path: str | Path | None, total: int) -> None:
    """How many records `path` holds once the command finishes (the "of N" of the interrupted line)."""
    if path:
        _totals[_name(path)] = total


def saves(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(path, what it holds) of the command's outputs: its `saves`, else `--out` (a file or a folder of records)."""
    if hasattr(args, "saves"):
        return [(str(p), noun) for p, noun in args.saves(args) if p]
    out = getattr(args, "out", None)
    return [(str(out), "records")] if isinstance(out, (str, Path)) and out else []


@dataclass
class Stop:
    code: int | None = None  # set when the guard ended the command


@contextmanager
def guard(args: argparse.Namespace, exiting: bool = False) -> Iterator[Stop]:
    """Run the command's body inside; on an interrupt or a full disk print the one line and set `Stop.code`.
    `exiting`: the process ends with the command (the command line), so after an interrupt the handler stays and a
    second signal while Python exits (waiting for a judge's request in flight) is immediate too; a caller that goes
    on (a notebook, a test) gets its own handlers back."""
    stop = Stop()
    handlers = _install()
    interrupted = False
    try:
        yield stop
    except KeyboardInterrupt as e:
        interrupted = True
        signum = getattr(e, "signum", signal.SIGINT)
        _say(f"interrupted: {saved(saves(args))}")
        stop.code = EXIT_CODES.get(signum, 130)
    except OSError as e:
        if e.errno not in DISK_FULL:
            raise
        _say(f"creative-eval {args.command}: error: {disk_full(e, saves(args))}")
        stop.code = 2
    finally:
        _totals.clear()
        if not (interrupted and exiting):
            _restore(handlers)


def _say(line: str) -> None:
    """One write of the whole line: a second signal comes before it or after it, never between text and newline."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _install() -> dict | None:
    if threading.current_thread() is not threading.main_thread():
        return None  # signal handlers belong to the main thread; a command run elsewhere keeps the defaults
    previous = {s: signal.getsignal(s) for s in EXIT_CODES}
    first: list[int] = []

    def handler(signum: int, _frame) -> None:
        if first:  # the second signal: stop now, saying so in one line
            os.write(2, f"interrupted again: stopped at once; {RESUME}\n".encode())
            os._exit(EXIT_CODES.get(signum, 130))
        first.append(signum)
        raise Interrupted(signum)

    for s in EXIT_CODES:
        signal.signal(s, handler)
    return previous


def _restore(previous: dict | None) -> None:
    for s, h in (previous or {}).items():
        signal.signal(s, h)


def saved(outputs: list[tuple[str, str]]) -> str:
    """What the outputs hold now and what to do, e.g. `8 of 60 judgements saved in r.jsonl; run the same command
    again to resume`."""
    records = [(p, n) for p, n in outputs if n != WHOLE]
    parts = [_held(p, n) for p, n in records] + [f"{p} was not written (it is written whole, at the end)"
                                                 for p, n in outputs if n == WHOLE]
    if not parts:
        return "nothing was saved; run the same command again"
    return "; ".join(parts) + (f"; {RESUME}" if records else "; run the same command again")


def disk_full(e: OSError, outputs: list[tuple[str, str]]) -> str:
    """`r.jsonl: No space left on device; it keeps 8 of 60 judgements, each whole; free space ...`."""
    where = str(e.filename or next((p for p, _ in outputs), "the output"))
    fix = "free space (or raise the file-size limit) and run the same command again"
    noun = next((n for p, n in outputs if _name(p) == _name(where)), None)
    if noun == WHOLE:
        return f"{where}: {e.strerror}; nothing half-written was left there; {fix}"
    if where.endswith(".jsonl"):
        inside = next((n for p, n in outputs if Path(_name(where)).is_relative_to(_name(p))), "records")
        return f"{where}: {e.strerror}; it keeps {_count_text(Path(where), noun or inside)}, each whole; {fix} to resume"
    return f"{where}: {e.strerror}; {fix} (the records saved so far are kept)"


def _held(path: str, noun: str) -> str:
    p = Path(path)
    if p.is_dir():
        counts = {f.relative_to(p).as_posix(): _count(f) for f in sorted(p.rglob("*.jsonl"))}
        counts = {name: n for name, n in counts.items() if n}
        shown = ", ".join(f"{name} {n}" for name, n in list(counts.items())[:4]) + (", ..." if len(counts) > 4 else "")
        return f"{sum(counts.values())} {noun} saved in {path}" + (f" ({shown})" if counts else "")
    return f"{_count_text(p, noun)} saved in {path}"


def _count_text(path: Path, noun: str) -> str:
    total = _totals.get(_name(path))
    n = _count(path)
    return f"{n} of {total} {noun}" if total is not None else f"{n} {noun}"


def _count(path: Path) -> int:
    """Records in a JSONL file, each key or story once (a torn last line is not a record)."""
    if not path.is_file():
        return 0
    seen = set()
    try:
        for i, obj in iter_jsonl(path):
            if "key" in obj:
                seen.add(("key", obj["key"]))
            elif isinstance(obj.get("prompt_id"), str) and isinstance(obj.get("condition"), str):
                seen.add(("story", story_id(obj["prompt_id"], obj["condition"])))
            else:
                seen.add(("line", i))
    except (ValueError, OSError):
        pass  # a file that is not ours to count: what was counted stands
    return len(seen)


def _name(path: str | Path) -> str:
    return os.path.abspath(path)
