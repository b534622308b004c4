"""Files: a fingerprint of a tree, and scratch directories other accounts can reach."""

import contextlib
import hashlib
import shutil
import tempfile
from pathlib import Path


def digest(*paths):
    """One hash over the names and contents of every file below the paths.

    Symbolic links are left out: a test compares what is there, not what a
    link points to.
    """
    total = hashlib.sha256()
    for root in map(Path, paths):
        files = [root] if root.is_file() else sorted(root.rglob("*"))
        for path in files:
            if path.is_file() and not path.is_symlink():
                total.update(str(path).encode() + b"\0" + path.read_bytes())
    return total.hexdigest()


@contextlib.contextmanager
def shared_tmp_dir(prefix, mode=0o755):
    """A new directory in /tmp itself, removed with all it holds at the end.

    For files that nobody, www-data or a service account must reach: pytest's
    own temporary directories are private to root.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        path.chmod(mode)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
