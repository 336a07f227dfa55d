"""Export the acoustic model to TorchScript or ONNX, and load it back for transcription.

What is exported is :class:`asr.model.CTCModel`: feats [B, T, n_mels] float32 and lengths
[B] int64 -> (log_probs [B, T', V], out_lengths [B]), batch and time dynamic. Log-mel
features stay in Python (:class:`asr.features.LogMel`); the file carries, as metadata,
everything else a checkpoint carries (dimensions, feature settings and statistics,
tokenizer), so ``Transcriber.from_checkpoint("model.onnx")`` rebuilds the pipeline alone.

ONNX goes through ``torch.onnx.export(dynamo=False)``: it maps each ``nn.LSTM`` to one
ONNX ``LSTM`` operator in about a second, where the dynamo exporter took minutes on this
model and fixed the output length in the graph's shape metadata. TorchScript comes from
``torch.jit.trace``, which bakes the tracing device (the CPU) into the graph, so a traced
model always runs on the CPU here; for GPU inference use the checkpoint. Exported files contain
code (TorchScript) or a graph (ONNX): load only files you trust, as with any model format
that is not weights-only.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from asr.checkpoint import CheckpointError, LoadedModel, build_from_checkpoint
from asr.features import FeatureSpec, LogMel
from asr.io_utils import atomic_write
from asr.model import ModelDims
from asr.priors import PRIORS_KEY
from asr.text import tokenizer_from_dict

EXPORT_VERSION = 1
METADATA_KEY = "asr"  # TorchScript extra file "asr" / ONNX metadata_props key "asr"
FORMATS = {"torchscript": ".ts", "onnx": ".onnx"}
ONNX_OPSET = 17


def format_of(path: str | Path) -> str:
    """ "torchscript", "onnx" or "checkpoint", from the file name's suffix."""
    suffix = Path(path).suffix.lower()
    return {".ts": "torchscript", ".onnx": "onnx"}.get(suffix, "checkpoint")


def _metadata(loaded: LoadedModel) -> str:
    state = loaded.state
    meta: dict[str, Any] = {
        "export_version": EXPORT_VERSION,
        "model_dims": state["model_dims"],
        "features": state["features"],
        "tokenizer": state["tokenizer"],
    }
    stats = state.get("feature_stats")
    if stats is not None:
        meta["feature_stats"] = {k: torch.as_tensor(v).tolist() for k, v in stats.items()}
    if loaded.log_priors is not None:  # what beam search's prior_weight needs
        meta[PRIORS_KEY] = loaded.log_priors
    return json.dumps(meta)


def _example(dims: ModelDims) -> tuple[torch.Tensor, torch.Tensor]:
    """Two utterances of different lengths, so that nothing specialises on equal lengths."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(2, 200, dims.n_mels, generator=generator), torch.tensor([200, 137])


def export_model(checkpoint: str | Path, output: str | Path) -> Path:
    """Write ``checkpoint``'s model as TorchScript (``.ts``) or ONNX (``.onnx``), atomically.

    The suffix chooses the format (and tells loaders which one it is). Returns the path.
    """
    output = Path(output)
    fmt = format_of(output)
    if fmt not in FORMATS:
        raise ValueError(f"{output}: export format must be torchscript (.ts) or onnx (.onnx)")
    if fmt == "onnx":
        _require_onnx()
    loaded = build_from_checkpoint(checkpoint, "cpu")
    model = loaded.model.eval()
    if fmt == "onnx" and model.dims.proj_size:
        # ONNX's LSTM operator has no projection, and the exporter has no rewrite for it
        raise ValueError(
            f"{checkpoint}: ONNX cannot express LSTMs with projections (model.proj_size="
            f"{model.dims.proj_size}); export to TorchScript (.ts) instead"
        )
    example = _example(model.dims)
    meta = _metadata(loaded)
    with warnings.catch_warnings():
        # the tracer and the legacy exporter warn about shape-dependent Python values and
        # about their own deprecation; the parity tests are what vouch for the result
        warnings.simplefilter("ignore")
        if fmt == "torchscript":
            traced = torch.jit.trace(model, example, check_trace=False)
            with atomic_write(output, "wb") as handle:
                torch.jit.save(traced, handle, _extra_files={METADATA_KEY: meta})
        else:
            _export_onnx(model, example, meta, output)
    return output


def _export_onnx(
    model: nn.Module, example: tuple[torch.Tensor, torch.Tensor], meta: str, output: Path
) -> None:
    import io

    import onnx

    buffer = io.BytesIO()
    torch.onnx.export(
        model,
        example,
        buffer,
        dynamo=False,
        opset_version=ONNX_OPSET,
        input_names=["feats", "lengths"],
        output_names=["log_probs", "out_lengths"],
        dynamic_axes={
            "feats": {0: "batch", 1: "frames"},
            "lengths": {0: "batch"},
            "log_probs": {0: "batch", 1: "out_frames"},
            "out_lengths": {0: "batch"},
        },
    )
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(proto, {METADATA_KEY: meta})
    with atomic_write(output, "wb") as handle:
        handle.write(proto.SerializeToString())


class ExportedModel(nn.Module):
    """An exported model behind :class:`asr.model.CTCModel`'s call signature.

    ``forward(feats [B, T, n_mels], lengths [B]) -> (log_probs [B, T', V], out_lengths [B])``
    run by TorchScript or ONNX Runtime; ``dims`` as in the checkpoint.
    """

    def __init__(self, path: Path, fmt: str, dims: ModelDims, device: torch.device):
        super().__init__()
        self.dims = dims
        self.fmt = fmt
        self.path = path
        if fmt == "torchscript":
            self.script = _jit_load(path, torch.device("cpu"))  # traced on the CPU: see above
            self.session = None
        else:
            import onnxruntime as ort

            providers = ["CPUExecutionProvider"]
            if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
            options = ort.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            self.session = ort.InferenceSession(str(path), options, providers=providers)

    def forward(
        self, feats: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.session is None:
            log_probs, out_lengths = self.script(feats.cpu(), lengths.cpu())
            return log_probs.to(feats.device), out_lengths.to(feats.device)
        log_probs, out_lengths = self.session.run(
            None,
            {
                "feats": feats.detach().float().cpu().numpy(),
                "lengths": lengths.detach().cpu().numpy().astype(np.int64),
            },
        )
        return (
            torch.from_numpy(log_probs).to(feats.device),
            torch.from_numpy(out_lengths).to(feats.device),
        )


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ValueError(
            f"ONNX needs the onnx and onnxruntime packages ({exc.name} is missing): "
            "pip install 'asr[export]'"
        ) from None


def _jit_load(path: Path, device: torch.device, extra: dict | None = None) -> Any:
    with warnings.catch_warnings():
        # TorchScript is deprecated in favour of torch.export, yet it is still what C++ and
        # mobile deployments load; the warning would only repeat that on every load
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location=device, _extra_files=extra or {})


def _read_metadata(path: Path, fmt: str) -> dict:
    if fmt == "torchscript":
        extra = {METADATA_KEY: ""}
        _jit_load(path, torch.device("cpu"), extra)
        raw = extra[METADATA_KEY]
    else:
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        raw = next((p.value for p in proto.metadata_props if p.key == METADATA_KEY), "")
    if not raw:
        raise CheckpointError(f"{path}: no asr metadata: not written by asr-export")
    meta = json.loads(raw)
    if meta.get("export_version") != EXPORT_VERSION:
        raise CheckpointError(
            f"{path}: export_version {meta.get('export_version')}, expected {EXPORT_VERSION}"
        )
    return meta


def build_from_export(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Features, exported model and tokenizer from a ``.ts`` or ``.onnx`` file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    fmt = format_of(path)
    device = torch.device(device)
    if fmt == "onnx":
        _require_onnx()
    try:
        meta = _read_metadata(path, fmt)
        dims = ModelDims(**meta["model_dims"])
        features = LogMel(FeatureSpec(**meta["features"]))
        if "feature_stats" in meta:
            stats = meta["feature_stats"]
            features.set_global_stats(torch.tensor(stats["mean"]), torch.tensor(stats["std"]))
        tokenizer = tokenizer_from_dict(meta["tokenizer"])
        if len(tokenizer) != dims.vocab_size:
            raise CheckpointError(
                f"{path}: tokenizer has {len(tokenizer)} symbols "
                f"but the model outputs {dims.vocab_size}"
            )
        model = ExportedModel(path, fmt, dims, device)
    except CheckpointError:
        raise
    except Exception as exc:  # a damaged file fails in many ways; all mean "unusable"
        text = str(exc).strip().splitlines()
        raise CheckpointError(
            f"{path}: cannot load exported model ({text[-1] if text else type(exc).__name__})"
        ) from None
    return LoadedModel(features.to(device).eval(), model.eval(), tokenizer, meta)
