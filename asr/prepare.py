"""Corpus converters: LibriSpeech, a folder of audio + ``.txt``, or a TSV -> JSONL manifests
(and any manifest -> tar shards, :mod:`asr.shards`).

Every converter writes NeMo-style manifests through :func:`asr.manifest.write_manifest`, so
``audio_filepath`` is relative to the manifest's folder, ``duration`` comes from the audio
header and ``text`` is kept as written (normalisation happens when the data is loaded).
Problems with single utterances (audio without transcript, transcript without audio,
unreadable audio) are counted, logged with the first few ids, and skipped; problems with the
input as a whole (a malformed transcript line, a bad download) raise :class:`PrepareError`.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import logging
import os
import re
import sys
import tarfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from asr.audio import AUDIO_SUFFIXES, AudioError, audio_info
from asr.io_utils import atomic_write_text
from asr.manifest import ManifestError, write_manifest

log = logging.getLogger(__name__)

OPENSLR_BASE_URL = "https://www.openslr.org/resources/12/"

# SHA-256 of the official OpenSLR SLR12 archives, as listed in torchaudio's
# datasets/librispeech.py (torchaudio 2.11); the same values appear in other public copies.
LIBRISPEECH_SHA256: dict[str, str | None] = {
    "dev-clean": "76f87d090650617fca0cac8f88b9416e0ebf80350acb97b343a85fa903728ab3",
    "dev-other": "12661c48e8c3fe1de2c1caa4c3e135193bfb1811584f11f569dd12645aa84365",
    "test-clean": "39fde525e59672dc6d1551919b1478f724438a95aa55f874b576be21967e6c23",
    "test-other": "d09c181bba5cf717b3dee7d4d592af11a3ee3a09e08ae025c5506f6ebe961c29",
    "train-clean-100": "d4ddd1d5a6ab303066f14971d768ee43278a5f2a0aa43dc716b0e64ecbbbf6e2",
    "train-clean-360": "146a56496217e96c14334a160df97fffedd6e0a04e66b9c5af0d40be3c792ecf",
    "train-other-500": "ddb22f27f96ec163645d53215559df6aa36515f26e01dd70798188350adcb6d2",
}
LIBRISPEECH_PARTS = tuple(LIBRISPEECH_SHA256)

_WORKERS = 2  # header reads are I/O bound; more threads only fight the other jobs for disk
_SHOW_IDS = 5
_CHUNK = 1 << 20
_UTT_ID = re.compile(r"\d+-\d+-\d+")
# tarfile's "data" filter exists from Python 3.12 and in 3.10.12+/3.11.4+ security releases.
_HAS_DATA_FILTER = hasattr(tarfile, "data_filter")


class PrepareError(RuntimeError):
    """Input that cannot be converted or downloaded; the message is one line naming the cause."""


# ----------------------------------------------------------------------------- shared helpers


def _report_skipped(where: str, reason: str, ids: Sequence[str]) -> None:
    if ids:
        shown = ", ".join(ids[:_SHOW_IDS]) + (", ..." if len(ids) > _SHOW_IDS else "")
        log.warning("%s: skipped %d %s: %s", where, len(ids), reason, shown)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line without newline); a decoding error becomes a file:line PrepareError."""
    number = 0
    try:
        with open(path, encoding="utf-8-sig") as handle:
            for number, line in enumerate(handle, start=1):
                yield number, line.rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise PrepareError(f"{path}:{number + 1}: not valid UTF-8 ({exc.reason})") from None


def _duration(path: Path) -> float | None:
    try:
        duration, _ = audio_info(path)
    except AudioError:
        return None
    return duration if duration > 0 else None  # the manifest reader rejects empty audio


def _with_durations(candidates: list[tuple[Path, dict]], where: str) -> list[dict]:
    """Add header durations to (audio path, fields) pairs; unreadable audio is reported, dropped."""
    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        durations = list(pool.map(_duration, [path for path, _ in candidates]))
    entries, bad = [], []
    for (path, fields), duration in zip(candidates, durations, strict=True):
        if duration is None:
            bad.append(str(path))
        else:
            entries.append({"audio_filepath": str(path), "duration": duration, **fields})
    _report_skipped(where, "unreadable or empty audio file(s)", bad)
    return entries


def _write(out: Path, entries: list[dict], where: str) -> int:
    if not entries:  # an empty manifest would only fail later, far from the cause
        raise PrepareError(f"{where}: no usable utterances, nothing written to {out}")
    count = write_manifest(out, entries)
    hours = sum(entry["duration"] for entry in entries) / 3600
    log.info("wrote %d utterances (%.2f h) to %s", count, hours, out)
    return count


# ----------------------------------------------------------------------------- LibriSpeech


def _is_part_dir(path: Path) -> bool:
    return next(path.glob("*/*/*.trans.txt"), None) is not None


def _find_parts(root: Path) -> dict[str, Path]:
    """Part folders under ``root``, which may hold ``LibriSpeech/``, be it, or be one part."""
    if not root.is_dir():
        raise PrepareError(f"{root}: not a folder")
    root = root.resolve()
    if _is_part_dir(root):
        return {root.name: root}
    base = root / "LibriSpeech" if (root / "LibriSpeech").is_dir() else root
    found = {d.name: d for d in sorted(base.iterdir()) if d.is_dir() and _is_part_dir(d)}
    if not found:
        raise PrepareError(
            f"{root}: no LibriSpeech part found "
            "(expected LibriSpeech/<part>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt)"
        )
    return found


def _read_trans(trans: Path) -> dict[str, str]:
    """utterance id -> transcript of one ``<speaker>-<chapter>.trans.txt``."""
    prefix = trans.name[: -len(".trans.txt")] + "-"
    texts: dict[str, str] = {}
    for number, line in _lines(trans):
        if not line.strip():
            continue
        utt, _, text = line.strip().partition(" ")
        if not _UTT_ID.fullmatch(utt) or not utt.startswith(prefix) or not text.strip():
            raise PrepareError(
                f"{trans}:{number}: malformed line, expected '{prefix}<utt> <TRANSCRIPT>', "
                f"got {line.strip()[:60]!r}"
            )
        if utt in texts:
            raise PrepareError(f"{trans}:{number}: duplicate utterance id {utt}")
        texts[utt] = text.strip()
    return texts


def _librispeech_entries(part_dir: Path) -> list[dict]:
    flacs = set(part_dir.glob("*/*/*.flac"))
    candidates, missing = [], []
    for trans in sorted(part_dir.glob("*/*/*.trans.txt")):
        for utt, text in _read_trans(trans).items():
            flac = trans.parent / f"{utt}.flac"
            if flac not in flacs:
                missing.append(utt)
                continue
            flacs.discard(flac)
            speaker, chapter, _ = utt.split("-")
            fields = {"text": text, "speaker": speaker, "chapter": chapter, "id": utt}
            candidates.append((flac, fields))
    _report_skipped(str(part_dir), "transcript line(s) whose .flac is missing", missing)
    _report_skipped(
        str(part_dir), ".flac file(s) without transcript", sorted(f.stem for f in flacs)
    )
    return _with_durations(candidates, str(part_dir))


def prepare_librispeech(
    root: str | Path, out_dir: str | Path, parts: Iterable[str] | None = None
) -> dict[str, Path]:
    """Write ``<out_dir>/<part>.jsonl`` for each LibriSpeech part found under ``root``.

    ``root`` may contain ``LibriSpeech/``, be the ``LibriSpeech`` folder, or be one part
    folder. ``parts`` selects parts by folder name (default: all found). Entries carry
    ``speaker``, ``chapter`` and ``id``; transcripts stay uppercase as distributed.
    Returns part name -> manifest path.
    """
    found = _find_parts(Path(root))
    wanted = list(found) if parts is None else list(dict.fromkeys(parts))
    absent = [part for part in wanted if part not in found]
    if absent:
        raise PrepareError(
            f"{root}: part(s) not found: {', '.join(absent)} (found: {', '.join(found)})"
        )
    manifests = {}
    for part in wanted:
        out = Path(out_dir) / f"{part}.jsonl"
        _write(out, _librispeech_entries(found[part]), str(found[part]))
        manifests[part] = out
    return manifests


# ----------------------------------------------------------------------------- download


def _expected_size(response: http.client.HTTPResponse, offset: int, url: str) -> int | None:
    """Final size of the file, checking that a 206 answer resumes where the .part file ends."""
    if response.status == 206:
        match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", ""))
        if not match or int(match.group(1)) != offset:
            raise PrepareError(f"{url}: server answered the resume request with a wrong range")
        return None if match.group(2) == "*" else int(match.group(2))
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _download(url: str, archive: Path, timeout: float) -> None:
    """Fetch ``url`` into ``archive`` through ``archive.part``, resuming it with a Range request."""
    partial = archive.with_name(archive.name + ".part")
    offset = partial.stat().st_size if partial.is_file() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    log.info("downloading %s%s", url, f" (resuming at byte {offset})" if offset else "")
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=timeout
        ) as r:
            if offset and r.status != 206:  # the server ignored Range: start again
                offset = 0
            expected = _expected_size(r, offset, url)
            with open(partial, "ab" if offset else "wb") as out:
                while chunk := r.read(_CHUNK):
                    out.write(chunk)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to fetch: the .part may already be whole
            total = exc.headers.get("Content-Range", "").rpartition("/")[2]
            if total == str(offset):
                os.replace(partial, archive)
                return
            partial.unlink()  # longer than the file: unusable, start afresh next time
            raise PrepareError(
                f"{url}: cannot resume at byte {offset}; removed {partial}"
            ) from None
        raise PrepareError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, dropped connections
        reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        raise PrepareError(f"{url}: download failed ({reason}); run again to resume") from None
    size = partial.stat().st_size
    if expected is not None and size != expected:
        raise PrepareError(f"{url}: got {size} of {expected} bytes; run again to resume")
    os.replace(partial, archive)


def _verify(archive: Path, url: str, expected: str | None) -> None:
    if expected is None:
        log.warning("%s: no official checksum known, archive NOT verified", url)
        return
    digest = hashlib.sha256()
    with open(archive, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != expected.lower():
        archive.unlink()
        raise PrepareError(
            f"{url}: checksum mismatch (sha256 {digest.hexdigest()}, expected {expected}); "
            f"deleted {archive}, run again to download it anew"
        )


def _check_member(archive: Path, member: tarfile.TarInfo) -> None:
    name = member.name
    if (
        name.startswith(("/", "\\"))
        or re.match(r"[A-Za-z]:", name)
        or ".." in re.split(r"[\\/]", name)
    ):
        raise PrepareError(f"{archive}: unsafe member path {name!r} (absolute or '..'), refused")
    if not (member.isfile() or member.isdir()):
        raise PrepareError(f"{archive}: member {name!r} is a link or device, refused")


def _extract(archive: Path, dest: Path) -> None:
    """Unpack in a single pass over the gzip stream, checking each member before writing it."""
    log.info("extracting %s", archive)
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                _check_member(archive, member)
                if _HAS_DATA_FILTER:
                    tar.extract(member, dest, filter="data")
                else:
                    tar.extract(member, dest)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise PrepareError(f"{archive}: cannot extract ({exc})") from None


def download_librispeech(
    parts: Iterable[str],
    dest_dir: str | Path,
    base_url: str = OPENSLR_BASE_URL,
    checksums: Mapping[str, str | None] | None = None,
    keep_archives: bool = False,
    timeout: float = 60.0,
) -> list[Path]:
    """Download, verify and extract LibriSpeech parts into ``dest_dir/LibriSpeech/<part>``.

    Downloads resume from ``<part>.tar.gz.part``; archives are checked against the official
    SHA-256 (``checksums`` overrides or adds entries; ``None`` = unchecked, with a warning);
    a ``<part>.extracted`` marker makes a second call a no-op. Returns the part folders.
    """
    table = {**LIBRISPEECH_SHA256, **(checksums or {})}
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    done = []
    for part in parts:
        if part not in table:
            raise PrepareError(f"unknown LibriSpeech part {part!r} (known: {', '.join(table)})")
        part_dir, marker = dest / "LibriSpeech" / part, dest / f"{part}.extracted"
        if not (marker.is_file() and part_dir.is_dir()):
            url = f"{base_url.rstrip('/')}/{part}.tar.gz"
            archive = dest / f"{part}.tar.gz"
            if not archive.is_file():  # an archive left by an interrupted extraction is reused
                _download(url, archive, timeout)
            _verify(archive, url, table[part])
            _extract(archive, dest)
            if not part_dir.is_dir():
                raise PrepareError(f"{url}: archive has no LibriSpeech/{part} folder")
            atomic_write_text(marker, url + "\n")
            if not keep_archives:
                archive.unlink()
        done.append(part_dir)
    return done


# ----------------------------------------------------------------------------- generic folder


def _read_tsv(tsv: Path) -> dict[Path, str]:
    """audio path (resolved against the TSV's folder) -> text, from ``path<TAB>text`` lines."""
    if not tsv.is_file():
        raise PrepareError(f"{tsv}: TSV file not found")
    base = tsv.resolve().parent
    texts: dict[Path, str] = {}
    for number, line in _lines(tsv):
        if not line.strip() or (number == 1 and line.lower().split("\t") == ["path", "text"]):
            continue
        rel, tab, text = line.partition("\t")
        if not tab or not rel.strip():
            raise PrepareError(f"{tsv}:{number}: expected 'path<TAB>text', got {line[:60]!r}")
        path = Path(os.path.normpath(base / rel.strip()))
        if path in texts:
            raise PrepareError(f"{tsv}:{number}: duplicate path {rel.strip()!r}")
        texts[path] = " ".join(text.split())
    return texts


def _texts_beside(audio: Iterable[Path]) -> dict[Path, str]:
    """audio path -> contents of its same-stem ``.txt`` (lines joined, whitespace collapsed)."""
    texts = {}
    for path in audio:
        txt = path.with_suffix(".txt")
        if txt.is_file():
            texts[path] = " ".join(" ".join(line for _, line in _lines(txt)).split())
    return texts


def prepare_folder(
    folder: str | Path,
    out_manifest: str | Path,
    transcripts: str | Path = "txt",
    speaker: str | None = None,
) -> int:
    """Write a manifest for the audio files (wav/flac/ogg/mp3) found recursively in ``folder``.

    ``transcripts="txt"`` reads a same-stem ``.txt`` beside each audio file; otherwise it is
    a TSV of ``path<TAB>text`` lines, paths relative to the TSV's folder (an optional header
    ``path<TAB>text`` is skipped). Audio without transcript is reported and skipped.
    ``speaker`` defaults to each file's parent folder name. Returns the utterance count.
    """
    root = Path(folder)
    if not root.is_dir():
        raise PrepareError(f"{root}: not a folder")
    root = root.resolve()
    found = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    found = [p for p in found if p.is_file()]
    if str(transcripts) == "txt":
        where, texts = str(root), _texts_beside(found)
    else:
        where = str(transcripts)
        texts = _read_tsv(Path(transcripts))
        absent = [str(path) for path in texts if not path.is_file()]
        _report_skipped(where, "listed audio file(s) not found", absent)
        texts = {path: text for path, text in texts.items() if path.is_file()}
    _report_skipped(
        where, "audio file(s) without transcript", [str(p) for p in found if p not in texts]
    )
    _report_skipped(where, "empty transcript(s)", [str(p) for p, text in texts.items() if not text])
    candidates = [
        (path, {"text": text, "speaker": speaker or path.parent.name})
        for path, text in texts.items()
        if text
    ]
    return _write(Path(out_manifest), _with_durations(candidates, where), where)


# ----------------------------------------------------------------------------- command line


def _cmd_librispeech(args: argparse.Namespace) -> None:
    if args.download:
        download_librispeech(args.download, args.root, base_url=args.base_url)
    parts = args.parts or args.download or None
    for path in prepare_librispeech(args.root, args.out or args.root, parts).values():
        print(path)


def _cmd_folder(args: argparse.Namespace) -> None:
    prepare_folder(args.folder, args.out, speaker=args.speaker)
    print(args.out)


def _cmd_tsv(args: argparse.Namespace) -> None:
    folder = args.folder or Path(args.tsv).parent
    prepare_folder(folder, args.out, transcripts=args.tsv, speaker=args.speaker)
    print(args.out)


def _cmd_shards(args: argparse.Namespace) -> None:
    from asr.shards import shard_manifest

    print(shard_manifest(args.manifest, args.out, args.shard_mb))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asr-prepare", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    libri = sub.add_parser("librispeech", help="LibriSpeech parts -> <part>.jsonl manifests")
    libri.add_argument("--root", required=True, help="folder holding (or to receive) LibriSpeech/")
    libri.add_argument("--out", help="folder for the manifests (default: --root)")
    libri.add_argument("--parts", nargs="+", metavar="PART", help="parts to convert (default: all)")
    libri.add_argument(
        "--download",
        nargs="+",
        metavar="PART",
        choices=LIBRISPEECH_PARTS,
        help="download and extract these parts from OpenSLR first",
    )
    libri.add_argument("--base-url", default=OPENSLR_BASE_URL, help=argparse.SUPPRESS)
    libri.set_defaults(run=_cmd_librispeech)
    folder = sub.add_parser("folder", help="audio files with a same-stem .txt beside each")
    folder.add_argument("folder")
    folder.add_argument("out", help="manifest to write (.jsonl)")
    folder.add_argument("--speaker", help="speaker for every file (default: parent folder name)")
    folder.set_defaults(run=_cmd_folder)
    tsv = sub.add_parser("tsv", help="a TSV of path<TAB>text lines")
    tsv.add_argument("tsv")
    tsv.add_argument("out", help="manifest to write (.jsonl)")
    tsv.add_argument(
        "--folder", help="audio folder checked for untranscribed files (default: the TSV's)"
    )
    tsv.add_argument("--speaker", help="speaker for every file (default: parent folder name)")
    tsv.set_defaults(run=_cmd_tsv)
    shards = sub.add_parser("shards", help="a manifest -> tar shards + a manifest into them")
    shards.add_argument("manifest", help="the manifest whose audio goes into the shards")
    shards.add_argument("out", help="folder for shard-NNNNN.tar and the new manifest")
    shards.add_argument("--shard-mb", type=float, default=1024, help="audio per shard (MB)")
    shards.set_defaults(run=_cmd_shards)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``asr-prepare`` entry point; returns the exit status (2 on any error)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse already printed "asr-prepare: error: ..." or help
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(level=logging.INFO, format="asr-prepare: %(message)s")
    try:
        args.run(args)
    except (PrepareError, ManifestError, OSError) as exc:
        print(f"asr-prepare: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
