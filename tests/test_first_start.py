"""A first start on a new machine: nothing cached (an empty HOME and LAFFI_CACHE, each a fresh folder), so the
embedded GGUF has never been converted. `python app.py` must serve its page at once and answer the first Ask with
every shipped variant once the conversion and load are done; the CLI's first `ask` must convert and answer too.
Marked slow: each converts the real embedded model (~20 s) and loads it."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
PASSAGE = ("The Halvard lighthouse stands on a granite islet off the town of Nesby. It was lit in 1874, and its "
           "lamp was converted from paraffin to electricity in 1952.")


@pytest.fixture
def new_machine(tmp_path) -> dict:
    """The environment of a machine that never ran laffi: HOME and LAFFI_CACHE empty, data in a fresh folder."""
    (tmp_path / "home").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAFFI_", "HF_", "GRADIO_"))}
    env.update(HOME=str(tmp_path / "home"), LAFFI_CACHE=str(tmp_path / "cache"), LAFFI_DATA_DIR=str(tmp_path / "data"),
               HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shipped_variants() -> list[str]:
    return ["base", *sorted(p.name for p in (REPO / "adapters").iterdir() if (p / "adapter_config.json").is_file())]


def test_app_py_serves_its_page_at_once_and_answers_on_a_machine_with_nothing_cached(new_machine, tmp_path):
    from gradio_client import Client

    port = free_port()
    log = open(tmp_path / "app.log", "w")
    app = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=REPO, env=new_machine,
                           stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        started, served = time.monotonic(), None
        while time.monotonic() - started < 60 and app.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=5) as page:
                    served = page.status
                    break
            except OSError:
                time.sleep(0.5)
        assert served == 200, f"no page within 60 s (exit code {app.poll()}): " + (tmp_path / "app.log").read_text()
        client = Client(url, verbose=False)
        result = client.submit(passage=PASSAGE, question="When was the lighthouse lit?",
                               api_name="/ask").result(timeout=300)[-2]
        assert result["phase"] == "done"
        assert sorted(result["variants"]) == sorted(shipped_variants())
        rows = result["variants"].values()
        assert all(isinstance(row["answer"], str) and row.get("feedback") for row in rows), result["variants"]
        assert any("1874" in row["answer"] for row in rows), result["variants"]  # "" is a variant's "no answer"
        assert list((tmp_path / "cache").glob("models/*/config.json"))  # converted into LAFFI_CACHE, nowhere else
        assert not (tmp_path / "home" / ".cache" / "laffi").exists()
    finally:
        app.terminate()
        try:
            app.wait(timeout=30)
        except subprocess.TimeoutExpired:
            app.kill()
        log.close()


def test_the_cli_asks_on_a_machine_with_nothing_cached(new_machine, tmp_path):
    done = subprocess.run([sys.executable, "-m", "laffi", "ask", "--context", PASSAGE, "--question",
                           "When was the lighthouse lit?", "--json"], cwd=REPO, env=new_machine,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    answers = json.loads(done.stdout)["answers"]
    assert sorted(answers) == sorted(shipped_variants())
    assert all(isinstance(a["answer"], str) for a in answers.values())
    assert any("1874" in a["answer"] for a in answers.values()), answers  # "" is a variant's "no answer"
    assert list((tmp_path / "cache").glob("models/*/config.json"))


def test_the_page_layout_comes_from_the_gguf_header_before_any_conversion(tmp_path):
    from laffi.inference.model_files import config_on_disk

    config = config_on_disk("embedded", tmp_path / "empty-cache")
    assert config["num_hidden_layers"] == 30 and config["num_attention_heads"] == 9  # SmolLM2-135M's shape
    assert not (tmp_path / "empty-cache").exists()  # read from the header: nothing was converted or written
