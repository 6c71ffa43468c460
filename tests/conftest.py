"""Fixtures the project writes itself: a tiny random BERT and small synthetic labeled files."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the precision probe's cache: the suite's own, never the user's (subprocesses inherit it)
os.environ.setdefault("STEPWISE_CACHE_DIR", tempfile.mkdtemp(prefix="stepwise-test-cache-"))

POSITIVE = ["good", "great", "excellent", "wonderful", "happy", "superb"]
NEGATIVE = ["bad", "awful", "terrible", "poor", "sad", "horrible"]
FILLER = ["the", "movie", "was", "a", "story", "with", "some", "actors", "and", "plot", "film", "scenes",
          "really", "quite", "very", "music", "ending", "director", "script", "cast"]


def make_tiny_model(path: Path) -> str:
    """A 2-layer, 32-wide randomly initialised BERT with the bundled MiniLM's tokenizer, saved at `path`."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from stepwise.model import quiet_transformers
    from stepwise.modeldir import default_model_dir

    tokenizer = AutoTokenizer.from_pretrained(default_model_dir())
    with torch.random.fork_rng(), quiet_transformers():
        torch.manual_seed(0)
        config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                            num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
        BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


def toy_sentences(n: int, seed: int, labels: tuple[str, ...] = ("neg", "pos")) -> list[tuple[str, str]]:
    """Sentences whose label is given by one sentiment word among fillers: learnable by a tiny model."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = labels[i % len(labels)]
        words = [rng.choice(FILLER) for _ in range(rng.randint(3, 14))]
        cue = rng.choice(POSITIVE if label == labels[-1] else NEGATIVE)
        words.insert(rng.randint(0, len(words)), cue)
        rows.append((" ".join(words), label))
    rng.shuffle(rows)
    return rows


def write_tsv(path: Path, rows: list[tuple[str, str]], header: bool = False) -> Path:
    lines = (["text\tlabel"] if header else []) + [f"{t}\t{y}" for t, y in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def toy_files(tmp_path: Path) -> dict[str, Path]:
    return {"train": write_tsv(tmp_path / "train.tsv", toy_sentences(160, 1)),
            "dev": write_tsv(tmp_path / "dev.tsv", toy_sentences(40, 2)),
            "test": write_tsv(tmp_path / "test.tsv", toy_sentences(40, 3))}


def toy_splits(tmp: Path) -> dict[str, Path]:
    """train/dev/test TSVs of toy sentences (160/40/40, seeds 1/2/3): the standard small classification job."""
    return {"train": write_tsv(tmp / "train.tsv", toy_sentences(160, 1)),
            "dev": write_tsv(tmp / "dev.tsv", toy_sentences(40, 2)),
            "test": write_tsv(tmp / "test.tsv", toy_sentences(40, 3))}


def tiny_options(tiny_model: str, files: dict[str, Path], out: Path, **overrides: object) -> dict[str, object]:
    """Fast training settings for the tiny model; fp32 so results are exact across machines."""
    options: dict[str, object] = {"task": "classify", "train": str(files["train"]), "dev": str(files["dev"]),
                                  "test": str(files["test"]), "out": str(out), "model": tiny_model, "epochs": 3,
                                  "batch_size": 16, "lr": 1e-2, "precision": "fp32", "quiet": True, "threads": 1,
                                  "patience": None}
    options.update(overrides)
    return options


PEOPLE = [["John", "Smith"], ["Maria"], ["Ann", "Lee"], ["Peter"], ["Olga", "Ivanova"]]
PLACES = [["Paris"], ["New", "York"], ["Berlin"], ["Tokyo"]]
ORGS = [["Acme", "Corp"], ["Reuters"], ["United", "Nations"]]
CONTEXT = ["said", "on", "monday", "that", "the", "talks", "in", "with", "met", "visited", "a", "report", "from"]


def toy_ner(n: int, seed: int, scheme: str = "BIO") -> list[tuple[list[str], list[str]]]:
    """Sentences mixing names, places and organisations with context words; tags in BIO or IOBES."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words: list[str] = []
        tags: list[str] = []
        for _ in range(rng.randint(2, 5)):
            if rng.random() < 0.5:
                words.append(rng.choice(CONTEXT))
                tags.append("O")
                continue
            kind, names = rng.choice([("PER", PEOPLE), ("LOC", PLACES), ("ORG", ORGS)])
            name = rng.choice(names)
            words.extend(name)
            if scheme == "IOBES" and len(name) == 1:
                tags.append(f"S-{kind}")
            else:
                tags.extend([f"B-{kind}"] + [f"I-{kind}"] * (len(name) - 1))
                if scheme == "IOBES":
                    tags[-1] = f"E-{kind}"
        out.append((words, tags))
    return out


def write_conll(path: Path, sentences: list[tuple[list[str], list[str]]], docstart: bool = True) -> Path:
    lines = ["-DOCSTART- -X- -X- O", ""] if docstart else []
    for words, tags in sentences:
        lines.extend(f"{w} NNP B-NP {t}" for w, t in zip(words, tags))
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def ner_files(tmp_path: Path) -> dict[str, Path]:
    return {"train": write_conll(tmp_path / "train.conll", toy_ner(200, 1)),
            "dev": write_conll(tmp_path / "dev.conll", toy_ner(40, 2)),
            "test": write_conll(tmp_path / "test.conll", toy_ner(40, 3))}


NOUNS = ["cat", "dog", "car", "house", "book", "tree", "city", "river", "school", "garden"]
VERBS = ["saw", "liked", "found", "painted", "visited", "watched"]


def toy_edits(n: int, seed: int) -> list[tuple[str, str]]:
    """(noisy, clean) pairs with errors one pass can fix: a dropped article, a lower-cased first word, a
    missing full stop, a doubled word; a fifth of the pairs are already correct."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.sample(NOUNS, 2)
        clean = f"The {a} {rng.choice(VERBS)} the {b} .".split()
        noisy = list(clean)
        kind = rng.randrange(5)
        if kind == 0:
            del noisy[3]
        elif kind == 1:
            noisy[0] = "the"
        elif kind == 2:
            noisy.pop()
        elif kind == 3:
            noisy.insert(2, noisy[2])
        rows.append((" ".join(noisy), " ".join(clean)))
    return rows


def write_pairs(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("".join(f"{s}\t{t}\n" for s, t in rows), encoding="utf-8")
    return path


@pytest.fixture
def edit_files(tmp_path: Path) -> dict[str, Path]:
    return {"train": write_pairs(tmp_path / "train.tsv", toy_edits(240, 1)),
            "dev": write_pairs(tmp_path / "dev.tsv", toy_edits(40, 2)),
            "test": write_pairs(tmp_path / "test.tsv", toy_edits(40, 3))}


# A toy where the document is needed: each document is about one name whose type (PER, LOC or ORG) differs
# between documents; one sentence gives it away with a cue, the others ("Jordan won again") do not.
AMBIGUOUS = ["Jordan", "Washington", "Chelsea", "Lincoln", "Austin", "Florence", "Victoria", "Kent"]
CLEAR = {"PER": (["Mr", "{}", "said", "on", "monday"], 1), "LOC": (["flights", "to", "{}", "resumed"], 2),
         "ORG": (["shares", "of", "{}", "fell"], 2)}
VAGUE = [(["{}", "won", "again"], 0), (["a", "report", "about", "{}"], 3), (["{}", "was", "there"], 0)]


def _sentence(pattern: list[str], position: int, name: str, kind: str) -> tuple[list[str], list[str]]:
    words = [name if w == "{}" else w for w in pattern]
    return words, ["B-" + kind if i == position else "O" for i in range(len(words))]


def toy_documents(n: int, seed: int) -> list[list[tuple[list[str], list[str]]]]:
    rng = random.Random(seed)
    filler = toy_ner(2 * n, seed + 100)
    docs = []
    for d in range(n):
        name, kind = rng.choice(AMBIGUOUS), rng.choice(sorted(CLEAR))
        sentences = [_sentence(*CLEAR[kind], name, kind)] + [_sentence(*rng.choice(VAGUE), name, kind)
                                                            for _ in range(2)]
        sentences += filler[2 * d:2 * d + 2]
        rng.shuffle(sentences)
        docs.append(sentences)
    return docs


def write_documents(path: Path, docs: list[list[tuple[list[str], list[str]]]]) -> Path:
    lines: list[str] = []
    for sentences in docs:
        lines += ["-DOCSTART- -X- -X- O", ""]
        for words, tags in sentences:
            lines += [f"{w} NNP B-NP {t}" for w, t in zip(words, tags)] + [""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def doc_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("doc_data")
    return {"train": write_documents(tmp / "train.conll", toy_documents(80, 1)),
            "dev": write_documents(tmp / "dev.conll", toy_documents(10, 2)),
            "test": write_documents(tmp / "test.conll", toy_documents(20, 3))}


@pytest.fixture(scope="session")
def head_run(tiny_model: str, doc_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tagger with a document head (`--doc-context head`) fitted on the documents' dev split."""
    import stepwise

    runs = tmp_path_factory.mktemp("head_runs")
    return stepwise.train(**tiny_options(tiny_model, doc_files, runs / "run", task="tag", epochs=10,
                                         doc_context="head")).path


TOPICS = {"permit": ["building", "permit", "application", "municipality"],
          "roof": ["roof", "tiles", "leak", "gutter"], "kitchen": ["kitchen", "cabinets", "sink", "worktop"],
          "heating": ["heating", "heat", "pump", "radiator"], "window": ["window", "glass", "frame", "pane"],
          "price": ["price", "cost", "quote", "invoice"], "garden": ["garden", "fence", "deck", "patio"],
          "bathroom": ["bathroom", "tiles", "shower", "drain"], "floor": ["floor", "parquet", "oak", "sanding"],
          "paint": ["paint", "facade", "colour", "primer"], "insurance": ["insurance", "warranty", "claim", "damage"],
          "schedule": ["schedule", "start", "weeks", "time"]}
ASKS = ["how do i {0} {1}", "what about the {1} for {0}", "question on {0} and {2}", "can you help with {2} {0}",
        "{0} {3} please", "tell me about {3} {1}"]


def toy_faq(questions_per_answer: int = 4, seed: int = 0) -> list[dict[str, str]]:
    """Two answers per topic, each asked in a few ways sharing the answer's words: a retriever can learn it."""
    rng = random.Random(seed)
    rows = []
    for topic, words in TOPICS.items():
        for k in range(2):
            w = words[k:] + words[:k]
            answer = f"Our {w[0]} service: we handle the {w[1]} and the {w[2]}, and {w[3]} is included ({k})."
            for ask in rng.sample(ASKS, questions_per_answer):
                rows.append({"id": f"{topic}-{k}", "category": topic, "question": ask.format(*w) + "?",
                             "answer": answer})
    return rows


def write_faq(tmp: Path) -> dict[str, Path]:
    """train/dev/test pair files (JSONL, question/answer) and the pool of all answers: each answer's
    questions are split across the three, so dev and test ask known answers in unseen words."""
    import json

    rows = toy_faq()
    parts: dict[str, list[dict[str, str]]] = {"train": [], "dev": [], "test": []}
    for i, row in enumerate(rows):
        parts[("train", "train", "dev", "test")[i % 4]].append(row)
    files = {}
    for name, part in parts.items():
        files[name] = tmp / f"{name}.jsonl"
        files[name].write_text("".join(json.dumps(r) + "\n" for r in part))
    pool = {r["id"]: {"id": r["id"], "category": r["category"], "answer": r["answer"]} for r in rows}
    files["pool"] = tmp / "answers.jsonl"
    files["pool"].write_text("".join(json.dumps(r) + "\n" for r in pool.values()))
    return files


@pytest.fixture(scope="session")
def faq_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_faq(tmp_path_factory.mktemp("faq"))
