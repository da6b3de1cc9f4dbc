"""TRL's chunked loss head on the positions that have a label only, on a CPU too.

Usage:
    label_positions_only()     # once per process, before an SFTTrainer trains (train_adapter calls it)

Why (profiled: steps of the shipped recipe, packed, bfloat16, 2 cores): TRL's fused LM head projects the
positions whose label is not -100 only where Triton runs it (CUDA, XPU); on any other device every position of
the packed batch goes through the 49k-word output layer, forward and backward, and the backward accumulates in
float32 (a float copy of every tile and weight chunk): 32 % of a step, for a loss that a few completion tokens
per question carry. Compacting the rows first computes the same loss and gradients (a position without a label
adds 0 to both); measured, three steps took 4.0 s instead of 5.4-5.7 s, with the same logged loss. TRL decides
it in `trl.trainer.utils`, through a name of that module that this changes for CPUs only (the test fails if TRL
stops consulting it), and the kernels themselves are left as they are.
"""

from __future__ import annotations


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
