"""ZeroGPU support without a GPU: laffi.serving.gpu wraps in spaces.GPU only where `spaces` is installed, with a duration
from the work, and hands back host data that crosses a process boundary (pickled, as ZeroGPU does); training is
off on ZeroGPU, with the reason, and stays as it was on a Space with a dedicated GPU."""

import dataclasses
import pickle
from collections import namedtuple

import numpy as np
import pytest

import laffi.serving.gpu as gpu
from laffi.settings import ZERO_GPU_TRAINING, Settings


class FakeSpaces:
    """spaces.GPU as ZeroGPU runs it, minus the GPU: duration asked with the call's arguments, arguments and
    result pickled (a forked worker's queues)."""

    def __init__(self):
        self.calls = []

    def GPU(self, duration=None, size=None):  # noqa: N802  (the real name)
        def wrap(fn):
            def run(*args, **kwargs):
                seconds = duration(*args, **kwargs) if callable(duration) else duration
                self.calls.append((fn.__name__, seconds, size))
                args, kwargs = pickle.loads(pickle.dumps((args, kwargs)))
                return pickle.loads(pickle.dumps(fn(*args, **kwargs)))
            return run
        return wrap


@pytest.fixture
def fake_spaces(monkeypatch):
    fake = FakeSpaces()
    monkeypatch.setattr(gpu, "SPACES", fake)
    return fake


@dataclasses.dataclass(frozen=True)
class Frozen:
    name: str
    values: object


def test_to_host_turns_every_tensor_into_numpy():
    import torch

    Pair = namedtuple("Pair", "a b")
    value = {"x": torch.ones(2), "rows": [Frozen("f", torch.zeros(1, 2)), ("t", torch.arange(3))],
             "pair": Pair(torch.ones(1), "text"), "plain": "keep", "array": np.ones(2)}
    out = gpu.to_host(value)
    assert isinstance(out["x"], np.ndarray) and out["x"].tolist() == [1.0, 1.0]
    assert isinstance(out["rows"][0], Frozen) and isinstance(out["rows"][0].values, np.ndarray)
    assert isinstance(out["rows"][1], tuple) and out["rows"][1][1].tolist() == [0, 1, 2]
    assert isinstance(out["pair"], Pair) and isinstance(out["pair"].a, np.ndarray)
    assert out["plain"] == "keep" and out["array"] is value["array"]
    same = Frozen("n", "no tensor")
    assert gpu.to_host(same) is same


def test_without_spaces_nothing_is_wrapped(monkeypatch):
    import torch

    monkeypatch.setattr(gpu, "SPACES", None)

    @gpu.gpu_task(duration=30)
    def work(n):
        return {"t": torch.ones(n)}

    @gpu.gpu_task()
    def stream(n):
        yield torch.ones(n)
        yield "done"

    assert work.__name__ == "work" and work(2)["t"].tolist() == [1.0, 1.0]
    assert [type(x) for x in stream(1)] == [np.ndarray, str]


def test_with_spaces_the_duration_comes_from_the_work(fake_spaces):
    task = gpu.on_gpu(lambda rows, tokens: ["a"] * rows,
                      duration=lambda rows, tokens: gpu.generation_seconds(rows, tokens))
    assert task(3, 32) == ["a", "a", "a"]
    assert task(64, 1024) == ["a"] * 64
    (_, short, _), (_, long, _) = fake_spaces.calls
    assert gpu.MIN_SECONDS <= short < long <= gpu.MAX_SECONDS
    gpu.gpu_task(duration=lambda: 10_000, size="xlarge")(lambda: 1)()
    assert fake_spaces.calls[-1][1:] == (gpu.MAX_SECONDS, "xlarge")  # a runaway estimate is capped


def test_generation_seconds_grow_with_the_work():
    assert gpu.generation_seconds(1, 1) == gpu.MIN_SECONDS
    assert gpu.generation_seconds(6, 32) <= gpu.generation_seconds(6, 256) <= gpu.generation_seconds(40, 256)
    assert gpu.generation_seconds(10_000, 1024) == gpu.MAX_SECONDS
    assert gpu.MIN_SECONDS <= gpu.attention_seconds(2) <= gpu.MAX_SECONDS


def test_ask_and_attention_cross_the_zerogpu_boundary(tiny_lm, fake_spaces):
    """The app's model calls (laffi.serving.model_calls), as ZeroGPU runs them: plain arguments in, host data out,
    both pickled; the same answers as the plain calls."""
    from laffi.inference.attention import AttentionView
    from laffi.inference.generation import GenerationConfig, answer_questions
    from laffi.inference.selffeedback import answer_all, answer_paths
    from laffi.serving.model_calls import ModelCalls

    lm = tiny_lm
    calls = ModelCalls.wrap(lm)
    pairs, cfg = [("The bridge opened in 1931.", "When did it open?")], GenerationConfig(max_new_tokens=4)
    direct = calls.answer(pairs, lm.variants, cfg)
    # where a real GPU is there, the fake ZeroGPU call runs on it: the same tokens, probabilities to rounding (on a
    # CPU-only machine exactly equal)
    assert same(direct, answer_questions(lm, pairs, lm.variants, cfg))
    paths = answer_paths(lm, lm.variants)
    results = calls.answer_all(pairs, lm.variants, cfg, paths, direct)
    assert same(results, answer_all(lm, pairs, lm.variants, cfg, feedback=True, paths=paths, direct=direct))
    assert results["sft"][0].feedback is not None
    view = calls.attention(pairs[0][0], pairs[0][1], direct["sft"][0].text, "sft")
    assert isinstance(view, AttentionView) and isinstance(view.heat, np.ndarray)
    names = [c[0] for c in fake_spaces.calls]
    assert names == ["answer", "answer_with_feedback", "attention"]
    seconds = [c[1] for c in fake_spaces.calls]
    assert all(gpu.MIN_SECONDS <= t <= gpu.MAX_SECONDS for t in seconds) and seconds[1] >= seconds[0]


def test_training_is_off_on_zerogpu_with_the_reason():
    zero = Settings.from_env({"SPACE_ID": "me/laffi", "SPACES_ZERO_GPU": "true", "LAFFI_ENABLE_TRAINING": "1"})
    assert zero.zero_gpu and not zero.enable_training
    assert zero.training_off_reason == ZERO_GPU_TRAINING and "ZeroGPU" in ZERO_GPU_TRAINING
    assert zero.model_kwargs()["device"] == "cuda"  # placed on (emulated) CUDA at start-up, as ZeroGPU asks
    dedicated = Settings.from_env({"SPACE_ID": "me/laffi", "LAFFI_ENABLE_TRAINING": "1"})
    assert dedicated.enable_training and dedicated.training_off_reason is None and not dedicated.zero_gpu
    assert "device" not in dedicated.model_kwargs()
    assert not Settings.from_env({"SPACE_ID": "me/laffi"}).enable_training  # a Space: off unless turned on
    # set by the platform, so a value we don't know is "not ZeroGPU" rather than an error that stops the app
    assert not Settings.from_env({"SPACES_ZERO_GPU": "maybe"}).zero_gpu


def test_gpu_module_imports_no_torch():
    """`import laffi.serving.gpu` must stay cheap and must not touch CUDA: it comes first in app.py."""
    import subprocess
    import sys

    code = "import sys, laffi.serving.gpu; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr



def same(a, b) -> bool:
    """Equal in every text, token and structure; floats (no-answer probabilities, scores) to float rounding."""
    import dataclasses
    import math

    if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b):
        return type(a) is type(b) and same(dataclasses.asdict(a), dataclasses.asdict(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-9)
    return a == b
