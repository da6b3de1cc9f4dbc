"""A FeedbackScheduler whose upload copies into a local folder (the "dataset"), for tests without a network.

Usage:
    sync = FeedbackSync(store, "me/feedback", None, tmp / "queue", scheduler_class=FolderScheduler,
                        remote=tmp / "hub", hf_api=OfflineApi()).start()
    sync.scheduler.down = True        # the next uploads fail, as with no network
"""

from pathlib import Path

from huggingface_hub import HfApi, RepoUrl

from laffi.feedback.hub_sync import PATH_IN_REPO, FeedbackScheduler


class OfflineApi(HfApi):
    """HfApi whose create_repo answers without the Hub (CommitScheduler creates the repo in __init__)."""

    def create_repo(self, repo_id, **kwargs):
        return RepoUrl(f"{self.endpoint}/datasets/{repo_id}")


class FolderScheduler(FeedbackScheduler):
    """Uploads by copying each file (as long as it was when listed, under the lock) to remote/feedback/."""

    def __init__(self, *, remote, **kwargs):
        self.remote = Path(remote)
        self.down = False
        self.uploads = 0
        super().__init__(**kwargs)

    def upload(self):
        with self.lock:
            files = [(p, p.stat().st_size) for p in sorted(self.folder_path.glob("*.jsonl"))]
        if self.down:
            raise ConnectionError("the Hub can't be reached (test)")
        target = self.remote / PATH_IN_REPO
        target.mkdir(parents=True, exist_ok=True)
        changed = False
        for path, size in files:
            data = path.read_bytes()[:size]
            dest = target / path.name
            if not dest.exists() or dest.read_bytes() != data:
                dest.write_bytes(data)
                changed = True
        if not changed:
            return None  # like CommitScheduler: no empty commits
        self.uploads += 1
        return f"commit {self.uploads}"

    def download(self, dest: Path) -> list[Path]:
        return sorted((self.remote / PATH_IN_REPO).glob("*.jsonl"))
