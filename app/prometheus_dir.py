"""Where the worker processes of one server keep their Prometheus counters.

`prometheus_client` counts in process memory; with several uvicorn workers each would expose
only its own share, and a scrape would land on one worker at random. Its multi-process mode
keeps every process's values in memory-mapped files of one directory (`PROMETHEUS_MULTIPROC_DIR`)
and a scrape sums them. The library reads the variable once, when it is imported, so this
module (which must not import it) decides before the app is built:

- the variable is set by the user: that directory is used (created if missing; emptying it
  between runs is the user's part, as `prometheus_client` documents);
- else, one process serves: in-memory counting, no directory;
- else (several workers): a directory of this server's own under the temporary directory,
  named by the supervisor's pid and start time, so that every worker of one server finds the
  same one and a later server never reads an earlier one's counts. Directories of servers
  that are gone are removed by the first worker of the next server.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import stat
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

log = logging.getLogger("tally")

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
DIRECTORY_PREFIX = "tally-prometheus-"
_OWN_DIRECTORY = re.compile(rf"^{DIRECTORY_PREFIX}(\d+)-(\d+)$")


class DirectoryRefused(Exception):
    """The directory cannot be used safely; the message says why."""


def prepare(processes: int, supervisor: int | None,
            environ: MutableMapping[str, str] = os.environ) -> Path | None:
    """Set `PROMETHEUS_MULTIPROC_DIR` when several processes serve and return the directory
    (None: in-memory counting). Call before anything imports `prometheus_client`."""
    given = environ.get(VARIABLE)
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        return directory
    if processes <= 1:
        return None
    parent = supervisor if supervisor is not None else os.getppid()
    remove_stale_directories(Path(tempfile.gettempdir()))
    directory = own_directory(Path(tempfile.gettempdir()), parent)
    environ[VARIABLE] = str(directory)
    log.info("Prometheus multi-process mode: %d workers count in %s", processes, directory)
    return directory


def directory_name(supervisor: int) -> str:
    return f"{DIRECTORY_PREFIX}{supervisor}-{process_start(supervisor)}"


def own_directory(base: Path, supervisor: int) -> Path:
    """The server's directory, created private to this user. An existing path that is not a
    directory of ours (a link, or another user's) is refused: it could have been planted."""
    directory = base / directory_name(supervisor)
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode=0o700)
    info = directory.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise DirectoryRefused(f"{directory} exists but is not a directory owned by this user; "
                               f"remove it or set {VARIABLE}")
    return directory


def remove_stale_directories(base: Path) -> None:
    """Remove the directories of servers that are no longer running (their pid is gone, or now
    names a process that started at another time)."""
    for entry in base.glob(f"{DIRECTORY_PREFIX}*"):
        match = _OWN_DIRECTORY.match(entry.name)
        if match is None or entry.is_symlink() or not entry.is_dir():
            continue
        pid, started = int(match[1]), int(match[2])
        if not process_alive(pid) or process_start(pid) != started:
            shutil.rmtree(entry, ignore_errors=True)  # another worker may be removing it too


def process_start(pid: int) -> int:
    """When `pid` started, in clock ticks since boot (Linux); 0 where /proc does not say.
    With the pid it names one process, even after the pid is reused."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    after_name = stat_line.rsplit(")", 1)[1].split()
    return int(after_name[19])  # field 22 of proc(5); fields 1-2 are before the split


def process_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"
