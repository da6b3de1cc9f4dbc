"""What a training run leaves behind for people: the per-step loss log (JSONL) and the adapter's model card.

Usage:
    trainer = SFTTrainer(..., callbacks=[LossLogger("runs/train/laffi/loss_log.jsonl")])
    text = model_card(asdict(cfg), manifest, stats, metrics)
    write_evaluation("adapters/laffi", metrics)                  # metrics.json + the card updated
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from transformers import TrainerCallback


class LossLogger(TrainerCallback):
    """Append one JSON line per logged step (step, epoch, loss, lr, grad_norm, tokens seen, elapsed seconds) and
    one per held-out score (step, heldout_loss)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.started = time.time()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or not state.is_world_process_zero:  # one writer: rank 0
            return
        if "eval_loss" in logs:  # a held-out score: its own line, so the two curves can be drawn apart
            row = {"step": state.global_step, "max_steps": state.max_steps, "epoch": round(state.epoch or 0, 4),
                   "heldout_loss": logs["eval_loss"], "seconds": round(time.time() - self.started, 2)}
        elif "loss" in logs:
            row = {"step": state.global_step, "max_steps": state.max_steps, "epoch": round(state.epoch or 0, 4),
                   "loss": logs["loss"], "lr": logs.get("learning_rate"), "grad_norm": logs.get("grad_norm"),
                   "tokens": state.num_input_tokens_seen, "seconds": round(time.time() - self.started, 2)}
        else:
            return
        with open(self.path, "a", encoding="utf-8") as f:  # one line per step, flushed: a crash loses nothing
            f.write(json.dumps(row) + "\n")


def model_card(cfg: dict, manifest: dict, stats: dict, metrics: dict | None, name: str | None = None) -> str:
    """The adapter folder's README.md, from its training settings (TrainConfig as a dict), data manifest, run
    statistics and, once evaluated, its metrics. `name`: the folder's name where it differs from the name it was
    trained under (a study adapter shipped as adapters/sft)."""
    from types import SimpleNamespace

    cfg = SimpleNamespace(**{**cfg, "name": name or cfg["name"]})
    target = {"laffi": "the annotator's natural-language feedback on the model's own answer (LaFFi)",
              "sft": "the gold answer, or \"no answer\" (plain SFT)",
              "laffi+sft": "both: the feedback on its own answer (LaFFi rows) and the gold answer (SFT rows)"}[cfg.method]
    lines = [
        f"# {cfg.name}: a {cfg.method.upper()} LoRA adapter made with laffi", "",
        f"- Base model: `{cfg.base}`",
        f"- Trained to produce: {target}",
        f"- Examples: {manifest['examples']} ({manifest['left_out_too_long']} left out as longer than "
        f"{cfg.max_length} tokens); feedback sources: {manifest['feedback_sources']}",
        f"- Articles: {', '.join(manifest['articles'])}",
        f"- LoRA r={cfg.r}, alpha={cfg.alpha}, dropout={cfg.dropout}, modules={cfg.target_modules}; lr={cfg.lr}, "
        f"epochs={cfg.epochs}, batch={cfg.batch_size}, seed={cfg.seed}",
        *([f"- Kept: the checkpoint of step {stats['best_step']}, the best held-out loss "
           f"({stats['best_heldout_loss']:.4f} on {manifest.get('heldout_examples')} held-out examples)"]
          if stats.get("best_step") else []),
        f"- Steps: {stats.get('global_step')}, final mean train loss: {stats.get('train_loss'):.4f}, "
        f"time: {stats.get('seconds')} s", "",
        "Files: `training_config.json` (every setting and library version), `data_manifest.json` (which articles "
        "and questions), `loss_log.jsonl` (loss per step), `metrics.json` (evaluation, when run).", "",
        "Load it with plain PEFT:", "",
        "```python",
        "from peft import PeftModel",
        f"model = PeftModel.from_pretrained(base_model, \"adapters/{cfg.name}\")",
        "```",
    ]
    if metrics:
        lines += ["", "## Evaluation", "", "```json", json.dumps(metrics, indent=2), "```"]
    return "\n".join(lines) + "\n"


def write_evaluation(folder: str | Path, metrics: dict) -> None:
    """metrics.json next to the adapter it describes (litgpt-style), and its model card updated to show them."""
    from laffi.adapter_folder import CARD, METRICS, AdapterFolder
    from laffi.io import write_text_atomic

    adapter = AdapterFolder(folder)
    adapter.write(METRICS, metrics)
    config, manifest = adapter.config(), adapter.manifest()
    write_text_atomic(adapter / CARD, model_card(config["train"], manifest, config["stats"], metrics,
                                                 name=adapter.path.name))
