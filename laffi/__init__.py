"""laffi: LaFFi — natural-language feedback for fine-tuning (Li et al., arXiv 2401.00907).

Usage:  python -m laffi --help        (CLI)
        python app.py                 (Gradio demo)

One module per pipeline stage: models (loading base + adapters), prompts, generation, data, squad_metric,
evaluation, cli. Heavy imports (torch, transformers) happen inside those modules, not here, so
`import laffi` stays cheap.
"""

__version__ = "0.1.0"

import logging

# bitsandbytes (imported by peft) warns at every CPU start that it cannot fetch an optional kernel from the hub;
# its built-in fallback is what we want anyway, so keep that line out of users' terminals.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
