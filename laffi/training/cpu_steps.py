"""What makes a training step cheaper on a CPU without changing its maths: TRL's loss head on the labelled
positions only, and no float32 copy of every LoRA layer's input under bfloat16 autocast.

Usage:
    with faster_steps(trainer.model, autocast=args.bf16):    # train_adapter does this around trainer.train()
        trainer.train()

Why (profiled with torch.profiler: steps of the shipped recipe, packed, bfloat16 base, 2 cores):
- TRL's fused LM head projects only the positions whose label is not -100 where Triton runs it (CUDA, XPU); on
  any other device every position of the packed batch goes through the 49k-word output layer, forward and
  backward, and the backward accumulates in float32 (a float copy of every tile and weight chunk): 32 % of a
  step, for a loss that a few completion tokens per question carry. Compacting the rows first gives the same loss
  and gradients (a position without a label adds 0 to both): three steps 4.0 s instead of 5.4-5.7 s. TRL decides
  it through a name of `trl.trainer.utils`, which label_positions_only changes for CPUs only (a test fails if TRL
  stops consulting it); the kernels themselves are left as they are.
- PEFT casts each LoRA layer's input to its float32 weights' dtype, and autocast then casts it back to bfloat16
  for the product: two copies of every activation that change no value (bfloat16 -> float32 -> bfloat16 is
  exact). PEFT's own `disable_input_dtype_casting` skips the first while autocast runs: the same loss and
  gradient norm, three steps 3.05-3.09 s instead of 3.31-3.82 s. Only where no LoRA layer has dropout: dropout
  on the bfloat16 input would scale by a rounded 1/(1-p) and round again (a review measured a 7.5 % gradient
  difference at p 0.05), so a recipe with dropout (configs/dev12.yaml) keeps PEFT's casts.
"""

from __future__ import annotations

import contextlib


def label_positions_only() -> bool:
    """Make TRL's fused LM head project only labelled positions on CPUs (idempotent); whether it could."""
    try:
        import trl.trainer.utils as trl_utils
    except ImportError:  # no TRL: nothing to change
        return False
    decide = getattr(trl_utils, "_use_triton", None)
    if decide is None:
        return False
    if getattr(decide, "compacts_cpu_rows", False):
        return True

    def compact(device, _elsewhere=decide):
        return device.type == "cpu" or _elsewhere(device)

    compact.compacts_cpu_rows = True
    trl_utils._use_triton = compact
    return True


@contextlib.contextmanager
def faster_steps(model, autocast: bool):
    """Within the block: the loss head on labelled positions (label_positions_only) and, where autocast runs
    the products in bfloat16 (autocast=True) and no LoRA layer has dropout, LoRA inputs left in their dtype.
    Without autocast the casts stay (a bfloat16 input would meet float32 LoRA weights), and with dropout too."""
    import torch

    label_positions_only()
    dropouts = [d for m in model.modules() for d in getattr(m, "lora_dropout", {}).values()]
    if not autocast or any(not isinstance(d, torch.nn.Identity) and getattr(d, "p", 0) > 0 for d in dropouts):
        yield
        return
    from peft.helpers import disable_input_dtype_casting

    with disable_input_dtype_casting(model):
        yield
