"""laffi: LaFFi — natural-language feedback for fine-tuning (Li et al., arXiv 2401.00907).

Usage:  python -m laffi --help        (CLI)
        python app.py                 (Gradio demo)

What is where: role folders, each building only on those before it (each folder's __init__ names its modules;
the README's "Layout" says more):
- foundations here: settings (every environment variable), errors, io, adapter_folder (every file of an adapter
  folder), commandline (config dataclasses <-> CLI flags), processes (stopping a process tree);
- squad/ (the data and the official metric) -> inference/ (a base model and its adapters as variants: surface,
  the typed protocol they implement; generation and the one event it reports; answerability, the answer paths,
  attention, CPU speed, vLLM) -> feedback/ (drafts, annotators, the feedback
  store), training/ (LoRA with TRL, packing, launches), evaluation/ (runs, intervals, tables) -> pipeline/ (the
  stages written once, the study, the app's training jobs);
- for people and machines: ui/ (the app), serving/ (ZeroGPU, a Space's folder), cli/, bench/.
Settings are read from the environment only at the entry points (the CLI, app.py, a job's process) and passed in.
Heavy imports (torch, transformers) happen inside functions, not at import, so `import laffi` stays cheap.
"""

__version__ = "0.1.0"

import logging

# bitsandbytes (imported by peft) warns at every CPU start that it cannot fetch an optional kernel from the hub;
# its built-in fallback is what we want anyway, so keep that line out of users' terminals.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
