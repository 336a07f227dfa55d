"""Speech synthesis with Flite (CMU's Festival-Lite), through its command-line program.

Flite's US-English voices are built from real recordings, which espeak-ng's formant
synthesis is not: ``slt`` (US female), ``rms`` (US male) and ``awb`` (Scottish male) are
statistical parametric (clustergen) voices trained on CMU ARCTIC speakers, ``kal16`` a US
male diphone voice. They add natural-sounding voices to the synthetic training speech.

Flite is a Debian package (``apt-get install flite``), not a wheel, so it is called as a
program; :func:`flite_program` says clearly when it is missing.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import soundfile as sf

from asr.synth import SynthError, SynthResult

#: voice -> its median pitch in Hz (pyin on one sentence), the centre of pitch variation.
#: ``rms`` ignores ``int_f0_target_mean`` (measured): its pitch moves only with warping.
VOICES = {"slt": 166.0, "rms": 105.0, "awb": 124.0, "kal16": 96.0}
STRETCH = (0.8, 1.3)  # duration_stretch: > 1 speaks slower
TIMEOUT_S = 60.0


def flite_program() -> str:
    """Path of the ``flite`` executable; :class:`SynthError` naming the package if absent."""
    path = shutil.which("flite")
    if path is None:
        raise SynthError("flite not found on PATH: install it (Debian: apt-get install flite)")
    return path


class Flite:
    """Runs ``flite`` once per utterance; safe to use from several processes at once."""

    def synthesize(
        self, text: str, voice: str = "slt", stretch: float = 1.0, f0_mean: float | None = None
    ) -> SynthResult:
        """Speak ``text`` with ``voice`` (a key of :data:`VOICES`).

        ``stretch`` scales durations (1.25: a quarter slower), ``f0_mean`` sets the mean
        pitch in Hz (None: the voice's own). Returns float32 mono audio at Flite's rate
        (16 kHz for these voices) with no word times.
        """
        if voice not in VOICES:
            raise SynthError(f"unknown flite voice {voice!r}; choose from {sorted(VOICES)}")
        if not 0.5 <= stretch <= 2.0:
            raise SynthError(f"stretch must be 0.5-2.0, got {stretch}")
        if f0_mean is not None and not 50.0 <= f0_mean <= 400.0:
            raise SynthError(f"f0_mean must be 50-400 Hz, got {f0_mean}")
        command = [flite_program(), "-voice", voice, "--setf", f"duration_stretch={stretch:.3f}"]
        if f0_mean is not None:
            command += ["--setf", f"int_f0_target_mean={f0_mean:.1f}"]
        with tempfile.TemporaryDirectory(prefix="asr-flite-") as tmp:
            out = Path(tmp) / "out.wav"
            # The text goes through a file: -t would read a leading "-" as an option.
            source = Path(tmp) / "text.txt"
            source.write_text(text + "\n", encoding="utf-8")
            try:
                subprocess.run(
                    [*command, "-f", str(source), "-o", str(out)],
                    check=True,
                    capture_output=True,
                    timeout=TIMEOUT_S,
                )
                audio, rate = sf.read(out, dtype="float32")
            except subprocess.CalledProcessError as exc:
                lines = exc.stderr.decode(errors="replace").strip().splitlines()
                reason = lines[-1] if lines else f"exit status {exc.returncode}"
                raise SynthError(f"flite failed on {text[:60]!r}: {reason}") from None
            except (subprocess.TimeoutExpired, sf.LibsndfileError) as exc:
                raise SynthError(f"flite failed on {text[:60]!r}: {exc}") from None
        if audio.ndim != 1 or audio.size == 0:
            raise SynthError(f"flite gave no mono audio for {text[:60]!r}")
        return SynthResult(audio, rate)
