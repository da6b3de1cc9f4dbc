"""Shared-prefix packing (laffi.training.packing): a packed step computes the same loss and the same LoRA gradients as the
same examples one by one, with fewer tokens; every example lands in exactly one sequence."""

import pytest
import torch

from laffi.training.packing import PackedCollator, pack_rows, tokenize_rows
from laffi.training.rows import training_rows

C1 = "The Velmar bridge opened in 1931. It carries freight trains across the Oska river to the port of Drun."
C2 = "Ada Brill wrote three novels about the island of Pell, where she lived until 1960."


@pytest.fixture
def records():
    qs = [(C1, "When did the bridge open?", ["1931"]), (C1, "What does it carry?", ["freight trains"]),
          (C2, "How many novels?", ["three"]), (C1, "Who built it?", []), (C2, "Where did she live?", ["Pell"])]
    return [{"qid": f"q{i}", "title": "t", "context": c, "question": q, "answers": a, "prediction": "x y",
             "feedback": f"Incorrect: so the answer should be {a[0] if a else 'none'}."}
            for i, (c, q, a) in enumerate(qs)]


@pytest.fixture
def model(tiny_dir):
    from peft import LoraConfig, get_peft_model

    from laffi.inference.models import ModelConfig, load_base

    base, tok = load_base(ModelConfig(base=str(tiny_dir), adapters_dir=None, dtype="float32", cpu_kernels=False,
                                      device="cpu"))
    tok.padding_side = "right"
    torch.manual_seed(0)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0, task_type="CAUSAL_LM",
                      init_lora_weights=False)  # random B: a non-zero adapter, so gradients reach every LoRA matrix
    return get_peft_model(base, lora), tok


def summed_loss(model, input_ids, labels, **kw):
    logits = model(input_ids=input_ids, **kw).logits[0]
    return torch.nn.functional.cross_entropy(logits[:-1], labels[0, 1:], ignore_index=-100, reduction="sum")


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("method", ["sft", "laffi"])
def test_packed_loss_and_gradients_equal_the_examples_alone(model, records, method):
    model, tok = model
    rows = tokenize_rows(training_rows(records, method, tok), tok)
    seqs = pack_rows(rows, examples_per_seq=len(rows), seed=0)
    assert len(seqs) == 1 and seqs[0]["n_examples"] == len(rows)
    assert len(seqs[0]["input_ids"]) < sum(r["n_tokens"] for r in rows)  # the passages were shared
    batch = PackedCollator(pad_token_id=tok.pad_token_id)(seqs)
    model.zero_grad()
    packed = summed_loss(model, batch["input_ids"], batch["labels"], attention_mask=batch["attention_mask"],
                         position_ids=batch["position_ids"])
    packed.backward()
    packed_grads = grads(model)
    model.zero_grad()
    alone = 0.0
    for r in rows:
        ids = torch.tensor([r["input_ids"]])
        labels = torch.tensor([[-100] * r["n_prompt"] + r["input_ids"][r["n_prompt"]:]])
        alone = alone + summed_loss(model, ids, labels)
    alone.backward()
    torch.testing.assert_close(packed, alone, rtol=1e-5, atol=1e-4)
    for name, g in grads(model).items():  # float32 sums in another order: ~1e-4 of the gradient's own scale;
        # a mask or position mistake gives differences of the gradient's size
        scale = g.abs().max().item()
        assert scale > 0, name
        torch.testing.assert_close(packed_grads[name], g, rtol=1e-3, atol=1e-3 * scale,
                                   msg=lambda m, name=name: f"{name}: {m}")


def test_every_example_is_packed_once_and_labels_are_completions_only(model, records):
    _, tok = model
    rows = tokenize_rows(training_rows(records * 3, "sft", tok), tok)
    seqs = pack_rows(rows, examples_per_seq=4, seed=1)
    assert sum(s["n_examples"] for s in seqs) == len(rows) and all(s["n_examples"] <= 4 for s in seqs)
    completion_tokens = sum(r["n_tokens"] - r["n_prompt"] for r in rows)
    assert sum(sum(t != -100 for t in s["labels"]) for s in seqs) == completion_tokens
    for s in seqs:  # the first token of every suffix is never a label: the shifted loss can't cross suffixes
        starts = [i for i in range(1, len(s["segments"])) if s["segments"][i] != s["segments"][i - 1]]
        assert all(s["labels"][i] == -100 for i in starts)


def test_the_tree_mask_lets_a_suffix_see_only_its_prefix_and_itself():
    from laffi.training.packing import tree_mask

    segments = torch.tensor([[0, 0, 1, 1, 2, 2]])
    groups = torch.tensor([[0, 0, 0, 0, 0, 0]])
    allowed = tree_mask(segments, groups, torch.float32)[0, 0] == 0
    assert allowed[5].tolist() == [True, True, False, False, True, True]  # suffix 2 does not see suffix 1
    assert allowed[3].tolist() == [True, True, True, True, False, False]  # causal
