"""Checkpoints load with torch.load(weights_only=True) (issue 21): a file whose pickle would run code
is refused in one line naming it and nothing from it runs; our own checkpoints (numpy arrays of the
population dynamics included) and the authors' released generators still load."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gan_landscape.runs import checkpoint

OFFICIAL = Path(__file__).parent / "data" / "rsgan-official"


class Evil:
    """Unpickling calls os.system: what a malicious .pth does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def evil_file(path: Path, marker: Path) -> Path:
    torch.save({"G": {"w": torch.zeros(2)}, "payload": Evil(marker), "step": 10, "config": {}}, path)
    return path


def run_tool(module: str, *args, cwd: Path, env: dict | None = None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


def test_a_pickle_that_runs_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = evil_file(tmp_path / "evil.pth", marker)
    with pytest.raises(checkpoint.UnsafeCheckpointError, match=r"^refused .*evil.pth: .*posix.system"):
        checkpoint.load(path)
    assert not marker.exists()


def test_gl_eval_refuses_it_in_one_line(tmp_path, weights):
    marker = tmp_path / "pwned"
    evil_file(tmp_path / "evil.pth", marker)
    out = run_tool("gan_landscape.commands.evaluate", "checkpoint=evil.pth", "model=cnn", "width=0.25", "dataset=cifar10",
                   f"hydra.run.dir={tmp_path / 'hydra'}", cwd=tmp_path, env={"GL_FID_WEIGHTS": str(weights)})
    assert out.returncode == 2, out.stderr
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("gl-eval: refused evil.pth: loading it would run code") and "posix.system" in line
    assert not marker.exists()


def test_gl_train_refuses_to_resume_from_it(tmp_path):
    args = ["train.iters=20", "train.num_seeds=2", "train.cpu_kernel=false", "hydra.run.dir=r"]
    assert run_tool("gan_landscape.commands.train", *args, cwd=tmp_path).returncode == 0
    run = tmp_path / "r"
    (run / "summary.json").write_text('{"status": "running"}')  # a run dir copied mid-training
    marker = tmp_path / "pwned"
    evil_file(run / "checkpoints" / "step_0000020.pt", marker)
    out = run_tool("gan_landscape.commands.train", *args, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.strip().splitlines() if ln.startswith("gl-train:")]
    assert len(lines) == 1 and "refused" in lines[0] and "step_0000020.pt" in lines[0] and "Traceback" not in out.stderr
    assert not marker.exists()
    assert (run / "checkpoints" / "step_0000000.pt").exists()


def test_numpy_arrays_and_plain_containers_load(tmp_path):
    state = {"mu": [np.arange(3.0)], "traj": [np.zeros((2, 2), np.float32)], "ints": np.arange(4, dtype=np.uint32),
             "flags": np.array([True, False]), "config": {"a": [1, 2.5, "x", None]}}
    path = checkpoint.save(tmp_path, 7, state)
    back = checkpoint.load(path)
    assert back["step"] == 7 and back["config"] == state["config"]
    for k in ("ints", "flags"):
        assert back[k].dtype == state[k].dtype and np.array_equal(back[k], state[k])
    assert np.array_equal(back["mu"][0], state["mu"][0]) and back["traj"][0].dtype == np.float32


def test_the_authors_released_generators_load():
    for name in ("RSGAN-CNN-quater-cifar.pth", "RSGAN-ResNet-quater-cifar.pth"):
        state = checkpoint.load(OFFICIAL / name)
        assert state and all(torch.is_tensor(v) for v in state.values()), name
