"""The run directory: what a training run leaves, and what every other command reads.

```
RUN/
  config.json          resolved config: model, training, data, seqlab version
  vocab.json           or tokenizer.json (byte-level BPE)
  model.safetensors    best weights by validation loss
  last/                model.safetensors + trainer_state.pt: enough to resume
  metrics.jsonl        one JSON object per log step and per evaluation
```

Weights are safetensors (no pickle); the trainer state is a plain dict of tensors and numbers
that ``torch.load(..., weights_only=True)`` reads. Every file but metrics.jsonl is written
atomically; metrics.jsonl only grows by whole lines, and a torn last line is ignored on read.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from seqlab.config import TrainConfig
from seqlab.data.vocab import Vocab, load_vocab
from seqlab.io import atomic_write, atomic_write_json, read_jsonl, truncate_jsonl

CONFIG, WEIGHTS, METRICS, LAST, TRAINER_STATE = (
    "config.json", "model.safetensors", "metrics.jsonl", "last", "trainer_state.pt")
STAGING, PREVIOUS = "last.new", "last.old"  # save_last's folders while it replaces last/
WRITER = ".seqlab-writer"  # who holds the run folder for writing (RunDir.writing)


FORMAT_VERSION = 1


class RunInUse(ValueError):
    """Another process is writing to the run folder."""


class RunDir:
    """Read and write one run directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._deferred: list[Callable[[], None]] = []
        self.checkpoints = 0  # resumable checkpoints written through this object

    def defer(self, action: Callable[[], None]) -> None:
        """Run ``action`` just before the next write into the run (a resume rewrites its config
        and cuts its metrics only once it really writes, so that a resume that fails before
        leaves the run exactly as it was)."""
        self._deferred.append(action)

    @contextlib.contextmanager
    def restored_unless_checkpointed(self, names: tuple[str, ...]) -> Iterator[None]:
        """Files the block may rewrite come back byte for byte if it fails before it writes a
        checkpoint (a resume that fails leaves the run as it was).

        The originals are kept as hard links (no space needed, even on a full disk): rewrites
        are atomic replacements, so the link keeps the old content, and restoring is a rename.
        """
        kept = []
        for name in names:
            original, backup = self.path / name, self.path / f".{name}.before"
            backup.unlink(missing_ok=True)
            if original.is_file():
                os.link(original, backup)
                kept.append((original, backup))
        checkpoints = self.checkpoints
        try:
            yield
        except BaseException:
            if self.checkpoints == checkpoints:
                for original, backup in kept:
                    os.replace(backup, original)
            raise
        finally:
            for _, backup in kept:
                backup.unlink(missing_ok=True)

    def ready(self) -> None:
        """Carry out the deferred actions; every write calls this first."""
        while self._deferred:
            self._deferred.pop(0)()

    @contextlib.contextmanager
    def writing(self) -> Iterator[RunDir]:
        """Hold the run folder for writing while the block runs; a second writer (a second
        ``train --resume`` on the same run) is refused, naming the holder.

        The lock is ``flock`` on the folder itself, which the kernel releases when the holder
        exits or is killed, so a lock is never stale; ``.seqlab-writer`` beside it names the
        holder (process and host) for the message, and is removed on release.
        """
        handle = os.open(self.path, os.O_RDONLY)
        holder = self.path / WRITER
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunInUse(f"{self.path} is being written by {self._holder()}; wait for it "
                               "to finish, or stop it (Ctrl-C or kill), then resume") from None
            atomic_write_json(holder, {"pid": os.getpid(), "host": socket.gethostname()})
            try:
                yield self
            finally:
                holder.unlink(missing_ok=True)
        finally:
            os.close(handle)

    def in_use(self) -> bool:
        """Whether a process holds the folder for writing now (:meth:`writing`): a run being
        trained, or resumed."""
        try:
            handle = os.open(self.path, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(handle)  # closing releases a lock it took
        return False

    def _holder(self) -> str:
        try:
            who = json.loads((self.path / WRITER).read_text(encoding="utf-8"))
            return f"process {who['pid']} on {who['host']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"

    @classmethod
    def create(cls, path: str | Path) -> RunDir:
        """A new run directory; an existing non-empty folder is never reused or overwritten."""
        path = Path(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise FileExistsError(f"{path} already exists and is not empty; pass --resume to "
                                  "continue that run, or choose another --out")
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    # config and vocabulary -------------------------------------------------------------
    def write_config(self, config: dict[str, Any]) -> None:
        self.ready()
        atomic_write_json(self.path / CONFIG, {"format": FORMAT_VERSION, **config})

    def checksums(self) -> dict[str, str]:
        """sha256 of every file the run holds so far (before training: the family's assets,
        such as vocab.json), by path inside the run; config.json records them."""
        return {str(p.relative_to(self.path)): file_digest(p)
                for p in sorted(self.path.rglob("*")) if p.is_file()
                and p.name not in (CONFIG, WRITER) and not p.name.startswith(".")}

    def verify_checksums(self, config: dict[str, Any]) -> None:
        """Refuse assets that are not the files the weights were trained with (a permuted
        vocabulary would give garbage without an error). Runs written before checksums pass."""
        for name, digest in config.get("checksums", {}).items():
            path = self.path / name
            if path.is_file() and file_digest(path) != digest:
                raise ValueError(f"{path} is not the file this run was trained with (its "
                                 f"checksum differs from the one in {CONFIG}); the weights "
                                 "depend on it: put the original back, or train again")

    def read_config(self) -> dict[str, Any]:
        path = self._require(CONFIG)
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
            config["model"], config["train"]  # noqa: B018 - presence check
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{path}: not a valid seqlab config ({err})") from err
        return config

    def train_config(self) -> TrainConfig:
        raw = self.read_config()["train"]
        try:
            return TrainConfig(**raw)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{self.path / CONFIG}: invalid training config ({err})") from err

    def vocab(self) -> Vocab:
        if not self.path.is_dir():
            raise FileNotFoundError(f"{self.path}: no such run directory")
        try:
            return load_vocab(self.path)
        except FileNotFoundError:
            raise ValueError(f"{self.path}: not a complete run (no vocab.json or tokenizer.json)"
                             ) from None

    # weights ---------------------------------------------------------------------------
    def save_weights(self, model: nn.Module, last: bool = False) -> None:
        self.ready()
        path = (self.last_dir() if last else self.path) / WEIGHTS
        tensors = weight_tensors(model)
        with room_needed(sum(t.numel() * t.element_size() for t in tensors.values())):
            atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))

    def load_weights(self, model: nn.Module, last: bool = False) -> nn.Module:
        path = self._require(f"{self.last_dir().name}/{WEIGHTS}" if last else WEIGHTS)
        device = next(model.parameters()).device
        try:
            state = load_file(path, device=str(device))
            for group in tensor_groups(model):  # tied weights: stored once, under any name
                stored = next((name for name in group if name in state), None)
                if stored is not None:
                    for name in group:
                        state.setdefault(name, state[stored])
            model.load_state_dict(state, strict=True)
        except SafetensorError as err:
            raise ValueError(f"{path}: truncated or corrupt weights file ({err})") from err
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0]
            raise ValueError(f"{path}: the weights do not match {CONFIG} ({first})") from err
        return model

    # resumable state -------------------------------------------------------------------
    def save_last(self, model: nn.Module, state: dict[str, Any]) -> None:
        """Weights and trainer state of one step, as one unit: both are written into a staging
        folder that then replaces ``last/``, so a kill at any moment leaves a complete pair of
        the same step (in ``last/``, or in the staging or previous folder, see
        :meth:`last_dir`), never the weights of one step beside the state of another."""
        self.ready()
        staging, old, last = (self.path / name for name in (STAGING, PREVIOUS, LAST))
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        tensors = weight_tensors(model)
        weights = sum(t.numel() * t.element_size() for t in tensors.values())
        with room_needed(3 * weights):  # the weights, and an optimiser state of about twice them
            atomic_write(staging / WEIGHTS,
                         lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
            atomic_write(staging / TRAINER_STATE, lambda tmp: torch.save(state, tmp))
        shutil.rmtree(old, ignore_errors=True)
        if last.exists():
            os.replace(last, old)
        os.replace(staging, last)
        self.checkpoints += 1
        shutil.rmtree(old, ignore_errors=True)

    def own_files(self, extra: tuple[str, ...] = ()) -> list[Path]:
        """The files the run wrote: config.json, weights, metrics, the writer's note, its
        assets (config.json's checksums name them), every checkpoint file, and ``extra``
        names beside them (written by layers above); not what a user put there since."""
        names = {CONFIG, WEIGHTS, METRICS, WRITER, *extra}
        try:
            names |= set(self.read_config().get("checksums", {}))
        except (OSError, ValueError, AttributeError):
            pass  # a damaged config.json: the names above
        files = [self.path / name for name in names]
        files += [p for name in (LAST, STAGING, PREVIOUS) for p in (self.path / name).rglob("*")]
        return [f for f in files if f.is_file()]

    def has_weights(self) -> bool:
        """Whether the best weights (written at an evaluation) are there."""
        return (self.path / WEIGHTS).is_file()

    def has_checkpoint(self) -> bool:
        """Whether a resumable checkpoint (weights and trainer state) was ever written."""
        last = self.last_dir()
        return (last / WEIGHTS).is_file() and (last / TRAINER_STATE).is_file()

    def discard(self, created: bool) -> None:
        """Remove what a run that never checkpointed wrote: the folder itself when ``created``
        (it did not exist before), else its contents, so that ``train`` accepts it again."""
        if created:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        for entry in self.path.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)

    def last_dir(self) -> Path:
        """The folder of the resumable state: ``last/``, unless a kill between the renames of
        :meth:`save_last` left only the staging or the previous folder complete."""
        for name in (LAST, STAGING, PREVIOUS):
            folder = self.path / name
            if (folder / WEIGHTS).is_file() and (folder / TRAINER_STATE).is_file():
                return folder
        return self.path / LAST

    def save_trainer_state(self, state: dict[str, Any]) -> None:
        self.ready()
        atomic_write(self.last_dir() / TRAINER_STATE, lambda tmp: torch.save(state, tmp))

    def load_trainer_state(self) -> dict[str, Any]:
        path = self._require(f"{self.last_dir().name}/{TRAINER_STATE}")
        try:
            return torch.load(path, weights_only=True, map_location="cpu")
        except Exception as err:  # torch.load raises many types for a damaged file
            raise ValueError(f"{path}: unreadable trainer state ({err})") from err

    # metrics ---------------------------------------------------------------------------
    def append_metrics(self, record: dict[str, Any]) -> None:
        self.ready()
        with open(self.path / METRICS, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def read_metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / METRICS)

    def truncate_metrics(self, step: int) -> None:
        """Keep only records up to ``step`` (resuming from a checkpoint taken there)."""
        truncate_jsonl(self.path / METRICS, lambda r: r.get("step", 0) <= step)

    def _require(self, name: str) -> Path:
        if not self.path.is_dir():
            raise FileNotFoundError(f"{self.path}: no such run directory")
        path = self.path / name
        if not path.is_file():
            raise ValueError(f"{self.path}: not a complete run (missing {name})")
        return path


@contextlib.contextmanager
def room_needed(size: int) -> Iterator[None]:
    """A full disk while writing ``size`` bytes says how much room the write needed."""
    try:
        yield
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise type(err)(err.errno, f"{err.strerror} (this write needs about "
                                   f"{size / 2**20:,.1f} MB)", err.filename) from err


def file_digest(path: Path) -> str:
    """sha256 of a file, read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weight_tensors(model: nn.Module) -> dict[str, Tensor]:
    """The model's state on the CPU, each tensor once (tied weights under one name)."""
    state = model.state_dict()
    return {group[0]: state[group[0]].detach().to("cpu", copy=True)
            for group in tensor_groups(model)}


def tensor_groups(model: nn.Module) -> list[list[str]]:
    """The names of the model's state, grouped by tensor: tied weights share a group.

    Why not safetensors' own ``save_model``: it groups by storage, and on a GPU cuDNN packs
    all of a recurrent layer's weights into one buffer, which it then refuses to save. Here a
    group is the same view (address, shape and strides), so packed weights stay separate
    entries and only truly tied ones (an embedding shared with the output head) are merged.
    """
    groups: dict[tuple, list[str]] = {}
    for name, tensor in model.state_dict().items():
        key = (tensor.device, tensor.data_ptr(), tuple(tensor.shape), tensor.stride(),
               tensor.dtype) if tensor.numel() else ("empty", name)
        groups.setdefault(key, []).append(name)
    return list(groups.values())
