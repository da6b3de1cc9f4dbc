"""The layout holds: no import cycles between laffi's modules, no private name imported across modules, every
command has --help, only laffi.settings reads LAFFI_* variables, no file past ~400 lines."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

PACKAGE = REPO / "laffi"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(path: Path, known: set[str]) -> list[tuple[str, list[str]]]:
    """(imported laffi module, names taken from it) for every import in the file, function-level ones included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.startswith("laffi")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("laffi") and node.level == 0:
            names = [a.name for a in node.names]
            subs = [f"{node.module}.{n}" for n in names if f"{node.module}.{n}" in known]
            out += [(s, []) for s in subs] + [(node.module, [n for n in names if f"{node.module}.{n}" not in known])]
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    edges = {m: set() for m in mods}
    for m, path in mods.items():
        for target, _ in imports(path, set(mods)):
            if target in mods and target != m and not m.startswith(target + "."):  # a package's own __init__
                edges[m].add(target)
    return edges


def test_the_import_graph_has_no_cycles():
    edges, state, stack = graph(), {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(edges[m]):
            if state.get(t) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m)


def throwaway_package(tmp_path, monkeypatch, files: dict[str, str]) -> None:
    """The checks here then read a package of these files instead of laffi/ (to see that each can fail)."""
    pkg = tmp_path / "laffi"
    pkg.mkdir()
    for name, text in files.items():
        (pkg / name).write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)


def test_the_cycle_check_can_fail(tmp_path, monkeypatch):
    """The check above finds a cycle when there is one (two throw-away modules that import each other)."""
    throwaway_package(tmp_path, monkeypatch, {"a.py": "from laffi.b import x\n",
                                              "b.py": "def f():\n    from laffi.a import y\n"})
    with pytest.raises(AssertionError, match="import cycle"):
        test_the_import_graph_has_no_cycles()


def test_no_private_name_is_imported_across_modules():
    mods = modules()
    bad = [f"{m} imports {name} from {target}" for m, path in mods.items()
           for target, names in imports(path, set(mods)) for name in names if name.startswith("_")]
    assert not bad, bad


def test_only_settings_reads_laffi_variables():
    readers = []
    for m, path in modules().items():
        text = path.read_text()
        if m != "laffi.settings" and ("environ.get(\"LAFFI_" in text or "getenv(\"LAFFI_" in text
                                      or "environ[\"LAFFI_" in text):
            readers.append(m)
    assert readers == [], readers


def test_no_file_is_much_past_400_lines():
    long = {str(p.relative_to(REPO)): n for p in [*PACKAGE.rglob("*.py"), REPO / "app.py"]
            if (n := len(p.read_text().splitlines())) > 420}
    assert not long, long


@pytest.mark.parametrize("command", ["ask", "eval", "predict", "annotate", "train", "pipeline", "study", "bench"])
def test_help_for_every_command(command):
    proc = subprocess.run([sys.executable, "-m", "laffi", command, "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and f"laffi {command}" in proc.stdout and "Traceback" not in proc.stderr
    flags = {"ask": "--question", "eval": "--articles", "predict": "--out", "annotate": "--drafts",
             "train": "--target_modules", "pipeline": "--overwrite", "study": "--only", "bench": "--quick"}
    assert flags[command] in proc.stdout


def test_top_level_help_lists_every_command():
    proc = subprocess.run([sys.executable, "-m", "laffi", "--help"], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0
    for command in ("ask", "eval", "predict", "annotate", "train", "pipeline", "study", "bench"):
        assert f"    {command} " in proc.stdout


def test_readme_lists_every_variable_as_settings_defines_it():
    """The README's variable table is `python -m laffi.settings` verbatim: a new or changed variable fails here."""
    from laffi.settings import markdown_table

    assert markdown_table() in (REPO / "README.md").read_text(encoding="utf-8")


def test_adapter_folder_file_names_live_in_one_module():
    """Every file of an adapter folder is named in laffi/adapter_folder.py alone (an evaluation run's own
    metrics.json, in laffi/evaluation/evaluate.py, is another folder's file)."""
    from laffi import adapter_folder

    names = [adapter_folder.CONFIG, adapter_folder.MANIFEST, adapter_folder.LOSS_LOG, adapter_folder.METRICS,
             adapter_folder.ANSWER_PATH, adapter_folder.CALIBRATION, adapter_folder.BASE_CALIBRATION]
    elsewhere = {(str(p.relative_to(REPO)), n) for p in PACKAGE.rglob("*.py") if p.name != "adapter_folder.py"
                 for n in names if f'"{n}"' in p.read_text()}
    assert elsewhere <= {("laffi/evaluation/evaluate.py", "metrics.json")}, elsewhere


def test_cli_commands_call_the_stages_not_training_or_annotation():
    """The CLI's annotate and train are the stages' own bodies (laffi.pipeline.steps), not a second copy."""
    used = {m for m, _ in imports(PACKAGE / "cli" / "commands.py", set(modules()))}
    assert not used & {"laffi.training.trainer", "laffi.feedback.annotation"}, used


def test_the_model_surface_is_declared_not_poked():
    """No module sets or reads an attribute stuck onto the model from outside (lm.backend, demo.laffi_model,
    getattr(lm, ...)) and no layer re-maps row numbers to (variant, question): rows carry their labels
    (laffi.inference.events), and one on_event callback replaces on_text and progress."""
    import re

    checks = {"attribute poked onto the model": r"\blm\.backend\b|getattr\((?:ctx\.|self\.)?lm\b|laffi_model",
              "row re-mapped by index arithmetic":  # k % n, k // n, [j::n] (rounding a size down is fine)
                  r"%\s*len\(variants\)|//\s*len\(variants\)(?!\s*\*)|::\s*len\(variants\)",
              "a callback other than on_event": r"\bon_text\b"}
    bad = [f"{m}: {what}" for m, path in modules().items() for what, pattern in checks.items()
           if re.search(pattern, path.read_text())]
    assert not bad, bad


# The modules that are entry points: each reads the environment once (Settings.from_env) and passes what it read.
ENTRY_POINTS = {"laffi.cli", "laffi.cli.commands", "laffi.pipeline.job_runner"}  # and app.py


def from_env_callers() -> set[str]:
    found = set()
    for m, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "from_env"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "Settings"):
                found.add(m)
    return found


def test_settings_are_read_from_the_environment_only_at_entry_points():
    """Library code takes its settings as arguments; only the CLI, the app's launch and a job's process read the
    environment (`python app.py` passes it in too)."""
    assert from_env_callers() <= ENTRY_POINTS, from_env_callers() - ENTRY_POINTS
    assert "Settings.from_env(" in (REPO / "app.py").read_text()


def test_the_entry_point_check_sees_a_call(tmp_path, monkeypatch):
    throwaway_package(tmp_path, monkeypatch, {
        "__init__.py": "", "library.py": "from laffi.settings import Settings\n\ndef f():\n    return Settings.from_env()\n"})
    assert from_env_callers() == {"laffi.library"}


def test_the_package_top_is_a_few_modules_and_role_folders_that_say_what_they_hold():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 10, top
    for folder in sorted(p for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()):
        doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text())) or ""
        assert doc, f"{folder.name}/__init__.py has no docstring"
        unnamed = [p.stem for p in folder.glob("*.py") if p.stem != "__init__" and p.stem not in doc]
        assert not unnamed, f"{folder.name}/__init__.py does not name {unnamed}"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for folder in ("inference", "feedback", "squad", "training", "evaluation", "pipeline", "serving"):
        assert f"laffi/{folder}/" in readme, folder


def test_command_lines_are_built_in_one_place():
    """`python -m laffi ...` lines come from laffi.commandline (config dataclasses -> flags); the launcher alone
    wraps them. No stage, job or CLI command spells a flag of its own."""
    spelled = []
    for m, path in modules().items():
        if m.startswith("laffi.pipeline") or m == "laffi.cli.commands" or m == "laffi.training.distributed":
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("--") \
                        and node.value[2:].replace("_", "").replace("-", "").isalpha():
                    spelled.append(f"{m}: {node.value}")
    launcher = {"laffi.training.distributed: --config_file", "laffi.training.distributed: --num_processes",
                "laffi.training.distributed: --main_process_port"}  # accelerate's own flags
    assert set(spelled) <= launcher, sorted(set(spelled) - launcher)
