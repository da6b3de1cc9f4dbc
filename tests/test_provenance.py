"""Committed results say where their numbers came from by dataset name and digest, never by a machine's path."""

import hashlib
import json
import re
from pathlib import Path

from laffi.squad.data import dataset_record

REPO = Path(__file__).resolve().parent.parent
MACHINE_PATH = re.compile(r'"(/(?:work|root|home|tmp|Users)/[^"]*)"')


def machine_paths(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.json")):
        found += [f"{path.relative_to(root)}: {m}" for m in MACHINE_PATH.findall(path.read_text(encoding="utf-8"))]
    return found


def test_no_committed_adapter_or_result_file_holds_a_machine_path():
    assert machine_paths(REPO / "adapters") + machine_paths(REPO / "results") == []


def test_the_path_check_sees_one(tmp_path):
    (tmp_path / "calibration.json").write_text(json.dumps({"chosen_on": {"data": "/work/shared/x.json"}}))
    assert machine_paths(tmp_path) == ["calibration.json: /work/shared/x.json"]


def test_a_dataset_is_recorded_by_name_and_digest(tmp_path):
    f = tmp_path / "squad.json"
    f.write_text('{"data": []}')
    expected = hashlib.sha256(b'{"data": []}').hexdigest()[:16]
    assert dataset_record(f) == {"dataset": "squad.json", "sha256": expected}
    f.write_text('{"data": [1]}')
    assert dataset_record(f)["sha256"] != expected  # another file, another digest
    assert dataset_record("squad_v2") == {"dataset": "squad_v2"}  # a Hub id as it is
