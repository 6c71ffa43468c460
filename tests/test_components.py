"""Small pure parts: schedule, optimizer groups, batching, split."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import BertConfig, BertModel

from stepwise.data.batching import collate, length_grouped_batches, sorted_batches
from stepwise.data.split import stratified_split
from stepwise.example import IGNORE_INDEX, Example
from stepwise.training.optim import build_optimizer, param_groups
from stepwise.training.schedule import lr_at, warmup_steps


def test_schedule_shapes() -> None:
    kw = {"base_lr": 1.0, "total_steps": 110, "warmup": 10}
    assert lr_at(0, schedule="linear", **kw) == 0.0
    assert lr_at(5, schedule="linear", **kw) == pytest.approx(0.5)
    assert lr_at(10, schedule="linear", **kw) == pytest.approx(1.0)
    assert lr_at(60, schedule="linear", **kw) == pytest.approx(0.5)
    assert lr_at(110, schedule="linear", **kw) == pytest.approx(0.0)
    assert lr_at(60, schedule="cosine", **kw) == pytest.approx(0.5)
    assert lr_at(35, schedule="cosine", **kw) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_at(100, schedule="constant", **kw) == 1.0
    assert warmup_steps(217, 0.1) == 22  # ceil, as Hugging Face does


def test_no_weight_decay_on_bias_and_layernorm() -> None:
    model = BertModel(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=16))
    decay, no_decay = param_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(not names[id(p)].endswith("bias") and "LayerNorm" not in names[id(p)] for p in decay["params"])
    assert all(names[id(p)].endswith("bias") or "LayerNorm" in names[id(p)] for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_adamw_is_fused_on_cpu_and_steps_like_the_reference_adamw() -> None:
    """The fused kernel must be the same AdamW: decay on weights only, bias correction, the same lr."""
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
    fast, slow = BertModel(config), BertModel(config)
    slow.load_state_dict(fast.state_dict())
    start = [p.detach().clone() for p in fast.parameters()]
    optimizer = build_optimizer(fast, "adamw", 1e-2, 0.1)
    reference = torch.optim.AdamW(param_groups(slow, 0.1), lr=1e-2, foreach=False)
    assert optimizer.defaults["fused"] and not optimizer.defaults["foreach"]
    ids = torch.randint(0, 50, (3, 7))
    for _ in range(3):
        for model, opt in ((fast, optimizer), (slow, reference)):
            model.train(False)
            model(ids).last_hidden_state.pow(2).mean().backward()
            opt.step()
            opt.zero_grad()
    moved = [(a - b).abs().max().item() for a, b in zip(fast.parameters(), start)]
    assert max(moved) > 1e-3  # the step did something
    for (name, a), b in zip(fast.named_parameters(), slow.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5, msg=name)  # decay alone moves weights 1.5e-4


def test_length_grouped_batches_cover_everything_with_less_padding() -> None:
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(3, 80, (2000,), generator=gen).tolist()
    batches = length_grouped_batches(lengths, 32, seed=0, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(2000))
    assert batches == length_grouped_batches(lengths, 32, seed=0, epoch=0)
    assert batches != length_grouped_batches(lengths, 32, seed=0, epoch=1)

    def padded(bs: list[list[int]]) -> int:
        return sum(len(b) * max(lengths[i] for i in b) for b in bs)

    random_batches = [list(range(i, min(i + 32, 2000))) for i in range(0, 2000, 32)]
    assert padded(batches) < 0.6 * padded(random_batches)
    # The pool trades padding for mixing: a pool of one batch is a plain random batch, larger pools pad less.
    by_pool = {p: padded(length_grouped_batches(lengths, 32, seed=0, epoch=0, pool=p)) for p in (1, 4, 50)}
    assert by_pool[50] < by_pool[4] < by_pool[1]
    assert by_pool[1] > 0.9 * padded(random_batches)
    assert sorted(i for b in sorted_batches(lengths, 64) for i in b) == list(range(2000))


def test_collate_pads_inputs_and_labels() -> None:
    batch = collate([{"input_ids": [1, 2, 3], "labels": [0, 1, 2]}, {"input_ids": [4], "labels": [1]}], pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch["labels"].tolist() == [[0, 1, 2], [1, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    scalar = collate([{"input_ids": [1], "labels": 1, "_example": 0}], pad_id=0)
    assert scalar["labels"].tolist() == [1] and "_example" not in scalar


def test_stratified_split_is_seeded_and_balanced() -> None:
    examples = [Example(f"t{i}", "a" if i < 100 else "b") for i in range(150)]
    train, dev, test = stratified_split(examples, seed=3)
    assert (len(train), len(dev), len(test)) == (105, 30, 15)
    assert sum(e.label == "a" for e in dev) == 20 and sum(e.label == "a" for e in test) == 10
    assert [e.text for e in dev] == [e.text for e in stratified_split(examples, seed=3)[1]]
    assert [e.text for e in dev] != [e.text for e in stratified_split(examples, seed=4)[1]]
    assert not {e.text for e in train} & {e.text for e in dev} & {e.text for e in test}


def test_token_weighted_loss_weighs_every_label_alike() -> None:
    from stepwise.tasks import get_task
    from stepwise.training.objectives import labels_per_batch

    task = get_task("classify", ["a", "b"])
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 2)
    short = {"labels": torch.tensor([[0, -100, -100, -100, -100], [1, -100, -100, -100, -100]])}
    long = {"labels": torch.tensor([[0, 1, 0, 1, 0], [1, 0, 1, 0, 1]])}
    # Mean reduction: a 2-label batch weighs as much as a 10-label batch; per token it weighs 5x more.
    assert torch.isclose(task.loss(logits, long, 0.0), task.loss(logits, long, 0.0, per_batch=10.0))
    sum_short = task.loss(logits, short, 0.0, per_batch=1.0)
    assert torch.isclose(task.loss(logits, short, 0.0, per_batch=6.0), sum_short / 6)
    assert not torch.isclose(task.loss(logits, short, 0.0), task.loss(logits, short, 0.0, per_batch=6.0))
    features = [{"labels": [0, -100, 1]}, {"labels": [1, 1, 1, -100]}, {"labels": 1}]
    assert labels_per_batch(features, 4) == 4 * (2 + 3 + 1) / 3


def test_batch_source_shards_keep_the_global_batch() -> None:
    from stepwise.training.batches import BatchSource

    lengths = [(i * 7) % 23 + 1 for i in range(100)]
    whole = BatchSource(lengths, 16, seed=3).epoch(1)
    shards = [BatchSource(lengths, 16, seed=3, rank=r, world=2).epoch(1) for r in range(2)]
    assert [a + b for a, b in zip(*shards)] == whole
    assert BatchSource(lengths, 16, seed=3).epoch(1) == whole and BatchSource(lengths, 16, seed=3).epoch(2) != whole
    assert sorted(i for b in whole for i in b) == list(range(100))


def test_early_stopping_policy() -> None:
    from stepwise.training.early_stopping import EarlyStopping

    policy = EarlyStopping(patience=2, eval_every=None)
    assert policy.update(None, 0, 0.5) == (True, 0, False)
    assert policy.update(0.5, 0, 0.5) == (False, 1, False)  # equal is not better
    assert policy.update(0.5, 1, 0.4) == (False, 2, True)
    assert policy.due(10, 30, epoch_ended=True) and not policy.due(10, 30, epoch_ended=False)
    assert not policy.due(30, 30, epoch_ended=True)  # the last evaluation is the loop's
    every = EarlyStopping(patience=None, eval_every=4)
    assert every.due(8, 30, epoch_ended=False) and not every.due(8, 30, epoch_ended=True)
    assert every.update(0.9, 5, 0.1)[2] is False


def test_mask_dropout_is_inverted_dropout_with_rate_p() -> None:
    from stepwise.training.dropout import MaskDropout

    torch.manual_seed(0)
    x = torch.randn(400, 500, requires_grad=True)
    layer = MaskDropout(0.1)
    y = layer(x)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - 0.1) < 0.005, dropped
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / 0.9)
    y.sum().backward()  # the gradient flows through the kept entries only, scaled like them
    assert torch.allclose(x.grad, kept.float() / 0.9)
    layer.eval()
    assert layer(x) is x
    bf16 = MaskDropout(0.5)(torch.ones(1000, 100, dtype=torch.bfloat16))
    assert bf16.dtype == torch.bfloat16 and set(bf16.unique().tolist()) == {0.0, 2.0}


def test_use_mask_dropout_swaps_every_dropout_and_keeps_eval_outputs() -> None:
    from stepwise.training.dropout import MaskDropout, use_mask_dropout

    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)
    model = BertModel(config).eval()
    ids = torch.randint(0, 50, (3, 7))
    before = model(input_ids=ids).last_hidden_state
    plain = sum(type(m) is torch.nn.Dropout for m in model.modules())
    assert use_mask_dropout(model) == plain > 0
    assert not any(type(m) is torch.nn.Dropout for m in model.modules())
    assert all(not m.training for m in model.modules() if isinstance(m, MaskDropout))
    assert torch.equal(model(input_ids=ids).last_hidden_state, before)
    assert sorted(model.state_dict()) == sorted(BertModel(config).state_dict())


def test_keep_mask_uses_all_sixteen_bits_of_every_entry() -> None:
    from stepwise.training.dropout import keep_mask

    torch.manual_seed(0)
    keep, kept = keep_mask((50000, 4), 0.3)  # four entries share a 64-bit draw: each lane must drop at rate p
    assert keep.dtype == torch.bool and kept == (65536 - round(0.3 * 65536)) / 65536
    for lane in keep.unbind(1):
        assert abs((~lane).float().mean().item() - 0.3) < 0.01
    assert keep_mask((7, 3), 0.0)[0].all() and keep_mask((5,), 0.1)[0].shape == (5,)


def test_sdpa_mask_dropout_is_sdpa_with_the_keep_mask_on_the_probabilities() -> None:
    from torch.nn.functional import scaled_dot_product_attention

    from stepwise.training.dropout import keep_mask, sdpa_mask_dropout

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4) for _ in range(3))
    attend = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    attend[1, :, :, 3:] = False  # the second sequence is padded after 3 tokens
    layer = torch.nn.Module()
    plain, _ = sdpa_mask_dropout(layer, q, k, v, attend, dropout=0.0, scaling=0.5)
    expected = scaled_dot_product_attention(q, k, v, attn_mask=attend, scale=0.5).transpose(1, 2)
    assert torch.allclose(plain, expected, atol=1e-6)
    torch.manual_seed(1)
    dropped, _ = sdpa_mask_dropout(layer, q, k, v, attend, dropout=0.4, scaling=0.5)
    torch.manual_seed(1)
    keep, kept = keep_mask((2, 3, 5, 5), 0.4)
    probs = torch.softmax((q @ k.transpose(-1, -2) * 0.5).masked_fill(~attend, -1e9), dim=-1)
    assert torch.allclose(dropped, (probs * keep / kept @ v).transpose(1, 2), atol=1e-6)
    assert not torch.allclose(dropped, plain)


def test_use_mask_dropout_drops_attention_in_training_and_saves_plain_sdpa(tmp_path) -> None:
    from stepwise.training.dropout import ATTENTION, use_mask_dropout

    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.5)
    model = BertModel(config).eval()
    ids, mask = torch.randint(0, 50, (3, 7)), torch.ones(3, 7, dtype=torch.long)
    mask[0, 4:] = 0
    before = model(input_ids=ids, attention_mask=mask).last_hidden_state
    use_mask_dropout(model)
    assert model.config._attn_implementation == ATTENTION
    assert torch.equal(model(input_ids=ids, attention_mask=mask).last_hidden_state, before)
    model.train()  # only the attention probabilities drop here: the outputs move, and differ draw to draw
    first = model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert not torch.allclose(first, before) and not torch.allclose(first, model(input_ids=ids,
                                                                                 attention_mask=mask).last_hidden_state)
    model.save_pretrained(tmp_path)
    assert BertModel.from_pretrained(tmp_path).config._attn_implementation == "sdpa"



def test_auto_precision_is_fp32_when_kernels_are_capped_below_avx512() -> None:
    import os
    import subprocess
    import sys

    code = "from stepwise.precision import resolve_precision; print(resolve_precision('auto'))"
    capped = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**os.environ, "ATEN_CPU_CAPABILITY": "avx2"})
    assert capped.stdout.strip() == "fp32"
