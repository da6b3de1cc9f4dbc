"""CPU inference kernels: linear layers whose cost stays flat as rows are added, and an allocator that keeps memory.

Usage:
    installed = use_onednn_linears(model)   # float32/bfloat16 nn.Linear layers on the CPU: oneDNN under no_grad
    keep_freed_memory()                      # glibc: stop handing big freed blocks back to the OS after every op
    use_packed_gqa_decoding(model)           # one-token queries always take SDPA's packed grouped-query path
    float32_logits(model)                    # a bfloat16 model's output layer computes its logits in float32

Why: decoding one token of a 135M model is a chain of matrix-vector products. PyTorch sends float32 products to
MKL, whose small-batch path on the bench machine costs ~3x more for 3 rows than for 1 (the 49k-word output layer:
11.4 vs 39.0 ms), so a batch of variants barely beat running them one after another. oneDNN's kernels read each
weight once for all rows (output layer: 5.5 vs 7.8 ms; a whole decoding step for 3 rows 1.16x one row, see the
README's Performance section). Results keep the layer's dtype (float32 or bfloat16); only the summation order
differs (float32 outputs agree to ~1e-6 relative; bfloat16's are those of torch's own bfloat16 path, which is
oneDNN too; the bench's quality guard compares both with float32). Training is untouched: with gradients
enabled every layer takes torch's usual path.

glibc returns any freed block above 128 KB to the OS at once, so each activation tensor of a prompt's prefill is
a fresh mmap whose pages fault in again (~3x the cost of the SiLU itself on the bench). Raising the thresholds keeps
that memory in the process for reuse; it is what jemalloc/tcmalloc users get from LD_PRELOAD, without the preload.

A decoding step's attention has one query per row. transformers' SDPA gives it to torch either packed (the 3
query heads sharing a key head as 3 rows of one head: a plain attention) or, when the batch needs no mask (every
row as long as the others), with `enable_gqa`, which torch's CPU flash kernel runs 5x slower in bfloat16 (431 vs
88 us a layer for 3 rows of 225 tokens here; float32 is level). Which path a step took depended on whether the
rows happened to be padded, so a batch whose padding went away (finished rows leaving) also changed kernels and
summation order mid-answer; now every one-token query takes the packed path.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import types
import weakref

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h
_MMAP_THRESHOLD_MAX = 32 << 20  # glibc's ceiling on 64-bit (HEAP_MAX_SIZE / 2)


def _onednn_linear():
    """torch's oneDNN linear op when this build and CPU can run it (x86 with AVX2 or better), else None."""
    import torch

    op = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    if op is None or not torch.backends.mkldnn.is_available():
        return None
    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512", "AVX512_BF16", "AMX", "AVX512_VNNI"):
        return None  # ARM and older x86: MKL/OpenBLAS are the better-tested path there
    return op


_PACKED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # layer -> (weight ref, its version, packed)


def packed_weight(module, w):
    """The layer's weight in oneDNN's own blocked layout, made on its first inference call and again whenever the
    weight tensor is replaced or changed in place through autograd's view of it (its version counter moved; a
    write through `.data` is not seen, and nothing here writes so); the plain weight where this torch cannot
    reorder. Why: given a plain weight, the op re-lays it out on every call; measured on
    2 cores, 3 rows through a 576x1536 layer took 194 us plain and 87 us packed (1 row: 79 and 77), the 49k-word
    output layer 11.6 and 8.5 ms; a whole decoding step of the embedded model for 3 rows 168-185 ms plain and
    137-139 packed, for 12 rows 212-234 and 150-155, for 24 rows level, for 1 row 8 ms slower (so one row keeps
    the plain weight). It costs a second copy of the weights in memory, for inference only."""
    import torch

    reorder = getattr(torch.ops.mkldnn, "_reorder_linear_weight", None)
    if reorder is None:
        return w
    kept = _PACKED.get(module)
    if kept is None or kept[0]() is not w or kept[1] != w._version:
        try:
            packed = reorder(w.detach())
        except RuntimeError:
            packed = w
        kept = _PACKED[module] = (weakref.ref(w), w._version, packed)
    return kept[2]


def onednn_linear(op, module, x, w, bias):
    """x @ w.T + bias through the oneDNN op with `module`'s packed weight (one float32 row: the plain layout,
    measured as fast or faster), or torch's own path where there is no op, the shape is not 2-D/3-D or the op
    refuses it (the same answer). bfloat16 gains at every row count: a whole model's layers for 1, 3 and 12 rows
    took 26.8, 30.1 and 35.3 ms through F.linear and 19.8, 18.6 and 19.0 packed (AMD EPYC with avx512_bf16, 2
    cores), with identical results."""
    import torch
    import torch.nn.functional as F

    if op is not None and x.dim() in (2, 3):
        plain = w.dtype == torch.float32 and x.numel() == x.shape[-1]
        try:
            return op(x, w if plain else packed_weight(module, w), bias, "none", [], "")
        except RuntimeError:
            pass
    return F.linear(x, w, bias)


def _forward(op, dtypes: tuple):
    import torch
    import torch.nn.functional as F

    def forward(self, x):
        w = self.weight
        if (not torch.is_grad_enabled() and x.dtype == w.dtype and w.dtype in dtypes
                and x.device.type == "cpu" and w.device.type == "cpu"):
            return onednn_linear(op, self, x, w, self.bias)
        return F.linear(x, w, self.bias)

    return forward


def use_onednn_linears(model) -> int:
    """Route the model's float32 and bfloat16 CPU nn.Linear layers through oneDNN during inference; returns how
    many.

    A layer keeps torch's path whenever gradients are on, or its input and weight are not both float32 (or both
    bfloat16) on the CPU, so calling this on a model that will be trained, moved or cast is safe. Nothing happens
    (0) when the op is missing or disagrees with torch on a probe input; bfloat16 stays on torch's path where its
    probe disagrees or fails.
    """
    import torch

    op = _onednn_linear()
    if op is None or not _agrees(op, torch.float32):
        return 0
    from laffi.inference.precision import native_bf16_flags

    # bfloat16 only where the CPU computes it natively: the gain was measured there, not on emulated bfloat16
    bf16 = bool(native_bf16_flags()) and _agrees(op, torch.bfloat16)
    forward = _forward(op, (torch.float32, torch.bfloat16) if bf16 else (torch.float32,))
    count = 0
    for module in model.modules():
        if type(module) is torch.nn.Linear and not routed(module):
            module.forward = types.MethodType(forward, module)
            count += 1
    return count


def float32_logits(model) -> bool:
    """Give a half-precision CPU model's output layer a float32 copy of its weight, used for the logits whenever
    gradients are off (answers, candidate scores, P(abstain)); training keeps the layer as it was. Returns
    whether it did.

    Why (measured: 100 validation questions, the shipped adapters, AMD EPYC with avx512_bf16): with bfloat16
    logits, 12 of sft's and laffi's 100 answer spans differed from float32's and P(abstain) moved by 0.008-0.011
    on average; with float32 logits from the same bfloat16 hidden states, 7-8 spans and 0.005. Greedy decoding
    and the abstention threshold both read near-ties of these 49k logits, which bfloat16's 8-bit mantissa breaks
    arbitrarily. It costs one float32 read of the 49k x 576 layer per step (~11 % of an evaluation's time) and
    its copy in memory."""
    import torch

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    weight = getattr(head, "weight", None)
    if not isinstance(head, torch.nn.Linear) or weight is None or weight.device.type != "cpu" or \
            weight.dtype not in (torch.bfloat16, torch.float16) or "weight_float32" in dict(head.named_buffers()):
        return False
    head.register_buffer("weight_float32", weight.detach().float().clone(), persistent=False)
    op, plain = _onednn_linear(), head.forward
    bias = None if head.bias is None else head.bias.detach().float()

    def forward(self, x):
        if torch.is_grad_enabled():
            return plain(x)
        return onednn_linear(op, self, x.float(), self.weight_float32, bias)

    head.forward = types.MethodType(forward, head)
    return True


def routed(module) -> bool:
    """Whether use_onednn_linears gave this module its forward (an instance attribute over nn.Linear's)."""
    return "forward" in vars(module)


def _agrees(op, dtype) -> bool:
    """One probe: the oneDNN op, plain and with a packed weight, gives torch's answer in this dtype (guards
    against a build or CPU where it misbehaves); to float32's rounding, or to bfloat16's."""
    import torch

    gen = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(*shape, generator=gen).to(dtype) for shape in ((3, 5, 64), (96, 64), (96,)))
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    try:
        with torch.no_grad():
            want = torch.nn.functional.linear(x, w, b).float()
            reorder = getattr(torch.ops.mkldnn, "_reorder_linear_weight", None)
            weights = [w] + ([reorder(w)] if reorder is not None else [])
            return all(torch.allclose(op(x, v, b, "none", [], "").float(), want, rtol=tol, atol=tol)
                       for v in weights)
    except RuntimeError:
        return False


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks (up to 32 MB each) for reuse; False where there is no glibc or the user
    already tuned it through MALLOC_* environment variables (theirs win)."""
    if any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    name = ctypes.util.find_library("c")
    if not name or "libc" not in name:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
                    and libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30))
    except (OSError, AttributeError):  # musl or another libc without mallopt
        return False


PACKED_GQA = "laffi_sdpa"  # the attention implementation's registered name (transformers' AttentionInterface)


def sdpa_packed_gqa(module, query, key, value, attention_mask, **kwargs):
    """transformers' SDPA attention, except that one-token queries without a mask get an all-true one, which
    sends them down its packed grouped-query path (see the module docstring); the result is the same attention."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if attention_mask is None and query.shape[2] == 1 and getattr(module, "num_key_value_groups", 1) > 1:
        attention_mask = torch.ones((1, 1, 1, key.shape[2]), dtype=torch.bool, device=query.device)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def use_packed_gqa_decoding(model) -> bool:
    """Give a model that attends with SDPA the packed path for one-token queries (sdpa_packed_gqa, with SDPA's
    own masks); other implementations (eager, flash, a quantised model's) are left as they are."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return False
    AttentionInterface.register(PACKED_GQA, sdpa_packed_gqa)
    AttentionMaskInterface.register(PACKED_GQA, sdpa_mask)
    model.set_attn_implementation(PACKED_GQA)
    return True
