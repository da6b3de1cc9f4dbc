"""Several LoRA adapters in one batch at the cost of one extra pair of small matmuls per layer.

Usage:
    fused = FusedLora.build(peft_model, ["sft", "laffi"])   # None when an adapter uses a feature we don't fuse
    with fused.rows(["__base__", "sft", "laffi"]):           # one adapter name per batch row
        peft_model.generate(...)

Why: PEFT's mixed batches (`adapter_names=`) loop over the adapters in every LoRA layer, gathering each
adapter's rows, running its two matmuls and scattering the result back: 4 small kernels per adapter per layer
per decoding step. On a CPU those small kernels, not the weights, dominate a 135M model's step. Here every
layer's adapters are stacked once - A_cat = [A_1; A_2; ...], B_cat = [s_1 B_1, s_2 B_2, ...] - and a row mask
keeps each row's own block of the rank dimension:

    y = W x + B_cat ((A_cat x) * mask_row)        mask_row = 1 on the row's adapter block, 0 elsewhere

which equals base + that row's LoRA exactly (the other blocks contribute exact zeros) with two matmuls and a
multiply, however many adapters there are. Base rows have an all-zero mask. The LoRA maths runs in float32
whatever the base model's dtype (PEFT keeps adapter weights in float32 by default too), and the result is cast
back to the layer's output dtype.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

PEFT_BASE = "__base__"  # PEFT's name for "no adapter" in adapter_names


@dataclass
class _Pack:
    a: "torch.Tensor"  # (R, in): every adapter's A stacked on the rank axis
    b: "torch.Tensor"  # (out, R): every adapter's B times its scaling
    layout: tuple  # ((name, start, end), ...) blocks of the rank axis


class FusedLora:
    """Stacked LoRA weights for one set of adapters, applied by forward hooks while PEFT's own LoRA is disabled."""

    def __init__(self, model, packs: dict):
        self.model = model
        self.packs = packs
        self.names = {name for pack in packs.values() for name, _, _ in pack.layout}

    @classmethod
    def build(cls, model, adapter_names: list[str]):
        """Stack the named adapters of a PeftModel; None if any layer needs something this path does not do."""
        import torch
        from peft.tuners.lora import Linear as LoraLinear
        from peft.tuners.lora import LoraLayer

        packs = {}
        for module in model.modules():
            if not isinstance(module, LoraLayer):
                continue
            present = [n for n in adapter_names if n in module.lora_A]
            if not present:
                continue
            if (not isinstance(module, LoraLinear) or module.fan_in_fan_out or module.merged
                    or any(n in getattr(module, "lora_variant", {}) for n in present)  # DoRA, aLoRA, ...
                    or any(getattr(module, "lora_bias", {}).get(n) for n in present)):
                return None
            a_parts, b_parts, layout, start = [], [], [], 0
            for n in present:
                a = module.lora_A[n].weight
                b = module.lora_B[n].weight
                a_parts.append(a)
                b_parts.append(b * module.scaling[n])
                layout.append((n, start, start + a.shape[0]))
                start += a.shape[0]
            with torch.no_grad():
                packs[module] = _Pack(torch.cat(a_parts).float().contiguous(),
                                      torch.cat(b_parts, dim=1).float().contiguous(), tuple(layout))
        return cls(model, packs)

    def _masks(self, row_names: list[str]) -> dict:
        """One (rows, R) 0/1 mask per distinct rank layout (usually one for the whole model)."""
        import torch

        masks = {}
        for pack in self.packs.values():
            if pack.layout in masks:
                continue
            mask = torch.zeros(len(row_names), pack.a.shape[0], dtype=pack.a.dtype, device=pack.a.device)
            for name, start, end in pack.layout:
                rows = [i for i, r in enumerate(row_names) if r == name]
                if rows:
                    mask[rows, start:end] = 1
            masks[pack.layout] = mask
        return masks

    @contextlib.contextmanager
    def rows(self, row_names: list[str]):
        """Within this block, model calls give batch row i the adapter row_names[i] ("__base__" = none)."""
        unknown = sorted({n for n in row_names if n != PEFT_BASE} - self.names)
        if unknown:
            raise ValueError(f"adapters not in this fused set: {unknown}")
        masks = self._masks(row_names)
        handles = []

        def make_hook(pack, mask):
            def hook(module, args, output):
                x = args[0]
                h = x.to(pack.a.dtype) @ pack.a.T
                h = h * mask.view(mask.shape[0], *([1] * (h.dim() - 2)), mask.shape[1])
                return output + (h @ pack.b.T).to(output.dtype)
            return hook

        try:
            for module, pack in self.packs.items():
                handles.append(module.register_forward_hook(make_hook(pack, masks[pack.layout])))
            with self.model.disable_adapter():  # PEFT's LoRA off: the hooks add it instead
                yield
        finally:
            for handle in handles:
                handle.remove()
