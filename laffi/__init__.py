"""laffi: LaFFi — natural-language feedback for fine-tuning (Li et al., arXiv 2401.00907).

Usage:  python -m laffi --help        (CLI)
        python app.py                 (Gradio demo)

What is where (the README's "Layout" table says more):
- the model: models (base + adapters), surface (its typed protocol), kernels, multilora, prefix, generation,
  events (what generation reports), attention, answerability (best span and no-answer probability,
  thresholds), selffeedback (feedback and the answer paths), backends/ (vLLM), gpu, model_calls;
- the stages: data, prompts, drafts (stage 1), annotation (stage 2; the app's feedback as training records),
  training, packing, train_logs, distributed (stage 3), evaluation, squad_metric, metric/, stats, report
  (stage 4), stages (all four, written once), study;
- people and machines: cli/, ui/, jobs/, feedback_store, hub_sync, space, webassets, bench/, settings, io, errors,
  tiny.
Heavy imports (torch, transformers) happen inside functions, not at import, so `import laffi` stays cheap.
"""

__version__ = "0.1.0"

import logging

# bitsandbytes (imported by peft) warns at every CPU start that it cannot fetch an optional kernel from the hub;
# its built-in fallback is what we want anyway, so keep that line out of users' terminals.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
