"""User-facing errors.

Usage:  raise LaffiError("The file --data 'x.json' does not exist; pass a SQuAD JSON file or a dataset id.")

Anything raised as LaffiError is a mistake the *user* can fix; the CLI prints its message as one sentence and
exits with status 2, the app shows it with gr.Error. Everything else is a bug and keeps its traceback.
It subclasses ValueError so config validation (`__post_init__`) reads like TRL's and callers can catch either.
"""


class LaffiError(ValueError):
    """A problem with the user's input or environment, described in a sentence that says what to do."""


def check_at_least_one(**values) -> None:
    """Flags that count things (a limit, processes, drafts): None is "not set", anything else must be >= 1."""
    for name, value in values.items():
        if value is not None and value < 1:
            raise LaffiError(f"--{name.replace('_', '-')} must be at least 1, not {value}.")
