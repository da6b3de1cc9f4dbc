"""The laffi demo app. Usage:  python app.py [--host 0.0.0.0] [--port 7860] [--share]   (python app.py --help)
Everything is in laffi/ui/; the model and settings come from the environment (README, "Deploying")."""

import laffi.serving.gpu  # noqa: F401  (first: on a ZeroGPU Space `spaces` must be imported before torch)
from laffi.ui import build_app, launch, launch_options

if __name__ == "__main__":
    options = launch_options()  # --help prints the options and exits here, before any model work
    launch(build_app(defer_load=True), **options)  # the page is served first; the model loads behind it
