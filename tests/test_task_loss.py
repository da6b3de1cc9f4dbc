"""Per-task loss averaging for laffi+sft (laffi.training.task_loss): the loss by hand, steps that hold both kinds of
rows of a passage, the weighted loss where training uses it, and settings out of range refused."""

import math

import pytest

from laffi.errors import LaffiError
from laffi.training.packing import PackedCollator, pack_rows, tokenize_rows
from laffi.training.task_loss import task_weighted_loss
from laffi.training.rows import training_rows
from laffi.training.trainer import TrainConfig, train_adapter

from .test_training import cfg, records  # noqa: F401  (the records fixture)


def test_each_task_is_averaged_over_its_own_tokens_then_weighted():
    import torch

    torch.manual_seed(0)
    logits = torch.randn(1, 6, 5)
    labels = torch.tensor([[-100, 1, 2, -100, 3, 4]])
    tasks = torch.tensor([[-1, 0, 0, -1, 1, 1]])  # tokens 1-2 are SFT's, 4-5 LaFFi's (the logit before predicts)
    ce = [-torch.log_softmax(logits[0, t - 1], -1)[labels[0, t]].item() for t in (1, 2, 4, 5)]
    sft, laffi = (ce[0] + ce[1]) / 2, (ce[2] + ce[3]) / 2
    assert task_weighted_loss(logits, labels, tasks, 0.3).item() == pytest.approx(0.3 * sft + 0.7 * laffi, rel=1e-5)
    only_laffi = torch.tensor([[-1, 1, 1, -1, 1, 1]])  # one task present: its own mean, whatever alpha
    assert task_weighted_loss(logits, labels, only_laffi, 0.3).item() == pytest.approx(sum(ce) / 4, rel=1e-5)
    assert not math.isclose(0.3 * sft + 0.7 * laffi, sum(ce) / 4, rel_tol=1e-3)  # weighting changes the loss


def test_a_step_holds_the_sft_and_laffi_rows_of_its_passages(records, tiny_lm):  # noqa: F811
    tok = tiny_lm.tokenizer
    rows = tokenize_rows(training_rows(records, "laffi+sft", tok), tok)
    seqs = pack_rows(rows, examples_per_seq=4, seed=0, by_task=True)
    mixed = [s for s in seqs if {0, 1} <= set(s["tasks"])]
    assert len(mixed) >= len(seqs) // 2
    batch = PackedCollator(pad_token_id=tok.pad_token_id)(seqs[:2])
    assert batch["task_ids"].shape == batch["labels"].shape
    labelled = batch["labels"] != -100
    assert ((batch["task_ids"] >= 0) | ~labelled).all()  # every label token says its task
    assert "tasks" not in pack_rows(rows, examples_per_seq=4, seed=0)[0]  # plain training: no task ids


def test_training_with_a_task_weight_uses_the_weighted_loss(records, tiny_dir, tmp_path, monkeypatch):  # noqa: F811
    import json

    from laffi.training import task_loss

    calls = []
    real = task_loss.labelled_task_loss
    monkeypatch.setattr(task_loss, "labelled_task_loss", lambda *a: calls.append(a[3]) or real(*a))
    result = train_adapter(records, cfg(tmp_path, tiny_dir, method="laffi+sft", name="joint", task_weight=0.7))
    assert result.finished and calls and set(calls) == {0.7}
    saved = json.loads((result.path / "training_config.json").read_text())
    assert saved["train"]["task_weight"] == 0.7


def test_projecting_only_labelled_positions_gives_the_full_loss(records, tiny_lm):  # noqa: F811
    import torch

    from laffi.training.task_loss import labelled_positions, labelled_targets, labelled_task_loss

    tok, model = tiny_lm.tokenizer, tiny_lm.model
    rows = tokenize_rows(training_rows(records, "laffi+sft", tok), tok)
    batch = PackedCollator(pad_token_id=tok.pad_token_id)(pack_rows(rows, examples_per_seq=4, seed=0, by_task=True)[:2])
    labels, tasks = batch["labels"], batch["task_ids"]
    keep = labelled_positions(labels)
    assert 0 < keep.sum() < keep.numel()  # fewer positions projected than the batch has
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "task_ids")}
    with torch.no_grad():
        full = task_weighted_loss(model(**inputs).logits, labels, tasks, 0.3)
        kept = model(**inputs, logits_to_keep=keep).logits
        part = labelled_task_loss(kept.reshape(-1, kept.shape[-1]), *labelled_targets(labels, tasks), 0.3)
    assert kept.reshape(-1, kept.shape[-1]).shape[0] == keep.sum()
    assert part.item() == pytest.approx(full.item(), rel=1e-4)


@pytest.mark.parametrize("bad", [dict(method="laffi"), dict(task_weight=1.0), dict(pack=False)])
def test_a_task_weight_outside_packed_laffi_sft_is_refused(tmp_path, tiny_dir, bad):
    settings = {"method": "laffi+sft", "task_weight": 0.5, **bad}
    with pytest.raises(LaffiError, match="task_weight"):
        TrainConfig(**{**dict(name="x", base=str(tiny_dir)), **settings})
