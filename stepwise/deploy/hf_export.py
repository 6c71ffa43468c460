"""A run in Hugging Face's own format, where one of its model classes has the same head.

* A tagger without extra inputs (`--no-casing`) is exactly `AutoModelForTokenClassification`: encoder,
  dropout, a linear layer per token. It is written as one, with `id2label`, and loads with
  `from_pretrained` — no stepwise needed.
* A classifier mean-pools the encoder's tokens (as all-MiniLM was trained), while
  `BertForSequenceClassification` reads the [CLS] token through a pooler layer the sentence encoder never
  trained; a tagger with the word-shape input adds an embedding no HF class has. Writing either as an
  HF class would silently change its predictions, so the export is the encoder (`AutoModel`), the head
  as safetensors, and a README with the few lines that apply the head.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

README_TOKEN = """# {name}: a stepwise tagger in Hugging Face format

```python
from transformers import pipeline
ner = pipeline("token-classification", model="{path}", aggregation_strategy="first")
print(ner("John Smith visited Paris"))
```
Labels: {labels}. Exported from `{run}` by `stepwise export --format hf`.
"""

README_POOLED = """# {name}: a stepwise {task} run in Hugging Face format (encoder + head)

No Hugging Face model class has this head ({why}), so this directory holds the encoder
(`AutoModel.from_pretrained` loads it), the tokenizer, and the head in `head.safetensors`. These lines
reproduce stepwise's predictions (checked when it was exported):

```python
# stepwise-loader
import json

import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

path = "{path}"
tokenizer, encoder = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
head, labels = load_file(f"{{path}}/head.safetensors"), json.load(open(f"{{path}}/stepwise.json"))["labels"]


def predict(texts):
    batch = tokenizer(texts, padding=True, truncation=True, max_length={max_length}, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)          # mean over real tokens
        logits = pooled @ head["head.weight"].T + head["head.bias"]
    return [labels[i] for i in logits.argmax(-1).tolist()], logits.softmax(-1)
```
Exported from `{run}` by `stepwise export --format hf`.
"""

README_EXTRAS = """# {name}: a stepwise tagger with extra inputs (encoder + head)

This tagger adds learned per-token inputs ({extras}) to the encoder's word embeddings; no Hugging Face
model class takes them, so `AutoModelForTokenClassification` cannot load it without changing its
predictions. Use `stepwise export` (ONNX, self-contained), or retrain with `--no-casing` for a model
that exports as a plain `AutoModelForTokenClassification`. The files here are the run's model directory.
"""


def export_hf(model: Any, tokenizer: Any, meta: dict[str, Any], model_dir: Path, out: Path, final: Path, run: str,
              sample: dict[str, np.ndarray]) -> dict[str, Any]:
    """Write the HF-format directory into `out` (a fresh temp dir that becomes `final`); returns its kind."""
    name = Path(run).name
    if model.pooling == "token" and not model.extra_inputs:
        return _token_classifier(model, tokenizer, meta, out, final, run, sample, name)
    for item in model_dir.iterdir():
        if item.is_file():
            shutil.copy2(item, out / item.name)
    if model.extra_inputs:
        (out / "README.md").write_text(README_EXTRAS.format(name=name, extras=", ".join(model.extra_inputs)))
        return {"format": "hf", "class": None, "why": "extra per-token inputs"}
    why = "mean pooling over tokens, not a [CLS] pooler"
    (out / "README.md").write_text(README_POOLED.format(name=name, task=meta["task"], why=why, path=final,
                                                        run=run, max_length=meta.get("max_length", 256)))
    return {"format": "hf", "class": "AutoModel + head.safetensors", "why": why}


def _token_classifier(model: Any, tokenizer: Any, meta: dict[str, Any], out: Path, final: Path, run: str,
                      sample: dict[str, np.ndarray], name: str) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForTokenClassification

    from stepwise.model import quiet_transformers

    labels = meta["labels"]
    config = model.encoder.config.__class__.from_dict(
        {**model.encoder.config.to_dict(), "num_labels": len(labels),
         "id2label": dict(enumerate(labels)), "label2id": {label: i for i, label in enumerate(labels)}})
    with quiet_transformers():
        hf = AutoModelForTokenClassification.from_config(config).eval()
        hf.base_model.load_state_dict(model.encoder.state_dict(), strict=False)
        hf.classifier.load_state_dict(model.head.state_dict())
        inputs = {k: torch.from_numpy(sample[k]) for k in ("input_ids", "attention_mask")}
        with torch.no_grad():
            delta = (hf(**inputs).logits - model.eval()(**inputs)).abs().max().item()
        if delta > 1e-4:
            from stepwise.errors import StepwiseError

            raise StepwiseError(f"the Hugging Face model differs from the run (max |Δ logit| {delta:.3g})",
                                path=run, fix="report this as a bug")
        hf.save_pretrained(out)
        tokenizer.save_pretrained(out)
    (out / "stepwise.json").write_text(json.dumps({**meta, "export": {"format": "hf"}}, indent=2))
    readme = README_TOKEN.format(name=name, path=final, labels=", ".join(labels), run=run)
    from stepwise.tasks import task_from_meta

    readme += task_from_meta(meta).hf_export_note()  # what of the run the Hugging Face format leaves out
    (out / "README.md").write_text(readme)
    return {"format": "hf", "class": "AutoModelForTokenClassification", "max_abs_logit_delta": delta}
