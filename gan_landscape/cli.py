"""What the four tools (gl-train, gl-eval, gl-report, gl-landscape) share: where the configs live,
one base class for bad input, one device resolver, and the rule for ending.

The rule: a `UserError` (bad input: unknown name, missing file, value out of range) ends the tool
with one line `<tool>: <message>` on stderr and exit status 2; anything else is a bug and keeps its
traceback. Every module raises a subclass of `UserError` for what a user can fix; nothing else is
caught. This module imports nothing of the package, so every module can import it.
"""
import re
import sys
from pathlib import Path

import torch

# Configs live at the repository root (the README installs the package editable from the clone).
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")
USER_ERROR_EXIT = 2


class UserError(Exception):
    """Bad input: the message is the whole story (what was given, what is allowed)."""


class ConfigError(UserError):
    """A config value of the wrong type, out of range, or an unknown name."""


DEVICE_NAME = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def resolve_device(name: str, job_num: int | None = None, key: str = "train.device") -> torch.device:
    """`auto` is CUDA when present, else the CPU. In a sweep, job k of `auto` goes to GPU
    k mod n_gpus, so n_jobs = k x GPUs packs k runs on each GPU."""
    name = str(name)
    if not DEVICE_NAME.match(name):
        raise ConfigError(f"{key}={name}: expected auto, cpu, cuda or cuda:N")
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", (job_num or 0) % torch.cuda.device_count())
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"{key}={name} but no CUDA device is available")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"{key}={name} but only {torch.cuda.device_count()} CUDA device(s) exist")
    return torch.device(name)


def lookup(registry: dict, key: str, name: str, what: str, where: str):
    """registry[name], or one line naming the key, the value and every registered name."""
    try:
        return registry[name]
    except KeyError:
        raise ConfigError(f"{key}={name}: {what}; {where} registers {', '.join(registry)}") from None


def one_line(tool: str, error: BaseException) -> str:
    msg = " ".join(str(error).split()) or type(error).__name__
    return f"{tool}: {msg}"


def exit_on_user_error(tool: str, fn, *args, **kwargs):
    """fn(*args, **kwargs); a UserError ends the process with one line and status 2."""
    try:
        return fn(*args, **kwargs)
    except UserError as e:
        print(one_line(tool, e), file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)
