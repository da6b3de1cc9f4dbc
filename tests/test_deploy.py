"""Deployment files stay consistent: space.yaml, README's Space block and the pinned gradio version."""

import re

import yaml

from .conftest import REPO


def test_space_card_matches_readme_and_requirements():
    card = yaml.safe_load((REPO / "space.yaml").read_text())
    readme = (REPO / "README.md").read_text()
    front = yaml.safe_load(re.match(r"^---\n(.*?)\n---\n", readme, re.S).group(1))
    assert front == card
    pinned = re.search(r"^gradio==([\d.]+)$", (REPO / "requirements.txt").read_text(), re.M).group(1)
    assert card["sdk"] == "gradio" and card["sdk_version"] == pinned and card["app_file"] == "app.py"


def test_ci_runs_the_readme_test_command():
    assert "make test" in (REPO / ".ci" / "run").read_text()
    assert "make test" in (REPO / "README.md").read_text()
