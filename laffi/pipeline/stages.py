"""The LaFFi stages, written once: predict -> annotate -> train -> evaluate, over one run specification.

Usage:
    cfg = PipelineConfig.from_yaml("configs/laffi.yaml")   # laffi.pipeline.config
    run = Stages(cfg, log=print)
    run.all()                                # what `python -m laffi pipeline` does; returns the results dict
    run.predict(); run.annotate(); run.train("laffi", seed=0); run.evaluate()    # or one stage at a time
    print(run.commands("laffi"))             # the same stages as separate CLI commands (the Train tab shows these)

Every stage's output lives under cfg.out_dir with a key of the settings it depends on; a stage whose output has
the same key is reused (force=True redoes it). A trained adapter carries its key in training_config.json, so a
pipeline run finds the shipped adapters it would train and only evaluates them. An adapter folder is replaced only
when cfg.overwrite says so. The callers differ only in how they watch: `log` (messages), `progress(stage, done,
total)` (a stage's work so far; done=0 when it begins: the app's jobs show their phase from it), `callbacks` (TRL
callbacks, e.g. a Stop button's) and `resume` (training continues from a checkpoint); `settings` are their entry
point's (laffi.settings: the model cache, a launch's world size).

Each stage's inputs are the dataclasses its CLI command parses (DataArgs, AnnotateArgs, TrainDataArgs, TrainConfig),
made from the PipelineConfig in one method each; the stage runs on them and `commands` renders the same objects as
command lines (laffi.commandline), so what runs and what is shown cannot drift apart.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path

from laffi.adapter_folder import ANSWER_PATH, AdapterFolder
from laffi.commandline import flags, laffi_argv
from laffi.errors import LaffiError
from laffi.inference.events import count_done
from laffi.io import read_jsonl, write_json_atomic, write_jsonl_atomic, write_text_atomic
from laffi.pipeline.config import METHOD_KEYS, PipelineConfig
from laffi.pipeline.steps import AnnotateArgs, PredictArgs, TrainDataArgs, annotate_records, train_records
from laffi.settings import Settings
from laffi.squad.data import DataArgs


def key_of(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _file_stamp(path: str | None):
    """A human-feedback file changes as people give feedback: its size and time belong in the annotate key."""
    if not path or not Path(path).exists():
        return None
    st = Path(path).stat()
    return [st.st_size, st.st_mtime_ns]


def _files_digest(patterns: list[str]) -> str:
    """What the evaluation folders matched by `patterns` answered: a digest of their examples.jsonl files."""
    from laffi.feedback.drafts import prediction_folders

    h = hashlib.sha256()
    for folder in prediction_folders(patterns):
        h.update(str(folder).encode() + b"\0" + (folder / "examples.jsonl").read_bytes())
    return h.hexdigest()[:16]


PREDICT_CHUNK = 64  # base answers written to disk after every chunk


class Stages:
    def __init__(self, cfg: PipelineConfig, force: bool = False, log=print, progress=None, callbacks=(),
                 resume: bool = True, backend=None, settings: Settings | None = None):
        self.cfg, self.force, self.log, self.callbacks, self.resume = cfg, force, log, list(callbacks), resume
        self.settings = settings or Settings()  # defaults unless the entry point passes the environment's
        self.backend = backend  # laffi.inference.backends.BackendConfig for the predict stage (None: transformers)
        self.progress = progress or (lambda stage, done, total: None)
        self.out = Path(cfg.out_dir)
        self._examples: dict[str, list] = {}
        if cfg.extra_data:  # every stage reads one file: the data with extra's balanced articles added
            from laffi.squad.combine import combined_training_data

            self.cfg = replace(cfg, **combined_training_data(cfg, self.out / "data"))

    # --- data -------------------------------------------------------------------------------------------------
    def selection(self, which: str) -> DataArgs:
        """Which training or evaluation questions: the fixed article split, a seeded sample."""
        c = self.cfg
        articles, limit = (c.train_articles, c.train_limit) if which == "train" else (c.eval_articles, c.eval_limit)
        return DataArgs(data=c.data, articles=articles, limit=limit, seed=c.seed)

    def model_config(self):
        """The base model every stage loads (adapters attached by name where needed), from the settings' cache, in
        the settings' precision (LAFFI_DTYPE), as training loads it (laffi.training.trainer.base_config)."""
        from laffi.inference.models import ModelConfig

        return ModelConfig(base=self.cfg.base, adapters_dir=None, cache_dir=str(self.settings.cache),
                           dtype=self.settings.dtype)

    def examples(self, which: str) -> list:
        """The training or evaluation questions; skipped records logged."""
        if which not in self._examples:
            examples, problems = self.selection(which).select()
            for p in problems[:5]:
                self.log(f"warning: skipped {p}")
            self._examples[which] = examples
        if "train" in self._examples and "eval" in self._examples:
            shared = {e.context for e in self._examples["train"]} & {e.context for e in self._examples["eval"]}
            if shared:
                raise LaffiError("The training and evaluation articles share passages; choose disjoint articles.")
        return self._examples[which]

    def _cached(self, path: Path, key: str) -> bool:
        meta = path.with_suffix(path.suffix + ".key")
        return not self.force and path.is_file() and meta.is_file() and meta.read_text().strip() == key

    def _ticker(self, stage: str):
        return lambda done, total: self.progress(stage, done, total)

    # --- stage 1: the base model answers the training questions ---------------------------------------------------
    def selection_key(self) -> str:
        c = self.cfg
        return key_of("select", c.data, c.train_articles, c.train_limit, c.seed)

    def predict(self) -> list[dict]:
        """The base model's answer to every training question. Answers are kept per question in one file for this
        data and base model, so a smaller, larger or other sample answers only the questions not yet answered."""
        if self.cfg.draft_predictions:  # a trained model's answers, evaluated before (the SFT folds')
            from laffi.feedback.drafts import predicted_drafts

            records = predicted_drafts(self.examples("train"), self.cfg.draft_predictions)
            self.log(f"predict: {len(records)} own drafts read from draft_predictions")
            return records
        path, key = self.out / "predictions.jsonl", key_of("predict", self.cfg.data, self.cfg.base)
        done = {r["qid"]: r for r in read_jsonl(path)} if self._cached(path, key) else {}
        examples = self.examples("train")
        missing = [e for e in examples if e.qid not in done]
        if not missing:
            self.log(f"predict: reusing {path} ({len(examples)} answers)")
        else:
            from laffi.feedback.drafts import own_drafts
            from laffi.inference.generation import GenerationConfig
            from laffi.inference.models import load_model

            self.progress("predict", 0, len(missing))
            self.log(f"predict: the base model answers {len(missing)} training questions"
                     + (f" ({len(examples) - len(missing)} answered before)" if done else ""))
            from laffi.inference.backends import use_backend

            lm = use_backend(load_model(self.model_config()), self.backend, self.log)
            gen = GenerationConfig(batch_size=self.cfg.eval_batch_size)
            counted = count_done(self._ticker("predict"), total=len(missing))  # over every chunk
            # Saved every chunk: a run stopped after an hour keeps that hour's answers.
            for start in range(0, len(missing), PREDICT_CHUNK):
                chunk = missing[start:start + PREDICT_CHUNK]
                for r in own_drafts(lm, chunk, gen, counted):
                    done[r["qid"]] = r
                write_jsonl_atomic(path, done.values())
                write_text_atomic(path.with_suffix(".jsonl.key"), key + "\n")
        return [done[e.qid] for e in examples]

    # --- stage 2: feedback on every draft (AI, mixed with human) ---------------------------------------------------
    def annotate_key(self) -> str:
        c = self.cfg
        return key_of(self.selection_key(), c.base, "annotate", c.annotator, c.human_feedback,
                      _file_stamp(c.human_feedback), c.feedback_rows, _file_stamp(c.feedback_rows),
                      c.human_fraction, c.drafts, c.synthetic_per_question,
                      *([_files_digest(c.draft_predictions)] if c.draft_predictions else []))  # keys made before stay

    def annotate_args(self) -> AnnotateArgs:
        """How stage 2 annotates: `laffi annotate`'s settings, from this config."""
        c = self.cfg
        return AnnotateArgs(predictions=str(self.out / "predictions.jsonl"), out=str(self.out / "annotated.jsonl"),
                            annotator=c.annotator, human=c.human_feedback, human_fraction=c.human_fraction,
                            feedback_rows=c.feedback_rows, drafts=c.drafts,
                            synthetic_per_question=c.synthetic_per_question, seed=c.seed)

    def feedback_alone(self) -> bool:
        """The app's collected feedback is all the data: no SQuAD question is predicted or annotated."""
        return bool(self.cfg.feedback_rows and self.cfg.human_fraction >= 1)

    def annotate(self) -> list[dict]:
        args = self.annotate_args()
        path, key = Path(args.out), self.annotate_key()
        if self._cached(path, key):
            self.log(f"annotate: reusing {path}")
            return read_jsonl(path)
        lm = None
        if args.annotator == "llm":
            from laffi.inference.models import load_model

            lm = load_model(self.model_config())
        if self.feedback_alone():
            records = []
        elif self.cfg.drafts == "synthetic":  # no answer of the model's is kept: nothing to predict
            records = [e.to_dict() for e in self.examples("train")]
        else:
            records = self.predict()
        self.progress("annotate", 0, len(records))
        annotated, report = annotate_records(records, args, lm=lm, on_event=count_done(self._ticker("annotate")),
                                             log=self.log)
        write_jsonl_atomic(path, annotated)
        write_json_atomic(self.out / "annotation_report.json", report)
        write_text_atomic(path.with_suffix(".jsonl.key"), key + "\n")
        return annotated

    # --- stage 3: LoRA training -------------------------------------------------------------------------------
    def adapter_name(self, which: str, seed: int) -> str:
        name = self.cfg.sft_name if which == "sft" else self.cfg.laffi_name
        return name if seed == self.cfg.seeds[0] else f"{name}-seed{seed}"

    def adapters_dir(self, seed: int) -> Path:
        return Path(self.cfg.adapters_dir) if seed == self.cfg.seeds[0] else self.out / "seeds"

    def train_config(self, which: str, seed: int):
        from laffi.training.trainer import TrainConfig

        c = self.cfg
        settings = {"method": which, **c.train, **getattr(c, which)}
        name = self.adapter_name(which, seed)
        return TrainConfig(**{**settings, "name": name, "base": c.base, "seed": seed, "overwrite": c.overwrite,
                              "adapters_dir": str(self.adapters_dir(seed)),
                              "work_dir": str(self.out / "train" / name)})

    def train_key(self, which: str, seed: int) -> str:
        tcfg = asdict(self.train_config(which, seed))
        for volatile in ("name", "adapters_dir", "work_dir", "overwrite", "num_processes", "micro_batch_size",
                         "deepspeed"):  # where and how it trains, not what it learns
            tcfg.pop(volatile)
        records_key = self.annotate_key() if self.needs_feedback(tcfg["method"]) else self.selection_key()
        return key_of(records_key, "train", tcfg)

    def needs_feedback(self, method: str) -> bool:
        """SFT needs only the questions and gold answers; LaFFi (and any run on collected feedback) the annotations."""
        return method != "sft" or bool(self.cfg.feedback_rows)

    def train_data(self, tcfg, run_key: str | None = None) -> TrainDataArgs:
        """What `laffi train --data` reads for this run: the annotations, the collected feedback alone, or (SFT)
        the training questions themselves."""
        c = self.cfg
        resume = {"run_key": run_key, "no_resume": not self.resume}
        if self.feedback_alone():
            return TrainDataArgs(data=c.feedback_rows, **resume)
        if self.needs_feedback(tcfg.method):
            return TrainDataArgs(data=self.annotate_args().out, **resume)
        sel = self.selection("train")
        return TrainDataArgs(data=sel.data, articles=sel.articles, limit=sel.limit, data_seed=sel.seed, **resume)

    def trained(self, which: str, seed: int) -> Path | None:
        """The adapter folder if it exists and was trained with exactly these settings."""
        folder = self.adapters_dir(seed) / self.adapter_name(which, seed)
        stored = AdapterFolder(folder).run_key()
        return folder if stored is not None and stored == self.train_key(which, seed) and not self.force else None

    def train(self, which: str, seed: int | None = None) -> Path | None:
        """Train (or reuse) one adapter; None when training was stopped on request (resumable)."""
        seed = self.cfg.seeds[0] if seed is None else seed
        path = self.trained(which, seed)
        tcfg = self.train_config(which, seed)
        if path is not None:
            self.log(f"train {which} (seed {seed}): reusing {path}")
        else:
            records = (self.annotate() if self.needs_feedback(tcfg.method)
                       else [e.to_dict() for e in self.examples("train")])
            self.progress("train", 0, len(records))
            self.log(f"train {which} (seed {seed}): {tcfg.method} on {len(records)} records -> "
                     f"{tcfg.adapters_dir}/{tcfg.name}")
            extra = {ANSWER_PATH: self.cfg.laffi_answer_path} if which == "laffi" and self.cfg.laffi_answer_path \
                else None  # in the folder before it appears
            result = train_records(lambda: records, tcfg, self.train_data(tcfg, self.train_key(which, seed)),
                                   self.callbacks, self.log, extra, self.settings)
            if not result.finished:  # stopped on request: resumable from its checkpoint
                return None
            path = result.path
        # a new folder got this config's answer path with its weights (extra); a reused one keeps the path it
        # serves by (another study's trial may share the adapter): this run's evaluation asks for its own instead
        # (evaluation_paths)
        return path

    def evaluation_paths(self, trained: dict[str, dict[int, Path]]) -> dict:
        """{laffi adapter name: this config's AnswerPath} for evaluate_variants (none without laffi_answer_path)."""
        if self.cfg.laffi_answer_path is None or "laffi" not in trained:
            return {}
        from laffi.inference.selffeedback import AnswerPath

        return {self.adapter_name("laffi", s): AnswerPath(**self.cfg.laffi_answer_path) for s in trained["laffi"]}

    # --- stage 4: evaluation -------------------------------------------------------------------------------------
    def evaluate(self, trained: dict[str, dict[int, Path]] | None = None) -> dict:
        """Base and every trained adapter (every seed) on the evaluation questions, in mixed batches; pooled rows
        average each question's score over seeds; paired differences between the methods and the base."""
        from laffi.evaluation.evaluate import base_answers_cache, evaluate_variants, read_base_answers
        from laffi.evaluation.report import pooled_result, results_markdown
        from laffi.inference.generation import GenerationConfig
        from laffi.inference.models import load_model

        c = self.cfg
        trained = trained or {w: {s: self.trained(w, s) for s in c.seeds} for w in c.methods}
        missing = [f"{w} (seed {s})" for w, by_seed in trained.items() for s, p in by_seed.items() if p is None]
        if missing:
            raise LaffiError(f"Not trained yet: {', '.join(missing)}; run the train stage first.")
        lm = load_model(self.model_config())
        seeds_of = {}
        for which, by_seed in trained.items():
            seeds_of[which] = []
            for seed, path in by_seed.items():
                lm.attach(self.adapter_name(which, seed), path)
                seeds_of[which].append(self.adapter_name(which, seed))
        examples = self.examples("eval")
        variants = ["base", *(v for names in seeds_of.values() for v in names)]
        self.log(f"evaluate: {', '.join(variants)} on {len(examples)} {c.eval_articles} questions")
        out = self.out / c.run_name
        gen = GenerationConfig(batch_size=c.eval_batch_size)
        asked = key_of(c.data, c.base, c.eval_articles, c.eval_limit, c.seed, asdict(gen))
        cache = self.out / "answers" / f"base-{asked}.json"
        from laffi.inference.answerability import direct_thresholds

        # the base model's answers don't change between runs (its threshold may: decided again on reading)
        cached = read_base_answers(cache, examples, direct_thresholds(lm, ["base"]).get("base"))
        paths = self.evaluation_paths(trained)
        result = evaluate_variants(lm, examples, variants, gen, out_dir=out / "eval",
                                   on_event=count_done(self._ticker("evaluate")), feedback=c.eval_feedback,
                                   direct={"base": cached} if cached else None, paths=paths or None)
        if not cached:
            write_json_atomic(cache, {ex.qid: base_answers_cache(a) for ex, a in zip(examples, result["direct"]["base"])})
        named = {(c.sft_name if w == "sft" else c.laffi_name): seeds_of[w] for w in METHOD_KEYS if w in seeds_of}
        pooled = pooled_result(result, named)
        pooled.update(eval_articles=c.eval_articles, train_articles=c.train_articles, config=asdict(c),
                      train_questions=len(self.examples("train")), precision=result["precision"])
        write_json_atomic(out / "results.json", pooled)
        write_text_atomic(out / "results.md", results_markdown(pooled))
        from laffi.inference.selffeedback import read_answer_path
        from laffi.training.logs import write_evaluation

        for which, by_seed in trained.items():  # litgpt-style: metrics live next to the adapter they describe
            for seed, path in by_seed.items():
                name = self.adapter_name(which, seed)
                if name in paths and read_answer_path(path) != paths[name]:
                    self.log(f"evaluate: {name} serves by its {read_answer_path(path).label()} path; this run's "
                             f"numbers ({paths[name].label()}) stay in {out}, not in its folder")
                    continue
                write_evaluation(path, {"n": result["n"], "eval_articles": c.eval_articles,
                                        "precision": result["precision"], **result["variants"][name]})
        return pooled

    def all(self) -> dict:
        trained = {}
        for which in self.cfg.methods:
            trained[which] = {}
            for seed in self.cfg.seeds:
                path = self.train(which, seed)
                if path is None:
                    raise LaffiError(f"Training {which} (seed {seed}) was stopped; run again to resume it.")
                trained[which][seed] = path
        from laffi.pipeline.calibration import calibrate_trained

        calibrate_trained(self, trained)
        return self.evaluate(trained)

    # --- the same stages as separate commands ---------------------------------------------------------------------
    def commands(self, which: str, seed: int | None = None) -> str:
        """The equivalent `python -m laffi` command lines for training `which` (shown beside every app run): the
        stage inputs above, rendered as flags (laffi.commandline); a launch shows its `accelerate launch` line."""
        from laffi.training.distributed import shown, train_launch

        seed = self.cfg.seeds[0] if seed is None else seed
        tcfg = self.train_config(which, seed)
        data = TrainDataArgs(**{**self.train_data(tcfg).__dict__, "no_resume": False})  # as a person would type it
        lines = [shown(train_launch(tcfg, flags(data, changed=True)))]
        if self.needs_feedback(tcfg.method) and not self.feedback_alone():
            lines[:0] = self.feedback_commands()
        return "\n".join(lines)

    def feedback_commands(self) -> list[str]:
        """Stages 1 and 2 as command lines, as annotate() runs them: synthetic drafts annotate the SQuAD questions
        themselves (nothing predicted); drafts from evaluated answers are read, not predicted; otherwise the base
        model answers first."""
        from laffi.training.distributed import shown

        c, annotate = self.cfg, self.annotate_args()
        if c.drafts == "synthetic":
            annotate = replace(annotate, predictions=c.data, articles=c.train_articles, limit=c.train_limit)
            return [shown(laffi_argv("annotate", annotate, changed=True))]
        from laffi.inference.models import ModelConfig

        # the base by name; the reader's own environment says where its cache is
        predict = PredictArgs(out=annotate.predictions, from_eval=",".join(c.draft_predictions or []) or None)
        predict_line = laffi_argv("predict", ModelConfig(base=c.base), self.selection("train"), predict,
                                  changed=True, keep=("base", "split"))
        return [shown(predict_line), shown(laffi_argv("annotate", annotate, changed=True))]
