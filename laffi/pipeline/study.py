"""Choosing settings on the validation article: a list of trials, each a pipeline run that differs from a common
base config, scored with intervals; reruns reuse every stage already done.

Usage:
    python -m laffi study --config configs/study.yaml           # runs every trial not yet run, then the summary
    python -m laffi study --config configs/study.yaml --only s3  # one trial
    rows = run_study(load_study("configs/study.yaml"))

A study file has `base:` (PipelineConfig keys; eval_articles should be validation) and `trials:` (a list, each
with a `name`, a one-line `why`, and the keys it changes). Adapters are named by the hash of what they were
trained on (e.g. sft-3f2a9c1e), so trials that differ only in how a LaFFi adapter answers share one adapter.
The summary (out_dir/study.md and study.json) has one row per trial and run: F1, HasAns F1, NoAns EM, abstain %,
the feedback path, balanced verdict accuracy, each with its 95 % interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from laffi.errors import LaffiError
from laffi.io import write_json_atomic, write_text_atomic

SUMMARY_KEYS = (("F1", "f1"), ("HasAns F1", "HasAns_f1"), ("NoAns EM", "NoAns_exact"), ("abstain %", "abstain"),
                ("F1 via feedback", "revised_f1"), ("HasAns F1 via feedback", "revised_HasAns_f1"),
                ("balanced verdict acc.", "balanced_verdict_accuracy"))


@dataclass
class Study:
    base: dict
    trials: list[dict] = field(default_factory=list)
    curve: dict | None = None  # {"out": a results folder, "title"}: the trials as a learning curve, written there
    folds: dict | None = None  # {"out", "over", "apply"}: thresholds by leave-one-article-out (laffi.pipeline.folds)

    @property
    def kept_in(self) -> Path | None:
        """The committed results folder each finished trial is copied to (a curve's or a folds study's)."""
        where = self.curve or self.folds
        return Path(where["out"]) if where else None


def load_study(path: str | Path) -> Study:
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError as e:
        raise LaffiError(f"The study file {str(path)!r} does not exist.") from e
    if not isinstance(raw, dict) or set(raw) - {"base", "trials", "curve", "folds"}:
        raise LaffiError(f"The study file {path} must have only 'base' (pipeline settings), 'trials', 'curve' "
                         "and 'folds'.")
    curve = raw.get("curve")
    if curve is not None and not (isinstance(curve, dict) and isinstance(curve.get("out"), str)):
        raise LaffiError(f"'curve' in {path} names the results folder its summary goes to: curve: {{out: ...}}.")
    trials = raw.get("trials") or []
    if curve is not None and curve.get("split"):
        trials = split_trials(trials, raw.get("base") or {})
    folds = raw.get("folds")
    if folds is not None:
        from laffi.pipeline.folds import fold_trials

        if curve is not None or not (isinstance(folds, dict) and isinstance(folds.get("out"), str)):
            raise LaffiError(f"'folds' in {path} names the results folder its thresholds go to (folds: {{out: ...}}),"
                             " and a study is a curve or folds, not both.")
        trials = fold_trials(trials, raw.get("base") or {}, folds)
    names = [t.get("name") for t in trials]
    if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise LaffiError(f"Every trial in {path} needs its own name.")
    return Study(base=raw.get("base") or {}, trials=trials, curve=curve, folds=folds)


def split_trials(trials: list[dict], base: dict) -> list[dict]:
    """Each trial once per training seed and method (`curve: {split: true}`), seed by seed: n250-sft-s0,
    n250-laffi-s0, n500-sft-s0, ... Why: a trial's numbers land (are committed) only when all of it is done, and a
    trial of 3 seeds x 2 methods trains for hours on a 2-core machine, longer than a working session whose
    processes end with it. One adapter per sub-trial lands within one, and the first seed's curve comes first."""
    from laffi.pipeline.config import METHOD_KEYS

    seeds_of = [t.get("seeds") or base.get("seeds") or [0] for t in trials]  # training seeds (PipelineConfig's)
    out = []
    for seed in dict.fromkeys(s for seeds in seeds_of for s in seeds):
        for t, seeds in zip(trials, seeds_of):
            if seed not in seeds:
                continue
            for method in t.get("methods") or base.get("methods") or list(METHOD_KEYS):
                out.append({**t, "name": f"{t.get('name')}-{method}-s{seed}", "methods": [method], "seeds": [seed],
                            "why": f"{t.get('why', '')} ({method}, training seed {seed})"})
    return out


def _merge(base: dict, trial: dict) -> dict:
    """The trial's pipeline settings: the base with the trial's keys; dict-valued keys merge one level deep."""
    out = dict(base)
    for k, v in trial.items():
        if k in ("name", "why"):
            continue
        out[k] = {**base.get(k, {}), **v} if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def trial_stages(study: Study, trial: dict, log=print, settings=None):
    """The Stages of one trial, its adapters named by the hash of their training settings."""
    from laffi.pipeline.config import PipelineConfig
    from laffi.pipeline.stages import Stages

    cfg = PipelineConfig(**{**_merge(study.base, trial), "run_name": trial["name"]})
    stages = Stages(cfg, log=log, settings=settings)
    seed = stages.cfg.seeds[0]  # (stages.cfg: the config as it runs, e.g. pointed at combined data)
    stages.cfg.sft_name = "sft-" + stages.train_key("sft", seed)[:8]
    stages.cfg.laffi_name = "laffi-" + stages.train_key("laffi", seed)[:8]
    return stages


def run_study(study: Study, only: list[str] | None = None, log=print, settings=None) -> list[dict]:
    """Run the trials (those in `only`, else all) and return the summary rows of every trial that has results.
    settings: the entry point's (laffi.settings), passed to every trial's stages."""
    import shutil

    for trial in study.trials:
        if only and trial["name"] not in only:
            continue
        stages = trial_stages(study, trial, log, settings)
        if kept_result(study, trial, stages) is not None:  # on this machine too: its evaluation would be redone
            log(f"study: trial {trial['name']}: its result is kept in {study.kept_in} (delete it to rerun)")
            continue
        log(f"study: trial {trial['name']}: {trial.get('why', '')}")
        # a folds study's full-data trial is often another study's finished trial (the same out_dir and settings)
        local = stages.out / trial["name"] / "results.json"
        result = (study.folds is not None and kept_result(study, trial, stages, local)) or stages.all()
        if study.kept_in is not None:  # the trial's numbers where they are committed: adapters and runs/ are not
            target = study.kept_in / f"{trial['name']}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            if study.folds is not None:
                from laffi.pipeline.folds import committed

                write_json_atomic(target, committed(stages, trial, result))
            else:
                shutil.copyfile(stages.out / trial["name"] / "results.json", target)
            summarize(study, log)  # the summary (and a curve's image) follow every trial that lands
    return summarize(study, log)


def kept_result(study: Study, trial: dict, stages, path: Path | None = None) -> dict | None:
    """A curve or folds trial's committed result (<out>/<trial>.json, or `path`) when it was run with exactly
    these settings."""
    import json
    from dataclasses import asdict

    if study.kept_in is None:
        return None
    try:
        result = json.loads((path or study.kept_in / f"{trial['name']}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return result if same_config(result.get("config"), json.loads(json.dumps(asdict(stages.cfg)))) else None


def same_config(stored: dict | None, now: dict) -> bool:
    """Whether a stored result's pipeline config is today's: equal, except that a setting added since, at its
    default, is the same run (a new option must not make every committed result stale)."""
    from dataclasses import MISSING, fields

    from laffi.pipeline.config import PipelineConfig

    if not isinstance(stored, dict) or set(stored) - set(now):
        return False
    defaults = {f.name: f.default if f.default is not MISSING else f.default_factory() for f in fields(PipelineConfig)
                if f.default is not MISSING or f.default_factory is not MISSING}
    return all(stored[k] == v if k in stored else k in defaults and v == defaults[k] for k, v in now.items())


def summarize(study: Study, log=lambda message: None) -> list[dict]:
    """One row per trial and run from the trials' results.json files; written as study.md and study.json, and
    for a curve its summary.json and curve.png beside the trials' results."""
    import json

    rows, results = [], []
    out_dir = None
    for trial in study.trials:
        stages = trial_stages(study, trial, log=lambda m: None)
        out_dir = stages.out
        path = stages.out / trial["name"] / "results.json"
        if study.folds is not None:  # only the committed file has the per-question records the thresholds need
            result = kept_result(study, trial, stages)
        else:
            result = json.loads(path.read_text()) if path.is_file() else kept_result(study, trial, stages)
        if result is None:
            continue
        results.append((trial["name"], result))
        for run, m in result["pooled"].items():
            if run == "base" and rows and any(r["run"] == "base" for r in rows):
                continue
            rows.append({"trial": trial["name"], "why": trial.get("why", ""), "run": run, "n": result["n"],
                         "answer_path": m.get("answer_path"), "seeds": m.get("seeds"),
                         **{k: m.get(k) for _, k in SUMMARY_KEYS}, "auc": m.get("auc"), "best_f1": m.get("best_f1"),
                         "ci": m.get("ci", {})})
    if out_dir is not None and study.folds is None:  # a folds study shares another study's out_dir: its summary
        pairs = run_differences(dict(results), rows)     # is thresholds.json, not that study's study.json
        write_json_atomic(out_dir / "study.json", {"runs": rows, "differences": pairs})
        write_text_atomic(out_dir / "study.md", study_markdown(rows) + differences_markdown(pairs))
    if study.folds is not None and results:
        from laffi.pipeline.folds import fold_markdown, fold_summary

        thresholds = fold_summary(study.trials, dict(results), study.folds, log)
        write_json_atomic(study.kept_in / "thresholds.json", thresholds)
        write_text_atomic(study.kept_in / "thresholds.md", fold_markdown(thresholds))
    if study.curve is not None and results:
        curve = learning_curve(results, study.curve)
        write_json_atomic(Path(study.curve["out"]) / "summary.json", curve)
        draw_curve(curve, Path(study.curve["out"]) / "curve.png", log)
    return rows


def draw_curve(curve: dict, path: Path, log) -> None:
    """The Results tab's learning-curve figure as the README's image; where it can't be drawn (no chromium or
    no Playwright: the dev requirements), the numbers in summary.json are all there is, and the log says so."""
    from laffi.evaluation.published import curve_figure, save_png

    try:
        save_png(curve_figure(curve), path)
    except Exception as e:  # noqa: BLE001 - no chromium, no Playwright, a browser that fails to start: the study goes on
        log(f"study: the learning curve's image was not drawn ({str(e).splitlines()[0] if str(e) else type(e).__name__});"
            " summary.json holds its numbers.")


CURVE_KEYS = ("f1", "HasAns_f1", "NoAns_exact", "abstain", "auc", "best_f1")


def learning_curve(results: list[tuple[str, dict]], curve: dict) -> dict:
    """The "learning curve" summary the Results tab draws (laffi.evaluation.published): one point per trial,
    method and training seed - its training questions and its own scores on the evaluation questions - and the
    always-"no answer" policy's F1 on those questions."""
    from laffi.evaluation.published import CURVE
    from laffi.inference.answerability import ALWAYS_NO_ANSWER

    points, trivial, n = [], [], set()
    for trial, result in results:
        config = result.get("config") or {}
        for run, names in (result.get("seeds") or {}).items():
            method = run_method(run, config)
            for seed, name in zip(config.get("seeds") or range(len(names)), names):
                m = result["variants"].get(name) or {}
                points.append({"trial": trial, "method": method, "questions": result.get("train_questions"),
                               "seed": seed, "adapter": name, **{k: m.get(k) for k in CURVE_KEYS},
                               "precision": (result.get("precision") or {}).get("dtype")})
        trivial.append((result["variants"].get(ALWAYS_NO_ANSWER) or {}).get("f1"))
        n.add(result["n"])
    return {"kind": CURVE, "title": curve.get("title", "Learning curve"), "points": points,
            "trivial_f1": trivial[0] if len(set(trivial)) == 1 else None, "n": n.pop() if len(n) == 1 else None,
            "eval_articles": (results[0][1].get("eval_articles") if results else None),
            "differences": curve_differences(results), "against_trivial": curve_against_trivial(results)}


CURVE_COMPARED = ("f1", "HasAns_f1", "abstain")


def run_method(run: str, config: dict) -> str:
    """Which method a trial's pooled run is: its SFT adapter's name, or else LaFFi, named by its recipe where the
    two tasks' losses are weighted ("laffi α 0.5": laffi.training.task_loss), so that each recipe is its own
    curve rather than one mean over recipes."""
    if run == config.get("sft_name"):
        return "sft"
    weight = (config.get("laffi") or {}).get("task_weight")
    return "laffi" if weight is None else f"laffi α {weight:g}"


def curve_runs(results: list[tuple[str, dict]]) -> dict[tuple, list[tuple[dict, str, int]]]:
    """(training questions, method) -> [(per-question record, run, seeds)] of the trials that kept per-question
    scores: a trial's run is already its seeds' mean, so it stands for that many seeds."""
    runs: dict[tuple, list[tuple[dict, str, int]]] = {}
    for _, result in results:
        config, questions = result.get("config") or {}, result.get("questions")
        for run, names in (result.get("seeds") or {}).items():
            if questions and run in questions["runs"] and result.get("train_questions") is not None:
                method = run_method(run, config)
                runs.setdefault((result.get("train_questions"), method), []).append((questions, run, len(names)))
    return runs


def seed_scores(found: list[tuple[dict, str, int]], shared: list[str]) -> dict[str, list[float]]:
    """One method's per-question scores on `shared`, averaged over its seeds (every seed counts once: a trial's
    mean over k seeds is read once and counted k times)."""
    from laffi.evaluation.report import question_scores
    from laffi.evaluation.stats import seed_mean

    per = [scores for q, run, k in found for scores in [question_scores(q, run, shared)] * k]
    return {key: seed_mean([p[key] for p in per]) for key in CURVE_COMPARED}


def shared_qids(found: list[tuple[dict, str, int]]) -> list[str]:
    return sorted(set.intersection(*(set(q["qids"]) for q, _, _ in found)))


def curve_differences(results: list[tuple[str, dict]]) -> list[dict]:
    """Each LaFFi recipe - SFT at each point of the curve, paired on the same evaluation questions: each method's
    scores averaged per question over the seeds that landed (from each trial's kept per-question scores), then
    the difference with its bootstrap interval ("method" names the recipe; "seeds" counts {"laffi": the recipe's,
    "sft": SFT's}). Points whose trials kept no per-question scores have none."""
    from laffi.evaluation.report import compare

    runs, out = curve_runs(results), []
    for size, method in sorted(k for k in runs if k[1] != "sft"):
        sft, laffi = runs.get((size, "sft")), runs[(size, method)]
        if not sft or not (shared := shared_qids(sft + laffi)):
            continue
        scores = {"sft": seed_scores(sft, shared), "laffi": seed_scores(laffi, shared)}
        seeds = {"sft": sum(k for *_, k in sft), "laffi": sum(k for *_, k in laffi)}
        out += [{"questions": size, "method": method, "seeds": seeds, "n": len(shared), **row}
                for row in compare(scores, "laffi", "sft", keys=CURVE_COMPARED)]
    return out


def curve_against_trivial(results: list[tuple[str, dict]]) -> list[dict]:
    """Each method at each size against the always-"no answer" policy (F1), paired on the same questions with
    the method's scores averaged per question over its seeds: one interval per point instead of one per seed, so
    a single lucky seed does not read as a method beating the policy."""
    from laffi.evaluation.report import compare, question_scores
    from laffi.inference.answerability import ALWAYS_NO_ANSWER

    out = []
    for (size, method), found in sorted(curve_runs(results).items(), key=lambda kv: (kv[0][0], kv[0][1] != "sft")):
        if not (shared := shared_qids(found)) or ALWAYS_NO_ANSWER not in found[0][0]["runs"]:
            continue
        scores = {method: seed_scores(found, shared),
                  ALWAYS_NO_ANSWER: question_scores(found[0][0], ALWAYS_NO_ANSWER, shared)}
        out += [{"questions": size, "method": method, "seeds": sum(k for *_, k in found), "n": len(shared), **row}
                for row in compare(scores, method, ALWAYS_NO_ANSWER, keys=("f1",))]
    return out


def run_differences(results: dict[str, dict], rows: list[dict]) -> list[dict]:
    """Paired differences on the same evaluation questions between runs of different trials: every non-SFT run
    (LaFFi, as it answers) against every SFT run, so "LaFFi beats SFT" is read from an interval, not two means.
    results: each trial's results.json, whose "questions" (laffi.evaluation.report.question_record) hold every
    run's per-question scores; a result from before they were kept has no pairs."""
    from laffi.evaluation.report import compare, question_scores

    def stored(r):
        questions = results.get(r["trial"], {}).get("questions")
        return questions if questions and r["run"] in questions["runs"] else None

    from laffi.inference.answerability import ALWAYS_NO_ANSWER

    # the trivial policy is read against each run inside its own trial (results.json "comparisons")
    runs = [r for r in rows if r["run"] not in ("base", ALWAYS_NO_ANSWER) and stored(r)]
    pairs = []
    for a in (r for r in runs if not r["run"].startswith("sft")):
        for b in (r for r in runs if r["run"].startswith("sft")):
            qa, qb = stored(a), stored(b)
            shared = sorted(set(qa["qids"]) & set(qb["qids"]))
            if not shared:
                continue
            scores = {"a": question_scores(qa, a["run"], shared), "b": question_scores(qb, b["run"], shared)}
            for row in compare(scores, "a", "b"):
                pairs.append({"a": f"{a['trial']}/{a['run']}", "b": f"{b['trial']}/{b['run']}", "n": len(shared),
                              **row})
    return pairs


def differences_markdown(pairs: list[dict]) -> str:
    if not pairs:
        return ""
    lines = ["", "Paired differences on the same questions (95 % bootstrap intervals):", "",
             "| comparison | n | metric | difference | 95 % interval | reading |", "|---|---|---|---|---|---|"]
    lines += [f"| {p['a']} − {p['b']} | {p['n']} | {p['metric']} | {p['diff']:+.1f} "
              f"| [{p['lo']:+.1f}, {p['hi']:+.1f}] | {p['verdict']} |" for p in pairs]
    return "\n".join(lines) + "\n"


def study_markdown(rows: list[dict]) -> str:
    from laffi.evaluation.report import cell

    lines = ["| trial | run | answer | " + " | ".join(t for t, _ in SUMMARY_KEYS) + " | why |",
             "|---" * (len(SUMMARY_KEYS) + 4) + "|"]
    for r in rows:
        lines.append(f"| {r['trial']} | {r['run']} | {r['answer_path']} | "
                     + " | ".join(cell(r, k) for _, k in SUMMARY_KEYS) + f" | {r['why']} |")
    return "\n".join(lines) + "\n"
