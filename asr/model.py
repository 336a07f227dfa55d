"""The acoustic model: strided-conv front end -> stacked BiLSTM -> linear CTC head.

A plain ``nn.Module`` with no config imports. ``forward(feats, lengths)`` returns
``(log_probs [B, T', V], out_lengths [B])`` in training and evaluation alike; loss,
decoding and optimisation live elsewhere.

Padding never changes results. PyTorch's packed sequences would give that, but on CPU they
leave the fast oneDNN LSTM kernels (training measured 3.7x slower than padded at 125 frames,
7.2x at 500). Instead each direction is its own unidirectional LSTM: the forward one never
sees the padding that follows a sequence, and the backward one runs over every sequence
reversed *within its own length*, so its padding also comes last. The convolutions see
zeros past each length, exactly what a lone utterance's zero padding gives them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

FRONT_ENDS = ("conv1d", "conv2d")  # ModelDims.front_end: ConvFrontEnd, Conv2dFrontEnd


@dataclass
class ModelDims:
    """The shapes that rebuild a model; stored in every checkpoint."""

    n_mels: int = 80
    vocab_size: int = 32
    conv_channels: int = 256
    conv_kernel: int = 5
    subsampling: int = 2  # time reduction of the front end: 1, 2, 4 or 8
    # "conv1d": convolutions over time, the mel bands as channels; "conv2d": over time and
    # mel bands, strided in both, then projected to conv_channels (see Conv2dFrontEnd)
    front_end: str = "conv1d"
    conv2d_channels: int = 32  # feature maps of the conv2d front end
    hidden_size: int = 320  # per direction
    num_layers: int = 4
    proj_size: int = 0  # 0: no LSTM projection
    dropout: float = 0.1
    # DropConnect on each LSTM's hidden-to-hidden weights in training: one mask a batch
    recurrent_dropout: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def reverse_within_lengths(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each x[b, :lengths[b]] in time, leaving padded positions in place. x: [B, T, D]."""
    time = x.shape[1]
    steps = torch.arange(time, device=x.device)[None, :]  # [1, T]
    last = (lengths.to(x.device) - 1)[:, None]
    index = torch.where(steps <= last, last - steps, steps)  # [B, T]
    return x.gather(1, index[:, :, None].expand(-1, -1, x.shape[2]))


def conv_out_length(lengths: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Output length of a conv with padding kernel // 2."""
    return (lengths + 2 * (kernel // 2) - kernel) // stride + 1


def strides_for(subsampling: int) -> list[int]:
    """Strides for a time reduction of ``subsampling``: log2 of them are 2, at least one conv."""
    if subsampling not in (1, 2, 4, 8):
        raise ValueError(f"subsampling must be 1, 2, 4 or 8, got {subsampling}")
    return [2] * (subsampling.bit_length() - 1) or [1]


def subsampled_lengths(lengths: torch.Tensor, kernel: int, subsampling: int) -> torch.Tensor:
    """Model output frames for ``lengths`` input frames."""
    for stride in strides_for(subsampling):
        lengths = conv_out_length(lengths, kernel, stride)
    return lengths


class ConvFrontEnd(nn.Module):
    """1-D convolutions over time; log2(subsampling) of them have stride 2, at least one conv.

    feats [B, T, n_mels] -> [B, T', channels], T' = T / subsampling (rounded up).
    """

    def __init__(self, n_mels: int, channels: int, kernel: int, subsampling: int):
        super().__init__()
        strides = strides_for(subsampling)
        self.kernel = kernel
        self.strides = strides
        self.convs = nn.ModuleList(
            nn.Conv1d(n_mels if i == 0 else channels, channels, kernel, stride, padding=kernel // 2)
            for i, stride in enumerate(strides)
        )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.transpose(1, 2)  # [B, C, T]: Conv1d wants channels first
        for conv, stride in zip(self.convs, self.strides, strict=True):
            x = x * _mask(lengths, x.shape[2], x.dtype)[:, None, :]
            x = F.gelu(conv(x))
            lengths = conv_out_length(lengths, self.kernel, stride)
        x = x * _mask(lengths, x.shape[2], x.dtype)[:, None, :]
        return x.transpose(1, 2), lengths


class Conv2dFrontEnd(nn.Module):
    """2-D convolutions over (time, mel band), then a linear projection per frame.

    The same kernel slides along the mel axis, so a pattern shifted a few bands up or down
    (another speaker's formants, a higher voice) excites the same filters, which
    :class:`ConvFrontEnd`, holding each band in its own input channel, cannot offer. Each
    stride-2 conv halves time and mel bands alike.

    feats [B, T, n_mels] -> [B, T', out_dim], T' = T / subsampling (rounded up).
    """

    def __init__(self, n_mels: int, channels: int, kernel: int, subsampling: int, out_dim: int):
        super().__init__()
        strides = strides_for(subsampling)
        self.kernel = kernel
        self.strides = strides
        self.convs = nn.ModuleList(
            nn.Conv2d(1 if i == 0 else channels, channels, kernel, stride, padding=kernel // 2)
            for i, stride in enumerate(strides)
        )
        bands = torch.tensor(n_mels)
        for stride in strides:
            bands = conv_out_length(bands, kernel, stride)
        self.proj = nn.Linear(channels * int(bands), out_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x[:, None]  # [B, 1, T, n_mels]: one input map
        for conv, stride in zip(self.convs, self.strides, strict=True):
            # zeros past each length, as a lone utterance's own padding would give
            x = x * _mask(lengths, x.shape[2], x.dtype)[:, None, :, None]
            x = F.gelu(conv(x))
            lengths = conv_out_length(lengths, self.kernel, stride)
        batch, channels, time, bands = x.shape
        x = self.proj(x.transpose(1, 2).reshape(batch, time, channels * bands))
        return x * _mask(lengths, time, x.dtype)[:, :, None], lengths


def _mask(lengths: torch.Tensor, time: int, dtype: torch.dtype) -> torch.Tensor:
    return (torch.arange(time, device=lengths.device)[None, :] < lengths[:, None]).to(dtype)


class BiLSTMLayer(nn.Module):
    """One bidirectional layer as two unidirectional LSTMs; exact under padding.

    ``recurrent_dropout`` drops entries of each LSTM's hidden-to-hidden matrix in training
    (DropConnect, as in AWD-LSTM), one mask for the whole batch and every time step: it
    reaches the recurrence, which dropout between layers does not, and keeps the fused LSTM
    kernels, which a per-step mask on the hidden state would not (cuDNN copies the weights
    into one buffer on each such call: a small cost, but not none).
    """

    def __init__(
        self, input_size: int, hidden_size: int, proj_size: int, recurrent_dropout: float = 0.0
    ):
        super().__init__()
        if not 0.0 <= recurrent_dropout < 1.0:
            raise ValueError(f"recurrent_dropout must be in [0, 1), got {recurrent_dropout}")
        self.recurrent_dropout = recurrent_dropout
        self.forward_lstm = nn.LSTM(input_size, hidden_size, batch_first=True, proj_size=proj_size)
        self.backward_lstm = nn.LSTM(input_size, hidden_size, batch_first=True, proj_size=proj_size)

    def _run(self, lstm: nn.LSTM, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.recurrent_dropout > 0):
            return lstm(x)[0]
        dropped = F.dropout(lstm.weight_hh_l0, self.recurrent_dropout, training=True)
        return torch.func.functional_call(lstm, {"weight_hh_l0": dropped}, (x,))[0]

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x [B, T, D] -> [B, T, 2 * out] where out = proj_size or hidden_size."""
        if x.is_cuda:
            # cuDNN wants each LSTM's weights in one buffer; .to() makes it, but anything
            # that rebinds parameters afterwards breaks it. A no-op when already flat.
            self.forward_lstm.flatten_parameters()
            self.backward_lstm.flatten_parameters()
        ahead = self._run(self.forward_lstm, x)
        back = self._run(self.backward_lstm, reverse_within_lengths(x, lengths))
        return torch.cat([ahead, reverse_within_lengths(back, lengths)], dim=2)


class CTCModel(nn.Module):
    """feats [B, T, n_mels], lengths [B] -> (log_probs [B, T', V], out_lengths [B])."""

    def __init__(self, dims: ModelDims):
        super().__init__()
        self.dims = dims
        self.front_end: ConvFrontEnd | Conv2dFrontEnd
        if dims.front_end == "conv1d":
            self.front_end = ConvFrontEnd(
                dims.n_mels, dims.conv_channels, dims.conv_kernel, dims.subsampling
            )
        elif dims.front_end == "conv2d":
            self.front_end = Conv2dFrontEnd(
                dims.n_mels,
                dims.conv2d_channels,
                dims.conv_kernel,
                dims.subsampling,
                dims.conv_channels,
            )
        else:
            raise ValueError(f"front_end must be {' or '.join(FRONT_ENDS)}, got {dims.front_end!r}")
        out = dims.proj_size or dims.hidden_size
        self.layers = nn.ModuleList(
            BiLSTMLayer(
                dims.conv_channels if i == 0 else 2 * out,
                dims.hidden_size,
                dims.proj_size,
                dims.recurrent_dropout,
            )
            for i in range(dims.num_layers)
        )
        self.dropout = nn.Dropout(dims.dropout)
        self.head = nn.Linear(2 * out, dims.vocab_size)

    def forward(
        self, feats: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        log_probs, lengths, _ = self.forward_with_intermediate(feats, lengths, 0)
        return log_probs, lengths

    def forward_with_intermediate(
        self, feats: torch.Tensor, lengths: torch.Tensor, layer: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``forward``, plus the head's log-probs on encoder layer ``layer``'s output.

        ``layer`` counts BiLSTM layers from 1 (0: none, the third item is None). The head is
        shared, so an intermediate CTC loss on them asks the lower layers for outputs the
        head can already read. Returns (log_probs [B, T', V], out_lengths [B],
        intermediate log_probs [B, T', V] or None).
        """
        if not 0 <= layer < len(self.layers):
            raise ValueError(f"intermediate layer must be in 0..{len(self.layers) - 1}: {layer}")
        x, lengths = self.front_end(feats, lengths)
        intermediate = None
        for i, block in enumerate(self.layers, start=1):
            x = block(self.dropout(x), lengths)
            if i == layer:
                intermediate = self._log_probs(x)
        return self._log_probs(x), lengths, intermediate

    def _log_probs(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(x)).float().log_softmax(dim=-1)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames for input frame counts, without running the model."""
        return subsampled_lengths(lengths, self.dims.conv_kernel, self.dims.subsampling)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class IntermediateCTC(nn.Module):
    """A training view of a model whose ``forward`` also gives layer ``layer``'s log-probs.

    Wraps rather than changes ``CTCModel.forward``, so the model answers alike everywhere,
    and a DDP wrapper around this view syncs gradients as around the model. Shares the
    model's parameters: checkpoints and the optimiser see only the model.
    """

    def __init__(self, model: CTCModel, layer: int):
        super().__init__()
        if not 1 <= layer < model.dims.num_layers:
            raise ValueError(f"intermediate layer must be in 1..{model.dims.num_layers - 1}")
        self.model = model
        self.layer = layer

    def forward(
        self, feats: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        log_probs, lengths, intermediate = self.model.forward_with_intermediate(
            feats, lengths, self.layer
        )
        assert intermediate is not None
        return log_probs, lengths, intermediate
