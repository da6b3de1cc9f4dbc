"""Ship the chosen pair: runs/full/adapters/<chosen> -> adapters/sft and adapters/laffi, with their calibration,
answer path, and metrics.json = the evaluation-article numbers (with intervals and paired differences) plus the
validation numbers that chose them. Run from the repository root after stage_b.py."""
import json
import shutil
from pathlib import Path

from laffi.adapter_folder import BASE_CALIBRATION
from laffi.train_logs import write_evaluation

RUNS = Path("runs/full")
chosen = json.loads((RUNS / "chosen.json").read_text())
ev = json.loads((RUNS / "eval.json").read_text())
val = {**json.loads((RUNS / "val-a.json").read_text()), **json.loads((RUNS / "val-b.json").read_text())}
D = "../shared/data/squad_v2/dev-12-articles.json"
TRAIN = {
    "sft": f"python -m laffi train --method sft --name sft --data {D} --articles train --target_modules all-linear "
           "--lr 1e-3 --r 16 --alpha 32 --dropout 0.0 --epochs 1 --batch_size 4 --max_length 1024 --heldout 0",
    "laffi": f"python -m laffi annotate --predictions {D} --articles train --drafts synthetic "
             "--synthetic_per_question 1 --out runs/full/data/synthetic-k1.jsonl && python -m laffi train --method "
             "laffi+sft --name laffi --data runs/full/data/synthetic-k1.jsonl --target_modules all-linear --lr 1e-3 "
             "--r 16 --alpha 32 --dropout 0.0 --epochs 1 --max_steps 320 --batch_size 8 --max_length 1024 --heldout 0",
}
CAL = (f"python -m laffi calibrate --data {D} --articles validation --limit 200 --seed 0 "
       "--variants base,sft,laffi")
EVAL = (f"python -m laffi eval --data {D} --articles eval --limit 200 --seed 0 --variants base,sft,laffi "
        "--compare laffi:sft --out runs/release")
for name in ("sft", "laffi"):
    src, dst = RUNS / "adapters" / chosen[name], Path("adapters") / name
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    origin = RUNS / "adapters" / chosen[name].replace("-rank", "").replace("-direct", "")  # a copy's trained folder
    for f in ("data_manifest.json", "loss_log.jsonl"):
        if not (dst / f).exists():
            shutil.copy(origin / f, dst / f)
    m = ev["variants"][chosen[name]]
    metrics = {"n": ev["n"], "eval_articles": "eval", "trained_as": chosen[name],
               "reproduce": [TRAIN[name], CAL, EVAL], "intervals": "95 % bootstrap over questions, [low, high]",
               "seeds": 1, **m,
               "validation": {"n": 200, "articles": "validation", **val[chosen[name]]},
               "comparisons": [dict(c, a=c["a"].replace(chosen["laffi"], "laffi").replace(chosen["sft"], "sft"),
                                    b=c["b"].replace(chosen["laffi"], "laffi").replace(chosen["sft"], "sft"))
                               for c in ev["comparisons"] if chosen[name] in (c["a"], c["b"])]}
    write_evaluation(dst, metrics)
    print(name, "<-", chosen[name], "F1", round(m["f1"], 1))
shutil.copy(RUNS / "adapters" / BASE_CALIBRATION, Path("adapters") / BASE_CALIBRATION)
