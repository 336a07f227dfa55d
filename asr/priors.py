"""Label priors: how often the model emits each unit, divided out before beam search.

A CTC model's frame posteriors mix what it hears with how common each unit was in its
training targets; a frequent phone wins the frames it half hears over a rare one. Beam
search with a word LM already brings its own knowledge of which words are likely, so part
of that frequency is counted twice. Dividing the posteriors by the units' priors to a power
``decoding.prior_weight`` (subtracting ``weight * log prior`` from the log-probs, as hybrid
HMM systems turn posteriors into scaled likelihoods) takes it out again.

The priors are the model's own mean posteriors over the frames of some audio
(:func:`estimate_log_priors`; no transcripts needed), kept in the checkpoint under
``"label_log_priors"`` (``asr-lm priors``). The blank and the word boundary are left alone:
the blank has its own ``decoding.blank_penalty``, and the boundary is not a sound.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PRIORS_KEY = "label_log_priors"
# a unit the model never emitted keeps a finite log prior
_FLOOR = 1e-8


def estimate_log_priors(log_probs: Sequence[np.ndarray]) -> np.ndarray:
    """Natural-log mean posterior of each unit over every frame of ``log_probs``.

    ``log_probs``: one [T_i, V] array of log-probs an utterance (unpadded). Returns [V].
    """
    frames = sum(int(x.shape[0]) for x in log_probs)
    if frames == 0:
        raise ValueError("no frames to estimate label priors from")
    total = np.zeros(log_probs[0].shape[1], np.float64)
    for x in log_probs:
        total += np.exp(x.astype(np.float64)).sum(0)
    return np.log(np.maximum(total / frames, _FLOOR))


def check_prior_weight(weight: float) -> None:
    """Raise ValueError unless ``weight`` is a finite number >= 0."""
    if not np.isfinite(weight) or weight < 0:
        raise ValueError(f"decoding.prior_weight must be a finite number >= 0, got {weight!r}")


def prior_offsets(
    log_priors: Sequence[float], weight: float, keep: Sequence[int] = ()
) -> np.ndarray:
    """What to add to each frame's log-probs [V]: ``-weight * log prior``, centred.

    Units in ``keep`` (the blank, the word boundary) get 0. The others are centred on their
    median log prior, so the correction moves units against each other and leaves the
    balance with the blank, which ``blank_penalty`` sets, about where it was.
    """
    check_prior_weight(weight)
    priors = np.asarray(log_priors, np.float64)
    offsets = np.zeros(priors.shape, np.float32)
    units = np.ones(priors.shape, bool)
    units[list(keep)] = False
    if weight == 0 or not units.any():
        return offsets
    centred = priors[units] - np.median(priors[units])
    offsets[units] = (-weight * centred).astype(np.float32)
    return offsets
