"""The laffi demo app. Usage:  python app.py      (serves on 127.0.0.1:7860; GRADIO_SERVER_NAME/PORT override)
Everything is in laffi/ui/; the model and settings come from the environment (README, "Deploying")."""

import laffi.gpu  # noqa: F401  (first: on a ZeroGPU Space `spaces` must be imported before torch)
from laffi.ui import build_demo, launch

if __name__ == "__main__":
    launch(build_demo(defer_load=True))  # the page is served first; the model loads behind it
