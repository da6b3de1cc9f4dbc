"""More training questions from another SQuAD 2.0 file, balanced: its articles join the training articles, with
its answerable questions subsampled so that its share of unanswerable questions equals the training articles'.

Usage:
    combined_training_data(cfg, Path("runs/curve/data"))   # {"data": combined file, "train_articles": titles}
    # in a pipeline/study YAML:  extra_data: ../shared/data/squad_v2/train-10-articles.json

Why balance (extra_balance: match; "all" keeps every question, to see what the imbalance does): the official training set's articles are mostly answerable (train-10-articles.json: 348 of 4,719
questions unanswerable, 7 %; this project's 7 training articles: 1,511 of 2,847, 53 %). Added as they are, they would
teach an adapter that a passage nearly always answers, and its no-answer threshold and abstentions would shift
for that reason alone, not because it saw more questions. Every unanswerable question is kept and as many
answerable ones (a seeded sample) as keep the training articles' share; what was kept is recorded beside the file.
The combined file lives in the run's folder (it holds the dataset's text) and is rebuilt identically from the
same inputs.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from laffi.errors import LaffiError


def _questions(article: dict) -> list[dict]:
    return [q for p in article["paragraphs"] for q in p["qas"]]


def _unanswerable(q: dict) -> bool:
    return bool(q.get("is_impossible")) or not q.get("answers")


def balanced(extra: list[dict], share: float, seed: int) -> tuple[list[dict], dict]:
    """(extra's articles with answerable questions dropped to reach `share` unanswerable, the counts); share 0
    keeps every question."""
    qs = [q for a in extra for q in _questions(a)]
    no = [q for q in qs if _unanswerable(q)]
    yes = [q["id"] for q in qs if not _unanswerable(q)]
    keep_yes = len(yes) if share <= 0 or not no else min(len(yes), round(len(no) * (1 - share) / share))
    kept = set(random.Random(seed).sample(yes, keep_yes)) | {q["id"] for q in no}
    articles = []
    for a in extra:
        paragraphs = [{**p, "qas": [q for q in p["qas"] if q["id"] in kept]} for p in a["paragraphs"]]
        paragraphs = [p for p in paragraphs if p["qas"]]
        if paragraphs:
            articles.append({**a, "paragraphs": paragraphs})
    return articles, {"questions": len(qs), "unanswerable": len(no), "kept_answerable": keep_yes,
                      "kept": len(kept), "share_unanswerable": round(len(no) / len(kept), 4) if kept else None}


def combined_training_data(cfg, folder: Path) -> dict:
    """Write base + balanced extra articles to folder/ (with combined.json: what was kept); the PipelineConfig
    fields that point the run at it: {"data", "train_articles"} (the training titles, then extra's)."""
    from laffi.io import write_json_atomic, write_text_atomic
    from laffi.squad.data import dataset_record, load_squad, select_articles, titles

    base = json.loads(Path(cfg.data).read_text(encoding="utf-8"))
    extra = json.loads(Path(cfg.extra_data).read_text(encoding="utf-8"))
    names = {a["title"] for a in base["data"]}
    clash = sorted(names & {a["title"] for a in extra["data"]})
    if clash:
        raise LaffiError(f"extra_data has articles the data already has ({', '.join(clash[:3])}); each article "
                         "must be in one file only.")
    train = titles(select_articles(load_squad(cfg.data)[0], cfg.train_articles))
    train_qs = [q for a in base["data"] if a["title"] in set(train) for q in _questions(a)]
    share = sum(map(_unanswerable, train_qs)) / max(len(train_qs), 1)
    added, counts = balanced(extra["data"], share if cfg.extra_balance == "match" else 0.0, cfg.seed)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "combined.json"
    text = json.dumps({"version": base.get("version", "v2.0"), "data": base["data"] + added}, ensure_ascii=False)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:  # the same inputs give the same file
        write_text_atomic(path, text)
    write_json_atomic(folder / "combined-record.json", {
        "data": dataset_record(cfg.data), "extra_data": dataset_record(cfg.extra_data), "seed": cfg.seed,
        "balance": cfg.extra_balance,
        "training_share_unanswerable": round(share, 4), "extra": counts, "extra_articles": [a["title"] for a in added]})
    return {"data": str(path), "train_articles": ",".join(train + [a["title"] for a in added])}
