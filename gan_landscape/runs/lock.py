"""One process per run dir: an advisory lock on `<run dir>/.lock` (fcntl.flock), held while a job
trains, with the holder's pid, host and start time written in the file.

The kernel drops the lock when its process dies however it dies (kill -9 included), so a lock is
never left held by a dead process; the file keeps the dead holder's line, and the next process says
it takes over. A released lock leaves the file empty. A run whose summary says `running` while its
lock is free was killed without a word (gl-report: `stale`).

On NFS, flock is carried by the NFS lock protocol and holds across machines (NFSv4: a crashed
client's lock expires after the server's lease, about 90 s). On Lustre it holds across nodes only
when the client mounts with `-o flock` (`localflock`: this node only); where the filesystem refuses
locks, gl-train says so once and trains without one.
"""
import errno
import fcntl
import logging
import os
import socket
import time
from pathlib import Path

from gan_landscape.cli import UserError

log = logging.getLogger("gl-train")
NAME = ".lock"
_UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


class LockError(UserError):
    pass


def holder_text(path: Path) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


class RunLock:
    """`with RunLock(dir):` holds dir's lock; a second process gets a LockError naming the holder."""

    def __init__(self, run_dir):
        self.path = Path(run_dir) / NAME
        self.fd = None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockError(f"{self.path.parent} is being trained by another process "
                            f"({holder_text(self.path) or 'holder unknown'}); wait for it to end or stop it")
        except OSError as e:
            os.close(fd)
            if e.errno not in _UNSUPPORTED:
                raise
            log.warning(f"{self.path}: this filesystem does not support locks ({e.strerror}); "
                        "training without one: do not start a second process on this run")
            return self
        self.fd = fd
        dead = holder_text(self.path)
        if dead:
            log.warning(f"took over the lock of {self.path.parent} from {dead}, which ended without "
                        "releasing it")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is None:
            return
        os.ftruncate(self.fd, 0)  # the holder line would read as a dead holder's otherwise
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None


def is_held(run_dir) -> bool | None:
    """Whether some process holds run_dir's lock: True, False (free or no lock file), None where
    the filesystem cannot tell."""
    path = Path(run_dir) / NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # closing drops the shared lock we may have taken
    return False
