"""Text sources: a UTF-8 file, a folder of them, or a bundled corpus by name.

Bundled corpora are the ABC tune collections that ship inside music21's corpus, so nothing is
downloaded: ``oneills`` (O'Neill's Music of Ireland, 1850) and ``ryans`` (Ryan's Mammoth
Collection, 1883).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from pathlib import Path

import numpy as np
import torch

# name -> folder inside music21's corpus
CORPORA = {"oneills": "oneills1850", "ryans": "ryansMammoth"}


def corpus_files(name: str) -> list[Path]:
    """The ABC files of a bundled corpus, in a fixed order."""
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; bundled corpora: {', '.join(CORPORA)}")
    try:
        import music21
    except ImportError as err:  # a dependency, but say what to do if it was removed
        raise ValueError(f"corpus {name!r} needs music21 (pip install music21)") from err
    folder = Path(music21.__file__).parent / "corpus" / CORPORA[name]
    files = sorted(folder.glob("*.abc"))
    if not files:
        raise ValueError(f"corpus {name!r}: no ABC files in {folder}")
    return files


def read_utf8(path: Path) -> str:
    """A UTF-8 text file, without the byte-order mark some editors write first; a folder or a
    bad byte is a ValueError naming the file (and the bad byte's line)."""
    try:
        return decode_utf8(Path(path).read_bytes(), path)
    except IsADirectoryError:
        raise ValueError(f"{path}: a folder, not a file") from None


def read_text_file(path: Path) -> str:
    """Read one UTF-8 text file; binary or non-UTF-8 content is a ValueError."""
    data = Path(path).read_bytes()
    if b"\x00" in data[:1 << 20]:
        raise ValueError(f"{path}: looks binary (it contains NUL bytes), expected UTF-8 text")
    return decode_utf8(data, path)


def decode_utf8(data: bytes, path: Path) -> str:
    """``data`` as UTF-8 without a leading byte-order mark; a bad byte is a ValueError naming
    ``path`` and the byte's line."""
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as err:  # offsets and lines counted in the file, mark included
        line = len(re.findall(rb"\r\n|\r|\n", data[:skip + err.start])) + 1  # as text_lines
        raise ValueError(f"{path} line {line}: not UTF-8 text (invalid byte at offset "
                         f"{skip + err.start})") from None


def csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line, cells) of every row of a UTF-8 CSV file, the line its row ends on: rows end where
    csv ends them (\\n, \\r\\n, \\r; not inside a quoted cell, nor at a form feed); a malformed
    file (a quote left open past csv's field limit) is a ValueError naming the line."""
    reader = csv.reader(io.StringIO(read_utf8(path), newline=""))
    rows = []
    try:
        for row in reader:
            rows.append((reader.line_num, row))
    except csv.Error as err:
        raise ValueError(f"{path} line {reader.line_num}: not readable as CSV ({err})") from None
    return rows


def text_lines(text: str) -> list[str]:
    """Lines ended by \\n, \\r\\n or \\r only (``str.splitlines`` also ends them at form feeds
    and Unicode separators, which may sit inside a text)."""
    lines = re.split(r"\r\n|\r|\n", text)
    return lines[:-1] if lines and not lines[-1] else lines


def is_source_name(source: str) -> bool:
    return source in CORPORA and not Path(source).exists()


def source_files(source: str, folder_files=None) -> list[Path]:
    """The files behind a source: a bundled corpus, one file, or a folder's files as chosen by
    ``folder_files(folder)`` (default: every file not under a hidden name, sorted)."""
    if is_source_name(source):
        return corpus_files(source)
    path = Path(source)
    if not path.exists():
        hint = f" (bundled corpora: {', '.join(CORPORA)})" if "/" not in source else ""
        raise FileNotFoundError(f"{source}: no such file or folder{hint}")
    if path.is_dir():
        return (folder_files or visible_files)(path)
    if not path.is_file():  # a FIFO, a device, a socket: reading could hang or never end
        raise ValueError(f"{source}: not a regular file or folder (a pipe or a device?); give "
                         "a file, a folder or a bundled corpus")
    return [path]


def visible_files(folder: Path, suffix: str = "") -> list[Path]:
    """Files under a folder, sorted, skipping hidden ones; only ``suffix`` ones when given."""
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and (not suffix or p.suffix.lower() == suffix)
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def load_text(source: str | Path) -> str:
    """The text of a file, of every file under a folder (sorted, hidden ones skipped), or of a
    bundled corpus. Raises FileNotFoundError for a missing path and ValueError for an empty,
    binary or non-UTF-8 one."""
    source = str(source)
    files = source_files(source)
    if not files:
        raise ValueError(f"{source}: the folder has no files")
    text = "\n".join(read_text_file(f) for f in files)
    if not text.strip():
        raise ValueError(f"{source}: empty (only white space, or nothing)")
    return text


def to_tensor(ids: np.ndarray) -> torch.Tensor:
    """One compact token tensor (int16 or int32); batches are cast to int64 as they are cut."""
    return torch.from_numpy(np.ascontiguousarray(ids))


def split_tokens(tokens: torch.Tensor, val_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Train/validation split by one contiguous block: the last ``val_fraction`` validates.

    Never random windows drawn from the whole text: overlapping windows would put the same
    characters in both splits.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    cut = int(round(len(tokens) * (1.0 - val_fraction)))
    return tokens[:cut], tokens[cut:]
