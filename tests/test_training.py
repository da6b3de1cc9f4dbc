"""LoRA training on the tiny model: LoRA weights move, base weights don't; save -> plain-PEFT reload gives the
same outputs; resume continues from the checkpoint's step; settings out of range are rejected up front."""

import json
import random
from pathlib import Path

import pytest

from laffi.errors import LaffiError
from laffi.feedback.annotation import reference_feedback
from laffi.squad.data import load_squad
from laffi.training.rows import training_rows
from laffi.training.trainer import TrainConfig, train_adapter


@pytest.fixture
def records(small_squad):
    exs, _ = load_squad(str(small_squad))
    out = []
    for i, e in enumerate(exs * 2):  # 10 records
        r = dict(e.to_dict(), qid=f"{e.qid}-{i}", prediction="the port" if i % 2 else "")
        text, _ = reference_feedback(r, random.Random(i))
        out.append(dict(r, feedback=text, feedback_source="reference" if i % 3 else "human"))
    return out


def cfg(tmp_path, tiny_dir, **kw):
    base = dict(method="laffi", name="laffi", base=str(tiny_dir), adapters_dir=str(tmp_path / "adapters"),
                work_dir=str(tmp_path / "work"), r=4, alpha=8, lr=5e-2, batch_size=2, max_steps=3, save_steps=2,
                max_length=1024, heldout=0)  # held-out scoring has its own tests
    base.update(kw)
    return TrainConfig(**base)


class Snapshot:
    """A TrainerCallback that keeps the trained model's logits on a fixed input, and its base weights."""

    def __init__(self, input_ids):
        self.input_ids = input_ids

    def __getattr__(self, name):  # every other callback event: do nothing
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        import torch

        model.eval()
        with torch.no_grad():
            # where the model trained (a GPU, if there is one); compared on the CPU
            device = self.device = next(model.parameters()).device
            self.dtype = model.get_input_embeddings().weight.dtype  # the frozen base's: the machine's precision
            self.logits = model(input_ids=self.input_ids.to(device)).logits.float().cpu()
        self.state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def test_training_rows_use_the_inference_prompts(records, tiny_lm):
    from laffi.inference.prompts import feedback_prompt, qa_prompt

    sft = training_rows(records[:2], "sft", tiny_lm.tokenizer)
    laffi = training_rows(records[:2], "laffi", tiny_lm.tokenizer)
    r = records[0]
    assert sft[0]["prompt"] == qa_prompt(tiny_lm.tokenizer, r["context"], r["question"])
    assert sft[0]["completion"] == r["answers"][0] + "<|im_end|>"
    assert laffi[0]["prompt"] == feedback_prompt(tiny_lm.tokenizer, r["context"], r["question"], r["prediction"])
    assert laffi[0]["completion"] == r["feedback"] + "<|im_end|>"
    unanswerable = next(x for x in records if not x["answers"])
    assert training_rows([unanswerable], "sft", tiny_lm.tokenizer)[0]["completion"].startswith("no answer")


def test_laffi_plus_sft_has_both_kinds_of_rows(records, tiny_lm):
    rows = training_rows(records, "laffi+sft", tiny_lm.tokenizer)
    assert len(rows) == 2 * len(records)
    assert [r["feedback_source"] for r in rows] == ["gold"] * 10 + [r["feedback_source"] for r in records]
    assert TrainConfig(method="laffi+sft").name == "laffi-sft"


def test_lora_moves_base_stays_and_reload_matches(records, tiny_dir, tmp_path):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    input_ids = torch.tensor([[5, 17, 33, 2, 9, 41]])
    snap = Snapshot(input_ids)
    path = train_adapter(records, cfg(tmp_path, tiny_dir), extra_callbacks=[snap]).path
    assert path == tmp_path / "adapters" / "laffi"

    lora = load_file(path / "adapter_model.safetensors")
    b_keys = [k for k in lora if "lora_B" in k]
    assert b_keys and all(lora[k].abs().sum() > 0 for k in b_keys)  # B starts at zero: training moved it

    # the base trains in the machine's precision (float32 here; bfloat16 on a GPU or a CPU with native bfloat16)
    original = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=snap.dtype).state_dict()
    for k, v in snap.state.items():
        if "lora_" not in k:
            name = k.replace("base_model.model.", "").replace(".base_layer", "")
            assert torch.equal(v, original[name]), k  # base weights did not move

    def loaded(adapter: bool):
        model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=snap.dtype).to(snap.device)
        model = (PeftModel.from_pretrained(model, str(path)) if adapter else model).eval()
        with torch.no_grad():
            return model(input_ids=input_ids.to(snap.device)).logits.float().cpu()

    logits = loaded(adapter=True)
    # float32: equal up to summation order (the trained model ran laffi.inference.kernels' oneDNN layers, this one
    # torch's own); bfloat16: up to its rounding
    tolerance = 1e-4 if snap.dtype == torch.float32 else 0.02 * snap.logits.abs().max().item()
    torch.testing.assert_close(logits, snap.logits, rtol=1e-5, atol=tolerance)
    assert not torch.allclose(loaded(adapter=False), logits, atol=max(1e-3, 2 * tolerance))


def test_adapter_folder_has_config_manifest_log_and_card(records, tiny_dir, tmp_path):
    path = train_adapter(records, cfg(tmp_path, tiny_dir, method="sft", name="sft")).path
    config = json.loads((path / "training_config.json").read_text())
    assert config["train"]["r"] == 4 and config["train"]["method"] == "sft" and config["stats"]["global_step"] == 3
    manifest = json.loads((path / "data_manifest.json").read_text())
    assert manifest["examples"] == 10 and manifest["articles"] == {"Velmar_bridge": 6, "Ada_Brill": 4}
    assert manifest["feedback_sources"] == {"gold": 10}
    log = [json.loads(line) for line in (path / "loss_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and all(r["loss"] > 0 for r in log)
    assert "SFT LoRA adapter" in (path / "README.md").read_text()


def test_laffi_manifest_counts_feedback_sources(records, tiny_dir, tmp_path):
    path = train_adapter(records, cfg(tmp_path, tiny_dir, max_steps=1)).path
    assert json.loads((path / "data_manifest.json").read_text())["feedback_sources"] == {"human": 4,
                                                                                         "reference": 6}


def test_resume_continues_from_the_checkpoint_step(records, tiny_dir, tmp_path):
    first = train_adapter(records, cfg(tmp_path, tiny_dir, max_steps=2)).path
    assert json.loads((first / "training_config.json").read_text())["stats"]["global_step"] == 2
    second = train_adapter(records, cfg(tmp_path, tiny_dir, max_steps=4, overwrite=True)).path
    stats = json.loads((second / "training_config.json").read_text())["stats"]
    assert stats["global_step"] == 4 and stats["resumed_from"].endswith("checkpoint-2")
    steps = [json.loads(line)["step"] for line in (second / "loss_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]  # the resumed run logged only steps 3 and 4


@pytest.mark.parametrize("kw,field", [
    ({"lr": 0}, "lr"), ({"lr": -1e-4}, "lr"), ({"r": 0}, "r"), ({"batch_size": 0}, "batch_size"),
    ({"epochs": 0}, "epochs"), ({"max_length": 10}, "max_length"), ({"name": "../x"}, "name"),
    ({"name": "base"}, "name"), ({"method": "dpo"}, "method"), ({"target_modules": " "}, "target_modules"),
])
def test_bad_settings_are_rejected_naming_the_field(kw, field, tmp_path, tiny_dir):
    with pytest.raises(LaffiError, match=f"TrainConfig.{field}"):
        cfg(tmp_path, tiny_dir, **kw)


def test_unknown_target_module_is_rejected_before_training(records, tmp_path, tiny_dir):
    with pytest.raises(LaffiError, match="no module named 'w_pack'"):
        train_adapter(records, cfg(tmp_path, tiny_dir, target_modules="q_proj,w_pack"))
    assert not (tmp_path / "work" / "checkpoints").exists()


def test_upper_layers_only_get_every_linear_layer_and_load_back(records, tiny_dir, tmp_path):
    """layers with target_modules "all-linear" (which PEFT refuses together): LoRA on every linear layer of the
    named decoder layers and nowhere else, and the folder loads back through PEFT."""
    import re

    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    path = train_adapter(records, cfg(tmp_path, tiny_dir, layers="1", max_steps=1)).path
    keys = load_file(path / "adapter_model.safetensors")
    placed = {(int(m.group(1)), m.group(2)) for k in keys if (m := re.search(r"layers\.(\d+)\..*?(\w+_proj)", k))}
    assert {layer for layer, _ in placed} == {1}  # of 0-1
    assert {module for _, module in placed} == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                "down_proj"}
    assert not any("lm_head" in k for k in keys)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_dir), str(path))
    assert sum("lora_A" in n for n, _ in model.named_parameters()) == len(placed)


def test_a_layer_range_past_the_model_is_rejected_before_training(records, tmp_path, tiny_dir):
    with pytest.raises(LaffiError, match="layers are 0-1"):
        train_adapter(records, cfg(tmp_path, tiny_dir, layers="1-9"))
    assert not (tmp_path / "work" / "checkpoints").exists()


def test_examples_longer_than_max_length_are_left_out_and_counted(records, tmp_path, tiny_dir, tiny_lm):
    rows = training_rows(records, "laffi", tiny_lm.tokenizer)
    lengths = sorted(len(tiny_lm.tokenizer(r["prompt"] + r["completion"])["input_ids"]) for r in rows)
    limit = lengths[5]  # the 4 longest (or more, with ties) cannot fit
    path = train_adapter(records, cfg(tmp_path, tiny_dir, max_length=limit, max_steps=1)).path
    manifest = json.loads((path / "data_manifest.json").read_text())
    assert manifest["left_out_too_long"] == sum(n > limit for n in lengths) > 0
    assert manifest["examples"] + manifest["left_out_too_long"] == 10


def test_an_interrupted_run_resumes_with_the_same_data_order(records, tiny_dir, tmp_path):
    """Stopped at step 2 and resumed, a run sees the same examples in the same order as one that never stopped:
    its losses at steps 3 and 4 are the uninterrupted run's."""
    def losses(folder):
        return {r["step"]: r["loss"] for r in map(json.loads, (folder / "loss_log.jsonl").read_text().splitlines())}

    from transformers import TrainerCallback

    class Interrupt(TrainerCallback):  # what Stop (or a session's end after a checkpoint) leaves behind
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                control.should_save = control.should_training_stop = True

    whole = train_adapter(records, cfg(tmp_path / "whole", tiny_dir, max_steps=4, save_steps=2)).path
    cut = cfg(tmp_path / "cut", tiny_dir, max_steps=4, save_steps=2)
    stopped = train_adapter(records, cut, extra_callbacks=[Interrupt()])
    assert stopped.status == "stopped" and stopped.path == Path(cut.work_dir)  # resumable
    resumed = train_adapter(records, cfg(tmp_path / "cut", tiny_dir, max_steps=4, save_steps=2)).path
    assert json.loads((resumed / "training_config.json").read_text())["stats"]["resumed_from"].endswith("checkpoint-2")
    a, b = losses(whole), losses(resumed)
    assert set(a) == set(b) == {1, 2, 3, 4}
    for step in (3, 4):
        assert b[step] == pytest.approx(a[step], rel=1e-4)


def test_heldout_split_takes_whole_passages_within_a_tenth():
    from laffi.training.rows import heldout_split

    rows = [{"qid": f"{p}{i}", "group": f"sft\npassage {p}"} for p, n in (("a", 12), ("b", 3), ("c", 30))
            for i in range(n)]
    keep, held = heldout_split(rows, 32, seed=0)
    assert len(held) == 3 and {r["group"] for r in held} == {"sft\npassage b"}  # b fits in 45 // 10, a and c don't
    assert len(keep) + len(held) == len(rows) and not {r["qid"] for r in keep} & {r["qid"] for r in held}
    one = [{"qid": str(i), "group": "laffi\nthe presenter's passage"} for i in range(4)]
    keep, held = heldout_split(one, 32, seed=0)
    assert len(held) == 1 and len(keep) == 3  # one passage: single rows, at least one when there are two or more
    assert heldout_split(one, 0)[1] == [] and heldout_split(one[:1], 32)[1] == []


def test_heldout_loss_is_scored_and_the_best_checkpoint_kept(records, tiny_dir, tmp_path):
    from safetensors.torch import load_file

    path = train_adapter(records, cfg(tmp_path, tiny_dir, max_steps=8, save_steps=2, heldout=2, lr=3e-1)).path
    log = [json.loads(line) for line in (path / "loss_log.jsonl").read_text().splitlines()]
    held = {r["step"]: r["heldout_loss"] for r in log if "heldout_loss" in r}
    assert sorted(held) == [2, 4, 6, 8] and all(v > 0 for v in held.values())  # at every checkpoint
    assert [r["step"] for r in log if "loss" in r] == list(range(1, 9))
    stats = json.loads((path / "training_config.json").read_text())["stats"]
    best = min(held, key=held.get)
    assert stats["best_step"] == best and stats["best_heldout_loss"] == pytest.approx(held[best])
    manifest = json.loads((path / "data_manifest.json").read_text())
    assert manifest["heldout_examples"] == 1 and not set(manifest["heldout_qids"]) & set(manifest["qids"])
    kept = load_file(path / "adapter_model.safetensors")
    saved = load_file(tmp_path / "work" / "checkpoints" / f"checkpoint-{best}" / "adapter_model.safetensors")
    assert kept.keys() == saved.keys() and all((kept[k] == saved[k]).all() for k in kept)
    assert f"the checkpoint of step {best}" in (path / "README.md").read_text()
