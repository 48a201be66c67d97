"""Where the shared evaluation sets live: `$TTC_SHARED_DATA`, else `../shared/data` next to the
checkout (for a git worktree, next to the main checkout)."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _main_checkout() -> Path:
    try:
        common = subprocess.run(
            ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ROOT
    return Path(common).parent


def shared_data_dir() -> Path:
    if "TTC_SHARED_DATA" in os.environ:
        return Path(os.environ["TTC_SHARED_DATA"])
    for checkout in (ROOT, _main_checkout()):
        candidate = checkout.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return ROOT.parent / "shared" / "data"
