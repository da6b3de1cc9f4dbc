"""The precision the frozen base weights are kept in, chosen by measuring the machine it runs on.

Usage:
    p = choose_precision("cpu")          # Precision(dtype="bfloat16", reason="...", measured={...}), once a process
    p = choose_precision("cpu", "float32")   # what --dtype / LAFFI_DTYPE asked for, with that as the reason
    p.dtype, p.reason, p.as_dict()       # the status line, `ask --json`, metrics.json and the bench say it

Why measured, not assumed: the machines this project runs on change CPU between sessions. A CPU with native
bfloat16 dot products (AVX512-BF16, AMX-BF16) runs this model's matrix products 2-3.5x faster in bfloat16 than in
float32, because it moves half the bytes and the bf16 units do twice the work per instruction; a CPU without them
emulates bfloat16 and is slower than float32. So bfloat16 is chosen only where /proc/cpuinfo names a native unit
AND a short timing of the model's own shapes (a 576 x 1536 layer over 512 rows, ~0.3 s) shows it faster. LoRA
weights, their gradients and the optimiser state stay float32 whatever this says (PEFT keeps adapters in float32).
On CUDA nothing changes: bfloat16 where the GPU supports it, else float16.
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of CPUs that compute bf16 dot products
MIN_SPEEDUP = 1.5  # bfloat16 must beat float32 by this much on the probe: below it, its rounding is not worth it
PROBE_SHAPE = (512, 576, 1536)  # rows x in x out: SmolLM2-135M's MLP layer over a prompt's tokens


@dataclass(frozen=True)
class Precision:
    """The dtype the base weights are kept in, and why (one sentence a user can read)."""

    dtype: str  # "float32", "bfloat16" or "float16"
    reason: str
    measured: dict = field(default_factory=dict)  # cpu, native flags, probe GFLOP/s in each precision

    def as_dict(self) -> dict:
        return asdict(self)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ('unknown' elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def native_bf16_flags(cpuinfo: str | None = None) -> list[str]:
    """Which of NATIVE_BF16_FLAGS this CPU has (from /proc/cpuinfo, or the text given)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags |= set(line.split(":", 1)[1].split())
    return [f for f in NATIVE_BF16_FLAGS if f in flags]


def matmul_rate(dtype: str, shape: tuple[int, int, int] = PROBE_SHAPE, repeats: int = 5) -> float:
    """GFLOP/s of one linear layer of `shape` (rows, in, out) in `dtype` on this CPU: the best of `repeats`
    timings after a warm-up call (the first call of a shape builds oneDNN's kernel)."""
    import torch

    rows, n_in, n_out = shape
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(rows, n_in, generator=gen).to(getattr(torch, dtype))
    w = torch.randn(n_out, n_in, generator=gen).to(getattr(torch, dtype))
    best = float("inf")
    with torch.no_grad():
        torch.nn.functional.linear(x, w)
        for _ in range(repeats):
            start = time.perf_counter()
            torch.nn.functional.linear(x, w)
            best = min(best, time.perf_counter() - start)
    return 2 * rows * n_in * n_out / best / 1e9


def cpu_precision() -> Precision:
    """bfloat16 where this CPU computes it natively and the probe shows it faster; float32 otherwise."""
    flags, cpu = native_bf16_flags(), cpu_model()
    measured = {"cpu": cpu, "native_bf16": flags}
    if not flags:
        return Precision("float32", f"float32: this CPU ({cpu}) has no native bfloat16 unit "
                                    f"({' or '.join(NATIVE_BF16_FLAGS)}), where bfloat16 would be emulated", measured)
    fp32, bf16 = matmul_rate("float32"), matmul_rate("bfloat16")
    measured.update(fp32_gflops=round(fp32, 1), bf16_gflops=round(bf16, 1), speedup=round(bf16 / fp32, 2))
    if bf16 < MIN_SPEEDUP * fp32:
        return Precision("float32", f"float32: this CPU ({cpu}) has {', '.join(flags)}, but bfloat16 matrix products "
                                    f"measured only {bf16 / fp32:.1f}x float32's speed here", measured)
    return Precision("bfloat16", f"bfloat16: this CPU ({cpu}, {', '.join(flags)}) runs the model's matrix products "
                                 f"{bf16 / fp32:.1f}x faster in bfloat16 than in float32 (measured at start)", measured)


@functools.cache
def measured_cpu_precision() -> Precision:
    """cpu_precision, measured once per process (every model load of the process reuses it)."""
    return cpu_precision()


def choose_precision(device: str, asked: str = "auto") -> Precision:
    """The precision for a model on `device` ("cpu", "cuda", "cuda:N"): `asked` unless it is "auto"."""
    if asked != "auto":
        return Precision(asked, f"{asked}: asked for (--dtype / LAFFI_DTYPE)")
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_bf16_supported():
            return Precision("bfloat16", "bfloat16: the GPU supports it (the usual precision on a GPU)")
        return Precision("float16", "float16: the GPU has no bfloat16")
    return measured_cpu_precision()


def guard_verdict(record: dict) -> bool | None:
    """A quality guard record's verdict (True: bfloat16's answers are float32's within the limits)."""
    passed = record.get("passed")
    return passed if isinstance(passed, bool) else None


def guarded(precision: Precision, records: dict[str, dict]) -> Precision:
    """`precision`, or float32 where bfloat16 failed the quality guard (laffi.bench.work.quality_guard) for one of
    the variants in `records` ({variant: guard record}); the reason then names the variant and the drop."""
    if precision.dtype != "bfloat16":
        return precision
    failed = {v: r for v, r in records.items() if guard_verdict(r) is False}
    checked = sorted(v for v, r in records.items() if guard_verdict(r))
    measured = dict(precision.measured, guard={v: guard_verdict(r) for v, r in records.items()})
    if failed:
        name, record = sorted(failed.items())[0]
        return Precision("float32", f"float32: bfloat16 would be faster here, but its answers failed the quality "
                                    f"guard for {name} ({record.get('summary', 'see its precision_guard.json')})",
                         measured)
    note = f"; the quality guard passed for {', '.join(checked)}" if checked else "; no variant's quality guard ran yet"
    return Precision(precision.dtype, precision.reason + note, measured)
