"""Training on real (synthetic-voice) audio: it learns, and resuming changes nothing."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from conftest import compose_train, random_checkpoint, tiny_overrides

from asr.checkpoint import (
    build_from_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from asr.evaluate import decode_utterances
from asr.manifest import read_manifest
from asr.runtime import RuntimeSetupError, pick_precision
from asr.text import normalize_text
from asr.train import Trainer, TrainingError, frame_entropy, lr_lambda, train


def _losses(run: Path) -> dict[int, float]:
    with open(run / "metrics.csv", newline="") as handle:
        return {int(r["step"]): float(r["loss"]) for r in csv.DictReader(handle)}


@pytest.mark.slow
def test_tiny_model_overfits_four_utterances(tiny_corpus: Path, tmp_path: Path) -> None:
    # Four utterances in one batch, no augmentation: the transcripts must come out exact.
    overrides = tiny_overrides(
        tiny_corpus,
        **{
            "model.hidden_size": 96,
            "model.conv_channels": 64,
            "optim.lr": 4e-3,
            "train.max_steps": 300,
            "train.eval_every": 1000,
            "augment.spec.freq_masks": 0,
            "augment.spec.time_masks": 0,
            "data.max_batch_seconds": 60,
            "optim.schedule": "constant",
            "train.log_every": 50,
            "train.checkpoint_every": 0,
        },
    )
    cfg = compose_train(overrides)
    utts = read_manifest(tiny_corpus / "train.jsonl")[:4]
    manifest = tmp_path / "four.jsonl"
    from asr.manifest import write_manifest

    write_manifest(manifest, utts)
    cfg.data.train_manifests = [str(manifest)]
    cfg.data.dev_manifests = [str(manifest)]
    summary = train(cfg, tmp_path / "run")
    assert summary["best_dev_wer"] == 0.0, summary
    loaded = build_from_checkpoint(tmp_path / "run" / "best.pt")
    hyps = decode_utterances(
        loaded.model, loaded.features, loaded.tokenizer, utts, torch.device("cpu")
    )
    assert hyps == [normalize_text(u.text) for u in utts]
    losses = _losses(tmp_path / "run")
    assert losses[max(losses)] < 0.1 * losses[min(losses)]


def test_resume_continues_exactly(tiny_corpus: Path, tmp_path: Path) -> None:
    overrides = tiny_overrides(
        tiny_corpus,
        **{
            "train.max_steps": 8,
            "train.checkpoint_every": 4,
            "train.log_every": 1,
            "train.keep_checkpoints": 5,
            "train.eval_every": 100,
            "model.dropout": 0.2,
            # its draws come from the checkpointed augmentation generator, like the masks'
            "augment.spec.freq_warp": 0.1,
            # the intermediate loss trains through a view of the model: resuming must
            # restore the same weights and optimiser state under it
            "model.num_layers": 2,
            "train.intermediate_layer": 1,
        },
    )
    whole = tmp_path / "whole"
    train(compose_train(overrides), whole)
    steps = [int(p.stem.split("_")[1]) for p in list_checkpoints(whole)]
    assert 4 in steps and 8 in steps
    state4 = load_checkpoint(whole / "step_00000004.pt")
    assert state4["sampler"]["consumed_global"] > 0 or state4["sampler"]["epoch"] > 0

    # A second run that only has the step-4 checkpoint (as if it had died right after it).
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    # its training time made large, to tell carried-over time from this run's own
    save_checkpoint(resumed / "step_00000004.pt", {**state4, "training_time_s": 1000.0})
    with open(whole / "metrics.csv") as src, open(resumed / "metrics.csv", "w") as dst:
        dst.writelines(
            line for line in src if not line[0].isdigit() or int(line.split(",")[0]) <= 6
        )
    summary = train(compose_train([*overrides, "train.resume=auto"]), resumed)
    # the summary's training time counts the steps before the resume as well, once
    assert 0 < state4["training_time_s"] < 1000
    expected = 1000.0 + summary["wall_time_s"]
    assert summary["training_time_s"] == pytest.approx(expected, abs=0.11)

    assert _losses(resumed) == _losses(whole)
    assert sorted(_losses(resumed)) == list(range(1, 9))
    final_a = load_checkpoint(whole / "step_00000008.pt")["model"]
    final_b = load_checkpoint(resumed / "step_00000008.pt")["model"]
    for name, tensor in final_a.items():
        assert torch.equal(tensor, final_b[name]), name

    # A checkpoint from before the optimiser was fused (its options say so) resumes too,
    # onto the same weights.
    old = tmp_path / "old"
    old.mkdir()
    state = load_checkpoint(whole / "step_00000004.pt")
    for group in state["optimizer"]["param_groups"]:
        group["fused"] = group["foreach"] = None
    save_checkpoint(old / "step_00000004.pt", state)
    train(compose_train([*overrides, "train.resume=auto"]), old)
    final_c = load_checkpoint(old / "step_00000008.pt")["model"]
    for name, tensor in final_a.items():
        assert torch.equal(tensor, final_c[name]), name


def test_short_utterances_are_filtered_and_counted(tiny_corpus: Path, tmp_path: Path) -> None:
    durations = sorted(u.duration for u in read_manifest(tiny_corpus / "train.jsonl"))
    cfg = compose_train(tiny_overrides(tiny_corpus, **{"train.max_steps": 1}))
    cfg.data.max_duration = (durations[2] + durations[3]) / 2  # the three longest go
    trainer = Trainer(cfg, tmp_path)
    assert trainer.filtered["too_long"] == 3
    assert len(trainer.train_utts) == 3


def test_train_weights_set_each_manifests_share(tiny_corpus: Path, tmp_path: Path) -> None:
    two = f"[{tiny_corpus / 'train.jsonl'},{tiny_corpus / 'dev.jsonl'}]"
    cfg = compose_train(
        tiny_overrides(
            tiny_corpus, **{"data.train_manifests": two, "data.train_weights": "[2.0,0.0]"}
        )
    )
    trainer = Trainer(cfg, tmp_path)
    train_paths = {u.audio_filepath for u in read_manifest(tiny_corpus / "train.jsonl")}
    n = len(trainer.train_utts)
    drawn = [trainer.train_utts[i % n].audio_filepath for b in trainer.sampler for i in b]
    assert set(drawn) == train_paths and len(drawn) == 2 * len(train_paths)
    for weights, problem in (([1.0], "2 train_manifests"), ([1.0, -1.0], ">= 0")):
        cfg.data.train_weights = weights
        with pytest.raises(TrainingError, match=problem):
            Trainer(cfg, tmp_path / "bad")


def test_large_batches_shorten_the_planned_schedule(tiny_corpus: Path, tmp_path: Path) -> None:
    base = {"train.epochs": 6, "data.max_batch_seconds": 1.5}
    small = Trainer(compose_train(tiny_overrides(tiny_corpus, **base)), tmp_path / "a")
    per_epoch = small.sampler.epoch_length(0)
    assert small.total_steps == 6 * per_epoch
    large = {**base, "data.large_batch_seconds": 100.0, "data.large_batch_epoch": 2}
    trainer = Trainer(compose_train(tiny_overrides(tiny_corpus, **large)), tmp_path / "b")
    assert trainer.sampler.epoch_length(2) == 1  # the whole tiny corpus in one batch
    assert trainer.total_steps == 2 * per_epoch + 4
    summary = trainer.run()
    assert summary["steps"] == trainer.total_steps and summary["epochs"] == 6
    for value in ("-5", "nan"):
        bad = {"data.large_batch_seconds": value}
        with pytest.raises(TrainingError, match="data.large_batch_seconds"):
            Trainer(compose_train(tiny_overrides(tiny_corpus, **bad)), tmp_path / "c")


def test_batches_hold_the_clips_as_sped_up_and_padded(tiny_corpus: Path, tmp_path: Path) -> None:
    # speed 0.9 lengthens a clip by a ninth and the pads add up to 1.6 s: batches sized by
    # the recorded durations would overrun the cap, sized by the sampler's plans they do not
    overrides = {
        "data.max_batch_seconds": 3.0,
        "augment.wave.speeds": "[0.9]",
        "augment.wave.pad_prob": 1.0,
        "augment.wave.pad_seconds": 0.8,
    }
    trainer = Trainer(compose_train(tiny_overrides(tiny_corpus, **overrides)), tmp_path)
    hop = trainer.spec.hop_length / trainer.spec.sample_rate
    longest = max(u.duration for u in trainer.train_utts)
    assert longest / 0.9 + 0.8 > 3.0 / 2  # two such clips, padded, could not share a batch
    for epoch in (0, 1):
        trainer.sampler.set_epoch(epoch)
        trainer.dataset.epoch = epoch
        for batch in trainer.loader:
            seconds = (batch.input_lengths.max().item() - 1) * hop
            assert len(batch) * seconds <= 3.0
        assert len(trainer.loader) > 1


def test_bad_values_give_clear_errors(tiny_corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="precision"):
        Trainer(compose_train(tiny_overrides(tiny_corpus, **{"train.precision": "fp8"})), tmp_path)
    with pytest.raises(TrainingError, match="train_manifests"):
        Trainer(compose_train(["model=tiny"]), tmp_path)
    with pytest.raises(TrainingError, match="no usable"):
        Trainer(compose_train(tiny_overrides(tiny_corpus, **{"data.max_duration": 0.1})), tmp_path)
    overrides = tiny_overrides(tiny_corpus, **{"augment.wave.pad_prob": 2})
    with pytest.raises(TrainingError, match=r"^augment\.wave\.pad_prob must be a probability"):
        Trainer(compose_train(overrides), tmp_path)
    overrides = tiny_overrides(tiny_corpus, **{"augment.spec.freq_warp": -0.1})
    with pytest.raises(TrainingError, match=r"^augment\.spec\.freq_warp must be in"):
        Trainer(compose_train(overrides), tmp_path)


@pytest.mark.parametrize("penalty", [0.0, 0.2])
def test_intermediate_ctc_mixes_the_two_losses(
    tiny_corpus: Path, tmp_path: Path, penalty: float
) -> None:
    # with a confidence penalty, the top layer's frame entropy comes off the mixed objective
    overrides = {
        "model.num_layers": 2,
        "train.intermediate_layer": 1,
        "train.intermediate_weight": 0.25,
        "train.confidence_penalty": penalty,
        "augment.spec.freq_masks": 0,
        "augment.spec.time_masks": 0,
    }
    trainer = Trainer(compose_train(tiny_overrides(tiny_corpus, **overrides)), tmp_path)
    trainer.sampler.set_epoch(0)
    batch = next(iter(trainer.loader))
    objective, logged = trainer._ctc_sum(batch)
    top, out_lengths, inter = trainer.model.forward_with_intermediate(
        batch.inputs, batch.input_lengths, 1
    )
    args = (batch.targets, out_lengths, batch.target_lengths)
    kw = {"blank": trainer.tokenizer.blank_id, "reduction": "sum", "zero_infinity": True}
    want_top = torch.nn.functional.ctc_loss(top.transpose(0, 1), *args, **kw)
    want_inter = torch.nn.functional.ctc_loss(inter.transpose(0, 1), *args, **kw)
    entropy = frame_entropy(top, out_lengths).detach()
    assert float(entropy) > 1.0
    # the logged loss stays the top layer's CTC, comparable with runs without the options
    torch.testing.assert_close(logged, want_top.detach())
    torch.testing.assert_close(objective, 0.75 * want_top + 0.25 * want_inter - penalty * entropy)
    assert not torch.isclose(want_top, want_inter)
    assert objective.requires_grad and not logged.requires_grad


def test_frame_entropy_sums_the_valid_frames_only() -> None:
    vocab = 5
    uniform = torch.full((2, 4, vocab), -math.log(vocab))
    lengths = torch.tensor([4, 2])
    torch.testing.assert_close(frame_entropy(uniform, lengths), torch.tensor(6 * math.log(vocab)))
    # whatever the padding holds: the second utterance's frames 2-3 count for nothing
    noisy = uniform.clone()
    noisy[1, 2:] = torch.log_softmax(torch.randn(2, vocab) * 5, dim=-1)
    torch.testing.assert_close(frame_entropy(noisy, lengths), frame_entropy(uniform, lengths))
    # a one-hot frame has no entropy
    sure = torch.log_softmax(torch.tensor([[[30.0, 0, 0, 0, 0]]]), dim=-1)
    assert float(frame_entropy(sure, torch.tensor([1]))) < 1e-6


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("train.confidence_penalty", -0.1, r"^train\.confidence_penalty must be in \[0, 1\]"),
        ("train.intermediate_layer", 2, r"^train\.intermediate_layer must be 0 \(off\)"),
        ("train.intermediate_layer", -1, r"^train\.intermediate_layer must be 0 \(off\)"),
        ("train.intermediate_weight", 1.0, r"^train\.intermediate_weight must be in \[0, 1\)"),
        (
            "model.recurrent_dropout",
            1.0,
            r"^model\.recurrent_dropout must be in \[0, 1\), got 1\.0",
        ),
        ("model.dropout", -0.5, r"^model\.dropout must be in \[0, 1\), got -0\.5"),
        ("model.front_end", "conv3d", r"^model\.front_end must be conv1d\|conv2d, got 'conv3d'"),
    ],
)
def test_bad_model_and_intermediate_ctc_values(
    tiny_corpus: Path, tmp_path: Path, field: str, value: float | str, message: str
) -> None:
    overrides = tiny_overrides(tiny_corpus, **{"model.num_layers": 2, field: value})
    with pytest.raises(TrainingError, match=message):
        Trainer(compose_train(overrides), tmp_path)


def test_bf16_autocast_trains_on_the_cpu(tiny_corpus: Path, tmp_path: Path) -> None:
    # autocast's bf16 matmuls on the CPU: fp32 weights and loss, no gradient scaler
    overrides = {"train.precision": "bf16", "train.max_steps": 6, "train.device": "cpu"}
    trainer = Trainer(compose_train(tiny_overrides(tiny_corpus, **overrides)), tmp_path)
    assert trainer.amp_dtype == torch.bfloat16 and not trainer.scaler.is_enabled()
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    summary = trainer.run()
    assert summary["steps"] == 6 and summary["non_finite_steps_skipped"] == 0
    saved = load_checkpoint(list_checkpoints(tmp_path)[-1])["model"]
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in saved.values())
    assert any(not torch.equal(before[k], saved[k]) for k in before)


def test_bf16_on_a_gpu_without_it_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # decided from the device alone: no GPU is needed to check the refusal
    cuda = torch.device("cuda")
    # a GPU before Ampere: bf16 only when emulation counts
    monkeypatch.setattr(
        torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation
    )
    with pytest.raises(RuntimeSetupError, match="no native bf16.*fp16"):
        pick_precision("bf16", cuda)
    assert pick_precision("auto", cuda) is None and pick_precision("fp16", cuda) == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert pick_precision("bf16", cuda) == pick_precision("auto", cuda) == torch.bfloat16


def test_schedule_warms_up_then_decays() -> None:
    f = lr_lambda(10, 110, "cosine", 0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5)
    assert f(110) == pytest.approx(0.1)
    lin = lr_lambda(0, 100, "linear", 0.0)
    assert lin(50) == pytest.approx(0.5)


def test_a_fresh_run_refuses_a_folder_with_another_runs_checkpoints(
    tiny_corpus: Path, tmp_path: Path
) -> None:
    overrides = tiny_overrides(tiny_corpus, **{"train.max_steps": 2, "train.checkpoint_every": 1})
    first = train(compose_train(overrides), tmp_path)
    with pytest.raises(TrainingError, match="holds checkpoints of an earlier run"):
        Trainer(compose_train(overrides), tmp_path)
    # A kill during an append can leave half a line in dev_metrics.jsonl: resuming drops it.
    with open(tmp_path / "dev_metrics.jsonl", "a") as handle:
        handle.write('{"wer": 0.5, "st')
    summary = train(compose_train([*overrides, "train.resume=auto"]), tmp_path)
    assert summary == first  # a finished run is left as it was, its timing included
    lines = (tmp_path / "dev_metrics.jsonl").read_text().splitlines()
    assert lines and all(line.startswith("{") and line.endswith("}") for line in lines)


def test_phone_units_train_save_and_refuse_a_mismatched_resume(
    tiny_corpus: Path, tmp_path: Path
) -> None:
    from asr.phones import PhoneTokenizer

    overrides = tiny_overrides(
        tiny_corpus, **{"train.max_steps": 2, "train.checkpoint_every": 1, "data.units": "phone"}
    )
    summary = train(compose_train(overrides), tmp_path / "run")
    assert summary["steps"] == 2
    loaded = build_from_checkpoint(list_checkpoints(tmp_path / "run")[-1])
    assert isinstance(loaded.tokenizer, PhoneTokenizer)
    assert "hello" not in loaded.tokenizer.known_words  # only the training words
    text = normalize_text(read_manifest(tiny_corpus / "train.jsonl")[0].text)
    assert loaded.tokenizer.decode(loaded.tokenizer.encode(text)).split()[0] in text.split()
    char_resume = [*overrides, "data.units=char", "train.resume=auto"]
    with pytest.raises(TrainingError, match="phone units"):
        Trainer(compose_train(char_resume), tmp_path / "run")
    bad = tiny_overrides(tiny_corpus, **{"data.units": "letters"})
    with pytest.raises(TrainingError, match="data.units"):
        Trainer(compose_train(bad), tmp_path / "bad")


def test_bpe_units_train_and_rebuild_from_the_checkpoint(tiny_corpus: Path, tmp_path: Path) -> None:
    pytest.importorskip("sentencepiece", reason="word-piece units need sentencepiece (asr[bpe])")
    from asr.bpe import BpeTokenizer

    overrides = tiny_overrides(
        tiny_corpus, **{"train.max_steps": 2, "data.units": "bpe", "data.bpe_vocab_size": 40}
    )
    train(compose_train(overrides), tmp_path / "run")
    loaded = build_from_checkpoint(list_checkpoints(tmp_path / "run")[-1])
    assert isinstance(loaded.tokenizer, BpeTokenizer)
    assert loaded.model.dims.vocab_size == len(loaded.tokenizer) <= 41
    text = normalize_text(read_manifest(tiny_corpus / "train.jsonl")[0].text)
    assert loaded.tokenizer.decode(loaded.tokenizer.encode(text)) == text
    bad = tiny_overrides(tiny_corpus, **{"data.units": "bpe", "data.bpe_vocab_size": 1})
    with pytest.raises(TrainingError, match="data.bpe_vocab_size"):
        Trainer(compose_train(bad), tmp_path / "bad")


def test_phone_error_rate_script_scores_greedy_phones(tiny_corpus: Path, tmp_path: Path) -> None:
    import importlib.util

    script = Path(__file__).parents[1] / "scripts" / "phone_error_rate.py"
    spec = importlib.util.spec_from_file_location("phone_error_rate", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    overrides = tiny_overrides(tiny_corpus, **{"train.max_steps": 2, "data.units": "phone"})
    train(compose_train(overrides), tmp_path / "run")
    checkpoint = str(list_checkpoints(tmp_path / "run")[-1])
    manifest = str(tiny_corpus / "dev.jsonl")
    transcriber = module.load_phone_model(checkpoint)
    references, hypotheses = module.phone_strings(transcriber, manifest, limit=2)
    tokenizer = transcriber.loaded.tokenizer
    texts = [normalize_text(u.text) for u in read_manifest(manifest)[:2]]
    # the references are the transcripts' phones, word boundaries dropped
    assert references == [
        " ".join(tokenizer.symbols[i] for i in tokenizer.encode(t) if i != tokenizer.space_id)
        for t in texts
    ]
    assert all(set(h.split()) <= set(tokenizer.symbols[2:]) for h in hypotheses)
    # a factor of 1 leaves the front end's output as it was; another one moves it
    plain = transcriber.loaded.features
    transcriber.loaded.features = module.WarpedLogMel(plain, 1.0)
    assert module.phone_strings(transcriber, manifest, limit=2) == (references, hypotheses)
    wave, lengths = torch.randn(1, 8000), torch.tensor([8000])
    warped = module.WarpedLogMel(plain, 1.2)(wave, lengths)[0]
    assert warped.shape == plain(wave, lengths)[0].shape
    assert not torch.allclose(warped, plain(wave, lengths)[0])
    # --speaker keeps that speaker's utterances only
    rows = [json.loads(line) for line in Path(manifest).read_text(encoding="utf-8").splitlines()]
    for index, row in enumerate(rows):
        row["audio_filepath"] = str(tiny_corpus / row["audio_filepath"])  # absolute: moved
        row["speaker"] = "b" if index % 3 == 0 else "a"
    named = tmp_path / "speakers.jsonl"
    named.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    transcriber.loaded.features = plain
    every = module.phone_strings(transcriber, manifest, 0)
    only_b = module.phone_strings(transcriber, str(named), 0, "b")
    assert len(only_b[0]) == 2 and only_b == (every[0][::3], every[1][::3])
    with pytest.raises(SystemExit, match="not a phone model"):
        module.load_phone_model(str(random_checkpoint(tmp_path / "char.pt")))
