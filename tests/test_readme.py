"""The README's commands are the contract: every command line of its ```bash blocks runs here, in
order, verbatim (as `python -m <tool module> ...`, in this process), in a scratch dir whose $GL_DATA_ROOT holds small datasets in the real formats and
whose $GL_FID_WEIGHTS are random-valued Inception weights. What the harness may add, never rewrite:

- short counts appended: iterations and the cadences tied to them (gl-train; plus a batch of 4 and
  `dataset.check_integrity=false` for the small image fixtures), image counts and the cheapest
  Inception block (gl-eval: 10 images, 64-d features unless the command asks for the Inception
  Score), solver and path sizes (gl-landscape);
- `hydra.run.dir=` pinned to the dir the verbatim command names (single gl-train runs), so later
  commands find the run although the counts changed its identity;
- `make` lines do not run here: `make test` is this suite; `make demo`, the benchmarks and the
  reproductions are scripts with their own tests, and take minutes to hours.
"""
import contextlib
import io
import re
import runpy
import shlex
import sys
import time

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import CONFIGS, ROOT
from fakes import write_cifar10, write_lsun_lmdb, write_stl10
from gan_landscape.runs.job import register_resolvers

THREADS = torch.get_num_threads()
TOOLS = {"gl-train": "gan_landscape.commands.train", "gl-eval": "gan_landscape.commands.evaluate",
         "gl-report": "gan_landscape.commands.report", "gl-landscape": "gan_landscape.commands.landscape"}
SHORT = ["train.iters=2", "train.log_every=1", "train.sample_every=2", "train.ckpt_every=2",
         "train.lr_decay_start=1"]
IMAGE_SHORT = ["train.batch_size=4", "dataset.check_integrity=false"]
EVAL_SHORT = ["fid.n_fake=10", "fid.n_real=10", "fid.batch_size=10"]
CHEAP_INCEPTION = "fid.dims=64"  # not with the Inception Score, whose classifier reads pool_3
LANDSCAPE_SHORT = ["path.points=3", "eig.k=1", "eig.k_extreme=1", "eig.maxiter=1", "eig.maxiter_extreme=1",
                   "eig.ncv=4", "slices.points=3", "slices.d_steps=5", "image.n_real=4"]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split(" # ")[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def composed(overrides: list[str]):
    register_resolvers()
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True)


def with_additions(words: list[str]) -> list[str]:
    tool, args = words[0], words[1:]
    if tool == "gl-eval":
        given = " ".join(args)
        return (args + EVAL_SHORT + ([] if "inception_score=true" in given else [CHEAP_INCEPTION])
                + (["dataset.check_integrity=false"] if "checkpoint=" in given else []))
    if tool == "gl-landscape":
        return args + LANDSCAPE_SHORT
    if tool != "gl-train":
        return args
    multirun = "--multirun" in args
    plain = [a for a in args if a != "--multirun" and not a.startswith("hydra")]
    cfg = composed([a.split(",")[0] for a in plain])  # a sweep's first choice tells the dataset kind
    if not multirun:
        cfg = composed([a for a in args if not a.startswith("hydra")])
    extra = SHORT + (IMAGE_SHORT if cfg.dataset.kind == "image" else [])
    if not multirun:
        extra.append(f"hydra.run.dir={OmegaConf.select(cfg, 'hydra.run.dir')}")
    return args + extra


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A working dir with the datasets the README names, in their real formats, and the files it
    refers to by relative path (tests/data)."""
    home = tmp_path_factory.mktemp("readme")
    data = home / "data"
    write_cifar10(data / "cifar10" / "cifar-10-batches-py", n_per_batch=16)
    write_stl10(data / "stl10", n=16)
    for cat in ("church_outdoor", "tower"):
        write_lsun_lmdb(data / "lsun", cat, n=8, size=(72, 64))
    (home / "tests").symlink_to(ROOT / "tests")
    from gan_landscape.metrics import fid
    weights = fid.random_weights(home / "inception.pth")
    env = {"GL_DATA_ROOT": str(data), "GL_FID_WEIGHTS": str(weights), "XDG_CACHE_HOME": str(home / "cache")}
    return home, env


def run_tool(module: str, args: list[str]) -> tuple[int, str]:
    """A tool as its console script runs it (`python -m <module> args...`), in this process: the
    README has ~20 commands, and a fresh process pays ~5 s of imports each."""
    from hydra.core.global_hydra import GlobalHydra
    GlobalHydra.instance().clear()
    out, argv = io.StringIO(), sys.argv
    sys.argv = [module, *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = argv
        torch.set_num_threads(THREADS)
    return code, out.getvalue()


def test_every_readme_command_runs_as_written(scratch, monkeypatch):
    home, env = scratch
    monkeypatch.chdir(home)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    ran = []
    for line in readme_commands():
        words = shlex.split(line)
        if words[0] == "make":
            continue
        assert words[0] in TOOLS, f"README command with an unknown tool: {line}"
        t0 = time.time()
        code, out = run_tool(TOOLS[words[0]], with_additions(words))
        print(f"{time.time() - t0:6.1f} s  {line}")
        assert code == 0, f"README: {line}\n{out[-5000:]}"
        ran.append(line)
    assert len(ran) >= 15 and {w.split()[0] for w in ran} == set(TOOLS)
