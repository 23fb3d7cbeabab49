"""Writing files so that an interruption never leaves half of one behind.

``atomic_write`` writes into a temp file beside the target and renames it over the target.
The temp file's name says who writes it: ``.<name>.<host>.<pid>.<random>.tmp``. A writer killed
mid-write (kill -9, a power cut) leaves its temp file behind; the next ``atomic_write`` to the
same target deletes such leftovers, but only those of processes on this host that no longer
run, so it never deletes a file another live writer is still writing.
"""

import os
import re
import socket
import tempfile
from pathlib import Path

_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


def atomic_write(path, write):
    """Call ``write(temp_path)``, then rename the temp file onto ``path``: readers see the old
    file or the new one, never half of one, even if the write is interrupted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{_HOST}.{os.getpid()}.", suffix=".tmp")
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


def remove_stale_temp_files(path):
    """Delete the temp files that killed writers left beside ``path``; return their paths.

    Only files named by this host whose process id no longer runs: a live writer's file (another
    process, or another thread of this one) is never touched. On Windows nothing is deleted
    (there is no safe way to ask whether a process id runs without extra packages)."""
    path = Path(path)
    if os.name == "nt" or not path.parent.is_dir():
        return []
    prefix = f".{path.name}.{_HOST}."
    removed = []
    for candidate in path.parent.iterdir():
        name = candidate.name
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid = name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _process_runs(int(pid)):
            try:
                candidate.unlink()
                removed.append(candidate)
            except FileNotFoundError:  # another cleaner was faster
                pass
    return removed


def _process_runs(pid):
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else, or cannot tell: treat as running
        return True
    return True


def check_output_path(path, name, folder=False):
    """Refuse, before any work starts, an output path that cannot be written: a parent that is a
    regular file, a folder where a file is expected (or the reverse), a read-only location."""
    path = Path(path)
    kind = "folder" if folder else "file"
    if path.exists() and path.is_dir() != folder:
        raise ValueError(f"{name} {str(path)!r} is {'a file' if folder else 'a folder'}, but must be a {kind}; "
                         f"choose another path.")
    existing = path if path.exists() else next(p for p in path.parents if p.exists())
    if not existing.is_dir() and existing != path:
        raise ValueError(f"{name} {str(path)!r} cannot be created: {str(existing)!r} is a file, not a folder; "
                         f"choose another path.")
    if not os.access(existing if existing.is_dir() else existing.parent, os.W_OK):
        raise ValueError(f"{name} {str(path)!r} is not writable (no permission to write in {str(existing)!r}); "
                         "choose a folder you can write to.")
    return path
