"""Results folders that hold one run, whole, or the previous one untouched.

A run's files are written into a hidden sibling folder, then swapped in by renames: an error or
an interrupt while writing (a full disk, Ctrl-C) removes the partial folder and leaves the
previous results as they were. Every failure is one ``InputError`` line naming the folder.
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from llmsim.errors import InputError


def check_out_dir(out: Path, option: str = "--out") -> Path:
    """Fail before a long run, not after it: ``out`` must be a folder we may create or replace."""
    if str(out).strip() in ("", "."):
        raise InputError(f"{option}: give a folder for the results (not the current folder)")
    out = out.expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise InputError(f"{option} {out}: exists and is not a folder")
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{option} {out}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK) or (out.exists()
                                                     and not os.access(out, os.W_OK | os.X_OK)):
        raise InputError(f"{option} {out}: not writable here ({parent})")
    return out


def _why(e: OSError) -> str:
    if e.errno == errno.ENOSPC:
        return "no space left on the device"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "not writable (permission denied or a read-only file system)"
    return e.strerror or str(e)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _sweep_stale(out: Path) -> None:
    """Remove what a killed writer left beside ``out`` (its hidden folders name its PID)."""
    for p in out.parent.glob(f".{out.name}.*-*"):
        kind, _, rest = p.name[len(out.name) + 2:].partition("-")
        pid = rest.split("-", 1)[0]
        if kind in ("writing", "old") and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def publish(out: Path, write: Callable[[Path], list[Path]], option: str = "--out") -> list[Path]:
    """Run ``write(folder)`` into a fresh hidden folder beside ``out``, then make it ``out``.
    Returns the written paths as they are under ``out``."""
    out = check_out_dir(out, option)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _sweep_stale(out)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.writing-{os.getpid()}-",
                                    dir=out.parent))
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp's 0700 is for secrets, not for results
    except OSError as e:
        raise InputError(f"{option} {out}: cannot create it ({_why(e)})") from None
    try:
        written = write(tmp)
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}-{tmp.name[-8:]}")
            os.replace(out, old)
        os.replace(tmp, out)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise InputError(f"{option} {out}: results not written ({_why(e)}); "
                         "the folder was left as it was") from None
    except BaseException:  # an interrupt: the partial folder goes, the previous one stays
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        with contextlib.suppress(OSError):
            shutil.rmtree(old)
    return [out / p.relative_to(tmp) for p in written]


def write_atomic(path: Path, text: str) -> None:
    """``path`` holds ``text`` whole or is left as it was (a temp file beside it, renamed)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.writing-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
