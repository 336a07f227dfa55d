"""asr: a compact BiLSTM-CTC speech recognition toolkit.

Stages, one module each: ``audio`` (load_audio) -> ``features`` (LogMel) -> ``model``
(CTCModel) -> ``decoding`` (greedy_decode, beam search) -> ``metrics`` (WER/CER).
``train``, ``evaluate`` and ``transcribe`` put them together; ``cli`` is the command line.
"""

__version__ = "0.1.0"
