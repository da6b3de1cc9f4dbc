"""The Gradio UI, one module per tab; app.py composes them. Callbacks stay thin: they validate input, call laffi/
and format results. Usage: see app.py (build_demo)."""
