"""After laffi-full trains: choose its answer path and threshold on validation, then score the chosen pair (and
the base model, and the always-'no answer' policy) once on 200 questions of the evaluation articles."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

PY = "/work/main/.venv/bin/python"
D = "/work/shared/data/squad_v2/dev-12-articles.json"
A = Path("/work/main/runs/full/adapters")
OUT = Path("/work/main/runs/full")


def run(args, out):
    print("+", " ".join(args), flush=True)
    with open(out.with_suffix(".log"), "w") as err:
        res = subprocess.run([PY, "-m", "laffi", *args], stdout=subprocess.PIPE, stderr=err, text=True)
    out.write_text(res.stdout)
    if res.returncode:
        sys.exit(f"failed: {args}")
    return json.loads(res.stdout)


direct = A / "laffi-full-direct"
shutil.rmtree(direct, ignore_errors=True)
direct.mkdir()
for f in ("adapter_config.json", "adapter_model.safetensors", "training_config.json"):
    shutil.copy(A / "laffi-full" / f, direct / f)
(direct / "answer_path.json").write_text('{"kind": "direct", "draft_by": "self"}\n')
(A / "laffi-full" / "answer_path.json").write_text('{"kind": "verify", "draft_by": "base"}\n')
cal = run(["calibrate", "--data", D, "--articles", "validation", "--limit", "200", "--seed", "0", "--adapters_dir",
           str(A), "--variants", "base,laffi-full,laffi-full-direct", "--out", str(OUT / "val-b"), "--json"],
          OUT / "val-b.json")
val_a = json.loads((OUT / "val-a.json").read_text())
best_laffi = max(("laffi-full", "laffi-full-direct"), key=lambda v: cal[v]["validation"]["f1"])
best_sft = max(("sft-full", "sft-full-rank"), key=lambda v: val_a[v]["validation"]["f1"])
print("chosen on validation:", best_laffi, best_sft, flush=True)
(OUT / "chosen.json").write_text(json.dumps({"laffi": best_laffi, "sft": best_sft}) + "\n")
run(["eval", "--data", D, "--articles", "eval", "--limit", "200", "--seed", "0", "--adapters_dir", str(A),
     "--variants", f"base,{best_sft},{best_laffi}", "--compare", f"{best_laffi}:{best_sft}", "--out",
     str(OUT / "eval"), "--json"], OUT / "eval.json")
print("done", flush=True)
