"""Inference: one base model and its LoRA adapters as named variants, and everything they produce.

    models        load the base (embedded GGUF, a Hub id or a folder) and every adapter in adapters/ onto it
    model_files   the embedded GGUF, its cached conversion, and a model's shape read from disk (no loading)
    generation    greedy generation for several variants in one mixed-adapter batch (streamed)
    decoding      the greedy loop under it: a finished row leaves the batch (generate()'s tokens)
    events        GenerationEvent: what every generated row reports (stage, variant, question index, text)
    surface       the typed model every caller uses (LanguageModel) and what generates its rows (RowGenerator)
    prompts       every prompt laffi sends and how answers are read back out
    answerability each answer's best span and no-answer probability; thresholds chosen on validation
    selffeedback  answer paths: direct, draft -> predicted feedback -> answer, verify, rank
    attention     attention maps of one variant on one question
    precision     the base weights' dtype, measured on this machine (bfloat16 where native and faster)
    prefix, prefix_cache, multilora, kernels, kv_cache   CPU speed: shared-prefix prefill, prefixes kept
                  across calls, stacked LoRA, flat-cost linear layers, a key/value cache written in place
    model_thread  the one thread that runs all of a process's model work (OpenMP teams slow every other)
    backends, vllm               what generates: this process (transformers) or a vLLM server
    tiny          a tiny random Llama for tests (no download)
"""
