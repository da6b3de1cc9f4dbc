"""The LaFFi pipeline end to end: predict -> annotate (-> mix human) -> train SFT and LaFFi -> evaluate all three.

Usage:
    python -m laffi pipeline --config configs/dev12.yaml
    records = predict(lm, examples)            # stage 1 alone: the base model's answers, as dataset records

Writes under out_dir: predictions.jsonl, annotated.jsonl (+ annotation_report.json), eval/ (per-variant
predictions and examples), results.json and results.md (the table the README shows). Each stage's output is
reused when it already exists for the same settings (delete out_dir or pass --force to redo everything).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from laffi.errors import LaffiError
from laffi.evaluation import write_json_atomic, write_jsonl_atomic


def predict(lm, examples, gen=None, progress=None, variant: str = "base") -> list[dict]:
    """Stage 1: the (base) model answers each question; records keep everything later stages need."""
    from laffi.generation import answer_questions

    answers = answer_questions(lm, [(e.context, e.question) for e in examples], [variant], gen, progress)[variant]
    return [dict(e.to_dict(), prediction=a.text, raw=a.raw, predicted_by=variant) for e, a in zip(examples, answers)]


def read_jsonl(path: str | Path) -> list[dict]:
    p = Path(path)
    if not p.is_file():
        raise LaffiError(f"The file {str(p)!r} does not exist; run the stage that writes it first.")
    from laffi.data import parse_jsonl

    return parse_jsonl(p.read_text(encoding="utf-8"), str(p))


@dataclass
class PipelineConfig:
    """Everything one reproducible pipeline run depends on (read from YAML)."""

    data: str = field(default="../shared/data/squad_v2/dev-12-articles.json", metadata={"help": "SQuAD data."})
    base: str = field(default="embedded", metadata={"help": "Base model."})
    train_articles: str = field(default="train", metadata={"help": "Split name or titles for training."})
    eval_articles: str = field(default="eval", metadata={"help": "Split name or titles for evaluation."})
    train_limit: int | None = field(default=400, metadata={"help": "Training questions (seeded sample)."})
    eval_limit: int | None = field(default=200, metadata={"help": "Evaluation questions (seeded sample)."})
    seed: int = field(default=0, metadata={"help": "Seed for sampling, annotation phrasing and training."})
    annotator: str = field(default="reference", metadata={"help": "AI annotator: 'reference' or 'llm'."})
    human_feedback: str | None = field(default=None, metadata={"help": "CSV/JSONL/SQLite of human feedback."})
    human_fraction: float = field(default=0.0, metadata={"help": "Share of examples with human feedback."})
    out_dir: str = field(default="runs/pipeline", metadata={"help": "Where stage outputs and results go."})
    adapters_dir: str = field(default="adapters", metadata={"help": "Where the adapters are written."})
    sft_name: str = field(default="sft", metadata={"help": "Adapter name of the SFT run."})
    laffi_name: str = field(default="laffi", metadata={"help": "Adapter name of the LaFFi run."})
    train: dict = field(default_factory=dict, metadata={"help": "TrainConfig settings shared by both runs."})
    eval_batch_size: int | None = field(default=None, metadata={
        "help": "Rows per generation batch (default: 16 on a GPU, 8 on a CPU)."})

    def __post_init__(self):
        if self.annotator not in ("reference", "llm"):
            raise LaffiError(f"PipelineConfig.annotator must be 'reference' or 'llm', not {self.annotator!r}.")
        if not 0 <= self.human_fraction <= 1:
            raise LaffiError(f"PipelineConfig.human_fraction must be in [0, 1], not {self.human_fraction}.")
        from laffi.training import TrainConfig

        bad = set(self.train) - set(TrainConfig.__dataclass_fields__) - {"method", "name"}
        if bad:
            raise LaffiError(f"PipelineConfig.train has unknown setting(s): {', '.join(sorted(bad))}.")

    @classmethod
    def from_yaml(cls, path: str | Path) -> "PipelineConfig":
        import yaml

        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except FileNotFoundError as e:
            raise LaffiError(f"The pipeline config {str(path)!r} does not exist.") from e
        except yaml.YAMLError as e:
            raise LaffiError(f"The pipeline config {path} is not valid YAML ({e}).") from e
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise LaffiError(f"The pipeline config {path} has unknown key(s): {', '.join(sorted(unknown))}.")
        return cls(**raw)

    def stage_key(self, *names: str) -> str:
        d = asdict(self)
        return hashlib.sha256(json.dumps({n: d[n] for n in names}, sort_keys=True).encode()).hexdigest()[:12]


def _progress(log, what: str):
    """A progress callback that logs every tenth of the way (pipeline logs go to stderr, not a bar)."""
    seen = set()

    def report(done: int, total: int) -> None:
        tenth = 10 * done // max(total, 1)
        if tenth not in seen:
            seen.add(tenth)
            log(f"    {what}: {done}/{total}")
    return report


def _cached(path: Path, key: str, force: bool) -> bool:
    meta = path.with_suffix(path.suffix + ".key")
    return not force and path.is_file() and meta.is_file() and meta.read_text().strip() == key


def _mark(path: Path, key: str) -> None:
    path.with_suffix(path.suffix + ".key").write_text(key + "\n")


def run_pipeline(cfg: PipelineConfig, force: bool = False, log=print) -> dict:
    from laffi.annotation import annotate_with_human
    from laffi.data import load_squad, sample_examples, select_articles
    from laffi.evaluation import evaluate_variants
    from laffi.generation import GenerationConfig
    from laffi.models import ModelConfig, load_model
    from laffi.training import TrainConfig, train_adapter
    from laffi.train_logs import model_card

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "pipeline_config.json", asdict(cfg))
    examples, problems = load_squad(cfg.data)
    for p in problems[:5]:
        log(f"warning: skipped {p}")
    train_ex = sample_examples(select_articles(examples, cfg.train_articles), cfg.train_limit, cfg.seed)
    eval_ex = sample_examples(select_articles(examples, cfg.eval_articles), cfg.eval_limit, cfg.seed)
    overlap = {e.context for e in train_ex} & {e.context for e in eval_ex}
    if overlap:
        raise LaffiError("The training and evaluation articles share passages; choose disjoint article sets.")
    gen = GenerationConfig(batch_size=cfg.eval_batch_size)

    preds_path, key = out / "predictions.jsonl", cfg.stage_key("data", "base", "train_articles", "train_limit", "seed")
    if _cached(preds_path, key, force):
        records = read_jsonl(preds_path)
        log(f"1/4 predict: reusing {preds_path}")
    else:
        log(f"1/4 predict: base model answers {len(train_ex)} training questions")
        lm = load_model(ModelConfig(base=cfg.base, adapters_dir=None))
        records = predict(lm, train_ex, gen, progress=_progress(log, "answers"))
        write_jsonl_atomic(preds_path, records)
        _mark(preds_path, key)
        del lm

    ann_path = out / "annotated.jsonl"
    key = key + cfg.stage_key("annotator", "human_feedback", "human_fraction")
    if _cached(ann_path, key, force):
        annotated = read_jsonl(ann_path)
        log(f"2/4 annotate: reusing {ann_path}")
    else:
        log(f"2/4 annotate: {cfg.annotator} annotator" + (f", human fraction {cfg.human_fraction}"
                                                           if cfg.human_feedback else ""))
        lm = load_model(ModelConfig(base=cfg.base, adapters_dir=None)) if cfg.annotator == "llm" else None
        annotated, report = annotate_with_human(records, cfg.annotator, seed=cfg.seed, lm=lm,
                                                human=cfg.human_feedback, human_fraction=cfg.human_fraction)
        write_jsonl_atomic(ann_path, annotated)
        write_json_atomic(out / "annotation_report.json", report)
        _mark(ann_path, key)

    trained = {}
    for method, name in (("sft", cfg.sft_name), ("laffi", cfg.laffi_name)):
        tcfg = TrainConfig(**{**cfg.train, "method": method, "name": name, "base": cfg.base,
                              "adapters_dir": cfg.adapters_dir, "seed": cfg.seed,
                              "work_dir": str(out / "train" / name)})
        log(f"3/4 train {method}: {len(annotated)} examples -> {cfg.adapters_dir}/{name}")
        trained[name] = (train_adapter(annotated, tcfg), tcfg)

    log(f"4/4 evaluate base, {cfg.sft_name}, {cfg.laffi_name} on {len(eval_ex)} questions (with self-feedback)")
    lm = load_model(ModelConfig(base=cfg.base, adapters_dir=cfg.adapters_dir))
    variants = ["base", cfg.sft_name, cfg.laffi_name]
    result = evaluate_variants(lm, eval_ex, variants, gen, out_dir=out / "eval", feedback=True,
                               progress=_progress(log, "answers + self-feedback"))
    result["eval_articles"], result["train_articles"] = cfg.eval_articles, cfg.train_articles
    write_json_atomic(out / "results.json", result)
    (out / "results.md").write_text(results_table(result), encoding="utf-8")
    for name, (path, tcfg) in trained.items():  # litgpt-style: metrics live next to the adapter they describe
        metrics = {"n": result["n"], "eval_articles": cfg.eval_articles, **result["variants"][name]}
        write_json_atomic(path / "metrics.json", metrics)
        manifest = json.loads((path / "data_manifest.json").read_text())
        stats = json.loads((path / "training_config.json").read_text())["stats"]
        (path / "README.md").write_text(model_card(tcfg, manifest, stats, metrics))
    return result


def results_table(result: dict) -> str:
    cols = [("EM", "exact"), ("F1", "f1"), ("HasAns F1", "HasAns_f1"), ("NoAns EM", "NoAns_exact"),
            ("revised F1", "revised_f1"), ("verdict agreement", "verdict_agreement")]
    lines = ["| variant | " + " | ".join(c for c, _ in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for v, m in result["variants"].items():
        lines.append(f"| {v} | " + " | ".join(f"{m[k]:.1f}" if k in m else "–" for _, k in cols) + " |")
    return "\n".join(lines) + f"\n\nn = {result['n']} questions.\n"
