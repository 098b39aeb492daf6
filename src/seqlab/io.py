"""Atomic file writes: a temporary name in the same folder, then ``os.replace``.

A crash or a kill in the middle of a write leaves the previous file where it was, never a
half-written one.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then move it into place.

    Temporaries of this naming left by a killed writer are removed first; an OSError names
    ``path``, never the hidden temporary.
    """
    moved(staged(path, write), path)


def atomic_write_files(files: Sequence[tuple[Path, bytes]]) -> None:
    """Write several files all or none: every one to its temporary first, and only when all
    are written (a full disk fails there) every one moved into place."""
    ready: list[str] = []
    try:
        for path, data in files:
            ready.append(staged(path, lambda tmp, data=data: Path(tmp).write_bytes(data)))
    except BaseException:
        for tmp in ready:
            Path(tmp).unlink(missing_ok=True)
        raise
    for (path, _), tmp in zip(files, ready, strict=True):
        moved(tmp, path)


def staged(path: Path, write: Callable[[str], None]) -> str:
    """The temporary beside ``path`` that ``write(tmp)`` filled and synced (see
    :func:`atomic_write`), ready to be moved into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        # mkstemp makes 0600 (and some writers replace the file): as readable as any saved file
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        return tmp
    except BaseException as err:
        _discarded(err, tmp, path)


def moved(tmp: str, path: Path) -> None:
    """``os.replace(tmp, path)``; on failure the temporary is removed and the error names
    ``path``."""
    try:
        os.replace(tmp, path)
    except BaseException as err:
        _discarded(err, tmp, path)


def _discarded(err: BaseException, tmp: str, path: Path):
    """Remove the temporary ``tmp`` and raise ``err`` naming ``path`` rather than ``tmp``."""
    if os.path.exists(tmp):
        os.unlink(tmp)
    if isinstance(err, OSError) and err.filename in (None, tmp):
        raise type(err)(err.errno, err.strerror, str(path)) from err
    if code := os_error_code(err):  # a library's own type around an OS error
        raise OSError(code, os.strerror(code), str(path)) from err
    raise err


def os_error_code(err: BaseException) -> int | None:
    """The errno of an OS error that a library reports in its own exception type (safetensors:
    "... No space left on device (os error 28)"), or None."""
    if isinstance(err, OSError | KeyboardInterrupt):
        return None
    found = re.search(r"os error (\d+)", str(err))
    return int(found.group(1)) if found else None


def read_jsonl(path: Path) -> list[dict]:
    """The objects of a JSON-lines file ([] when it does not exist).

    A torn last line (a killed writer's) is skipped; any other line that is not a JSON object,
    bytes that are not UTF-8, or a folder in the file's place raise ValueError naming the file
    (and the line), so that a damaged file stops a command before it writes anything.
    """
    path = Path(path)
    if not path.exists():
        return []
    if not path.is_file():
        raise ValueError(f"{path}: not a file (a JSON-lines file belongs here)")
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: damaged (not UTF-8 at byte {err.start})") from err
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                continue  # torn by a kill in the middle of a write
            raise ValueError(f"{path}, line {number}: damaged (not JSON)") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}, line {number}: damaged (not a JSON object)")
        records.append(record)
    return records


def truncate_jsonl(path: Path, keep: Callable[[dict], bool]) -> None:
    """Rewrite a JSON-lines file (atomically) with only the records ``keep`` accepts."""
    kept = [r for r in read_jsonl(path) if keep(r)]
    atomic_write_text(Path(path), "".join(json.dumps(r) + "\n" for r in kept))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def fingerprint(path: Path) -> str:
    """A cheap fingerprint of a file or of a folder's files: each one's name, size and the
    sha256 of its first and last megabyte (enough to tell another file by the same name, or
    an edited one, without reading gigabytes)."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for file in files:
        size = file.stat().st_size
        digest.update(f"{file.relative_to(path) if file != path else ''}\0{size}\0".encode())
        with open(file, "rb") as handle:
            digest.update(handle.read(1 << 20))
            if size > 2 << 20:
                handle.seek(-(1 << 20), os.SEEK_END)
                digest.update(handle.read())
    return digest.hexdigest()
