"""Error bars for evaluation numbers: percentile bootstrap over questions, paired differences, balanced verdicts.

Usage:
    mean, lo, hi = bootstrap_ci([1.0, 0.0, 0.5, ...])             # 95 % interval of a mean (in the values' units)
    diff, lo, hi = paired_diff_ci(f1_laffi, f1_sft)                  # the same questions, resampled together
    balanced_verdict_accuracy(draft_right, called_correct)           # mean of the two per-class recalls
    wilson_interval(17, 20)                                          # 95 % interval of a proportion, in %
    verdict(diff, lo, hi)                                            # "better" / "worse" / "no difference"

Why a bootstrap over questions: a 200-question F1 moves by several points from one sample to the next, so a
difference between variants means something only when its interval leaves zero. Differences are bootstrapped
*paired* (both variants on the same resampled questions), which is what a reader wants to know: would this
ordering hold on other questions like these? Seeds are averaged per question first (seed_mean), so the interval
covers the question sample; the spread between seeds is reported beside it.
"""

from __future__ import annotations

from collections.abc import Sequence

N_BOOT = 2000
ALPHA = 0.05


def _resampled_means(values, n_boot: int, seed: int):
    import numpy as np

    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return None
    idx = np.random.default_rng(seed).integers(0, x.size, size=(n_boot, x.size))
    return x[idx].mean(axis=1)


def bootstrap_ci(values: Sequence[float], n_boot: int = N_BOOT, seed: int = 0,
                 alpha: float = ALPHA) -> tuple[float, float, float] | None:
    """(mean, low, high): the mean and its (1 - alpha) percentile-bootstrap interval; None for no values."""
    import numpy as np

    means = _resampled_means(values, n_boot, seed)
    if means is None:
        return None
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(np.mean(values)), float(lo), float(hi)


def paired_diff_ci(a: Sequence[float], b: Sequence[float], n_boot: int = N_BOOT, seed: int = 0,
                   alpha: float = ALPHA) -> tuple[float, float, float] | None:
    """(mean of a - b, low, high) over the same questions resampled together."""
    if len(a) != len(b):
        raise ValueError("paired_diff_ci needs one value per question on both sides")
    return bootstrap_ci([x - y for x, y in zip(a, b)], n_boot, seed, alpha)


def verdict(diff: float, lo: float, hi: float, words: tuple[str, str] = ("better", "worse")) -> str:
    """How to read a difference with its interval: only an interval that leaves zero is a difference. `words`
    name the two directions (("more", "fewer") for a rate that is neither good nor bad, like abstaining)."""
    if lo > 0:
        return words[0]
    if hi < 0:
        return words[1]
    return "no difference"


def balanced_verdict_accuracy(draft_right: Sequence[bool], called_correct: Sequence[bool | None]) -> float | None:
    """Mean of (share of right drafts called correct) and (share of wrong drafts not called correct), in %.
    Raw agreement can be gamed by always saying "Incorrect" when most drafts are wrong; this cannot (chance is 50).
    None when every draft is right or every draft is wrong (one of the two shares is undefined)."""
    right = [bool(c) for r, c in zip(draft_right, called_correct) if r]
    wrong = [not c for r, c in zip(draft_right, called_correct) if not r]
    if not right or not wrong:
        return None
    return 100.0 * (sum(right) / len(right) + sum(wrong) / len(wrong)) / 2


def balanced_accuracy_ci(draft_right: Sequence[bool], called_correct: Sequence[bool], n_boot: int = N_BOOT,
                         seed: int = 0, alpha: float = ALPHA) -> tuple[float, float] | None:
    """(low, high) in %: percentile-bootstrap interval of balanced_verdict_accuracy, questions resampled (a
    resample missing right or wrong drafts is skipped). None when the accuracy itself is undefined."""
    import numpy as np

    r = np.asarray(draft_right, dtype=bool)
    c = np.asarray(called_correct, dtype=bool)
    if r.size == 0 or r.all() or not r.any():
        return None
    idx = np.random.default_rng(seed).integers(0, r.size, size=(n_boot, r.size))
    rr, cc = r[idx], c[idx]
    n_right, n_wrong = rr.sum(axis=1), (~rr).sum(axis=1)
    ok = (n_right > 0) & (n_wrong > 0)
    tpr = (rr & cc).sum(axis=1)[ok] / n_right[ok]
    tnr = (~rr & ~cc).sum(axis=1)[ok] / n_wrong[ok]
    lo, hi = np.quantile(100.0 * (tpr + tnr) / 2, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float] | None:
    """(low, high) in %: the Wilson score interval of a proportion (95 % for the default z). Unlike the normal
    approximation it stays inside 0-100 and is not zero-width at 0 or n of n, which small live counts (a room's
    first ratings) often are. None for n = 0."""
    if n <= 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5 / (1 + z * z / n)
    return 100.0 * max(0.0, centre - half), 100.0 * min(1.0, centre + half)


def seed_mean(per_seed: Sequence[Sequence[float]]) -> list[float]:
    """Per-question mean over seeds (every seed scored on the same questions, in the same order)."""
    if len({len(s) for s in per_seed}) != 1:
        raise ValueError("every seed must be scored on the same questions")
    return [sum(vals) / len(vals) for vals in zip(*per_seed)]


def with_ci(values: Sequence[float], scale: float = 100.0, seed: int = 0) -> dict | None:
    """{"mean", "lo", "hi"} in percent (values are 0/1 or 0-1 per question), rounded for reports."""
    ci = bootstrap_ci(values, seed=seed)
    if ci is None:
        return None
    return {k: round(scale * v, 2) for k, v in zip(("mean", "lo", "hi"), ci)}
