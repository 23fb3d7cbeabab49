"""Writing files so that an interruption never leaves half of one behind."""

import os
import tempfile
from pathlib import Path


def atomic_write(path, write):
    """Call ``write(temp_path)``, then rename the temp file onto ``path``: readers see the old
    file or the new one, never half of one, even if the write is interrupted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
