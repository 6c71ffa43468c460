"""The editor: alignment → tags → applied tags reproduce the target; iterations; readers; end to end."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from stepwise.cli import main
from stepwise.errors import StepwiseError
from stepwise.tasks.edit.tags import (
    APPEND,
    DELETE,
    KEEP,
    MERGE_HYPHEN,
    MERGE_SPACE,
    SPELL,
    Speller,
    apply_tags,
    edit_ops,
    first_tags,
    tag_vocabulary,
)
from stepwise.tasks.edit.task import EditTask
from tests.conftest import tiny_options, toy_edits, write_pairs

PAIRS = [
    ("So I think we can not live if old people could not find siences and tecnologies .",
     "So I think we would not be alive if our ancestors did not develop sciences and technologies ."),
    ("For not use car .", "Not for use with a car ."),
    ("He go to school every day", "He goes to school every day ."),
    ("i like new york", "I like New York"),
    ("a lot of well known people", "alot of well-known people"),
    ("alot of people", "a lot of people"),
    ("my every day life", "my everyday life"),
    ("the the cat", "the cat"),
    ("cat", "A cat sat ."),
    ("", "Hello ."),
    ("Delete every word", ""),
]


@pytest.fixture(scope="module")
def speller() -> Speller:
    return Speller()


@pytest.mark.parametrize(("source", "target"), PAIRS)
def test_applying_all_operations_reproduces_the_target(source: str, target: str, speller: Speller) -> None:
    s, t = source.split(), target.split()
    assert apply_tags(s, edit_ops(s, t, speller), speller) == t


def test_random_pairs_round_trip_and_first_tags_converge() -> None:
    """Any pair (case changes, hyphens, merges) round-trips; first operations alone reach the target in a few passes."""
    rng = random.Random(0)
    vocab = "a b c the an cat dog Cat DOG x-y x y xy".split()
    for _ in range(3000):
        s = [rng.choice(vocab) for _ in range(rng.randint(0, 7))]
        t = [rng.choice(vocab) for _ in range(rng.randint(0, 7))]
        assert apply_tags(s, edit_ops(s, t)) == t
        current = s
        for _ in range(12):
            current = apply_tags(current, first_tags(edit_ops(current, t)))
        assert current == t


def test_tags_name_the_edit(speller: Speller) -> None:
    ops = edit_ops("i has recieved a apple".split(), "I have received an apple .".split(), speller)
    assert ops[0] == [KEEP] and ops[1] == ["$CASE_CAPITAL"]
    assert ops[2] == ["$REPLACE_have"] and ops[4] == ["$REPLACE_an"]  # "ha" is too short a stem for a suffix tag
    assert ops[3] == [SPELL] and ops[5] == [KEEP, APPEND + "."][1:]
    assert edit_ops(["walking"], ["walked"])[1] == ["$SUFFIX_ing>ed"]
    assert edit_ops(["the", "the", "cat"], ["the", "cat"]) in ([[KEEP], [DELETE], [KEEP], [KEEP]],
                                                              [[KEEP], [KEEP], [DELETE], [KEEP]])
    assert edit_ops(["every", "day"], ["everyday"])[1] == [MERGE_SPACE]
    assert edit_ops(["well", "known"], ["well-known"])[1] == [MERGE_HYPHEN]
    assert edit_ops(["teh"], ["the"], speller)[1] == [SPELL]


def test_a_tag_that_does_not_fit_leaves_the_word() -> None:
    assert apply_tags(["cat"], [KEEP, "$SUFFIX_ing>ed"]) == ["cat"]
    assert apply_tags(["cat"], [KEEP, "$SPLIT_9"]) == ["cat"]
    assert apply_tags(["cat"], [KEEP, "$NO_SUCH_TAG"]) == ["cat"]
    with pytest.raises(ValueError, match="expected 2 tags"):
        apply_tags(["cat"], [KEEP])


def test_vocabulary_keeps_frequent_edits_and_reports_coverage() -> None:
    ops = [[[KEEP], [APPEND + "the"]], [[KEEP], [APPEND + "the"]], [[KEEP], [APPEND + "rare"]], [[KEEP], [KEEP]]]
    vocab, stats = tag_vocabulary(ops, min_count=2)
    assert APPEND + "the" in vocab and APPEND + "rare" not in vocab and vocab[0] == KEEP
    assert stats["edits"] == 3 and stats["covered"] == 2 and stats["coverage"] == pytest.approx(2 / 3)


def test_readers_tsv_jsonl_and_parallel_files(tmp_path: Path) -> None:
    tsv = tmp_path / "p.tsv"
    tsv.write_text("a cat\tA cat .\tThe cat .\nthe dog\tThe dog .\n", encoding="utf-8")
    examples = EditTask.read_file(str(tsv))
    assert [ex.label for ex in examples] == [["A cat .", "The cat ."], ["The dog ."]]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(json.dumps({"source": "a cat", "target": ["A cat .", "The cat ."]}) + "\n", encoding="utf-8")
    assert EditTask.read_file(str(jsonl))[0].label == ["A cat .", "The cat ."]
    src, r0, r1 = tmp_path / "src.txt", tmp_path / "r0.txt", tmp_path / "r1.txt"
    src.write_text("a cat\nthe dog\n", encoding="utf-8")
    r0.write_text("A cat .\nThe dog .\n", encoding="utf-8")
    r1.write_text("The cat .\nA dog .\n", encoding="utf-8")
    assert EditTask.read_file(str(src), targets=[str(r0), str(r1)])[1].label == ["The dog .", "A dog ."]


@pytest.mark.parametrize(("files", "flags", "message"), [
    ({"t.tsv": "a cat\n"}, [], "t.tsv:1: no corrected sentence after the source"),
    ({"t.tsv": "\tA cat .\n"}, [], "t.tsv:1: empty source sentence"),
    ({"t.tsv": "a cat\ta cat\nthe dog\tthe dog\n"}, [], "every target is identical to its source"),
    ({"t.tsv": b"a caf\xe9\tA cafe .\n"}, [], "t.tsv:1: bytes that are not UTF-8"),
    ({"t.tsv": "a cat\nthe dog\n", "r.txt": "A cat .\n"}, ["--train-target", "r.txt"],
     "r.txt: 1 lines, but the source file has 2"),
    ({"t.tsv": "good film\tpos\nbad film\tneg\n"}, [], "holds a label per text, not sentence pairs"),
    ({"t.jsonl": '{"source": "a cat", "target": 3}\n'}, [], "t.jsonl:1: 'target' must be a sentence"),
])
def test_bad_pair_files_give_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture, tiny_model: str,
                                                 files: dict, flags: list[str], message: str) -> None:
    for name, content in files.items():
        path = tmp_path / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content, encoding="utf-8")
    train = str(tmp_path / next(iter(files)))
    argv = ["train", "--task", "edit", "--train", train, "--out", str(tmp_path / "run"), "--model", tiny_model,
            *[str(tmp_path / f) if f.endswith(".txt") else f for f in flags]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_target_files_are_refused_for_other_tasks(toy_files: dict, tmp_path: Path) -> None:
    from stepwise.tasks.classify.task import ClassifyTask

    with pytest.raises(StepwiseError, match="target files are for editor runs"):
        ClassifyTask.read_file(str(toy_files["train"]), targets=[str(toy_files["dev"])])


@pytest.fixture(scope="module")
def editor(tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from stepwise.recipes.finetune import train

    tmp = tmp_path_factory.mktemp("editor")
    files = {split: write_pairs(tmp / f"{split}.tsv", toy_edits(n, seed))
             for split, n, seed in (("train", 240, 1), ("dev", 40, 2), ("test", 40, 3))}
    train(**tiny_options(tiny_model, files, tmp / "run", task="edit", epochs=15, batch_size=8))
    return tmp / "run", tmp


def test_editor_learns_the_toy_edits_and_beats_the_source_copy(editor: tuple[Path, Path]) -> None:
    run, _ = editor
    results = json.loads((run / "results.json").read_text())
    assert results["task"] == "edit" and results["edit_tags"]["coverage"] == 1.0
    assert results["test"]["gleu"] > 0.9
    assert "source copy" in (run / "report.txt").read_text()


def test_iterations_stop_when_nothing_changes(editor: tuple[Path, Path]) -> None:
    from stepwise.example import Example
    from stepwise.predictor import PredictOptions, load

    predictor = load(run_path := editor[0])
    assert predictor.is_refiner and predictor.steps == 5
    clean = Example("The cat saw the dog .")
    two = Example("the cat saw dog .")  # two edits: may take one pass or two, then one pass that changes nothing
    result = predictor.run([clean, two], PredictOptions(steps=5))
    assert result.steps_used[0] == 1 and result.history[0][0] == tuple(clean.text.split())
    assert result.predictions[1] == tuple("The cat saw the dog .".split())
    assert 2 <= result.steps_used[1] < 5 and result.history[1][-1] == result.history[1][-2]
    one_pass = predictor.run([two], PredictOptions(steps=1))
    assert one_pass.steps_used == [1]
    assert run_path.exists()


def test_predict_writes_text_jsonl_and_respects_keep_bias(editor: tuple[Path, Path], capsys: pytest.CaptureFixture,
                                                          tmp_path: Path) -> None:
    run, _ = editor
    src = tmp_path / "in.txt"
    src.write_text("the dog saw cat .\n\nThe tree liked the book\n", encoding="utf-8")
    assert main(["predict", str(run), "--input", str(src)]) == 0
    assert capsys.readouterr().out == "The dog saw the cat .\n\nThe tree liked the book .\n"
    assert main(["predict", str(run), "--input", str(src), "--output-format", "jsonl"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert records[0]["source"] == "the dog saw cat ." and records[0]["text"] == "The dog saw the cat ."
    assert {e["tag"] for step in records[0]["edits"] for e in step} >= {"$CASE_CAPITAL", "$APPEND_the"}
    assert records[1]["note"] == "no text"
    assert main(["predict", str(run), "--input", str(src), "--keep-bias", "1"]) == 0
    assert capsys.readouterr().out == "the dog saw cat .\n\nThe tree liked the book\n"
    assert main(["predict", str(run), "--input", str(src), "--keep-bias", "-2"]) == 2


def test_evaluate_reports_gleu_per_step(editor: tuple[Path, Path], capsys: pytest.CaptureFixture) -> None:
    run, tmp = editor
    assert main(["evaluate", str(run), "--data", str(tmp / "test.tsv"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert out["task"] == "edit" and out["gleu"] > 0.9 and out["steps"][0]["step"] == 1
    assert [s["step"] for s in out["steps"]] == list(range(1, len(out["steps"]) + 1))


def test_noise_verb_writes_seeded_pairs_and_refuses_bad_rates(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from importlib.resources import files

    corpus = str(files("stepwise.demo") / "clean_en.txt")
    a, b = tmp_path / "a.tsv", tmp_path / "b.tsv"
    assert main(["noise", "--input", corpus, "--out", str(a), "--seed", "7", "--rate", "spelling=1"]) == 0
    assert main(["noise", "--input", corpus, "--out", str(b), "--seed", "7", "--rate", "spelling=1"]) == 0
    rows = [line.split("\t") for line in a.read_text(encoding="utf-8").splitlines()]
    assert a.read_bytes() == b.read_bytes() and len(rows) == 390 and all(len(r) == 2 for r in rows)
    assert sum(r[0] != r[1] for r in rows) == len(rows)
    capsys.readouterr()
    for bad in (["--rate", "spelin=0.2"], ["--rate", "spelling"], ["--rate", "spelling=2"]):
        assert main(["noise", "--input", corpus, "--out", str(tmp_path / "c.tsv"), *bad]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "c.tsv").exists()


def test_rl_outcomes_turn_sampled_tags_into_scored_sentences(tiny_model: str) -> None:
    """The editing MDP: action = tags on the pair's current sentence; outcome = the edited sentence, whose
    gold is the source with every reference."""
    from stepwise.example import Example
    from stepwise.model import load_tokenizer
    from stepwise.reinforce.rewards import gleu

    examples = [Example("the cat saw dog", ["The cat saw the dog .", "A cat saw the dog ."], 1)]
    task = EditTask(EditTask.collect_labels(examples * 2))
    features = task.encode(load_tokenizer(tiny_model), examples, 32)
    outcomes = task.action_outcomes(features)
    ids = [f["pair_id"] for f in features]
    gold_tags = [[task.labels[i] for i, m in zip(f["labels"], f["word_mask"]) if m] for f in features]
    preds, golds = outcomes(ids, gold_tags)
    assert preds[0] == "The cat saw the dog ." and golds[0][1][1] == "A cat saw the dog .".split()
    assert gleu(preds[0], (golds[0][0], golds[0][1][:1])) == pytest.approx(1.0)
    assert gleu(preds[0], golds[0]) > 0.85  # the mean over references, like JFLEG's sampled reference
    keep = [[KEEP] * len(t) for t in gold_tags]
    assert outcomes(ids, keep)[0][0] == "the cat saw dog" and gleu("the cat saw dog", golds[0]) < 0.5


def test_rl_outcomes_with_passes_are_what_the_later_passes_make(editor: tuple[Path, Path]) -> None:
    """rl_passes > 1: the sampled pass's sentence, then the model's greedy passes, as at prediction time."""
    from stepwise.predictor import PredictOptions, load

    run, tmp = editor
    predictor = load(run)
    task = predictor.task
    examples = EditTask.read_file(str(tmp / "test.tsv"))[:12]
    features = task.encode(predictor.tokenizer, examples, 64)
    ids = [f["pair_id"] for f in features if f["_state"] == list(examples[f["_example"]].text.split())]
    keep = [[KEEP] * sum(features[i]["word_mask"]) for i in ids]
    sources = [" ".join(features[i]["_state"]) for i in ids]
    assert task.action_outcomes(features)(ids, keep)[0] == sources
    follow = {"model": predictor.model, "tokenizer": predictor.tokenizer, "max_length": 64}
    for passes in (2, 3):
        later = predictor.run([examples[features[i]["_example"]] for i in ids], PredictOptions(steps=passes - 1))
        made = task.action_outcomes(features, passes=passes, **follow)(ids, keep)[0]
        assert made == [" ".join(p) for p in later.predictions]
        assert sum(a != b for a, b in zip(made, sources)) >= len(ids) // 2  # the passes did edit


def test_rl_on_an_editor_with_the_gleu_reward(editor: tuple[Path, Path]) -> None:
    from stepwise.recipes.rl import rl

    run, tmp = editor
    out = tmp / "rl"
    result = rl(str(run), train=str(tmp / "train.tsv"), dev=str(tmp / "dev.tsv"), out=str(out), epochs=1,
                batch_size=8, lr=1e-4, precision="fp32", quiet=True, threads=1, rl_passes=2)
    assert result.results["train"]["best_dev_reward"] > 0.5
    logs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("reward_mean" in r for r in logs)
    assert "reward: gleu" in (out / "config.yaml").read_text() and "rl_passes: 2" in (out / "config.yaml").read_text()


def test_augment_adds_noisy_copies_that_keep_labels(tiny_model: str, toy_files: dict, ner_files: dict,
                                                    tmp_path: Path) -> None:
    from stepwise.config import TrainConfig
    from stepwise.recipes.finetune import prepare

    base = {"model": tiny_model, "out": str(tmp_path / "r")}
    job = prepare(TrainConfig(task="classify", train=str(toy_files["train"]), dev=str(toy_files["dev"]),
                              augment=2.0, **base), "supervised")
    plain = prepare(TrainConfig(task="classify", train=str(toy_files["train"]), dev=str(toy_files["dev"]), **base),
                    "supervised")
    n = len(plain.data["train"])
    assert len(job.data["train"]) == 2 * n and [e.label for e in job.data["train"][n:]] == \
        [e.label for e in plain.data["train"]]
    assert sum(a.text != b.text for a, b in zip(job.data["train"][n:], plain.data["train"])) > n // 2
    tags = prepare(TrainConfig(task="tag", train=str(ner_files["train"]), dev=str(ner_files["dev"]), augment=3.0,
                               **base), "supervised")
    m = len(tags.data["train"]) // 2
    assert all(len(a.text) == len(a.label) == len(b.text) for a, b in zip(tags.data["train"][m:],
                                                                          tags.data["train"][:m]))
    assert any(a.text != b.text for a, b in zip(tags.data["train"][m:], tags.data["train"][:m]))


def test_augment_is_refused_for_an_editor(edit_files: dict, tiny_model: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--task", "edit", "--train", str(edit_files["train"]), "--augment", "1",
                 "--model", tiny_model, "--out", str(tmp_path / "r")]) == 2
    assert "stepwise noise" in capsys.readouterr().err


def test_task_options_are_refused_by_tasks_that_do_not_read_them(edit_files: dict, toy_files: dict, ner_files: dict,
                                                                   tiny_model: str, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    """A classifier would ignore --own-outputs, --strict or --casing, an editor --strict, and supervised training
    --rl-passes: each is one line and exit 2 instead, before anything is written."""
    base = ["--model", tiny_model, "--out", str(tmp_path / "r")]
    classify = ["--task", "classify", "--train", str(toy_files["train"])]
    edit = ["--task", "edit", "--train", str(edit_files["train"])]
    for args, flag, readers in ((classify + ["--own-outputs", "0.5"], "--own-outputs", "editors"),
                                (classify + ["--rl-passes", "2"], "--rl-passes", "editors"),
                                (classify + ["--strict"], "--strict", "taggers"),
                                (classify + ["--no-casing"], "--casing", "taggers and editors"),
                                (edit + ["--strict"], "--strict", "taggers"),
                                (edit + ["--rl-passes", "2"], "--rl-passes", "stepwise rl")):
        assert main(["train", *args, *base]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and flag in err[0] and readers in err[0], err
    assert not (tmp_path / "r").exists()
    assert main(["train", "--task", "tag", "--train", str(ner_files["train"]), "--strict", "--no-casing",
                 "--epochs", "1", *base]) == 0  # a tagger reads both


def test_own_outputs_retag_the_models_pass_against_the_same_target(tiny_model: str) -> None:
    """Training on own outputs: a batch's sentences become what the current model makes of them in one pass,
    labeled with the edits from there to the unchanged target."""
    from stepwise.example import Example
    from stepwise.model import load_tokenizer
    from stepwise.tasks.edit.task import ops_for
    from stepwise.tasks.edit.training import OwnOutputs

    tokenizer = load_tokenizer(tiny_model)
    examples = [Example(s, [t], i) for i, (s, t) in enumerate(toy_edits(24, 5))]
    task = EditTask(EditTask.collect_labels(examples))
    feats = task.encode(tokenizer, examples, 64)
    import torch

    class DeleteFirstWord(torch.nn.Module):
        """A 'model' whose pass deletes each sentence's first word and keeps the rest."""

        def forward(self, input_ids: torch.Tensor, word_mask: torch.Tensor, **_: torch.Tensor) -> torch.Tensor:
            logits = torch.zeros(*input_ids.shape, len(task.labels))
            logits[..., task.label_to_id[KEEP]] = 5.0
            second_word = (word_mask.cumsum(1) == 2) & word_mask.bool()  # the first word after $START
            logits[second_word] = 0.0
            logits[..., task.label_to_id[DELETE]] += 5.0 * second_word
            return logits

    own = OwnOutputs(task, tokenizer, share=1.0, max_length=64, precision="fp32", seed=0)
    out = own.inputs(DeleteFirstWord(), feats)
    changed = [(a, b) for a, b in zip(feats, out) if a["_state"] != b["_state"]]
    assert len(changed) == len(feats) == len(out)
    assert all(b["_state"] == a["_state"][1:] for a, b in changed)
    for before, after in changed:
        assert after["_target"] == before["_target"] and after["_example"] == before["_example"]
        ids = [i for i, m in zip(after["labels"], after["word_mask"]) if m]
        expected = first_tags(ops_for(after["_state"], after["_target"]))
        assert ids == [task.label_to_id.get(t, -100) for t in expected]  # an edit outside the vocabulary: ignored
    assert OwnOutputs(task, tokenizer, share=0.0, max_length=64, precision="fp32").inputs(DeleteFirstWord(), feats) \
        is feats


def test_editor_trains_with_own_outputs(tiny_model: str, edit_files: dict, tmp_path: Path) -> None:
    from stepwise.recipes.finetune import train

    # 20 epochs: at 12-15 the toy editor is still between 0.76 and 1.0 GLEU, depending on float rounding
    run = train(**tiny_options(tiny_model, edit_files, tmp_path / "run", task="edit", epochs=20, batch_size=8,
                               own_outputs=0.5))
    assert run.results["test"]["gleu"] > 0.9
