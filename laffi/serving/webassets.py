"""The JavaScript that bertviz's views load (require.js, d3, jQuery), served by the app itself so those views work
in a browser with no internet. `make` installs it from the npm registry (package.json + package-lock.json);
on a machine that skipped that step, the app runs `npm ci` once if npm exists.

Usage:
    folder = ensure_js()            # node_modules folder, or None (bertviz views then say how to install)
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NEEDED = ("requirejs/require.js", "d3/dist/d3.min.js", "jquery/dist/jquery.min.js")


def js_folder(root: Path = REPO) -> Path:
    return root / "node_modules"


def ensure_js(root: Path = REPO, install: bool = True) -> Path | None:
    folder = js_folder(root)
    if all((folder / f).is_file() for f in NEEDED):
        return folder
    if install and shutil.which("npm") and (root / "package-lock.json").is_file():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=root, capture_output=True, timeout=300)
    return folder if all((folder / f).is_file() for f in NEEDED) else None
