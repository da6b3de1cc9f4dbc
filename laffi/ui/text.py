"""The one way the app puts words in front of a person: pop-ups and status lines show text as text, never as markup.

Usage:
    raise error(f"The adapter name {name!r} is not valid: ...")     # instead of gr.Error(...)
    warning(f"{n} bad record(s) skipped; first: {problem}")          # instead of gr.Warning(...)
    info("Saved.")                                                   # instead of gr.Info(...)
    gr.Markdown(...) value:  f"**Error:** {md_literal(job_error)}"   # text inside Markdown

Gradio renders a pop-up's message as HTML (sanitised: scripts go, but <img>, <form>, <b> stay and an image URL is
fetched), so a message quoting an adapter name or a line of an uploaded file could show markup or call out. Every
gr.Error/gr.Warning/gr.Info in laffi/ui goes through here (tests/test_ui_text.py checks) and has &, < and > escaped:
the browser shows them literally. gradio_client users read the same escaped text (&lt; for <).
"""

from __future__ import annotations

import html
import re

import gradio as gr

_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")


def as_text(message) -> str:
    """The message with the three HTML metacharacters escaped, so HTML shows it literally."""
    return html.escape(str(message), quote=False)


def md_literal(message) -> str:
    """Text to put inside a gr.Markdown value: shown literally (no markup, no links, no emphasis)."""
    return _MARKDOWN.sub(r"\\\1", as_text(message))


def error(message, title: str = "Error") -> gr.Error:
    """A gr.Error to raise; its message is shown as text."""
    return gr.Error(as_text(message), title=title)


def warning(message) -> None:
    gr.Warning(as_text(message))


def info(message) -> None:
    gr.Info(as_text(message))


def name_range_errors(*components) -> None:
    """Out-of-range values for these sliders (or bounded numbers) are refused with a sentence naming the field.
    Gradio's own check says only "Value 0 is less than minimum value 1.", which an API user can't place. The
    check wraps the component's preprocess (a subclass would make Gradio write a .pyi stub beside this module)."""
    for c in components:
        def preprocess(payload, c=c, original=c.preprocess):
            low, high = c.minimum, c.maximum
            if isinstance(payload, (int, float)) and ((low is not None and payload < low)
                                                      or (high is not None and payload > high)):
                rule = (f"between {low:g} and {high:g}" if low is not None and high is not None
                        else f"at least {low:g}" if low is not None else f"at most {high:g}")
                raise error(f"{c.label} must be {rule}, not {payload:g}.")
            return original(payload)

        c.preprocess = preprocess
