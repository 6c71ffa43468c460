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

from stepwise.files import current_umask
from stepwise.modeldir import (
    HEAD_FILE,
    META_FILE,
    META_FORMAT,
    check_encoder_dir,
    default_model_dir,
    load_errors,
    quiet_transformers,
    read_meta,
)


class TaskModel(nn.Module):
    """Encoder + dropout + linear head. `pooling` is "mean" (one label per text) or "token" (one per token).

    Mean pooling matches how sentence encoders such as all-MiniLM were trained, so a classifier starts
    from a representation that already separates meanings instead of an untrained [CLS] pooler.
    """

    def __init__(self, encoder: nn.Module, num_labels: int, pooling: str, head_dropout: float = 0.1,
                 extra_inputs: dict[str, int] | None = None, token_types: bool = False) -> None:
        super().__init__()
        self.token_types = token_types
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

    @property
    def input_names(self) -> tuple[str, ...]:
        """The named int64 inputs `forward` reads, in order (exporters and backends use this)."""
        return ("input_ids", "attention_mask", *(("token_type_ids",) if self.token_types else ()),
                *self.extra_inputs)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                **inputs: torch.Tensor) -> torch.Tensor:
        """Logits; keys of `inputs` that are not extra inputs (labels, word masks) are ignored."""
        segments = {"token_type_ids": token_type_ids} if self.token_types and token_type_ids is not None else {}
        if self.extras:
            embeds = self.encoder.get_input_embeddings()(input_ids)
            for name, embedding in self.extras.items():
                embeds = embeds + embedding(inputs[name])
            hidden = self.encoder(inputs_embeds=embeds, attention_mask=attention_mask, **segments).last_hidden_state
        else:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **segments).last_hidden_state
        if self.pooling == "mean":
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            hidden = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(self.dropout(hidden))

    @classmethod
    def from_encoder(cls, model_dir: str | None, num_labels: int, pooling: str, dropout: float | None = None,
                     extra_inputs: dict[str, int] | None = None, token_types: bool = False) -> TaskModel:
        """Start a new task model from a pretrained encoder directory; `dropout` overrides the encoder's."""
        path = model_dir or default_model_dir()
        check_encoder_dir(path)
        overrides = {}
        if dropout is not None:
            overrides = {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
        fix = "pass --model a complete local transformers encoder directory"
        with quiet_transformers(), load_errors(path, "the pretrained encoder", fix):
            config = AutoConfig.from_pretrained(path, local_files_only=True, **overrides)
            encoder = AutoModel.from_pretrained(path, config=config, add_pooling_layer=False, local_files_only=True)
        head_dropout = getattr(config, "hidden_dropout_prob", 0.1) if dropout is None else dropout
        return cls(encoder, num_labels, pooling, head_dropout=head_dropout, extra_inputs=extra_inputs,
                   token_types=token_types)

    def save_pretrained(self, directory: str | Path, tokenizer: PreTrainedTokenizerBase, meta: dict) -> None:
        """Write encoder, tokenizer, head and metadata to a temp dir, then swap it in (atomic for readers)."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        tmp.chmod(0o777 & ~current_umask())  # mkdtemp makes 0700; a saved model gets normal permissions
        try:
            with quiet_transformers():
                self.encoder.save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
            head = {f"head.{k}": v.detach().contiguous() for k, v in self.head.state_dict().items()}
            head.update({f"extras.{k}": v.detach().contiguous() for k, v in self.extras.state_dict().items()})
            save_file(head, str(tmp / HEAD_FILE))
            full_meta = {**meta, "pooling": self.pooling, "num_labels": self.num_labels,
                         "head_dropout": self.head_dropout, "extra_inputs": self.extra_inputs,
                         "token_types": self.token_types, "format": META_FORMAT}
            (tmp / META_FILE).write_text(json.dumps(full_meta, indent=2))
            for file in tmp.iterdir():  # some writers (safetensors) create 0600 files
                file.chmod(0o666 & ~current_umask())
            replace_dir(tmp, directory)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> tuple[TaskModel, PreTrainedTokenizerBase, dict]:
        directory = Path(directory)
        meta = read_meta(directory)
        fix = "the run's model files are missing or damaged: retrain it, or restore the run directory from a copy"
        with quiet_transformers(), load_errors(directory, "the run's model", fix):
            encoder = AutoModel.from_pretrained(directory, add_pooling_layer=False, local_files_only=True)
            model = cls(encoder, meta["num_labels"], meta["pooling"], meta.get("head_dropout", 0.1),
                        meta.get("extra_inputs"), meta.get("token_types", False))
            state = load_file(str(directory / HEAD_FILE))
            model.head.load_state_dict({k.removeprefix("head."): v for k, v in state.items()
                                        if k.startswith("head.")})
            model.extras.load_state_dict({k.removeprefix("extras."): v for k, v in state.items()
                                          if k.startswith("extras.")})
            tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        model.eval()
        return model, tokenizer, meta


def position_limit(encoder: nn.Module) -> int | None:
    """The most tokens the encoder can embed in one sequence (its position table), where it has one."""
    limit = getattr(getattr(encoder, "config", None), "max_position_embeddings", None)
    return int(limit) if isinstance(limit, int) and limit > 0 else None


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
    path = model_dir or default_model_dir()
    check_encoder_dir(path)
    with quiet_transformers(), load_errors(path, "the tokenizer", "pass --model a directory that also holds its "
                                           "tokenizer files (tokenizer.json or vocab.txt)"):
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
