"""gl-eval: finding runs, bookkeeping in fid.jsonl and summary.json, the CLI's lines and exit codes.

Run dirs are built as gl-train leaves them (config.yaml, summary.json, checkpoints/ holding the
paper's CNN at width 0.125); the reals are a tiny CIFAR-10 in the official format; the Inception
weights are random (see test_fid.py).
"""
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import make_cfg
from fakes import write_cifar10
from gan_landscape.runs import checkpoint
from gan_landscape.commands import evaluate
from gan_landscape.cli import UserError
from gan_landscape.nets import build_generator

REPO = Path(__file__).resolve().parents[1]
OFFICIAL = REPO / "tests" / "data" / "rsgan-official" / "RSGAN-CNN-quater-cifar.pth"
SMALL = ["fid.n_fake=6", "fid.n_real=8", "fid.batch_size=6", "fid.dims=64", "device=cpu"]
pytestmark = [pytest.mark.filterwarnings("ignore:FID statistics from"), pytest.mark.usefixtures("private_cache")]


@pytest.fixture
def cifar_root(tmp_path) -> Path:
    write_cifar10(tmp_path / "data" / "cifar10" / "cifar-10-batches-py", n_per_batch=8)
    return tmp_path / "data" / "cifar10"


def make_run(run: Path, root: Path, loss="rsgan", status="finished", ema=True, steps=(0, 10)):
    """A run dir as gl-train leaves it: config.yaml, summary.json, checkpoints/step_*.pt."""
    cfg = make_cfg("dataset=cifar10", "model=cnn", "width=0.125", f"loss={loss}",
                   f"dataset.root={root}", "dataset.check_integrity=false", "dataset.download=false")
    run.mkdir(parents=True)
    OmegaConf.save(cfg, run / "config.yaml", resolve=True)
    (run / "summary.json").write_text(json.dumps({"status": status, "iters": steps[-1]}))
    for step in steps:
        torch.manual_seed(zlib.crc32(f"{run.name}{step}".encode()))
        G, G_ema = build_generator(cfg), build_generator(cfg)
        checkpoint.save(run, step, {"config": OmegaConf.to_container(cfg, resolve=True),
                                    "G": G.state_dict(), "G_ema": G_ema.state_dict() if ema else None})
    return run


def eval_cfg(*overrides):
    return make_cfg(*overrides, config_name="eval")


def records(jsonl: Path) -> list[dict]:
    return [json.loads(ln) for ln in jsonl.read_text().splitlines()]


def test_gl_eval_scores_a_sweep_once_and_updates_summary(tmp_path, weights, cifar_root, reads):
    sweep = tmp_path / "sweeps" / "cifar10_widths"
    stack = sweep / "cifar10-cnn-w0.125-rsgan-s0-1"  # stacked image seeds: one run dir per seed
    s0 = make_run(stack / "s0", cifar_root, ema=True)
    make_run(stack / "s1", cifar_root, ema=False)
    diverged = make_run(sweep / "cifar10-cnn-w0.125-jsgan-s0", cifar_root, loss="jsgan",
                        status="diverged")
    small = [*SMALL, f"fid.weights={weights}", f"fid.cache_dir={tmp_path / 'cache'}"]

    tally = evaluate.evaluate(eval_cfg(f"run={sweep}", *small))
    assert tally.n == 3 and not tally.failed  # s0: raw + ema, s1: raw (no EMA kept)
    assert tally.skipped == [f"{diverged}: status diverged"]
    a = records(s0 / "fid.jsonl")
    assert [(r["step"], r["generator"]) for r in a] == [(10, "raw"), (10, "ema")]
    assert a[0]["fid"] != a[1]["fid"] and a[0]["protocol_key"] == a[1]["protocol_key"]
    for k in ("protocol", "reference_key", "data_fingerprint", "n_real", "n_real_used", "reals",
              "reals_seed", "resize", "is_logits", "weights_sha256", "versions", "seconds", "time"):
        assert k in a[0], k
    summary = json.loads((s0 / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert summary["fid"] == {"protocol": "paper", "protocol_key": a[0]["protocol_key"],
                              "step": 10, "raw": a[0]["fid"], "ema": a[1]["fid"]}

    assert evaluate.evaluate(eval_cfg(f"run={sweep}", *small)).n == 0  # already scored
    assert evaluate.evaluate(eval_cfg(f"run={sweep}", *small, "step=all")).n == 3  # step 0 is new
    assert evaluate.evaluate(eval_cfg(f"run={sweep}", *small, "force=true", "which=[ema]")).n == 1
    assert [r["step"] for r in records(s0 / "fid.jsonl")] == [10, 10, 0, 0, 10]
    assert len(reads) == 1  # one reference for all of it
    # another protocol is another measurement; the summary follows the newest final-step one
    assert evaluate.evaluate(eval_cfg(f"run={s0}", *small, "fid.g_mode=eval")).n == 2
    assert json.loads((s0 / "summary.json").read_text())["fid"]["protocol_key"] != a[0]["protocol_key"]
    # named directly, the diverged run is scored (its newest checkpoint is its last good one)
    assert evaluate.evaluate(eval_cfg(f"run={diverged}", *small)).n == 2


def test_a_corrupt_checkpoint_is_reported_and_the_rest_scored(tmp_path, weights, cifar_root):
    good = make_run(tmp_path / "sweep" / "a", cifar_root, ema=False)
    bad = make_run(tmp_path / "sweep" / "b", cifar_root, ema=False)
    checkpoint.path_for(bad, 10).write_bytes(b"not a checkpoint")
    tally = evaluate.evaluate(eval_cfg(f"run={tmp_path / 'sweep'}", *SMALL, f"fid.weights={weights}",
                                       f"fid.cache_dir={tmp_path / 'cache'}"))
    assert tally.n == 1 and len(records(good / "fid.jsonl")) == 1 and not (bad / "fid.jsonl").exists()
    assert len(tally.failed) == 1 and "corrupt checkpoint" in tally.failed[0]
    assert "1 checkpoint(s) FAILED" in tally.line(str(tmp_path / "sweep"))


def gl_eval(*args, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    """The installed gl-eval script, as a user types it."""
    exe = Path(sys.executable).parent / "gl-eval"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "gan_landscape.commands.evaluate"]
    return subprocess.run([*cmd, *args, f"hydra.run.dir={cwd / 'hydra'}"], capture_output=True,
                          text=True, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1", **env})


def test_gl_eval_cli_takes_the_run_path_as_printed_and_shows_progress(tmp_path, weights, cifar_root):
    make_run(tmp_path / "runs" / "adhoc" / "cifar10-cnn-w0.125-rsgan-s0", cifar_root)
    env = {"GL_FID_WEIGHTS": str(weights), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    cli = gl_eval("run=runs/adhoc/cifar10-cnn-w0.125-rsgan-s0", *SMALL, "fid.n_real=12",
                  "fid.log_seconds=0", cwd=tmp_path, env=env)
    assert cli.returncode == 0, cli.stderr[-3000:]
    out = cli.stdout.strip().splitlines()
    assert "reals cifar10 test: 8/8 (100.0%)" in cli.stdout and "img/s | ETA" in cli.stdout
    assert "cifar10-cnn-w0.125-rsgan-s0 step 10 ema: 6/6 (100.0%)" in cli.stdout
    assert "only 8 real images in cifar10 test, fewer than fid.n_real=12" in cli.stdout
    assert out[-1] == "gl-eval: 2 new result(s) in runs/adhoc/cifar10-cnn-w0.125-rsgan-s0/fid.jsonl"
    recs = records(tmp_path / "runs/adhoc/cifar10-cnn-w0.125-rsgan-s0/fid.jsonl")
    assert all(r["n_real_used"] == 8 and "fewer than" in r["warning"] for r in recs)
    assert len(list((tmp_path / "xdg" / "gan-landscape" / "fid").glob("cifar10-test-8-*.npz"))) == 1


def test_gl_eval_bad_input_is_one_line_and_writes_nothing(tmp_path, weights, cifar_root):
    run = make_run(tmp_path / "run", cifar_root, steps=(0,))
    before = sorted(p for p in tmp_path.rglob("*"))
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg"), "GL_FID_WEIGHTS": str(weights)}
    cli = gl_eval(f"run={run}", f"fid.weights={tmp_path / 'nope.pth'}", cwd=tmp_path, env=env)
    assert (cli.returncode, cli.stderr.strip().splitlines()) == (2, [
        f"gl-eval: fid.weights={tmp_path / 'nope.pth'}: no such file (it should be a copy of "
        f"pt_inception-2015-12-05-6726825d.pth)"])
    moved = f"^CIFAR-10 is not in {tmp_path / 'moved'} and dataset.download=false$"
    with pytest.raises(UserError, match=moved):  # data_root: where the runs' data moved to
        evaluate.evaluate(eval_cfg(f"run={run}", f"data_root={tmp_path / 'moved'}", *SMALL))
    after = sorted(p for p in tmp_path.rglob("*") if "hydra" not in p.parts and "xdg" not in p.parts)
    assert after == before and not (tmp_path / "xdg" / "gan-landscape" / "fid").exists()

    for bad, msg in ((["run=/nonexistent"], "no such directory"),
                     ([f"run={checkpoint.path_for(run, 0)}"], "is a file; pass a checkpoint file"),
                     ([f"run={run}", "step=latest"], "expected final, all"),
                     ([f"run={run}", "which=[G]"], "expected raw and/or ema"),
                     ([f"run={run}", "dataset=cifar10"], "brings its own dataset"),
                     ([f"run={run}", "device=gpu"], "device=gpu: expected auto, cpu"),
                     ([f"run={run}", "fid.resize=bicubic"], "expected pytorch or tf1"),
                     ([], "exactly one of run=DIR or checkpoint=PATH")):
        with pytest.raises(UserError, match=msg):
            evaluate.evaluate(eval_cfg(*bad))


def test_gl_eval_bare_state_dict_of_the_authors(tmp_path, weights, cifar_root):
    """The authors' released quarter-width CNN generator (vendored, MIT) loads into model=cnn
    width=0.25 and gets an FID; at another width it is refused in one line."""
    args = [f"checkpoint={OFFICIAL}", "model=cnn", "dataset=cifar10", f"dataset.root={cifar_root}",
            "dataset.check_integrity=false", *SMALL, f"fid.weights={weights}",
            f"fid.cache_dir={tmp_path / 'cache'}", f"out={tmp_path / 'out.jsonl'}"]
    tally = evaluate.evaluate(eval_cfg(*args, "width=0.25"))
    assert tally.n == 1
    (rec,) = records(tmp_path / "out.jsonl")
    assert rec["checkpoint"] == str(OFFICIAL) and rec["fid"] > 0
    assert (rec["dataset"], rec["split"], rec["g_mode"]) == ("cifar10", "test", "train")
    with pytest.raises(evaluate.EvalError, match="do not fit model=cnn width=0.5"):
        evaluate.evaluate(eval_cfg(*args, "width=0.5"))
