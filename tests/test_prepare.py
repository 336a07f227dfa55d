"""Tests for asr.prepare: LibriSpeech layout, generic folder/TSV, and the resumable downloader."""

from __future__ import annotations

import hashlib
import http.server
import io
import logging
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.manifest import read_manifest
from asr.prepare import (
    PrepareError,
    download_librispeech,
    main,
    prepare_folder,
    prepare_librispeech,
)

RATE = 16000

# speaker, chapter -> (utterance number, transcript, seconds or None when the flac is missing)
CHAPTERS = {
    ("1272", "128104"): [
        ("0000", "MISTER QUILTER IS THE APOSTLE OF THE MIDDLE CLASSES", 0.25),
        ("0001", "NOR IS MISTER QUILTER'S MANNER LESS INTERESTING", 0.5),
        ("0002", "HE TELLS US THAT AT THIS FESTIVE SEASON", None),
    ],
    ("1272", "135031"): [("0000", "BECAUSE YOU WERE SLEEPING INSTEAD OF CONQUERING", 0.375)],
    ("84", "121123"): [("0000", "GO DO YOU HEAR", 0.125), ("0001", "BUT IN LESS THAN FIVE", 0.2)],
}


def _tone(path: Path, seconds: float, rate: int = RATE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate)


def make_librispeech(root: Path, part: str = "dev-clean") -> Path:
    """root/LibriSpeech/<part>/<spk>/<chap>/... exactly like the official archives."""
    base = root / "LibriSpeech"
    base.mkdir(parents=True, exist_ok=True)
    (base / "README.TXT").write_text("LibriSpeech readme\n")
    (base / "SPEAKERS.TXT").write_text("; speakers\n")
    for (spk, chap), utts in CHAPTERS.items():
        folder = base / part / spk / chap
        folder.mkdir(parents=True)
        lines = [f"{spk}-{chap}-{num} {text}\n" for num, text, _ in utts]
        (folder / f"{spk}-{chap}.trans.txt").write_text("".join(lines))
        for num, _, seconds in utts:
            if seconds is not None:
                _tone(folder / f"{spk}-{chap}-{num}.flac", seconds)
    # a flac nobody transcribed
    _tone(base / part / "84" / "121123" / "84-121123-0099.flac", 0.1)
    return base / part


def _by_id(manifest: Path) -> dict:
    return {u.extra["id"]: u for u in read_manifest(manifest)}


def test_librispeech_manifest(tmp_path, caplog):
    make_librispeech(tmp_path / "corpus")
    out = tmp_path / "manifests"
    with caplog.at_level(logging.WARNING, logger="asr.prepare"):
        written = prepare_librispeech(tmp_path / "corpus", out)
    assert written == {"dev-clean": out / "dev-clean.jsonl"}
    utts = _by_id(written["dev-clean"])  # read_manifest checks every path resolves
    assert len(utts) == 5
    u = utts["1272-128104-0001"]
    assert u.text == "NOR IS MISTER QUILTER'S MANNER LESS INTERESTING"
    assert u.duration == pytest.approx(0.5, abs=1e-4)
    assert u.speaker == "1272" and u.extra["chapter"] == "128104"
    assert Path(u.audio_filepath).name == "1272-128104-0001.flac"
    assert utts["84-121123-0001"].duration == pytest.approx(0.2, abs=1e-4)
    raw = (out / "dev-clean.jsonl").read_text().splitlines()[0]
    assert '"audio_filepath": "../corpus/LibriSpeech/dev-clean/' in raw
    log = caplog.text
    assert "skipped 1 transcript line(s) whose .flac is missing: 1272-128104-0002" in log
    assert "skipped 1 .flac file(s) without transcript: 84-121123-0099" in log


@pytest.mark.parametrize("sub", ["LibriSpeech", "LibriSpeech/dev-clean"])
def test_librispeech_root_variants(tmp_path, sub):
    make_librispeech(tmp_path / "c")
    written = prepare_librispeech(tmp_path / "c" / sub, tmp_path / "m")
    assert sorted(_by_id(written["dev-clean"])) == sorted(
        f"{s}-{c}-{n}" for (s, c), us in CHAPTERS.items() for n, _, d in us if d is not None
    )


def test_librispeech_parts_selection(tmp_path):
    make_librispeech(tmp_path / "c", "dev-clean")
    make_librispeech(tmp_path / "c", "test-clean")
    assert set(prepare_librispeech(tmp_path / "c", tmp_path / "m")) == {"dev-clean", "test-clean"}
    only = prepare_librispeech(tmp_path / "c", tmp_path / "m2", parts=["test-clean"])
    assert list(only) == ["test-clean"] and not (tmp_path / "m2" / "dev-clean.jsonl").exists()
    with pytest.raises(PrepareError, match="part\\(s\\) not found: dev-other"):
        prepare_librispeech(tmp_path / "c", tmp_path / "m", parts=["dev-other"])
    with pytest.raises(PrepareError, match="no LibriSpeech part found"):
        prepare_librispeech(tmp_path / "m", tmp_path / "x")


def test_librispeech_malformed_line(tmp_path):
    part = make_librispeech(tmp_path / "c")
    trans = part / "84" / "121123" / "84-121123.trans.txt"
    trans.write_text("84-121123-0000 GO DO YOU HEAR\n84-121123-0001\n")
    with pytest.raises(PrepareError, match=rf"{trans}:2: malformed line"):
        prepare_librispeech(tmp_path / "c", tmp_path / "m")
    trans.write_text("84-121123-0000 GO\n1272-128104-0000 WRONG CHAPTER\n")
    with pytest.raises(PrepareError, match=rf"{trans}:2: malformed"):
        prepare_librispeech(tmp_path / "c", tmp_path / "m")


def test_folder_txt(tmp_path, caplog):
    data = tmp_path / "data"
    _tone(data / "alice" / "a1.wav", 0.3)
    (data / "alice" / "a1.txt").write_text("Hello,  world!\n")
    _tone(data / "bob" / "deep" / "b1.flac", 0.2, rate=8000)
    (data / "bob" / "deep" / "b1.txt").write_text("Second\nline")
    _tone(data / "bob" / "orphan.wav", 0.1)
    (data / "bob" / "notes.md").write_text("ignored")
    out = tmp_path / "out" / "all.jsonl"
    with caplog.at_level(logging.WARNING, logger="asr.prepare"):
        assert prepare_folder(data, out) == 2
    assert "skipped 1 audio file(s) without transcript" in caplog.text
    assert "orphan.wav" in caplog.text
    utts = {Path(u.audio_filepath).name: u for u in read_manifest(out)}
    assert utts["a1.wav"].text == "Hello, world!" and utts["a1.wav"].speaker == "alice"
    assert utts["b1.flac"].text == "Second line" and utts["b1.flac"].speaker == "deep"
    assert utts["b1.flac"].duration == pytest.approx(0.2, abs=1e-3)
    assert prepare_folder(data, out, speaker="spk") == 2
    assert {u.speaker for u in read_manifest(out)} == {"spk"}


def test_folder_tsv(tmp_path, caplog):
    data = tmp_path / "data"
    _tone(data / "clips" / "one.wav", 0.25)
    _tone(data / "clips" / "two.ogg", 0.5)
    _tone(data / "clips" / "extra.wav", 0.1)
    tsv = data / "list.tsv"
    tsv.write_text(
        "path\ttext\nclips/one.wav\tThe first one.\n\nclips/two.ogg\tsecond\n"
        "clips/gone.wav\tmissing audio\n"
    )
    out = tmp_path / "tsv.jsonl"
    with caplog.at_level(logging.WARNING, logger="asr.prepare"):
        assert prepare_folder(data, out, transcripts=tsv) == 2
    assert "skipped 1 listed audio file(s) not found" in caplog.text and "gone.wav" in caplog.text
    assert (
        "skipped 1 audio file(s) without transcript" in caplog.text and "extra.wav" in caplog.text
    )
    utts = {Path(u.audio_filepath).name: u for u in read_manifest(out)}
    assert utts["one.wav"].text == "The first one." and utts["one.wav"].speaker == "clips"
    assert utts["two.ogg"].duration == pytest.approx(0.5, abs=1e-3)
    tsv.write_text("clips/one.wav\tok\nclips/two.ogg no tab here\n")
    with pytest.raises(PrepareError, match=rf"{tsv}:2: expected 'path<TAB>text'"):
        prepare_folder(data, out, transcripts=tsv)


def test_cli(tmp_path, capsys):
    make_librispeech(tmp_path / "c")
    assert main(["librispeech", "--root", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / "dev-clean.jsonl").is_file()
    assert main(["folder", str(tmp_path / "nowhere"), str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("asr-prepare: error: ") and "not a folder" in err[-1]


# ----------------------------------------------------------------------------- downloader


class _Server:
    """A local HTTP server serving byte blobs, honouring 'Range: bytes=N-', recording requests."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.cut_at: int | None = None  # send only this many bytes, then hang up
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                rng = self.headers.get("Range")
                owner.requests.append((self.path, rng))
                body = owner.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = int(rng.split("=")[1].rstrip("-")) if rng else 0
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                end = len(body) if owner.cut_at is None else owner.cut_at
                self.wfile.write(body[start:end])
                self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/resources/12"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()


@pytest.fixture
def server():
    srv = _Server()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def _archive_of(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(folder / "LibriSpeech", arcname="LibriSpeech")
    return buffer.getvalue()


@pytest.fixture
def archive(tmp_path) -> bytes:
    make_librispeech(tmp_path / "src")
    return _archive_of(tmp_path / "src")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_download_extract_and_noop(tmp_path, server, archive):
    server.files["/resources/12/dev-clean.tar.gz"] = archive
    dest = tmp_path / "dl"
    table = {"dev-clean": _sha(archive)}
    got = download_librispeech(["dev-clean"], dest, base_url=server.url, checksums=table)
    assert got == [dest / "LibriSpeech" / "dev-clean"]
    assert server.requests == [("/resources/12/dev-clean.tar.gz", None)]
    assert (dest / "LibriSpeech" / "README.TXT").is_file()
    assert (
        not (dest / "dev-clean.tar.gz").exists() and not (dest / "dev-clean.tar.gz.part").exists()
    )
    assert len(_by_id(prepare_librispeech(dest, dest)["dev-clean"])) == 5
    # second call: marker present, no network at all
    assert download_librispeech(["dev-clean"], dest, base_url=server.url, checksums=table) == got
    assert len(server.requests) == 1


def test_download_resumes(tmp_path, server, archive):
    server.files["/resources/12/dev-clean.tar.gz"] = archive
    dest = tmp_path / "dl"
    dest.mkdir()
    half = len(archive) // 2
    (dest / "dev-clean.tar.gz.part").write_bytes(archive[:half])
    table = {"dev-clean": _sha(archive)}
    download_librispeech(
        ["dev-clean"], dest, base_url=server.url, checksums=table, keep_archives=True
    )
    assert server.requests == [("/resources/12/dev-clean.tar.gz", f"bytes={half}-")]
    assert (dest / "dev-clean.tar.gz").read_bytes() == archive
    assert (dest / "LibriSpeech" / "dev-clean" / "84" / "121123" / "84-121123.trans.txt").is_file()


def test_download_checksum_mismatch(tmp_path, server, archive):
    server.files["/resources/12/dev-clean.tar.gz"] = archive
    dest = tmp_path / "dl"
    with pytest.raises(PrepareError, match="dev-clean.tar.gz: checksum mismatch.*deleted"):
        download_librispeech(
            ["dev-clean"], dest, base_url=server.url, checksums={"dev-clean": "0" * 64}
        )
    assert list(dest.iterdir()) == []


def test_download_rejects_traversal(tmp_path, server):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("LibriSpeech/../../evil.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    server.files["/resources/12/dev-clean.tar.gz"] = buffer.getvalue()
    dest = tmp_path / "a" / "dl"
    with pytest.raises(PrepareError, match="unsafe member path 'LibriSpeech/../../evil.txt'"):
        download_librispeech(
            ["dev-clean"], dest, base_url=server.url, checksums={"dev-clean": None}
        )
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "a" / "evil.txt").exists()
    assert not (dest / "dev-clean.extracted").exists()


def test_download_http_error_and_unknown_part(tmp_path, server):
    with pytest.raises(PrepareError, match=r"dev-clean\.tar\.gz: HTTP 404"):
        download_librispeech(["dev-clean"], tmp_path, base_url=server.url)
    with pytest.raises(PrepareError, match="unknown LibriSpeech part 'dev-dirty'"):
        download_librispeech(["dev-dirty"], tmp_path, base_url=server.url)


def test_download_interrupted_then_resumed(tmp_path, server, archive):
    server.files["/resources/12/dev-clean.tar.gz"] = archive
    server.cut_at = len(archive) // 3
    dest, table = tmp_path / "dl", {"dev-clean": _sha(archive)}
    with pytest.raises(PrepareError, match="dev-clean.tar.gz: .*run again to resume"):
        download_librispeech(["dev-clean"], dest, base_url=server.url, checksums=table)
    assert (dest / "dev-clean.tar.gz.part").stat().st_size == len(archive) // 3
    server.cut_at = None
    download_librispeech(["dev-clean"], dest, base_url=server.url, checksums=table)
    assert server.requests[-1][1] == f"bytes={len(archive) // 3}-"
    assert (dest / "dev-clean.extracted").is_file()
