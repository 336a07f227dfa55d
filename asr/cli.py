"""Command-line entry points (``[project.scripts]``). The only module that imports Hydra.

- ``asr-train``        Hydra app over ``conf/train.yaml`` (schemas from :mod:`asr.config`);
  ``train.resume=auto`` continues a run; ``torchrun ... -m asr.train`` runs it on several
  processes
- ``asr-evaluate``     Hydra app over ``conf/evaluate.yaml``: scores a checkpoint on
  manifests, writes JSON, errors, TSV, Markdown and HTML reports;
  ``asr-evaluate compare A B`` (argparse) compares two reports or report folders, with a
  paired bootstrap
- ``asr-transcribe``   INPUT... -m CHECKPOINT (argparse): audio files or folders (searched
  recursively) in; transcripts printed, or written to ``-o DIR``, as
  ``-f txt|json|srt|vtt|tsv`` (``all`` with -o); greedy decoding, or ``--decoding beam``
  with ``--lm``, ``--lexicon`` and ``--hotwords``
- ``asr-lm``           ``build OUTPUT INPUT...``: a Kneser-Ney word n-gram (ARPA) from text
  files or manifests; ``tune``: grid search of lm_weight x word_bonus (x blank penalty x
  prior weight) on a dev manifest; ``priors``: the model's label priors into its checkpoint
- ``asr-prepare``      manifests from LibriSpeech (``--download`` fetches parts), a folder
  of audio with ``.txt`` transcripts, or a TSV
- ``asr-demo-corpus``  generates the synthetic espeak-ng demo corpus (cached);
  ``--read FILE -n N`` instead: espeak-ng voices (``--engine flite``: Flite's) read N random
  lines of FILE; ``--digits N``: N isolated digit words (training data)

The configs ship inside the package (``asr.conf``), so Hydra finds them through
``pkg://asr.conf`` from an editable and from a regular install alike.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from asr.config import DecodingConfig, EvaluateConfig, ModelConfig, TrainRunConfig

CONFIG_PATH = "pkg://asr.conf"

log = logging.getLogger("asr")


def _default_cache() -> str:
    from asr.demo import default_cache_dir

    return str(default_cache_dir())


def register_configs() -> None:
    """Schemas in Hydra's ConfigStore; conf/*.yaml extend them. Safe to call twice."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainRunConfig)
    cs.store(name="evaluate_schema", node=EvaluateConfig)
    cs.store(group="model", name="model_schema", node=ModelConfig)
    cs.store(group="decoding", name="decoding_schema", node=DecodingConfig)
    if not OmegaConf.has_resolver("asr_cache"):
        # ${asr_cache:} in YAML: where generated corpora live (never inside the repository)
        OmegaConf.register_new_resolver("asr_cache", _default_cache)


register_configs()


def _output_dir(explicit: str = "") -> Path:
    return Path(explicit) if explicit else Path(HydraConfig.get().runtime.output_dir)


def _fail(program: str, exc: BaseException) -> None:
    """One line on stderr naming the problem, exit status 2 (no traceback for bad input)."""
    print(f"{program}: error: {exc}", file=sys.stderr)
    sys.exit(2)


# Errors that are the user's input, reported in one line; anything else is a bug: traceback.
def _user_errors() -> tuple[type[BaseException], ...]:
    from asr.audio import AudioError
    from asr.checkpoint import CheckpointError
    from asr.manifest import ManifestError
    from asr.synth import SynthError
    from asr.text import UnknownCharacterError
    from asr.train import TrainingError

    return (
        AudioError,
        CheckpointError,
        ManifestError,
        SynthError,
        UnknownCharacterError,
        TrainingError,
        ValueError,
    )


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def train_main(cfg: DictConfig) -> None:
    """asr-train: train a BiLSTM-CTC model (see conf/train.yaml)."""
    from asr.train import train

    config: TrainRunConfig = OmegaConf.to_object(cfg)
    try:
        summary = train(config, _output_dir())
    except _user_errors() as exc:
        _fail("asr-train", exc)
    log.info("done: %s", summary)
    if summary["interrupted"]:  # saved and resumable, but not finished: say so to the caller
        import signal

        name = signal.Signals(summary["stop_signal"]).name
        print(
            f"asr-train: stopped by {name} at step {summary['steps']}, checkpoint saved; resume "
            f"with the same command plus train.resume=auto hydra.run.dir={_output_dir()}",
            file=sys.stderr,
        )
        sys.exit(128 + summary["stop_signal"])


def evaluate_main() -> None:
    """asr-evaluate: score a checkpoint on manifests (see conf/evaluate.yaml).

    ``asr-evaluate compare A B`` compares two reports instead (see :func:`compare_main`);
    that form is picked out before Hydra, which would read ``compare`` as an override.
    """
    if len(sys.argv) > 1 and sys.argv[1] == "compare":
        compare_main(sys.argv[2:])
        return
    _evaluate_app()


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="evaluate")
def _evaluate_app(cfg: DictConfig) -> None:
    from asr.evaluate import evaluate

    config: EvaluateConfig = OmegaConf.to_object(cfg)
    out = _output_dir(config.output_dir)
    try:
        results = evaluate(config, out)
    except _user_errors() as exc:
        _fail("asr-evaluate", exc)
    for name, summary in results.items():
        print(
            f"{name}: WER {summary['wer']:.4f} (raw {summary['wer_raw']:.4f})  "
            f"CER {summary['cer']:.4f}  SER {summary['sentence_error_rate']:.4f}  "
            f"({summary['utterances']} utterances)"
        )
    print(f"reports: {out / 'report.html'}, {out / 'report.md'}, <set>.report.json ...")


def compare_main(argv: list[str] | None = None) -> None:
    """asr-evaluate compare A B: two reports side by side, with a paired bootstrap."""
    parser = argparse.ArgumentParser(
        prog="asr-evaluate compare",
        description="Compare two asr-evaluate reports (A is the baseline, B the candidate).",
    )
    parser.add_argument("a", help="a <set>.report.json, or an asr-evaluate output folder")
    parser.add_argument("b", help="the same for the system compared with A")
    parser.add_argument("-o", "--output-dir", default="", help="also write compare.md/.json")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--confidence", type=float, default=0.95)
    args = parser.parse_args(argv)
    from asr.compare import compare_paths, comparison_markdown
    from asr.io_utils import atomic_write_text

    try:
        comparisons = compare_paths(args.a, args.b, args.resamples, args.seed, args.confidence)
    except (OSError, ValueError, KeyError) as exc:
        _fail("asr-evaluate compare", exc)
    text = comparison_markdown(comparisons)
    if args.output_dir:
        import json

        out = Path(args.output_dir)
        atomic_write_text(out / "compare.md", text)
        atomic_write_text(out / "compare.json", json.dumps(comparisons, indent=2) + "\n")
    print(text, end="")


def transcribe_main(argv: list[str] | None = None) -> None:
    """asr-transcribe INPUT... -m CHECKPOINT [-f FORMAT] [-o DIR]: transcripts of audio.

    Without -o each transcript is printed (-f txt: "path<TAB>text" lines when there are
    several files); with -o the files OUTPUT_DIR/<name>.<format> are written (-f default
    all). Several inputs: unreadable files are reported, skipped, and the exit status is 1.
    """
    parser = argparse.ArgumentParser(prog="asr-transcribe", description="Transcribe audio files.")
    parser.add_argument("inputs", nargs="+", help="audio files or folders (searched recursively)")
    parser.add_argument(
        "-m", "--model", required=True, help="checkpoint (.pt) written by asr-train"
    )
    parser.add_argument("-f", "--format", default=None, help="txt|json|srt|vtt|tsv|all")
    parser.add_argument("-o", "--output-dir", default=None, help="write files here")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    parser.add_argument("--decoding", default="greedy", choices=["greedy", "beam"])
    parser.add_argument("--beam-size", type=int, default=16)
    parser.add_argument(
        "--lm", default="", help="word n-gram LM (ARPA or KenLM binary) for beam search"
    )
    parser.add_argument("--lm-weight", type=float, default=0.5)
    parser.add_argument("--word-bonus", type=float, default=0.0)
    parser.add_argument(
        "--blank-penalty", type=float, default=0.0, help="nats off the blank in each frame"
    )
    parser.add_argument(
        "--prior-weight",
        type=float,
        default=0.0,
        help="label priors divided out to this power (the checkpoint's, from asr-lm priors)",
    )
    parser.add_argument("--lexicon", default="", help='word list, or "lm" (the LM\'s words)')
    parser.add_argument("--hotwords", default="", help="comma-separated words to favour")
    parser.add_argument("--hotword-weight", type=float, default=2.0, help="0..10 (nats)")
    parser.add_argument("--nbest", type=int, default=1, help="alternatives kept (json)")
    parser.add_argument("--workers", type=int, default=1, help="beam search processes")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--chunk-seconds",
        type=float,
        default=30.0,
        help="longer files are streamed and cut at pauses into chunks of at most this",
    )
    parser.add_argument(
        "--overlap", type=float, default=2.0, help="seconds shared by chunks cut without a pause"
    )
    args = parser.parse_args(argv)
    from asr import outputs
    from asr.longform import ChunkSpec
    from asr.runtime import set_threads
    from asr.transcribe import Transcriber, collect_audio

    set_threads(args.threads)
    decoding = DecodingConfig(
        method=args.decoding,
        beam_size=args.beam_size,
        lm_path=args.lm,
        lm_weight=args.lm_weight,
        word_bonus=args.word_bonus,
        blank_penalty=args.blank_penalty,
        prior_weight=args.prior_weight,
        lexicon=args.lexicon,
        hotwords=[w for w in args.hotwords.split(",") if w.strip()],
        hotword_weight=args.hotword_weight,
        nbest=args.nbest,
    )
    try:
        fmt = args.format or ("all" if args.output_dir else "txt")
        formats = outputs.parse_formats(fmt)
        if args.output_dir is None and len(formats) > 1:
            raise ValueError(f"-f {fmt} writes several files: give -o OUTPUT_DIR")
        paths, roots = collect_audio(args.inputs)
        names = outputs.output_names(paths, roots)
        chunk = ChunkSpec(args.chunk_seconds, args.overlap)
        many = len(paths) > 1
        with Transcriber.from_checkpoint(
            args.model, args.device, decoding, args.workers, chunk
        ) as transcriber:
            results = transcriber.transcribe(paths, progress=not args.quiet, skip_errors=many)
    except _user_errors() as exc:
        _fail("asr-transcribe", exc)
    failed = [r for r in results if r.error]
    for result in failed:
        print(f"asr-transcribe: skipped: {result.error}", file=sys.stderr)
    for result, name in zip(results, names, strict=True):
        if result.error:
            continue
        if args.output_dir is not None:
            outputs.write_transcript(result, args.output_dir, name, formats)
        elif formats == ["txt"]:
            print(f"{result.path}\t{result.text}" if many else result.text)
        else:
            print(f"==> {result.path} <==\n" if many else "", end="")
            print(outputs.WRITERS[formats[0]](result), end="")
    if args.output_dir is not None:
        done = len(results) - len(failed)
        print(f"{done} transcript(s) written to {args.output_dir} as {','.join(formats)}")
    if failed:
        sys.exit(1)


def export_main(argv: list[str] | None = None) -> None:
    """asr-export CHECKPOINT OUTPUT: the model as TorchScript (.ts) or ONNX (.onnx)."""
    parser = argparse.ArgumentParser(
        prog="asr-export",
        description="Export a checkpoint's model; asr-transcribe -m accepts the result.",
    )
    parser.add_argument("checkpoint", help="checkpoint (.pt) written by asr-train")
    parser.add_argument("output", help="model.ts (TorchScript) or model.onnx (ONNX)")
    args = parser.parse_args(argv)
    from asr.export import export_model

    try:
        written = export_model(args.checkpoint, args.output)
    except _user_errors() as exc:
        _fail("asr-export", exc)
    print(f"{written}: {written.stat().st_size / 1e6:.1f} MB")


def average_main(argv: list[str] | None = None) -> None:
    """asr-average OUTPUT INPUT...: a checkpoint whose weights are the inputs' mean."""
    parser = argparse.ArgumentParser(
        prog="asr-average", description="Average the weights of several checkpoints."
    )
    parser.add_argument("output", help="the checkpoint to write")
    parser.add_argument(
        "inputs", nargs="+", help="checkpoints, or run folders (their step_*.pt checkpoints)"
    )
    parser.add_argument("--last", type=int, default=0, help="only the newest N of the inputs")
    args = parser.parse_args(argv)
    from asr.checkpoint import average_checkpoints, list_checkpoints

    paths: list[Path] = []
    for item in map(Path, args.inputs):
        paths.extend(list_checkpoints(item) if item.is_dir() else [item])
    if args.last > 0:
        paths = paths[-args.last :]
    try:
        written = average_checkpoints(paths, args.output)
    except _user_errors() as exc:
        _fail("asr-average", exc)
    print(f"{written}: mean of {len(paths)} checkpoints: " + ", ".join(p.name for p in paths))


def lm_main(argv: list[str] | None = None) -> None:
    """asr-lm build|tune|priors: word n-gram LMs for beam search, and what tunes it."""
    parser = argparse.ArgumentParser(prog="asr-lm", description="Word n-gram LMs for beam search.")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="estimate a Kneser-Ney n-gram, write ARPA")
    build.add_argument("output", help="the ARPA file to write")
    build.add_argument(
        "inputs",
        nargs="+",
        help="text files (one sentence a line, .gz too) and/or manifests (.jsonl: text fields)",
    )
    build.add_argument("--order", type=int, default=3)
    build.add_argument(
        "--word-list",
        default="",
        help="extra vocabulary: 'word' or 'word frequency' a line; words the text lacks get "
        "unigram probabilities from the frequencies (beam search with lexicon=lm admits them)",
    )
    tune = commands.add_parser(
        "tune", help="grid-search lm_weight x word_bonus (x blank penalty) on a dev set"
    )
    tune.add_argument("-m", "--model", required=True, help="checkpoint (.pt)")
    tune.add_argument(
        "--manifest", required=True, nargs="+", help="dev manifest(s) (.jsonl), scored together"
    )
    tune.add_argument("--lm", required=True, help="ARPA or KenLM binary")
    tune.add_argument("--lm-weights", default="0,0.25,0.5,0.75,1,1.5", help="comma separated")
    tune.add_argument(
        "--word-bonuses", default="-1,0,1,2,3", help="comma separated (--word-bonuses=-1,0,1)"
    )
    tune.add_argument(
        "--blank-penalties", default="0", help="comma separated (--blank-penalties=0,1,2)"
    )
    tune.add_argument(
        "--prior-weights",
        default="0",
        help="comma separated; above 0 needs the checkpoint's label priors (asr-lm priors)",
    )
    tune.add_argument("--beam-size", type=int, default=16)
    tune.add_argument("--lexicon", default="", help='"" (lexicon-free), a word list, or "lm"')
    tune.add_argument("--workers", type=int, default=1, help="decoding processes")
    tune.add_argument("--device", default="cpu")
    tune.add_argument("--json", default="", help="also write the rows and the best to this file")
    priors = commands.add_parser(
        "priors",
        help="estimate the model's label priors on some audio and store them in the checkpoint",
    )
    priors.add_argument("-m", "--model", required=True, help="checkpoint (.pt), updated in place")
    priors.add_argument(
        "--manifest", required=True, nargs="+", help="manifest(s) whose audio to run the model on"
    )
    priors.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    from asr import lm

    try:
        if args.command == "build":
            model = lm.build_arpa(args.inputs, args.output, args.order, args.word_list or None)
            sizes = ", ".join(f"{size} {n}-grams" for n, size in enumerate(model.sizes(), 1))
            print(f"{args.output}: {sizes}")
            return
        if args.command == "priors":
            log_priors = lm.add_label_priors(args.model, args.manifest, args.device)
            print(f"{args.model}: label priors of {len(log_priors)} units stored")
            return
        rows = lm.tune_lm(
            args.model,
            args.manifest,
            args.lm,
            _numbers("--lm-weights", args.lm_weights),
            _numbers("--word-bonuses", args.word_bonuses),
            args.beam_size,
            args.lexicon,
            args.workers,
            args.device,
            _numbers("--blank-penalties", args.blank_penalties),
            _numbers("--prior-weights", args.prior_weights),
        )
    except _user_errors() as exc:
        _fail("asr-lm", exc)
    print(lm.tuning_table(rows), end="")
    if args.json:
        import json

        from asr.io_utils import atomic_write_text

        summary = {"rows": rows, "best": lm.best_row(rows)}
        atomic_write_text(args.json, json.dumps(summary, indent=2) + "\n")


def _numbers(option: str, text: str) -> list[float]:
    """Comma-separated numbers of a grid option, or a ValueError naming the option."""
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise ValueError(f"{option}: expected comma-separated numbers, got {text!r}") from None


def prepare_main(argv: list[str] | None = None) -> None:
    """asr-prepare: write manifests for LibriSpeech, a folder of audio, or a TSV."""
    from asr.prepare import main

    sys.exit(main(argv))


def demo_corpus_main(argv: list[str] | None = None) -> None:
    """asr-demo-corpus: generate the synthetic espeak-ng demo corpus (cached)."""
    parser = argparse.ArgumentParser(prog="asr-demo-corpus", description=demo_corpus_main.__doc__)
    parser.add_argument(
        "--out", default="", help="folder (default: the cache, ~/.cache/asr/demo-v1-seed0)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--read",
        metavar="TEXT_FILE",
        default="",
        help="instead: synthetic voices read N random lines of this file (.gz ok)",
    )
    parser.add_argument("-n", type=int, default=3000, help="with --read: how many sentences")
    parser.add_argument(
        "--engine",
        choices=("espeak", "flite"),
        default="espeak",
        help="with --read: espeak-ng's 192 voices, or Flite's 4 (needs the flite program)",
    )
    parser.add_argument(
        "--digits",
        type=int,
        default=0,
        metavar="N",
        help="instead: N isolated digit words by espeak-ng and Flite voices, half at 8 kHz",
    )
    args = parser.parse_args(argv)
    if args.read and args.digits:
        parser.error("--read and --digits make different corpora: give one")
    if args.digits < 0:
        parser.error(f"--digits must be positive, got {args.digits}")
    if args.engine != "espeak" and not args.read:
        parser.error("--engine chooses the voices of --read")
    from asr.demo import build_demo_corpus, default_demo_dir
    from asr.reading import build_digit_corpus, build_reading_corpus
    from asr.synth import SynthError

    try:
        if args.digits:
            paths = {"train": build_digit_corpus(args.digits, args.out or None, args.seed,
                                                 args.workers)}  # fmt: skip
        elif args.read:
            out_dir = args.out or None
            manifest = build_reading_corpus(
                args.read, args.n, out_dir, args.seed, args.workers, args.engine
            )
            paths = {"train": manifest}
        else:
            out = args.out or default_demo_dir(args.seed)
            paths = build_demo_corpus(out, seed=args.seed, workers=args.workers)
    except (OSError, ValueError, SynthError) as exc:
        _fail("asr-demo-corpus", exc)
    for split, path in paths.items():
        print(f"{split}\t{path}")
