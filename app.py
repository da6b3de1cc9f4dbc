"""The laffi demo app. Usage:  python app.py      (serves on 127.0.0.1:7860; GRADIO_SERVER_NAME/PORT override)
Everything is in laffi/ui/; the model and settings come from the environment (README, "Deploying")."""

from laffi.ui import build_demo, launch

if __name__ == "__main__":
    launch(build_demo())
