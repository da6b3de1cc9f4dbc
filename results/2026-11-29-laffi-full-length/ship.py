"""Ship laffi-712-direct (chosen on validation over the shipped laffi: 61.3 vs 57.2) as adapters/laffi, with its
calibration, answer path and metrics.json (the evaluation-article numbers with intervals, the paired differences
against the shipped sft, the previous laffi and always "no answer", the validation numbers, the commands)."""
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, "/work/snap3")
from laffi.training.logs import write_evaluation  # noqa: E402

O, A = Path("runs/full3"), Path("runs/full/adapters")
s = json.loads((O / "summary.json").read_text())
val = json.loads((O / "val.json").read_text())
D = "../shared/data/squad_v2/dev-12-articles.json"
TRAIN = (f"python -m laffi annotate --predictions {D} --articles train --drafts synthetic --synthetic_per_question 1 "
         "--out runs/full/data/synthetic-k1.jsonl && python -m laffi train --method laffi+sft --name laffi "
         "--data runs/full/data/synthetic-k1.jsonl --batch_size 8 --heldout 0")
CAL = f"python -m laffi calibrate --data {D} --articles validation --limit 200 --seed 0 --variants laffi"
EVAL = (f"python -m laffi eval --data {D} --articles eval --limit 200 --seed 0 --variants base,sft,laffi "
        "--compare laffi:sft --out runs/release")
dst = Path("adapters/laffi")
shutil.rmtree(dst)
shutil.copytree(A / "laffi-712-direct", dst)
for f in ("data_manifest.json", "loss_log.jsonl", "README.md"):
    shutil.copy(A / "laffi-712" / f, dst / f)
name = s["chosen"]
rename = {name: "laffi", "sft (shipped)": "sft", "laffi (shipped)": "laffi (previous: 320 steps)"}
metrics = {"n": 200, "eval_articles": "eval", "trained_as": name, "reproduce": [TRAIN, CAL, EVAL],
           "intervals": "95 % bootstrap over questions, [low, high]", "seeds": 1, **s["eval"],
           "validation": {"n": 200, "articles": "validation", **val[name],
                          "other_answer_path": {"verify (P(verdict 'Correct') over candidates)":
                                                val["laffi-712"]["validation"]}},
           "comparisons": [dict(c, a=rename.get(c["a"], c["a"]), b=rename.get(c["b"], c["b"]))
                           for c in s["comparisons"]]}
write_evaluation(dst, metrics)
print("laffi <-", name, "F1", round(s["eval"]["f1"], 1))
