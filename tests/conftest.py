"""Shared fixtures: a tiny random Llama with two random LoRA adapters, built once per test session (no download)."""

import contextlib
import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_SQUAD = REPO.parent / "shared" / "data" / "squad_v2" / "dev-12-articles.json"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"  # screenshots for a person to look at (git-ignored)


@pytest.fixture(scope="session", autouse=True)
def float32_unless_asked():
    """Models load in float32 in the tests whatever this CPU offers, so that token-for-token comparisons mean the
    same on every machine; the precision choice itself is tested on its own (tests/test_precision.py), where the
    measured choice is called directly."""
    from laffi.inference import precision

    chosen = precision.Precision("float32", "float32: the test suite's default")
    real, env = precision.measured_cpu_precision, os.environ.get("LAFFI_DTYPE")
    precision.measured_cpu_precision = lambda: chosen
    os.environ.setdefault("LAFFI_DTYPE", "float32")  # the processes tests start (jobs, launches) too
    yield real
    precision.measured_cpu_precision = real
    if env is None:
        os.environ.pop("LAFFI_DTYPE", None)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    from laffi.inference.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_adapters(tiny_dir, tmp_path_factory) -> Path:
    from laffi.inference.tiny import build_tiny_adapter

    root = tmp_path_factory.mktemp("adapters")
    build_tiny_adapter(tiny_dir, root / "sft", seed=1)
    build_tiny_adapter(tiny_dir, root / "laffi", seed=2)
    return root


@pytest.fixture(scope="session")
def tiny_lm(tiny_dir, tiny_adapters):
    from laffi.inference.models import ModelConfig, load_model

    # float32 whatever the CPU: these tests compare tokens exactly across batch shapes
    return load_model(ModelConfig(base=str(tiny_dir), adapters_dir=str(tiny_adapters), dtype="float32",
                                  device="cpu"))  # the CPU path, also where a GPU is there (tests/test_gpu.py has that)


@pytest.fixture(scope="session")
def shared_squad() -> Path:
    if not SHARED_SQUAD.is_file():
        pytest.skip(f"the shared SQuAD file is absent ({SHARED_SQUAD}); these tests need ../shared beside the repo")
    return SHARED_SQUAD


def slow_answers(monkeypatch, seconds: float) -> None:
    """Every answer the app makes takes `seconds` longer (generation.generate_grid, looked up at call time)."""
    import time

    import laffi.inference.generation as generation

    real = generation.generate_grid
    monkeypatch.setattr(generation, "generate_grid", lambda *a, **k: time.sleep(seconds) or real(*a, **k))


def write_squad(path: Path, articles: list[dict]) -> Path:
    """Write a SQuAD v2 JSON file from [{"title", "paragraphs": [{"context", "qas": [...]}]}]."""
    import json

    path.write_text(json.dumps({"version": "v2.0", "data": articles}), encoding="utf-8")
    return path


def three_articles(small_squad: Path, path: Path) -> Path:
    """small_squad with a third article (Drun_port: one answerable question, one not) written to `path`."""
    import json

    data = json.loads(small_squad.read_text())["data"]
    ctx = "The port of Drun was founded in 1702 by fishermen from the north."
    data.append({"title": "Drun_port", "paragraphs": [{"context": ctx, "qas": [
        {"id": "q6", "question": "When was the port founded?", "is_impossible": False,
         "answers": [{"text": "1702", "answer_start": ctx.index("1702")}]},
        {"id": "q7", "question": "Who paved the port's roads?", "is_impossible": True, "answers": []}]}]})
    return write_squad(path, data)


@pytest.fixture
def small_squad(tmp_path) -> Path:
    """A SQuAD v2 file with passages written for these tests: two articles, answerable and unanswerable questions."""
    ctx1 = "The Velmar bridge opened in 1931. It carries trains across the Oska river to the port of Drun."
    ctx2 = "Ada Brill wrote three novels about the island of Pell, where she lived until 1960."
    return write_squad(tmp_path / "small.json", [
        {"title": "Velmar_bridge", "paragraphs": [{"context": ctx1, "qas": [
            {"id": "q1", "question": "When did the Velmar bridge open?", "is_impossible": False,
             "answers": [{"text": "1931", "answer_start": ctx1.index("1931")}]},
            {"id": "q2", "question": "What does the bridge carry?", "is_impossible": False,
             "answers": [{"text": "trains", "answer_start": ctx1.index("trains")}]},
            {"id": "q3", "question": "Who designed the bridge?", "is_impossible": True, "answers": []},
        ]}]},
        {"title": "Ada_Brill", "paragraphs": [{"context": ctx2, "qas": [
            {"id": "q4", "question": "How many novels did Ada Brill write?", "is_impossible": False,
             "answers": [{"text": "three", "answer_start": ctx2.index("three")}]},
            {"id": "q5", "question": "Where was Ada Brill born?", "is_impossible": True, "answers": []},
        ]}]},
    ])


def launch_app(root: Path, tiny_dir: Path, adapters: Path | None = None, lm=None, queue_size: int | None = None,
               **settings):
    """The app as the tests serve it: the tiny model with a copy of `adapters` as its shipped adapters (unless an
    `lm` is given), data and runs under `root`, Settings overrides as keywords; served on a free loopback port
    through laffi.ui.launch (the app's queue and CSS). Returns the demo (demo.local_url, demo.laffi_settings,
    demo.laffi_lm, demo.laffi_scheduler; demo.close() ends it)."""
    import shutil

    from laffi.inference.models import ModelConfig, load_model
    from laffi.settings import Settings
    from laffi.ui import build_app, launch

    if adapters is not None:
        shutil.copytree(adapters, root / "adapters")
    if lm is None:
        lm = load_model(ModelConfig(base=str(tiny_dir), adapters_dir=str(root / "adapters") if adapters else None))
    settings = Settings.from_env(data_dir=root / "data", runs_dir=root / "runs",
                                 **({"queue_size": queue_size} if queue_size else {}), **settings)
    app = build_app(lm=lm, settings=settings)
    launch(app, settings, server_port=None, prevent_thread_lock=True, quiet=True)
    demo = app.demo
    demo.laffi_settings, demo.laffi_lm, demo.laffi_scheduler = settings, lm, app.scheduler
    return demo


@contextlib.contextmanager
def served_app(root: Path, tiny_dir: Path | None, adapters: Path | None = None, **kwargs):
    """launch_app as a browser test's module fixture holds it: (the page's address, its settings), closed after."""
    demo = launch_app(root, tiny_dir, adapters, **kwargs)
    try:
        yield demo.local_url.rstrip("/"), demo.laffi_settings
    finally:
        demo.close()


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium driven by Playwright (no browser download), for the browser tests."""
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (make test installs it: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        yield b
        b.close()
