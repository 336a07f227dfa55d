"""Tar shards: a corpus as a few large files, for remote, network or slow storage.

A corpus of a million small audio files costs a metadata lookup per file on a network file
system or an object-store mount; a few hundred tar files of about 1 GB do not. The shards use
the WebDataset layout (per utterance a ``<key>.<ext>`` member with the original audio bytes,
unchanged, and a ``<key>.json`` member with its manifest row), so the ``webdataset``
library can stream them too. :func:`write_shards` also writes a manifest whose lines point
into the shards::

    {"audio_filepath": "shard-00000.tar", "audio_offset": 1536, "audio_size": 52107,
     "shard_key": "00000042_1272-128104-0000", "duration": 3.3, "text": "..."}

and asr reads each utterance with one seek and one read of ``audio_size`` bytes
(:func:`asr.audio.load_audio`'s ``byte_range``). Random access keeps the duration-bucketed
sampler, exact resume and DDP sharding exactly as with loose files.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from asr.io_utils import atomic_write
from asr.manifest import ManifestError, Utterance, read_manifest, write_manifest

SHARD_BYTES = 1 << 30  # 1 GiB: big enough that per-file costs vanish, small enough to copy
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")  # WebDataset keys end at the first dot


def shard_key(number: int, audio_path: str) -> str:
    """A unique member stem: running number and the audio file's stem, dots replaced."""
    return f"{number:08d}_{_UNSAFE.sub('_', Path(audio_path).stem)}"


def _audio_bytes(utt: Utterance) -> bytes:
    with open(utt.audio_filepath, "rb") as handle:
        return handle.read()


def _row(utt: Utterance) -> dict:
    """The manifest row a shard's ``.json`` member keeps (sources are never shards)."""
    extra = {k: v for k, v in utt.extra.items() if k != "shard_key"}  # ours comes first
    return {"duration": utt.duration, "text": utt.text, **extra}


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _groups(utterances: Sequence[Utterance], max_bytes: int) -> Iterator[list[int]]:
    """Consecutive utterance indices whose audio adds up to about ``max_bytes``."""
    group: list[int] = []
    size = 0
    for i, utt in enumerate(utterances):
        length = Path(utt.audio_filepath).stat().st_size
        if group and size + length > max_bytes:
            yield group
            group, size = [], 0
        group.append(i)
        size += length
    if group:
        yield group


def write_shards(
    utterances: Sequence[Utterance],
    out_dir: str | Path,
    manifest_name: str = "manifest.jsonl",
    max_bytes: int = SHARD_BYTES,
) -> Path:
    """Write ``utterances`` into ``out_dir/shard-NNNNN.tar`` and a manifest pointing into them.

    Shards are written atomically one by one, in manifest order (shuffle the manifest
    first if the shards will be streamed sequentially). Returns the manifest's path.
    """
    out_dir = Path(out_dir)
    if not utterances:
        raise ManifestError(f"{out_dir}: no utterances to shard")
    target = out_dir.resolve()
    for utt in utterances:
        # Rewriting shards while reading them would pair one clip's text with another's
        # audio; shard the original manifest instead.
        if utt.byte_range is not None or Path(utt.audio_filepath).resolve().is_relative_to(target):
            raise ManifestError(
                f"{utt.origin}: {utt.audio_filepath} is already in a shard or inside {out_dir}"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for number, group in enumerate(_groups(utterances, max_bytes)):
        path = out_dir / f"shard-{number:05d}.tar"
        keys = {}
        with atomic_write(path, "wb") as handle, tarfile.open(fileobj=handle, mode="w") as tar:
            for i in group:
                utt = utterances[i]
                key = shard_key(i, utt.audio_filepath)
                suffix = Path(utt.audio_filepath).suffix.lower() or ".wav"
                keys[f"{key}{suffix}"] = utt
                _add(tar, f"{key}{suffix}", _audio_bytes(utt))
                _add(tar, f"{key}.json", json.dumps(_row(utt), ensure_ascii=False).encode())
        # The data offsets come from reading the headers back: exact whatever header
        # format (ustar, GNU or pax) tarfile chose for a name.
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                utt = keys.get(member.name)
                if utt is not None:
                    rows.append(
                        {
                            "audio_filepath": str(path.resolve()),
                            "audio_offset": member.offset_data,
                            "audio_size": member.size,
                            "shard_key": member.name.rsplit(".", 1)[0],
                            **_row(utt),
                        }
                    )
    manifest = out_dir / manifest_name
    write_manifest(manifest, rows)
    return manifest


def shard_manifest(manifest: str | Path, out_dir: str | Path, max_mb: float = 1024) -> Path:
    """``asr-prepare shards``: read and check ``manifest``, then :func:`write_shards`."""
    if max_mb <= 0:
        raise ManifestError(f"shard size must be positive, got {max_mb} MB")
    utterances = read_manifest(manifest)
    if (Path(out_dir) / Path(manifest).name).resolve() == Path(manifest).resolve():
        raise ManifestError(f"{manifest}: the shards' manifest would overwrite it (another folder)")
    return write_shards(utterances, out_dir, Path(manifest).name, max_bytes=int(max_mb * 2**20))
