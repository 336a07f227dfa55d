"""Speech synthesis with espeak-ng, called through ctypes: no system package needed.

The ``espeakng-loader`` wheel ships ``libespeak-ng.so`` and its ``espeak-ng-data`` folder;
this module loads that library and drives its C API (``speak_lib.h``) in synchronous
retrieval mode: every ``espeak_Synth`` call hands the int16 samples and the word events
back to a Python callback, from which :meth:`Espeak.synthesize` returns the audio and
per-word start/end times.

libespeak-ng keeps its state (current voice, parameters, callback) in C globals, so there
is one engine per process. :class:`Espeak` objects are thin handles onto it: the library is
initialised lazily, in the process that first synthesises or asks for phonemes (a forked
child re-initialises its own copy), and calls are serialised by a lock.
"""

from __future__ import annotations

import ctypes
import os
import re
import threading
from collections.abc import Sequence
from ctypes import c_char_p, c_int, c_uint, c_void_p
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Values from espeak-ng's speak_lib.h (API revision 12).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # without it a missing data folder calls exit()
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_MSG_TERMINATED = 6
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EE_OK = 0
_PHONEME_SEPARATOR = ord("_") << 8  # phonememode bits 8-23: the character between phonemes
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE, _PARAM_WORDGAP = 1, 2, 3, 4, 7

_TAIL_KEEP = 0.1  # seconds of silence kept after the last voiced sample
_SILENCE_DB = -45.0  # a sample this far below the peak counts as silence
_PUNCT = '.,;:!?"()[]'  # stripped from the ends of returned words


class SynthError(RuntimeError):
    """espeak-ng cannot be loaded, or a voice/parameter is not usable."""


class _EventId(ctypes.Union):
    _fields_ = [("number", c_int), ("name", c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    # espeak_EVENT: positions are 1-based characters into the text; audio_position is in ms.
    _fields_ = [
        ("type", c_int),
        ("unique_identifier", c_uint),
        ("text_position", c_int),
        ("length", c_int),
        ("audio_position", c_int),
        ("sample", c_int),
        ("user_data", c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(c_int, ctypes.POINTER(ctypes.c_short), c_int, ctypes.POINTER(_Event))


@dataclass
class SynthResult:
    """One synthesised utterance."""

    #: float32 mono samples in [-1, 1]
    audio: np.ndarray
    #: the engine's native rate (espeak-ng: 22050 Hz; Flite's US voices: 16000 Hz)
    sample_rate: int
    #: (word, start s, end s) for each whitespace-separated word of the text, in order
    words: list[tuple[str, float, float]] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate


def data_path() -> Path:
    """The ``espeak-ng-data`` folder shipped by ``espeakng-loader``."""
    try:
        import espeakng_loader
    except ImportError:
        raise SynthError("espeak-ng unavailable: pip install espeakng-loader") from None
    try:
        return Path(espeakng_loader.get_data_path())
    except RuntimeError as exc:
        raise SynthError(f"espeak-ng data folder missing: {exc}") from None


def _library_path() -> str:
    import espeakng_loader  # data_path() already reported a missing package

    return espeakng_loader.get_library_path()


def list_english_voices() -> list[str]:
    """Language codes of the English voices in the data folder (``en``, ``en-us``, ...)."""
    lang_dir = data_path() / "lang"
    codes = {
        p.name.lower()
        for p in lang_dir.rglob("*")
        if p.is_file() and (p.name.lower() == "en" or p.name.lower().startswith("en-"))
    }
    return sorted(codes)


def list_variants() -> list[str]:
    """Names of the voice variants (``m1``, ``f3``, ``klatt``...) usable as ``lang+variant``."""
    return sorted(p.name for p in (data_path() / "voices" / "!v").iterdir() if p.is_file())


class _Engine:
    """The process's initialised libespeak-ng, with the buffers its callback fills."""

    def __init__(self) -> None:
        folder = data_path()
        try:
            lib = ctypes.CDLL(_library_path())
        except OSError as exc:
            raise SynthError(f"cannot load libespeak-ng: {exc}") from None
        _declare(lib)
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 100, str(folder).encode(), _INITIALIZE_DONT_EXIT
        )
        if rate <= 0:  # 0 when the data folder is unusable, -1 on internal errors
            raise SynthError(f"espeak_Initialize failed with data folder {folder}")
        self.lib = lib
        self.sample_rate = int(rate)
        self.chunks: list[np.ndarray] = []
        self.word_events: list[tuple[int, int]] = []  # (0-based char position, ms)
        self.variants = set(list_variants())
        # Keep a reference: the C side only holds a raw pointer to the trampoline.
        self.callback = _CALLBACK(self._on_audio)
        lib.espeak_SetSynthCallback(self.callback)

    def _on_audio(self, wav, n_samples, events) -> int:
        if wav and n_samples > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        i = 0
        while events and events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == _EVENT_WORD:
                self.word_events.append((event.text_position - 1, event.audio_position))
            elif event.type == _EVENT_MSG_TERMINATED:
                break
            i += 1
        return 0  # 0 = continue synthesis

    def set_voice(self, voice: str) -> None:
        language, _, variant = voice.partition("+")
        # espeak silently ignores an unknown variant, so check it here.
        if variant and variant not in self.variants:
            raise SynthError(f"unknown espeak-ng variant {variant!r} in voice {voice!r}")
        if not language or self.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            raise SynthError(f"unknown espeak-ng voice {voice!r} (see list_english_voices())")

    def set_parameter(self, parameter: int, value: int, name: str) -> None:
        if self.lib.espeak_SetParameter(parameter, int(value), 0) != _EE_OK:
            raise SynthError(f"espeak-ng rejected {name}={value}")

    def speak(self, text: str) -> tuple[np.ndarray, list[tuple[int, int]]]:
        self.chunks, self.word_events = [], []
        data = text.encode("utf-8")
        status = self.lib.espeak_Synth(
            data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
        )
        if status != _EE_OK or self.lib.espeak_Synchronize() != _EE_OK:
            raise SynthError(f"espeak_Synth failed (status {status}) for {text[:40]!r}")
        samples = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)
        return samples, self.word_events

    def phonemes(self, text: str) -> str:
        """espeak-ng's phoneme mnemonics for ``text``: phonemes joined by "_", words by " "."""
        buffer = ctypes.create_string_buffer(text.encode("utf-8"))
        pointer = c_void_p(ctypes.addressof(buffer))
        clauses = []
        # one clause per call; the library advances the pointer and sets it to NULL at the end
        while pointer.value:
            result = self.lib.espeak_TextToPhonemes(
                ctypes.byref(pointer), _CHARS_UTF8, _PHONEME_SEPARATOR
            )
            clauses.append((result or b"").decode("utf-8", "replace").strip())
        return " ".join(c for c in clauses if c)


def _declare(lib: ctypes.CDLL) -> None:
    lib.espeak_Initialize.argtypes = [c_int, c_int, c_char_p, c_int]
    lib.espeak_Initialize.restype = c_int
    lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [c_char_p]
    lib.espeak_SetVoiceByName.restype = c_int
    lib.espeak_SetParameter.argtypes = [c_int, c_int, c_int]
    lib.espeak_SetParameter.restype = c_int
    lib.espeak_Synth.argtypes = [c_void_p, ctypes.c_size_t, c_uint, c_int, c_uint, c_uint]
    lib.espeak_Synth.argtypes += [ctypes.POINTER(c_uint), c_void_p]
    lib.espeak_Synth.restype = c_int
    lib.espeak_Synchronize.argtypes = []
    lib.espeak_Synchronize.restype = c_int
    lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(c_void_p), c_int, c_int]
    lib.espeak_TextToPhonemes.restype = c_char_p


_engine: _Engine | None = None
_engine_pid: int | None = None
_lock = threading.Lock()


def _get_engine() -> _Engine:
    global _engine, _engine_pid
    if _engine is None or _engine_pid != os.getpid():
        _engine, _engine_pid = _Engine(), os.getpid()
    return _engine


class Espeak:
    """Handle onto the process-wide espeak-ng engine.

    libespeak-ng has global state, so every ``Espeak`` in a process shares one engine and
    calls are serialised. The library is initialised on the first call in each process, so
    an instance may be created before forking or sent to worker processes.
    """

    @property
    def sample_rate(self) -> int:
        with _lock:
            return _get_engine().sample_rate

    def synthesize(
        self,
        text: str,
        voice: str = "en-us",
        rate: int = 175,
        pitch: int = 50,
        pitch_range: int = 50,
    ) -> SynthResult:
        """Speak ``text`` with ``voice`` (``"en-us"`` or ``"en-us+m3"``: language + variant).

        ``rate`` is in words per minute (80-450), ``pitch`` and ``pitch_range`` are 0-100
        (50 = the voice's normal). Trailing silence is cut to about 0.1 s.
        """
        if not 80 <= rate <= 450:
            raise SynthError(f"rate must be 80-450 words per minute, got {rate}")
        if not (0 <= pitch <= 100 and 0 <= pitch_range <= 100):
            raise SynthError(f"pitch and pitch_range must be 0-100, got {pitch}, {pitch_range}")
        with _lock:
            engine = _get_engine()
            engine.set_voice(voice)
            # Parameters persist across calls in the C globals: set every one, every time.
            engine.set_parameter(_PARAM_RATE, rate, "rate")
            engine.set_parameter(_PARAM_PITCH, pitch, "pitch")
            engine.set_parameter(_PARAM_RANGE, pitch_range, "pitch_range")
            engine.set_parameter(_PARAM_VOLUME, 100, "volume")
            engine.set_parameter(_PARAM_WORDGAP, 0, "wordgap")
            samples, events = engine.speak(text)
            sample_rate = engine.sample_rate
        audio = samples.astype(np.float32) / 32768.0
        voiced_end = _voiced_end(audio, sample_rate)
        audio = audio[: min(len(audio), voiced_end + int(_TAIL_KEEP * sample_rate))]
        words = _word_times(text, events, voiced_end / sample_rate)
        return SynthResult(audio, sample_rate, words)

    def phonemes(self, words: Sequence[str], voice: str = "en-us") -> list[str]:
        """espeak-ng's pronunciation of each word, as phoneme mnemonics ("hello" ->
        "h_@_l_'oU"; a word read as several, such as "1990", has spaces between them)."""
        with _lock:
            engine = _get_engine()
            engine.set_voice(voice)
            return [engine.phonemes(word) for word in words]


def _voiced_end(audio: np.ndarray, sample_rate: int) -> int:
    """Index just past the last sample louder than the silence threshold."""
    if audio.size == 0:
        return 0
    threshold = float(np.abs(audio).max()) * 10 ** (_SILENCE_DB / 20)
    loud = np.flatnonzero(np.abs(audio) > threshold)
    return int(loud[-1]) + 1 if loud.size else 0


def _word_times(
    text: str, events: list[tuple[int, int]], voiced_end: float
) -> list[tuple[str, float, float]]:
    """Attach word events to the text's whitespace tokens.

    espeak may emit several events for one token ("42" -> "forty two", "twenty-five") and
    none for a word it speaks together with the previous one ("in the" is one word event).
    So each token takes the time of its first event; a token ends where the next timed
    token starts (the last at the end of voiced audio); tokens without an event share the
    span of the timed token before them, in proportion to their lengths.
    """
    tokens = [(m.start(), m.end(), m.group().strip(_PUNCT)) for m in re.finditer(r"\S+", text)]
    tokens = [t for t in tokens if t[2]]  # punctuation alone is not a word
    if not tokens or not events:
        return []
    starts: dict[int, float] = {}
    for char_pos, ms in events:
        for index, (_, end, _) in enumerate(tokens):
            if char_pos < end:  # inside the token, or in the gap before it
                starts.setdefault(index, ms / 1000.0)
                break
    timed = sorted(starts)
    timed[0] = 0  # untimed leading tokens join the first group
    bounds = [starts[i] for i in sorted(starts)] + [voiced_end]
    words: list[tuple[str, float, float]] = []
    last = 0.0
    for k, first in enumerate(timed):
        group = tokens[first : timed[k + 1] if k + 1 < len(timed) else len(tokens)]
        start = min(max(bounds[k], last), voiced_end)
        end = min(max(bounds[k + 1], start), voiced_end)
        total, done = sum(len(word) for _, _, word in group), 0
        for _, _, word in group:
            begin = start + (end - start) * done / total
            done += len(word)
            words.append((word, round(begin, 3), round(start + (end - start) * done / total, 3)))
        last = end
    return words
