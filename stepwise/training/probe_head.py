"""A classifier's head started from a linear probe of the pretrained encoder, not from noise.

On a few hundred or thousand labeled texts, a randomly initialised head spends the first optimizer steps
learning what a logistic regression on the frozen mean-pooled embeddings knows at once (the frozen-MiniLM
+ LR baseline of bench/small_data.py), and its random start is a source of seed-to-seed spread. Fitting that
regression first and copying it into the head ("linear probe, then fine-tune") starts training where the
baseline ends; it costs one forward pass over the training texts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: inverse regularisation of the probe (scikit-learn's C). Chosen on dev (bench/NOTES.md, "Small data"): the
#: frozen-embedding baseline's C = 10 fits the training set perfectly, so fine-tuning starts at a near-zero loss
#: and the encoder barely moves (SST-2 500: dev 0.767, test at the baseline's level); 0.1 leaves a soft head
#: that fine-tuning still shapes (FAQ dev 0.673 / 0.663 vs 0.644 / 0.644 at C = 10; SST-2 500 dev 0.813);
#: 0.01 is too weak for 39 classes (FAQ dev 0.535)
PROBE_C = 0.1


def pooled_features(model: Any, features: list[dict], pad_id: int, batch_size: int = 64) -> np.ndarray:
    """The mean-pooled last hidden states the head reads, in fp32, one row per feature (in order)."""
    import torch

    from stepwise.data.batching import collate, sorted_batches

    out = np.zeros((len(features), model.encoder.config.hidden_size), dtype=np.float32)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for idx in sorted_batches([len(f["input_ids"]) for f in features], batch_size):
                batch = collate([features[i] for i in idx], pad_id)
                segments = {"token_type_ids": batch["token_type_ids"]} if model.token_types and \
                    "token_type_ids" in batch else {}
                hidden = model.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                       **segments).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                out[idx] = ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)).float().numpy()
    finally:
        model.train(was_training)
    return out


def probe_weights(x: np.ndarray, y: np.ndarray, num_labels: int, c: float = PROBE_C) -> tuple[np.ndarray, np.ndarray]:
    """A multinomial logistic regression on (x, y) as a [num_labels, dim] weight and [num_labels] bias whose
    softmax equals the regression's probabilities (two classes: sklearn's one row w becomes ±w/2)."""
    from sklearn.linear_model import LogisticRegression

    present = np.unique(y)
    clf = LogisticRegression(C=c, max_iter=2000).fit(x, y)
    weight = np.zeros((num_labels, x.shape[1]), dtype=np.float32)
    bias = np.full(num_labels, 0.0, dtype=np.float32)
    if len(present) == 2:
        rows, offsets = np.stack([-clf.coef_[0] / 2, clf.coef_[0] / 2]), np.array([-1, 1]) * clf.intercept_[0] / 2
    else:
        rows, offsets = clf.coef_, clf.intercept_
    weight[present], bias[present] = rows, offsets
    if len(present) < num_labels:  # a class the probe never saw starts far below the others
        bias[np.setdiff1d(np.arange(num_labels), present)] = float(offsets.min()) - 10.0
    return weight, bias


def init_head_from_probe(model: Any, features: list[dict], pad_id: int, c: float = PROBE_C) -> dict[str, Any]:
    """Fit the probe on the training features' pooled embeddings and copy it into `model.head`; returns its
    training accuracy and the seconds it took (for results.json)."""
    import time

    import torch
    from threadpoolctl import threadpool_limits

    start = time.perf_counter()
    x = pooled_features(model, features, pad_id)
    y = np.array([f["labels"] for f in features])
    with threadpool_limits(limits=torch.get_num_threads()):  # BLAS on the run's cores, not on every core
        weight, bias = probe_weights(x, y, model.num_labels, c)
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(weight))
        model.head.bias.copy_(torch.from_numpy(bias))
    train_acc = float(((x @ weight.T + bias).argmax(1) == y).mean())
    return {"c": c, "train_accuracy": round(train_acc, 4), "seconds": round(time.perf_counter() - start, 2)}
