"""Configuration schemas: plain dataclasses, no Hydra here.

``asr.cli`` registers them in Hydra's ConfigStore and hands the library instances of these
classes; the YAML files in ``conf/`` fill them in. Behaviour is chosen by fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asr.augment import WaveAugmentSpec
from asr.features import FeatureSpec, SpecAugmentSpec


@dataclass
class DataConfig:
    train_manifests: list[str] = field(default_factory=list)
    # how often each train manifest's utterances are drawn per epoch, one value per manifest
    # (empty: all 1): 0.25 takes a fresh random quarter every epoch, 2.0 repeats each twice
    train_weights: list[float] = field(default_factory=list)
    dev_manifests: list[str] = field(default_factory=list)
    max_batch_seconds: float = 160.0  # cap on batch size x longest utterance (padded audio)
    max_batch_size: int = 0  # 0: no cap on the number of utterances
    # from epoch `large_batch_epoch` on, batches of up to `large_batch_seconds` (0: never):
    # small batches get CTC off its all-blank plateau in fewer epochs; larger ones afterwards
    # learned more per epoch in real_small (docs/experiments.md)
    large_batch_seconds: float = 0.0
    large_batch_epoch: int = 0
    max_duration: float = 30.0  # longer training utterances are skipped and counted
    min_duration: float = 0.05
    num_workers: int = 1  # data-loader processes, one torch thread each
    # read train manifests lazily (asr.manifest.ManifestIndex: ~26 bytes a line, lines
    # parsed on access) for corpora of millions of utterances
    lazy_manifests: bool = False
    # a folder for log-mel features of clips without waveform augmentation (the dev set,
    # or all when augment.wave is off): written in the first epoch, read after ("": off);
    # features computed in the workers only (not with feature_placement=device)
    feature_cache: str = ""
    sorted_first_epoch: bool = True
    # where log-mel is computed: "auto" (per clip in workers on CPU, batched on a GPU),
    # "workers" or "device"
    feature_placement: str = "auto"
    # "utterance" features are normalised per clip; "global" statistics come from up to
    # this many training utterances
    stats_utterances: int = 2000
    # output units: "char" (letters, space, apostrophe, digits), "phone" (espeak-ng's
    # en-us phones, asr.phones; decode with beam search over a lexicon) or "bpe" (word
    # pieces learnt from the training transcripts by sentencepiece, asr.bpe)
    units: str = "char"
    # sentencepiece's vocabulary size for "bpe" (a ceiling: a small text may give fewer);
    # the model has one output more: its unknown piece gives way to the space, plus the blank
    bpe_vocab_size: int = 256


@dataclass
class ModelConfig:
    """Model shape; ``n_mels`` and ``vocab_size`` follow the features and the tokenizer."""

    conv_channels: int = 256
    conv_kernel: int = 5
    subsampling: int = 2
    front_end: str = "conv1d"  # conv1d | conv2d (asr.model.ModelDims)
    conv2d_channels: int = 32  # feature maps of the conv2d front end
    hidden_size: int = 320
    num_layers: int = 4
    proj_size: int = 0
    dropout: float = 0.1
    recurrent_dropout: float = 0.0  # of each LSTM's hidden-to-hidden weights (DropConnect)


@dataclass
class OptimConfig:
    lr: float = 1.5e-3
    weight_decay: float = 1e-2
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    warmup_steps: int = 300
    schedule: str = "cosine"  # cosine | linear | constant (after warm-up)
    min_lr_ratio: float = 0.02  # final lr as a fraction of lr
    grad_clip: float = 5.0


@dataclass
class DecodingConfig:
    method: str = "greedy"  # greedy | beam
    beam_size: int = 16
    lm_path: str = ""  # KenLM ARPA or binary word n-gram
    lm_weight: float = 0.5
    word_bonus: float = 0.0
    lexicon: str = ""  # "" : lexicon-free; a file of words, or "lm" for the LM's words
    hotwords: list[str] = field(default_factory=list)
    hotword_weight: float = 2.0
    blank_penalty: float = 0.0  # beam search: subtracted from the blank's log-prob per frame
    prior_weight: float = 0.0  # beam search: label priors divided out to this power (asr.priors)
    nbest: int = 1


@dataclass
class AugmentConfig:
    """Training-only augmentation: on the waveform in the workers, then SpecAugment."""

    wave: WaveAugmentSpec = field(default_factory=WaveAugmentSpec)
    spec: SpecAugmentSpec = field(default_factory=SpecAugmentSpec)  # masks = 0: off


@dataclass
class TrainConfig:
    epochs: int = 30
    max_steps: int = 0  # 0: run `epochs`; otherwise stop (and schedule) at this step
    accumulate: int = 1  # batches per optimiser step (per process under torchrun)
    seed: int = 1234
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16 on a capable GPU, else fp32) | fp32 | bf16 | fp16
    threads: int = 0  # torch threads in the main process; 0: all cores
    log_every: int = 20
    checkpoint_every: int = 500  # steps; a checkpoint is also written at each epoch end
    keep_checkpoints: int = 2
    eval_every: int = 1  # epochs
    resume: str = ""  # "" | "auto" (latest in the run folder) | path to a checkpoint
    progress: bool = True
    deterministic: bool = False
    max_bad_steps: int = 20  # stop after this many non-finite losses in a row
    metrics_format: str = "csv"  # csv | tensorboard | both (TensorBoard: pip install tensorboard)
    # intermediate CTC: also a CTC loss on BiLSTM layer `intermediate_layer`'s output (from 1,
    # below the top; 0: off) through the shared head, weighted `intermediate_weight` against
    # 1 - it for the top layer's; the logged loss stays the top layer's
    intermediate_layer: int = 0
    intermediate_weight: float = 0.3
    # confidence penalty (Pereyra et al. 2017): the objective loses this times the summed
    # entropy (nats) of the top layer's frames, which discourages over-sure posteriors; 0: off
    confidence_penalty: float = 0.0


@dataclass
class TrainRunConfig:
    """Root config of ``asr-train``."""

    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureSpec = field(default_factory=FeatureSpec)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decoding: DecodingConfig = field(default_factory=DecodingConfig)


@dataclass
class EvaluateConfig:
    """Root config of ``asr-evaluate``."""

    checkpoint: str = "???"
    manifests: list[str] = field(default_factory=list)
    output_dir: str = ""  # "": Hydra's run folder
    device: str = "auto"
    threads: int = 0
    num_workers: int = 1
    # beam search processes, each decoding its share of a batch's utterances (0: one per
    # core); greedy decoding is a single arg-max and needs none
    decode_workers: int = 0
    max_batch_seconds: float = 200.0
    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    # text normalisation before scoring: "default" (training's) | "none" (white space only)
    normalize: str = "default"
    training_run: str = ""  # a training run folder: its curves go into report.html
    # seconds of silence (zeros) added before and after every clip: how the model copes with
    # pauses that tightly cut corpora lack (0: the clips as they are)
    pad_seconds: float = 0.0
