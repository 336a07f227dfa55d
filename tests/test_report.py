"""Tests for asr.report (numbers against jiwer, tables), its writers (asr.report_text,
asr.report_html) and asr.compare."""

from __future__ import annotations

import json
import random
from html.parser import HTMLParser

import jiwer
import pytest

from asr.compare import compare_paths, comparison_markdown, paired_bootstrap
from asr.report import ErrorReport, context_line, length_bucket, read_training_curves
from asr.report_html import html_report, log_ticks, nice_ticks
from asr.report_text import errors_text, markdown_report
from asr.text import normalize_text

WORDS = ["the", "cat", "sat", "on", "a", "mat", "hat", "that", "at", "cats"]


def random_pairs(seed: int, count: int = 40) -> tuple[list[str], list[str]]:
    """References and hypotheses with random edits, some empty hypotheses, mixed case."""
    rng = random.Random(seed)
    refs, hyps = [], []
    for _ in range(count):
        ref = [rng.choice(WORDS) for _ in range(rng.randint(1, 9))]
        hyp = list(ref)
        for _ in range(rng.randint(0, 4)):
            op = rng.choice("sdi")
            if op == "s" and hyp:
                hyp[rng.randrange(len(hyp))] = rng.choice(WORDS)
            elif op == "d" and hyp:
                del hyp[rng.randrange(len(hyp))]
            elif op == "i":
                hyp.insert(rng.randint(0, len(hyp)), rng.choice(WORDS))
        if rng.random() < 0.1:
            hyp = []
        if rng.random() < 0.3:  # something for normalisation to remove
            ref[0] = ref[0].capitalize() + ","
        refs.append(" ".join(ref))
        hyps.append(" ".join(hyp))
    return refs, hyps


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_numbers_agree_with_jiwer(seed: int) -> None:
    refs, hyps = random_pairs(seed)
    report = ErrorReport.build(refs, hyps)
    norm_refs = [normalize_text(t) for t in refs]
    norm_hyps = [normalize_text(t) for t in hyps]
    expected = jiwer.process_words(norm_refs, norm_hyps)
    total = report.total
    assert (total.substitutions, total.deletions, total.insertions, total.hits) == (
        expected.substitutions,
        expected.deletions,
        expected.insertions,
        expected.hits,
    )
    summary = report.summary()
    assert summary["wer"] == pytest.approx(jiwer.wer(norm_refs, norm_hyps), abs=1e-6)
    assert summary["cer"] == pytest.approx(jiwer.cer(norm_refs, norm_hyps), abs=1e-6)
    assert summary["wer_raw"] == pytest.approx(jiwer.wer(refs, hyps), abs=1e-6)
    assert summary["wer_raw"] > summary["wer"]  # capitals and commas count as errors raw
    wrong = sum(r != h for r, h in zip(norm_refs, norm_hyps, strict=True))
    assert summary["sentence_error_rate"] == pytest.approx(wrong / len(refs), abs=1e-6)
    # Per utterance too: the counts of each row are jiwer's on that pair alone.
    for utt, ref, hyp in zip(report.utterances[:10], norm_refs, norm_hyps, strict=False):
        one = jiwer.process_words(ref, hyp)
        assert (utt.substitutions, utt.deletions, utt.insertions) == (
            one.substitutions,
            one.deletions,
            one.insertions,
        )


def test_normalize_none_scores_the_raw_text() -> None:
    refs, hyps = random_pairs(5)
    report = ErrorReport.build(refs, hyps, normalize="none")
    assert report.summary()["wer"] == pytest.approx(jiwer.wer(refs, hyps), abs=1e-6)
    assert report.summary()["normalize"] == "none"
    with pytest.raises(ValueError, match="normalize must be one of"):
        ErrorReport.build(refs, hyps, normalize="lowercase")


def test_errors_in_context() -> None:
    report = ErrorReport.build(
        ["the edison company", "a man of words", "go home"],
        ["the addison company", "a man words", "go to home now"],
        ids=["u1", "u2", "u3"],
    )
    lines = {u.id: u.context for u in report.utterances}
    assert lines == {
        "u1": "the (edison->addison) company",
        "u2": "a man (of->*) words",
        "u3": "go (*->to) home (*->now)",
    }
    assert context_line([("a", "a"), (None, "b"), ("c", None)]) == "a (*->b) (c->*)"
    text = errors_text(report)
    assert "u1:\tthe (edison->addison) company" in text
    assert "%WER 44.44 [ 4 / 9, 2 ins, 1 del, 1 sub ]" in text
    for section in ("PER-UTT DETAILS:", "SUBSTITUTIONS:", "DELETIONS:", "INSERTIONS:"):
        assert section in text
    assert text.index("u3:") < text.index("u1:")  # most errors first


def test_empty_reference_and_hypothesis() -> None:
    report = ErrorReport.build(["", "one two", ""], ["x y", "", ""])
    assert [u.context for u in report.utterances] == ["(*->x) (*->y)", "(one->*) (two->*)", ""]
    total = report.total
    assert (total.insertions, total.deletions, total.words, total.sentence_errors) == (2, 2, 2, 2)


def test_pairs_are_ranked_by_count_then_alphabetically() -> None:
    report = ErrorReport.build(
        ["a b c", "a b c", "a b c", "d e"], ["a x c", "a x c", "a y c", "d"], ids=list("pqrs")
    )
    assert report.substitution_pairs() == [(("b", "x"), 2), (("b", "y"), 1)]
    assert report.deletion_counts() == [("e", 1)]
    report = ErrorReport.build(["z", "y", "y"], ["", "", ""])
    assert report.deletion_counts() == [("y", 2), ("z", 1)]
    stats = {s["word"]: s for s in report.word_stats()}
    assert stats["y"] == {
        "word": "y",
        "correct": 0,
        "errors": 2,
        "in_reference": 2,
        "in_hypothesis": 0,
    }


def test_speaker_and_length_tables() -> None:
    report = ErrorReport.build(
        ["one", "two", "three four", "five six seven eight nine"],
        ["one", "too", "three four", "five six seven eight"],
        speakers=["ann", "ann", "bob", None],
        durations=[0.3, 0.7, 1.5, 5.0],
    )
    speakers = {row.label: row for row in report.by_speaker()}
    assert set(speakers) == {"ann", "bob"}  # an utterance without a speaker is in no row
    assert (speakers["ann"].utterances, speakers["ann"].wer) == (2, 0.5)
    assert speakers["ann"].sentence_error_rate == 0.5
    assert report.by_speaker()[0].label == "ann"  # highest WER first
    lengths = report.by_length()
    assert [r.label for r in lengths] == ["<0.5 s", "0.5–1 s", "1–2 s", "4–8 s"]
    assert [r.errors for r in lengths] == [0, 1, 0, 1]
    by_words = ErrorReport.build(["a", "a b", "a b c d e"], ["a", "a b", "a b c d e"])
    assert [r.label for r in by_words.by_length()] == ["1 word", "2–3 words", "4–7 words"]
    assert length_bucket(100.0, "seconds") == (7, "≥32 s")
    assert length_bucket(0, "words") == (0, "0 words")
    assert ErrorReport.build(["a"], ["a"]).by_speaker() == []


def test_report_json_round_trips_and_sorts_worst_first() -> None:
    refs, hyps = random_pairs(7)
    report = ErrorReport.build(refs, hyps, name="toy", meta={"checkpoint": "x.pt"})
    data = json.loads(json.dumps(report.to_dict()))
    errors = [u["errors"] for u in data["utterances"]]
    assert errors == sorted(errors, reverse=True)
    assert data["summary"]["checkpoint"] == "x.pt" and data["name"] == "toy"
    assert (
        data["by_length"]
        and data["substitutions"][0]["count"] >= data["substitutions"][-1]["count"]
    )


def test_ticks_are_round_and_cover_the_range() -> None:
    assert nice_ticks(0, 0.37) == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert nice_ticks(0, 1440)[-1] >= 1440
    assert log_ticks(0.03, 4.5) == [0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0]


class PageStructure(HTMLParser):
    """Tags, classes and every URL-bearing attribute of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.classes: list[str] = []
        self.ids: list[str] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name == "class" and value:
                self.classes += value.split()
            if name == "id" and value:
                self.ids.append(value)
            if name in ("href", "src", "xlink:href", "action", "data") and value:
                self.urls.append(value)


def sample_report(name: str = "toy") -> ErrorReport:
    refs, hyps = random_pairs(11, count=60)
    speakers = [f"spk{i % 4}" for i in range(60)]
    durations = [0.3 + 0.2 * (i % 20) for i in range(60)]
    meta = {"checkpoint": "best.pt", "checkpoint_sha256": "ab" * 32, "real_time_factor": 0.01}
    return ErrorReport.build(
        refs, hyps, speakers=speakers, durations=durations, name=name, meta=meta
    )


@pytest.fixture
def run_folder(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    rows = ["step,epoch,loss,lr,grad_norm,utterances,frames_per_s,elapsed_s"]
    rows += [f"{s},{s // 40},{4.5 / s**0.5:.4f},0.001,1.0,100,9000,{s}" for s in range(20, 400, 20)]
    rows.append("100,2,nan,0.001,1.0,100,9000,1")  # a resumed run logs a step again
    (folder / "metrics.csv").write_text("\n".join(rows) + "\n")
    evals = [{"wer": 1.0 / e, "cer": 0.5 / e, "step": 40 * e, "epoch": e} for e in range(1, 9)]
    (folder / "dev_metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
    return folder


def test_training_curves(run_folder) -> None:
    curves = read_training_curves(run_folder)
    assert curves.steps == sorted(curves.steps) and 100.0 not in curves.steps  # nan dropped
    assert len(curves.dev_steps) == 8 and curves.dev_wer[0] == 1.0
    with pytest.raises(ValueError, match="no metrics.csv"):
        read_training_curves(run_folder / "nope")


def test_html_page_is_self_contained_with_plots_and_tables(run_folder) -> None:
    page = html_report(
        [sample_report("a-dev"), sample_report("b-dev")], read_training_curves(run_folder)
    )
    parser = PageStructure()
    parser.feed(page)
    assert parser.tags.count("svg") == 3 + 2 * 3  # training curves; length, errors, speakers
    assert {"overview", "training", "set-a-dev", "set-b-dev"} <= set(parser.ids)
    for cls in ("overview", "lengths", "speakers", "substitutions", "utterances"):
        assert cls in parser.classes, cls
    assert "script" not in parser.tags and "link" not in parser.tags and "img" not in parser.tags
    assert all(url.startswith("#") for url in parser.urls), parser.urls
    assert "http:" not in page and "https:" not in page
    assert "(edison" not in page and '<span class="sub">' in page


def test_markdown_has_overview_and_tables() -> None:
    text = markdown_report([sample_report()])
    assert text.startswith("# Evaluation report")
    assert "| set | utts | words | WER % | raw WER % |" in text
    assert "## toy" in text and "### By speaker" in text and "### Worst utterances" in text
    header = text.splitlines().index(
        "| length | # Snt | # Wrd | Corr | Sub | Del | Ins | Err | S.Err |"
    )
    assert text.splitlines()[header + 1].startswith("|---|--:|")


def test_bootstrap_identical_systems_is_a_coin_toss() -> None:
    rng = random.Random(0)
    words = [rng.randint(3, 12) for _ in range(200)]
    errors = [rng.randint(0, w) for w in words]
    result = paired_bootstrap(errors, errors, words, resamples=500, seed=1)
    assert result.p_b_better == 0.5 and result.ci_low <= 0 <= result.ci_high
    assert "No significant difference" in result.verdict()


def test_bootstrap_noisy_equal_systems_and_a_clearly_better_one() -> None:
    rng = random.Random(1)
    words = [rng.randint(3, 12) for _ in range(300)]
    a = [rng.randint(0, w // 2) for w in words]
    shuffled = a[:]  # same error counts, on other utterances: no real difference
    rng.shuffle(shuffled)
    same = paired_bootstrap(a, shuffled, words, resamples=1000, seed=2)
    assert 0.05 < same.p_b_better < 0.95 and same.ci_low < 0 < same.ci_high
    better = [max(e - rng.randint(0, 2), 0) for e in a]
    result = paired_bootstrap(a, better, words, resamples=1000, seed=2)
    assert result.p_b_better > 0.95 and result.ci_high < 0 and result.delta < 0
    assert result.verdict("base", "new").startswith("new is better than base")
    again = paired_bootstrap(a, better, words, resamples=1000, seed=2)
    assert again == result  # seeded


def test_compare_two_report_files(tmp_path) -> None:
    refs, hyps = random_pairs(3, count=80)
    fixed = [r.lower().replace(",", "") for r in refs[:60]] + hyps[60:]  # B corrects most
    for side, texts in (("a", hyps), ("b", fixed)):
        report = ErrorReport.build(refs, texts, name="toy-dev")
        (tmp_path / side).mkdir()
        (tmp_path / side / "toy-dev.report.json").write_text(json.dumps(report.to_dict()))
    [comp] = compare_paths(tmp_path / "a", tmp_path / "b", resamples=300)
    assert comp["a"] == "a" and comp["b"] == "b"
    assert comp["bootstrap"]["p_b_better"] > 0.95
    wer = next(row for row in comp["metrics"] if row["metric"] == "wer")
    assert wer["delta"] == pytest.approx(wer["b"] - wer["a"]) and wer["delta"] < 0
    text = comparison_markdown([comp])
    assert "b is better than a" in text and "| WER % |" in text
    with pytest.raises(ValueError, match="no \\*.report.json"):
        compare_paths(tmp_path / "a", tmp_path / "missing")
