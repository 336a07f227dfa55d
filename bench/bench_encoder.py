"""Encoder training-step throughput: our padding-exact BiLSTM vs plain and packed nn.LSTM.

All three run the same front end, head and CTC loss on the same padded batch; only the
LSTM stack differs:
  ours    each direction its own nn.LSTM, backward over sequences reversed within lengths
  padded  one nn.LSTM(bidirectional=True) over the padded batch (fast, NOT padding-exact)
  packed  nn.LSTM(bidirectional=True) over a PackedSequence (exact, slow on CPU)

Prints frames/s (median of repeats, input frames before subsampling) and the ratio to
`padded` measured in the same run.

    python bench/bench_encoder.py --threads 1 2 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from asr.model import BiLSTMLayer, CTCModel, ModelDims


class PlainStack(nn.Module):
    def __init__(self, input_size: int, hidden: int, layers: int, packed: bool):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden, layers, batch_first=True, bidirectional=True)
        self.packed = packed

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if not self.packed:
            return self.lstm(x)[0]
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        return pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=x.shape[1])[
            0
        ]


class Variant(nn.Module):
    """CTCModel's front end and head around a chosen LSTM stack."""

    def __init__(self, dims: ModelDims, kind: str):
        super().__init__()
        base = CTCModel(dims)
        self.front_end, self.head, self.kind = base.front_end, base.head, kind
        if kind == "ours":
            self.layers = base.layers
        else:
            self.stack = PlainStack(
                dims.conv_channels, dims.hidden_size, dims.num_layers, kind == "packed"
            )

    def forward(self, feats, lengths):
        x, lengths = self.front_end(feats, lengths)
        if self.kind == "ours":
            layer: BiLSTMLayer
            for layer in self.layers:
                x = layer(x, lengths)
        else:
            x = self.stack(x, lengths)
        return self.head(x).log_softmax(-1), lengths


def step_time(model: nn.Module, feats, lengths, targets, target_lengths, opt) -> float:
    start = time.perf_counter()
    log_probs, out_lengths = model(feats, lengths)
    loss = F.ctc_loss(
        log_probs.transpose(0, 1), targets, out_lengths, target_lengths, zero_infinity=True
    )
    opt.zero_grad()
    loss.backward()
    opt.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--frames", type=int, default=500, help="longest utterance, input frames")
    parser.add_argument("--hidden", type=int, default=320)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--subsampling", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    dims = ModelDims(
        vocab_size=30,
        hidden_size=args.hidden,
        num_layers=args.layers,
        subsampling=args.subsampling,
        dropout=0.0,
    )
    lengths = torch.linspace(args.frames * 0.6, args.frames, args.batch).long()
    feats = torch.randn(args.batch, args.frames, dims.n_mels)
    target_lengths = (lengths // (4 * args.subsampling)).clamp(min=1)
    targets = torch.randint(1, 30, (args.batch, int(target_lengths.max())))
    frames = int(lengths.sum())
    print(
        f"batch {args.batch} x up to {args.frames} frames, {args.layers} x {args.hidden} BiLSTM, "
        f"subsampling {args.subsampling}; frames/s = input frames per second "
        f"(median of {args.repeats})"
    )
    print(f"{'threads':>7} {'variant':>8} {'frames/s':>10} {'vs padded':>10}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        results = {}
        for kind in ("padded", "ours", "packed"):
            model = Variant(dims, kind)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
            step_time(model, feats, lengths, targets, target_lengths, opt)  # warm-up
            times = [
                step_time(model, feats, lengths, targets, target_lengths, opt)
                for _ in range(args.repeats)
            ]
            results[kind] = frames / statistics.median(times)
        for kind, fps in results.items():
            print(f"{threads:>7} {kind:>8} {fps:>10.0f} {fps / results['padded']:>9.2f}x")


if __name__ == "__main__":
    main()
