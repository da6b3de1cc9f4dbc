"""A CPU training step without needless work (laffi.training.cpu_steps): TRL's fused loss head with labelled
positions only gives the same loss and gradients as every position; LoRA inputs left uncast under bfloat16
autocast give the same loss and gradients too."""


def _loss_and_grads(tiny_dir, monkeypatch, compact: bool, real):
    import torch
    import trl.trainer.utils as trl_utils
    from transformers import AutoModelForCausalLM

    from laffi.training.cpu_steps import label_positions_only

    if compact:
        assert label_positions_only() and label_positions_only()  # idempotent
    rows = []

    class Spy(real):
        @staticmethod
        def forward(ctx, hidden, *args):
            rows.append(hidden.shape[0])
            return real.forward(ctx, hidden, *args)

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", Spy)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir).float()
    trl_utils.add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    ids = torch.randint(3, 300, (2, 40))
    labels = ids.clone()
    labels[:, :30] = -100  # the prompt: no loss, as SFT's completion-only loss
    out = model(input_ids=ids, labels=labels, fused_lm_head=True)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.loss.detach(), grads, rows


def test_labelled_positions_only_give_the_same_loss_and_gradients(tiny_dir, monkeypatch):
    import torch
    import trl.trainer.utils as trl_utils

    head = trl_utils._ChunkedLogProbFunction
    # TRL's own choice on a CPU (an earlier training in this process may have changed it already)
    monkeypatch.setattr(trl_utils, "_use_triton", lambda device: False)
    plain = _loss_and_grads(tiny_dir, monkeypatch, False, head)
    compact = _loss_and_grads(tiny_dir, monkeypatch, True, head)
    assert plain[2] == [2 * 39] and compact[2] == [2 * 10]  # every position, then the labelled ones only
    assert torch.allclose(plain[0], compact[0], rtol=1e-5, atol=1e-6)
    assert plain[1].keys() == compact[1].keys() and len(plain[1]) > 3
    for name, grad in plain[1].items():
        assert torch.allclose(grad, compact[1][name], rtol=1e-4, atol=1e-6), name


def test_other_devices_keep_trls_choice(monkeypatch):
    import torch
    import trl.trainer.utils as trl_utils

    from laffi.training.cpu_steps import label_positions_only

    seen = []
    monkeypatch.setattr(trl_utils, "_use_triton", lambda device: seen.append(device.type) or False)
    assert label_positions_only()
    assert trl_utils._use_triton(torch.device("cpu")) is True and seen == []
    assert trl_utils._use_triton(torch.device("meta")) is False and seen == ["meta"]


def test_without_trls_switch_nothing_changes(monkeypatch):
    import trl.trainer.utils as trl_utils

    from laffi.training.cpu_steps import label_positions_only

    monkeypatch.delattr(trl_utils, "_use_triton")
    assert label_positions_only() is False


def test_lora_inputs_uncast_under_autocast_give_the_same_loss_and_gradients(tiny_dir):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from laffi.training.cpu_steps import faster_steps

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.bfloat16)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    ids = torch.randint(3, 300, (2, 24))
    layers = [m for m in model.modules() if hasattr(m, "cast_input_dtype_enabled")]
    assert layers and all(p.dtype == torch.float32 for n, p in model.named_parameters() if "lora_" in n)

    def step(faster: bool):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16), faster_steps(model, autocast=faster):
            if faster:
                assert not any(m.cast_input_dtype_enabled for m in layers)  # PEFT's cast is off in the block
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain, faster = step(False), step(True)
    assert all(m.cast_input_dtype_enabled for m in layers)  # and back on after it
    assert torch.equal(plain[0], faster[0])
    assert plain[1].keys() == faster[1].keys() and len(plain[1]) > 4
    for name, grad in plain[1].items():
        assert torch.equal(grad, faster[1][name]), name


def test_lora_dropout_keeps_peft_casts(tiny_dir):
    """Dropout on a bfloat16 input rounds differently from PEFT's float32 dropout: the casts stay."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from laffi.training.cpu_steps import faster_steps

    base = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.bfloat16)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.05, target_modules="all-linear"))
    layers = [m for m in model.modules() if hasattr(m, "cast_input_dtype_enabled")]
    with faster_steps(model, autocast=True):
        assert layers and all(m.cast_input_dtype_enabled for m in layers)
