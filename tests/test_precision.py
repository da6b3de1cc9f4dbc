"""The precision of the base weights: chosen by the machine (mocked capability and timings here), overridden by
--dtype, vetoed by a failed quality guard, recorded where numbers are written, and bfloat16 training that keeps
LoRA in float32 and saves adapters that load back in float32 with the same outputs to rounding."""

import json

import pytest

from laffi.inference import precision as p

AMD = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n"
OLD = "processor\t: 0\nmodel name\t: Old Xeon\nflags\t\t: fpu sse avx2 avx512f\n"


def test_native_bf16_flags_are_read_from_cpuinfo():
    assert p.native_bf16_flags(AMD) == ["avx512_bf16"]
    assert p.native_bf16_flags(OLD) == []
    assert p.native_bf16_flags(AMD.replace("avx512_bf16", "amx_bf16 avx512_bf16")) == ["amx_bf16", "avx512_bf16"]


def test_a_cpu_without_native_bf16_gets_float32_and_is_never_timed(monkeypatch):
    monkeypatch.setattr(p, "native_bf16_flags", lambda cpuinfo=None: [])
    monkeypatch.setattr(p, "matmul_rate", lambda *a, **k: pytest.fail("no probe without a native unit"))
    chosen = p.cpu_precision()
    assert chosen.dtype == "float32" and "no native bfloat16" in chosen.reason


@pytest.mark.parametrize("bf16_rate,expected", [(400.0, "bfloat16"), (180.0, "float32")])
def test_a_native_unit_must_also_be_measured_faster(monkeypatch, bf16_rate, expected):
    monkeypatch.setattr(p, "native_bf16_flags", lambda cpuinfo=None: ["avx512_bf16"])
    monkeypatch.setattr(p, "matmul_rate", lambda dtype, *a, **k: bf16_rate if dtype == "bfloat16" else 150.0)
    chosen = p.cpu_precision()
    assert chosen.dtype == expected
    assert chosen.measured["speedup"] == round(bf16_rate / 150.0, 2)
    assert ("faster in bfloat16" in chosen.reason) == (expected == "bfloat16")


def test_the_probe_measures_a_positive_rate_in_both_precisions():
    for dtype in ("float32", "bfloat16"):
        assert p.matmul_rate(dtype, shape=(16, 32, 48), repeats=2) > 0


def test_asked_precision_wins_and_cuda_is_unchanged():
    assert p.choose_precision("cpu", "bfloat16").dtype == "bfloat16"
    assert "asked for" in p.choose_precision("cpu", "float32").reason


def test_a_failed_guard_falls_back_to_float32_and_says_which_variant():
    fast = p.Precision("bfloat16", "bfloat16: measured", {"speedup": 2.7})
    kept = p.guarded(fast, {"base": {"passed": True}, "sft": {"passed": True}})
    assert kept.dtype == "bfloat16" and "passed for base, sft" in kept.reason
    fallen = p.guarded(fast, {"base": {"passed": True}, "laffi": {"passed": False, "summary": "F1 -1.4"}})
    assert fallen.dtype == "float32" and "laffi (F1 -1.4)" in fallen.reason
    assert p.guarded(p.Precision("float32", "x"), {"laffi": {"passed": False}}).dtype == "float32"


def test_guard_files_in_the_adapters_folder_decide_the_load(tiny_dir, tiny_adapters, tmp_path, monkeypatch):
    import shutil

    from laffi.adapter_folder import BASE_PRECISION_GUARD, PRECISION_GUARD
    from laffi.inference.models import ModelConfig, load_model

    shutil.copytree(tiny_adapters, tmp_path / "adapters")
    monkeypatch.setattr(p, "measured_cpu_precision", lambda: p.Precision("bfloat16", "bfloat16: measured"))
    cfg = ModelConfig(base=str(tiny_dir), adapters_dir=str(tmp_path / "adapters"), device="cpu")
    lm = load_model(cfg)
    assert lm.precision.dtype == "bfloat16" and str(next(lm.model.parameters()).dtype) == "torch.bfloat16"
    (tmp_path / "adapters" / BASE_PRECISION_GUARD).write_text(json.dumps({"passed": True}))
    (tmp_path / "adapters" / "sft" / PRECISION_GUARD).write_text(json.dumps({"passed": False, "summary": "AUC -0.02"}))
    lm = load_model(cfg)
    assert lm.precision.dtype == "float32" and "sft (AUC -0.02)" in lm.precision.reason
    assert str(next(lm.model.parameters()).dtype) == "torch.float32"


def test_precision_is_in_ask_json_and_in_the_evaluation_record(tiny_dir, tiny_adapters, small_squad, tmp_path,
                                                                capsys):
    from laffi.cli import main

    code = main(["ask", "--base", str(tiny_dir), "--adapters-dir", str(tiny_adapters), "--context",
                 "The bridge opened in 1931.", "--question", "When?", "--json", "--max-new-tokens", "3"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["precision"]["dtype"] == "float32" and out["precision"]["reason"]
    code = main(["eval", "--base", str(tiny_dir), "--adapters-dir", str(tiny_adapters), "--data", str(small_squad),
                 "--articles", "all", "--max-new-tokens", "3", "--out", str(tmp_path / "ev"), "--json"])
    assert code == 0
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["precision"]["dtype"] == "float32"


def test_a_threshold_chosen_in_another_precision_is_a_warning(tiny_lm, tmp_path):
    import dataclasses

    from laffi.inference.answerability import Calibration, calibration_warnings, write_calibration

    folder = tmp_path / "sft"
    folder.mkdir()
    write_calibration(folder, Calibration(threshold=0.5, precision="float32"))
    lm = dataclasses.replace(tiny_lm, adapters={"sft": folder}, precision=p.Precision("bfloat16", "measured"))
    warnings = calibration_warnings(lm, ["sft"])
    assert len(warnings) == 1 and "chosen in float32" in warnings[0] and "calibrate --variants sft" in warnings[0]
    assert calibration_warnings(dataclasses.replace(lm, precision=p.Precision("float32", "x")), ["sft"]) == []



def test_thresholds_chosen_in_two_precisions_live_side_by_side(tiny_lm, tmp_path):
    """Recalibrating in bfloat16 keeps float32's threshold; each precision serves its own, and rewriting one
    precision's entry leaves the other's."""
    import dataclasses
    import json

    from laffi.inference.answerability import (Calibration, calibration_warnings, calibrations, read_calibration,
                                               write_calibration)

    folder = tmp_path / "sft"
    folder.mkdir()
    write_calibration(folder, Calibration(threshold=0.5, precision=None))  # unrecorded: float32
    write_calibration(folder, Calibration(threshold=0.7, precision="bfloat16"))
    assert read_calibration(folder).threshold == 0.5 and read_calibration(folder, precision="float32").threshold == 0.5
    assert read_calibration(folder, precision="bfloat16").threshold == 0.7
    assert read_calibration(folder, precision="float16").threshold == 0.5  # none in that precision: the first
    write_calibration(folder, Calibration(threshold=0.6, precision="float32"))  # float32 again: bfloat16's stays
    raw = json.loads((folder / "calibration.json").read_text())
    assert raw["threshold"] == 0.6 and raw["by_precision"]["bfloat16"]["threshold"] == 0.7
    lm = dataclasses.replace(tiny_lm, adapters={"sft": folder}, precision=p.Precision("bfloat16", "measured"))
    assert calibrations(lm, ["sft"])["sft"].threshold == 0.7 and calibration_warnings(lm, ["sft"]) == []
    f32 = dataclasses.replace(lm, precision=p.Precision("float32", "x"))
    assert calibrations(f32, ["sft"])["sft"].threshold == 0.6


def test_bf16_base_trains_float32_lora_and_the_adapter_loads_back_in_float32(tiny_dir, tmp_path, monkeypatch):
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model

    from laffi.inference.models import ModelConfig, load_base

    base, tok = load_base(ModelConfig(base=str(tiny_dir), adapters_dir=None, dtype="bfloat16", device="cpu"))
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    trainable = [t for t in model.parameters() if t.requires_grad]
    assert trainable and all(t.dtype == torch.float32 for t in trainable)
    model.train()
    ids = tok("The bridge opened in 1931.", return_tensors="pt")["input_ids"]
    opt = torch.optim.AdamW(trainable, lr=1e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    assert all(t.grad is not None and t.grad.dtype == torch.float32 for t in trainable)
    opt.step()
    model.save_pretrained(tmp_path / "adapter")
    model.eval()
    with torch.no_grad():
        trained = model(input_ids=ids).logits.float()
        with model.disable_adapter():
            bf16_plain = model(input_ids=ids).logits.float()
    fp32_base, _ = load_base(ModelConfig(base=str(tiny_dir), adapters_dir=None, dtype="float32", device="cpu"))
    with torch.no_grad():
        plain = fp32_base(input_ids=ids).logits  # before the adapter is injected into it
    loaded = PeftModel.from_pretrained(fp32_base, str(tmp_path / "adapter")).eval()
    with torch.no_grad():
        again = loaded(input_ids=ids).logits
    assert again.dtype == torch.float32
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    live = {k.replace(".default", ""): v for k, v in model.state_dict().items() if "lora_" in k}
    assert saved and all(v.dtype == torch.float32 and torch.equal(v, live[k]) for k, v in saved.items())
    # the adapter loaded in float32 differs from the bfloat16 model it trained in by bfloat16's rounding of the
    # base (measured on the same input without the adapter), not more
    rounding = (bf16_plain - plain).abs().max().item()
    assert 0 < (again - trained).abs().max().item() <= 2 * rounding + 1e-3
    assert not torch.allclose(again, plain, atol=1e-4)  # the trained update is there
