"""The laffi demo app. Usage:  python app.py [--host 0.0.0.0] [--port 7860] [--share]   (python app.py --help)
Everything is in laffi/ui/; the model and settings come from the environment (README, "Deploying"), read here once."""

import laffi.serving.gpu  # noqa: F401  (first: on a ZeroGPU Space `spaces` must be imported before torch)
from laffi.settings import Settings
from laffi.ui import build_app, launch, launch_options

if __name__ == "__main__":
    options = launch_options()  # --help prints the options and exits here, before any model work
    settings = Settings.from_env()
    launch(build_app(settings=settings, defer_load=True), settings, **options)  # the page first; the model behind it
