"""Tests for asr.lm: the Kneser-Ney estimator against hand-computed values, ARPA through kenlm."""

from __future__ import annotations

import gzip
import json
import math
import random

import pytest

from asr.lm import (
    adjusted_counts,
    build_arpa,
    count_ngrams,
    discount,
    estimate,
    read_sentences,
    read_word_list,
    tuning_table,
)

kenlm = pytest.importorskip("kenlm")

# <s> a b </s> / <s> a c </s> / <s> b c </s>
TOY = ["a b", "a c", "b c"]


def kenlm_model(path):
    config = kenlm.Config()
    config.show_progress = False
    return kenlm.Model(str(path), config)


def test_counts_and_continuation_counts():
    raw = count_ngrams(TOY, 2)
    assert raw[1][("<s>", "a")] == 2 and raw[1][("c", "</s>")] == 2
    adjusted = adjusted_counts(raw)
    # unigrams count the different words before them; <s> keeps its raw count
    assert {g[0]: c for g, c in adjusted[0].items()} == {
        "<s>": 3,
        "a": 1,
        "b": 2,
        "c": 2,
        "</s>": 2,
    }
    assert adjusted[1] == raw[1]  # top order: raw counts
    assert discount(adjusted[0]) == pytest.approx(1 / 7)  # n1 = 1 (a), n2 = 3
    assert discount(adjusted[1]) == pytest.approx(5 / 9)  # n1 = 5, n2 = 2


def test_bigram_probabilities_by_hand():
    model = estimate(TOY, order=2)
    # unigrams: (count - 1/7) / 7 + (1/7 * 4 types / 7) * 1/5 (vocabulary a b c </s> <unk>)
    assert model.probs[0][("a",)] == pytest.approx(34 / 245)
    assert model.probs[0][("b",)] == pytest.approx(69 / 245)
    assert model.probs[0][("<unk>",)] == pytest.approx(4 / 245)
    assert sum(model.probs[0].values()) == pytest.approx(1.0)
    # P(a | <s>) = (2 - 5/9) / 3 + (5/9 * 2 types / 3) * P(a)
    assert model.probs[1][("<s>", "a")] == pytest.approx(13 / 27 + 10 / 27 * 34 / 245)
    assert model.backoffs[0][("<s>",)] == pytest.approx(10 / 27)
    # unseen "c" after <s>: back-off weight times the unigram
    assert model.prob("c", ["<s>"]) == pytest.approx(10 / 27 * 69 / 245)
    assert model.prob("zebra", ["<s>"]) == pytest.approx(10 / 27 * 4 / 245)


def test_arpa_read_by_kenlm_matches(tmp_path):
    text = tmp_path / "toy.txt"
    text.write_text("A b!\n\na, c\nb c\n", encoding="utf-8")  # normalised on the way in
    arpa = tmp_path / "toy.arpa"
    model = build_arpa([text], arpa, order=2)
    lm = kenlm_model(arpa)
    for sentence in ["a c", "b b", "c a zebra"]:
        words = ["<s>", *sentence.split(), "</s>"]
        ours = sum(math.log10(model.prob(w, words[:i])) for i, w in enumerate(words) if i)
        assert lm.score(sentence, bos=True, eos=True) == pytest.approx(ours, abs=1e-5)


def test_trigram_distributions_sum_to_one(tmp_path):
    rng = random.Random(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran"]
    sentences = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 8))) for _ in range(60)]
    arpa = tmp_path / "tri.arpa"
    model = build_arpa([_write(tmp_path / "t.txt", sentences)], arpa, order=3)
    lm = kenlm_model(arpa)
    predicted = list(model.vocabulary)  # every word, </s> and <unk>
    for history in [(), ("the",), ("cat", "sat"), ("mat", "dog"), ("zebra", "the")]:
        total = 0.0
        for word in predicted:
            state = kenlm.State()
            if history:
                lm.NullContextWrite(state)
            else:
                lm.BeginSentenceWrite(state)
            for h in history:
                nxt = kenlm.State()
                lm.BaseScore(state, h, nxt)
                state = nxt
            total += 10 ** lm.BaseScore(state, word, kenlm.State())
        assert total == pytest.approx(1.0, abs=1e-4), history


def test_word_list_words_share_the_base_by_frequency():
    # vocabulary a b c </s> <unk> + listed "zebra" (and "a", "b", seen): the base below
    # unigrams weighs each word by its frequency, words the list lacks as its rarest (b: 1)
    model = estimate(TOY, order=2, word_list={"zebra": 3.0, "a": 10.0, "b": 1.0})
    base = {"a": 10, "b": 1, "c": 1, "</s>": 1, "<unk>": 1, "zebra": 3}
    gamma = 1 / 7 * 4 / 7  # D_1 * types / total, as in the hand-worked bigram test
    assert model.probs[0][("zebra",)] == pytest.approx(gamma * 3 / 17)
    assert model.probs[0][("<unk>",)] == pytest.approx(gamma * 1 / 17)
    assert model.probs[0][("a",)] == pytest.approx((1 - 1 / 7) / 7 + gamma * base["a"] / 17)
    assert sum(model.probs[0].values()) == pytest.approx(1.0)
    assert model.prob("zebra", ["<s>"]) == pytest.approx(10 / 27 * gamma * 3 / 17)
    # a list without frequencies is uniform: the seen words' model is unchanged but for the
    # base now shared by one more word
    flat = estimate(TOY, order=2, word_list={"zebra": 1.0})
    assert flat.probs[0][("zebra",)] == pytest.approx(flat.probs[0][("<unk>",)])
    assert flat.probs[0][("zebra",)] == pytest.approx(gamma / 6)
    assert estimate(TOY, order=2, word_list={"a": 1.0}).probs == estimate(TOY, order=2).probs


def test_word_list_through_kenlm_and_the_cli(tmp_path, capsys):
    from asr.cli import lm_main

    words = _write(tmp_path / "words.tsv", ["Zebra 5", "yak", "", "a 2", "two-words 9"])
    assert read_word_list(words) == {"zebra": 5.0, "yak": 1.0, "a": 2.0}
    arpa = tmp_path / "w.arpa"
    lm_main(["build", str(arpa), str(_write(tmp_path / "c.txt", TOY)), "--order", "2",
             "--word-list", str(words)])  # fmt: skip
    assert "8 1-grams" in capsys.readouterr().out  # <s> a b c </s> <unk> yak zebra
    lm = kenlm_model(arpa)
    # a listed word is in the vocabulary, more probable than <unk> by its frequency
    assert "zebra" in lm and "yak" in lm
    state = kenlm.State()
    lm.NullContextWrite(state)
    zebra, yak, unk = (lm.BaseScore(state, w, kenlm.State()) for w in ("zebra", "yak", "gnu"))
    assert zebra - yak == pytest.approx(math.log10(5), abs=1e-5)
    assert yak == pytest.approx(unk, abs=1e-5)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["a 1 2"], r"w\.tsv:1: expected 'word' or 'word frequency'"),
        (["a", "b -1"], r"w\.tsv:2: frequency must be a positive number"),
        (["a x"], r"w\.tsv:1: frequency must be a positive number"),
        (["a nan"], r"w\.tsv:1: frequency must be a positive number"),
        (["", "!!"], r"w\.tsv: no words in the word list"),
    ],
)
def test_bad_word_lists_are_named(tmp_path, lines, message):
    with pytest.raises(ValueError, match=message):
        read_word_list(_write(tmp_path / "w.tsv", lines))
    with pytest.raises(ValueError, match="nowhere.tsv: word list not found"):
        read_word_list(tmp_path / "nowhere.tsv")


def test_read_sentences_from_text_gz_and_manifest(tmp_path):
    plain = _write(tmp_path / "a.txt", ["Hello, World!", "  ", "it's-fine"])
    packed = tmp_path / "b.txt.gz"
    with gzip.open(packed, "wt", encoding="utf-8") as handle:
        handle.write("GZ line\n")
    manifest = tmp_path / "m.jsonl"
    rows = [{"audio_filepath": "x.wav", "duration": 1.0, "text": "Manifest TEXT."}]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert list(read_sentences([plain, packed, manifest])) == [
        "hello world",
        "it's fine",
        "gz line",
        "manifest text",
    ]
    with pytest.raises(ValueError, match="not found"):
        list(read_sentences([tmp_path / "missing.txt"]))
    bad = _write(tmp_path / "bad.jsonl", ['{"no_text": 1}'])
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        list(read_sentences([bad]))


def test_build_rejects_empty_input(tmp_path):
    with pytest.raises(ValueError, match="no text"):
        estimate([], order=2)
    with pytest.raises(ValueError, match="no text"):
        build_arpa([_write(tmp_path / "e.txt", ["", "!!"])], tmp_path / "e.arpa")
    assert not (tmp_path / "e.arpa").exists()


def test_lm_cli_build(tmp_path, capsys):
    from asr.cli import lm_main

    arpa = tmp_path / "cli.arpa"
    lm_main(["build", str(arpa), str(_write(tmp_path / "c.txt", TOY)), "--order", "2"])
    assert "6 1-grams, 7 2-grams" in capsys.readouterr().out
    assert kenlm_model(arpa).order == 2


def test_tuning_table_marks_best():
    rows = [
        {"lm_weight": None, "word_bonus": None, "wer": 0.3, "cer": 0.1},
        {"lm_weight": 0.5, "word_bonus": 0.0, "wer": 0.2, "cer": 0.08},
        {"lm_weight": 1.0, "word_bonus": 1.0, "wer": 0.25, "cer": 0.07},
    ]
    lines = tuning_table(rows).splitlines()
    assert lines[1].split()[0] == "greedy"
    assert lines[2].endswith("*") and not lines[3].endswith("*")


def test_tune_lm_grid(tmp_path, capsys):
    """Plumbing: an untrained tiny model, two clips, a 2 x 2 grid plus greedy."""
    import numpy as np
    import soundfile as sf
    import torch

    from asr.checkpoint import build_from_checkpoint, save_checkpoint
    from asr.cli import lm_main
    from asr.features import FeatureSpec
    from asr.lm import tune_lm
    from asr.model import CTCModel, ModelDims
    from asr.text import CharTokenizer

    tokenizer = CharTokenizer.from_texts(["a b c"])
    dims = ModelDims(
        n_mels=80, vocab_size=len(tokenizer), conv_channels=8, hidden_size=8, num_layers=1
    )
    torch.manual_seed(0)
    state = {
        "model_dims": dims.to_dict(),
        "model": CTCModel(dims).state_dict(),
        "features": FeatureSpec().to_dict(),
        "tokenizer": tokenizer.to_dict(),
    }
    checkpoint = tmp_path / "tiny.pt"
    save_checkpoint(checkpoint, state)
    rows = []
    for i, seconds in enumerate([0.5, 0.8]):
        wave = np.random.default_rng(i).normal(0, 0.1, int(16000 * seconds)).astype(np.float32)
        sf.write(tmp_path / f"{i}.wav", wave, 16000)
        rows.append(json.dumps({"audio_filepath": f"{i}.wav", "duration": seconds, "text": "a b"}))
    manifest = _write(tmp_path / "dev.jsonl", rows)
    arpa = tmp_path / "lm.arpa"
    build_arpa([_write(tmp_path / "t.txt", TOY)], arpa, order=2)
    result = tune_lm(checkpoint, manifest, arpa, [0.0, 1.0], [0.0, 2.0], beam_size=4)
    assert [(r["lm_weight"], r["word_bonus"], r["blank_penalty"]) for r in result] == [
        (None, None, None),
        (0.0, 0.0, 0.0),
        (0.0, 2.0, 0.0),
        (1.0, 0.0, 0.0),
        (1.0, 2.0, 0.0),
    ]
    assert all(r["wer"] >= 0.0 for r in result)
    three = tune_lm(checkpoint, manifest, arpa, [1.0], [0.0], 4, blank_penalties=[0.0, 2.0])
    assert [(r["word_bonus"], r["blank_penalty"]) for r in three] == [(None, None), (0, 0), (0, 2)]
    # a bad penalty fails before any work: the missing checkpoint is never reached
    with pytest.raises(ValueError, match="blank_penalty"):
        tune_lm(tmp_path / "absent.pt", manifest, arpa, [1.0], [0.0], blank_penalties=[math.nan])
    lm_main(
        [
            "tune",
            "-m",
            str(checkpoint),
            "--manifest",
            str(manifest),
            "--lm",
            str(arpa),
            "--lm-weights",
            "0.5",
            "--word-bonuses",
            "0",
            "--blank-penalties=0,1",
            "--beam-size",
            "2",
            "--json",
            str(tmp_path / "tune.json"),
        ]
    )
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["lm_weight", "word_bonus", "blank_pen"]
    written = json.loads((tmp_path / "tune.json").read_text())
    assert written["best"]["lm_weight"] == 0.5 and len(written["rows"]) == 3
    assert [r["blank_penalty"] for r in written["rows"]] == [None, 0.0, 1.0]
    assert out[1].split()[0] == "greedy" and len(out) == 4
    best = written["best"]
    starred = [line.split() for line in out[2:] if line.endswith("*")]
    assert [float(x) for x in starred[0][:4]] == [0.5, 0.0, best["blank_penalty"], 0.0]
    assert f"{best['wer']:.4f}" == starred[0][4]

    # label priors: tuning them needs them stored first, then they join the grid
    with pytest.raises(ValueError, match="no label priors"):
        tune_lm(checkpoint, manifest, arpa, [1.0], [0.0], 4, prior_weights=[0.0, 0.5])
    lm_main(["priors", "-m", str(checkpoint), "--manifest", str(manifest)])
    assert capsys.readouterr().out == f"{checkpoint}: label priors of 5 units stored\n"
    stored = build_from_checkpoint(checkpoint).log_priors
    assert sum(math.exp(x) for x in stored) == pytest.approx(1.0, abs=1e-5)  # mean posteriors
    with_priors = tune_lm(checkpoint, manifest, arpa, [1.0], [0.0], 4, prior_weights=[0.0, 0.5])
    assert [r["prior_weight"] for r in with_priors] == [None, 0.0, 0.5]
    with pytest.raises(ValueError, match="prior_weight"):
        tune_lm(tmp_path / "absent.pt", manifest, arpa, [1.0], [0.0], prior_weights=[-1.0])


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_tune_cli_names_a_bad_grid_option(tmp_path, capsys):
    from asr.cli import lm_main

    argv = ["tune", "-m", "m.pt", "--manifest", "d.jsonl", "--lm", "x.arpa"]
    with pytest.raises(SystemExit) as exit_info:
        lm_main([*argv, "--blank-penalties=0,two"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err]  # one line
    assert "--blank-penalties" in err and "'0,two'" in err
