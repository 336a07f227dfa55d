"""Transcribing audio files with a checkpoint, from Python or from ``asr-transcribe``.

>>> t = Transcriber.from_checkpoint("best.pt")
>>> result = t.transcribe(["a.wav", "b.flac"])[0]
>>> result.text, [(w.word, w.start, w.end, w.confidence) for w in result.words]

The checkpoint alone rebuilds features, tokenizer and model. Each transcript carries its
words with times (seconds) and confidences from the CTC alignment
(:func:`asr.decoding.timed_words`); :mod:`asr.outputs` writes them as txt/json/srt/vtt/tsv.
Files up to ``chunk.chunk_seconds`` long are decoded whole, several to a batch; longer ones
are streamed and cut at pauses (:mod:`asr.longform`), so memory stays bounded whatever the
length.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from asr.audio import AUDIO_SUFFIXES, AudioError, audio_info, load_audio
from asr.checkpoint import LoadedModel, build_from_checkpoint
from asr.config import DecodingConfig
from asr.data import batches_by_duration, pad_stack
from asr.decoding import Decoder, Hypothesis, Word, timed_words
from asr.longform import ChunkSpec, keep_words, split_stream, stream_audio


@dataclass
class Transcript:
    """The result for one file. ``error`` is set (and the rest empty) for a skipped file."""

    path: str
    text: str
    duration: float  # seconds of audio
    words: list[Word] = field(default_factory=list)
    score: float = 0.0  # the decoder's score of ``text``
    #: runner-up texts with their scores, best first (beam search with nbest > 1)
    alternatives: list[tuple[str, float]] = field(default_factory=list)
    error: str = ""


# A long file's chunk batches are padded to a multiple of this: at most chunk_seconds / 2
# distinct lengths, however many chunks (each new shape costs oneDNN kernel-cache memory)
CHUNK_PAD_SECONDS = 2


class Transcriber:
    """A loaded model plus a decoder; :meth:`transcribe` takes file paths or waveforms."""

    def __init__(
        self,
        loaded: LoadedModel,
        decoder: Decoder,
        device: torch.device,
        batch_seconds: float = 120.0,
        chunk: ChunkSpec = ChunkSpec(),
    ):
        self.loaded = loaded
        self.decoder = decoder
        self.device = device
        self.batch_seconds = max(batch_seconds, chunk.chunk_seconds)
        # Decoding a file whole costs memory in proportion to its length (the BiLSTM's
        # activations, and the word alignment's back-pointers: output frames x (2 x
        # characters + 1) bytes, ~0.25 GB at 10 minutes of speech): longer files are chunked.
        self.chunk = chunk

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str = "auto",
        decoding: DecodingConfig | None = None,
        workers: int = 1,
        chunk: ChunkSpec = ChunkSpec(),
    ) -> Transcriber:
        """``path``: a checkpoint, or a model exported by ``asr-export`` (``.ts`` TorchScript,
        ``.onnx`` ONNX Runtime); ``workers``: processes for beam search over the utterances
        of a batch; ``chunk``: how files longer than ``chunk.chunk_seconds`` are cut."""
        from asr.evaluate import make_decoder
        from asr.export import build_from_export, format_of
        from asr.runtime import pick_device

        dev = pick_device(device)
        if format_of(path) == "checkpoint":
            loaded = build_from_checkpoint(path, dev)
        else:
            loaded = build_from_export(path, dev)
        decoder = make_decoder(
            decoding or DecodingConfig(), loaded.tokenizer, workers, loaded.log_priors
        )
        return cls(loaded, decoder, dev, chunk=chunk)

    def close(self) -> None:
        """Stop the decoder's worker processes (beam search with ``workers > 1``)."""
        self.decoder.close()

    def __enter__(self) -> Transcriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def sample_rate(self) -> int:
        return self.loaded.features.spec.sample_rate

    @property
    def frame_seconds(self) -> float:
        """Time step of the model's output frames: feature hop x subsampling."""
        return self.loaded.features.spec.hop_ms / 1000 * self.loaded.model.dims.subsampling

    @torch.no_grad()
    def emissions(
        self, waves: Sequence[torch.Tensor], pad_multiple: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mono waveforms [N] at :attr:`sample_rate` -> (log_probs [B, T, V], lengths [B]).

        ``pad_multiple``: pad the batch to a multiple of this many samples. The model is
        exact under padding, so only the shapes change: fewer distinct shapes keep
        oneDNN's per-shape kernel cache from growing over a long file's chunks.
        """
        padded, lengths = pad_stack([w.float() for w in waves])
        if pad_multiple > 0:
            extra = -padded.shape[1] % pad_multiple
            padded = torch.nn.functional.pad(padded, (0, extra))
        feats, frames = self.loaded.features(padded.to(self.device), lengths.to(self.device))
        return self.loaded.model(feats, frames)

    def _decode(
        self, waves: Sequence[torch.Tensor], pad_multiple: int = 0
    ) -> list[tuple[Hypothesis, list[Word]]]:
        """Best hypothesis and timed words of each waveform, as one padded batch."""
        log_probs, lengths = self.emissions(waves, pad_multiple)
        hyps = self.decoder(log_probs, lengths)
        log_probs = log_probs.float().cpu().numpy()
        return [
            (
                hyp,
                timed_words(
                    log_probs[b, :n],
                    hyp.tokens,
                    self.loaded.tokenizer,
                    self.frame_seconds,
                    hyp.text.split(),
                ),
            )
            for b, (hyp, n) in enumerate(zip(hyps, lengths.tolist(), strict=True))
        ]

    def batches(self, lengths: Sequence[float]) -> list[list[int]]:
        """Indices in batches of similar ``lengths`` (seconds), each under ``batch_seconds``."""
        return batches_by_duration(lengths, self.batch_seconds)

    def file_emissions(
        self,
        paths: Sequence[str | Path],
        byte_ranges: Sequence[tuple[int, int] | None] | None = None,
    ) -> list[np.ndarray]:
        """Log-probs [T, V] (float32, valid frames only) of each audio file, in order given;
        ``byte_ranges`` for audio inside tar shards (see :func:`asr.audio.load_audio`)."""
        ranges = byte_ranges if byte_ranges is not None else [None] * len(paths)
        waves = [
            load_audio(p, self.sample_rate, byte_range=r)
            for p, r in zip(paths, ranges, strict=True)
        ]
        result: list[np.ndarray] = [np.zeros((0, 0), np.float32)] * len(waves)
        for batch in self.batches([w.shape[0] / self.sample_rate for w in waves]):
            log_probs, lengths = self.emissions([waves[i] for i in batch])
            log_probs = log_probs.float().cpu().numpy()
            for row, (i, n) in enumerate(zip(batch, lengths.tolist(), strict=True)):
                result[i] = log_probs[row, :n].copy()
        return result

    def transcribe(
        self, paths: Sequence[str | Path], progress: bool = False, skip_errors: bool = False
    ) -> list[Transcript]:
        """Transcripts of audio files, in the order given; similar lengths are batched together.

        Audio is read one batch at a time (durations come from the file headers), so
        memory holds one batch. ``skip_errors``: an unreadable file gives a transcript
        with ``error`` set instead of raising :class:`asr.audio.AudioError`.
        """
        from tqdm import tqdm

        results: list[Transcript | None] = [None] * len(paths)
        durations = []
        for i, path in enumerate(paths):
            try:
                durations.append(audio_info(path)[0])
            except AudioError as exc:
                if not skip_errors:
                    raise
                results[i] = Transcript(str(path), "", 0.0, error=str(exc))
                durations.append(0.0)
        todo = [i for i in range(len(paths)) if results[i] is None]
        long = [i for i in todo if durations[i] > self.chunk.chunk_seconds]
        todo = [i for i in todo if durations[i] <= self.chunk.chunk_seconds]
        show = progress and len(paths) > 1  # long files have their own bar
        with tqdm(total=len(todo) + len(long), unit="file", disable=not show) as bar:
            for i in long:
                try:
                    results[i] = self.transcribe_long(paths[i], progress)
                except AudioError as exc:
                    if not skip_errors:
                        raise
                    results[i] = Transcript(str(paths[i]), "", 0.0, error=str(exc))
                bar.update(1)
            for batch in self.batches([durations[i] for i in todo]):
                batch = [todo[i] for i in batch]
                done = self._transcribe_files(paths, batch, skip_errors)
                for i, transcript in zip(batch, done, strict=True):
                    results[i] = transcript
                bar.update(len(batch))
        return results

    def transcribe_long(self, path: str | Path, progress: bool = False) -> Transcript:
        """One file of any length, streamed and cut into chunks (:mod:`asr.longform`),
        decoded ``batch_seconds`` of chunks at a time; words are stitched in file time.
        The text is the stitched words; there are no alternatives across chunks."""
        from tqdm import tqdm

        chunks = split_stream(
            stream_audio(path, self.sample_rate, self.chunk.block_seconds),
            self.sample_rate,
            self.chunk,
        )
        per_batch = max(1, int(self.batch_seconds // self.chunk.chunk_seconds))
        words: list[Word] = []
        score, end = 0.0, 0.0
        bar = tqdm(unit="s audio", disable=not progress, leave=False, desc=Path(path).name)
        with bar:
            # islice takes the chunks lazily: one batch of them is in memory at a time
            while batch := list(itertools.islice(chunks, per_batch)):
                waves = [torch.from_numpy(c.wave) for c in batch]
                decoded = self._decode(waves, CHUNK_PAD_SECONDS * self.sample_rate)
                for c, (hyp, chunk_words) in zip(batch, decoded, strict=True):
                    words.extend(keep_words(chunk_words, c))
                    score += hyp.score
                end = batch[-1].start + len(batch[-1].wave) / self.sample_rate
                bar.update(round(sum(len(c.wave) for c in batch) / self.sample_rate))
        words = [dataclasses.replace(w, end=min(w.end, end)) for w in words]
        return Transcript(str(path), " ".join(w.word for w in words), end, words, score)

    def _transcribe_files(
        self, paths: Sequence[str | Path], batch: list[int], skip_errors: bool
    ) -> list[Transcript]:
        waves: dict[int, torch.Tensor] = {}
        failed: dict[int, str] = {}
        for i in batch:
            try:
                waves[i] = load_audio(paths[i], self.sample_rate)
            except AudioError as exc:
                if not skip_errors:
                    raise
                failed[i] = str(exc)
        decoded = dict(zip(waves, self._decode(list(waves.values())), strict=True)) if waves else {}
        out = []
        for i in batch:
            if i in failed:
                out.append(Transcript(str(paths[i]), "", 0.0, error=failed[i]))
                continue
            hyp, words = decoded[i]
            duration = waves[i].shape[0] / self.sample_rate
            words = [dataclasses.replace(w, end=min(w.end, duration)) for w in words]
            out.append(
                Transcript(
                    str(paths[i]),
                    hyp.text,
                    duration,
                    words,
                    hyp.score,
                    [(alt.text, alt.score) for alt in hyp.alternatives],
                )
            )
        return out


def collect_audio(inputs: Sequence[str | Path]) -> tuple[list[Path], list[Path | None]]:
    """Files given, and audio files found (recursively, sorted) in folders given.

    Returns (paths, roots): ``roots[i]`` is the folder ``paths[i]`` was found in, None for a
    file named directly (kept whatever its suffix). Missing inputs and folders without audio
    raise :class:`asr.audio.AudioError`.
    """
    paths: list[Path] = []
    roots: list[Path | None] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(
                p for p in item.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()
            )
            if not found:
                raise AudioError(f"{item}: no audio files in this folder")
            paths.extend(found)
            roots.extend([item] * len(found))
        elif item.exists():
            paths.append(item)
            roots.append(None)
        else:
            raise AudioError(f"{item}: file not found")
    return paths, roots
