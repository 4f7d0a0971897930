"""Issue 21's smaller faults, as a new user meets them: short image runs, widths that round to zero,
corrupt data files, an unwritable report folder, which checkpoints are kept, Ctrl-C in gl-eval and
gl-landscape."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import make_cfg
from fakes import write_cifar10, write_stl10
from gan_landscape.runs import checkpoint, interrupt
from gan_landscape import data
from gan_landscape.commands import evaluate, report

SYNTH = ["train.num_seeds=2", "train.cpu_kernel=false", "train.log_every=2"]


def gl_train(*args, cwd: Path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GL_DATA_ROOT": str(cwd / "no-data-here")}
    return subprocess.run([sys.executable, "-m", "gan_landscape.commands.train", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env=env)


def one_line(out: subprocess.CompletedProcess, tool: str = "gl-train") -> str:
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{tool}: ") and "Traceback" not in out.stderr, out.stderr
    return lines[0]


@pytest.fixture
def cifar(tmp_path) -> Path:
    write_cifar10(tmp_path / "data" / "cifar-10-batches-py")
    return tmp_path / "data"


def image(cifar: Path) -> list[str]:
    return ["dataset=cifar10", "model=cnn", "loss=rsgan", "width=0.125", f"dataset.root={cifar}",
            "dataset.check_integrity=false", "train.batch_size=8", "train.device=cpu"]


def test_a_short_image_run_works_with_the_default_schedule(tmp_path, cifar):
    out = gl_train(*image(cifar), "train.iters=4", "hydra.run.dir=r", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    cfg = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert cfg["train"]["lr_decay_start"] == 2  # decay over the second half, as 50k of 100k


def test_a_width_that_rounds_to_zero_is_one_line_and_writes_nothing(tmp_path, cifar):
    out = gl_train(*image(cifar), "width=1e-9", "train.iters=4", cwd=tmp_path)
    assert out.returncode == 2
    assert one_line(out) == "gl-train: width=1e-09: a layer of model=cnn would have 0 units; expected width >= 0.0082"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_corrupt_cifar_file_is_one_line_naming_it_and_leaves_no_run_dir(tmp_path, cifar, damage):
    batch = cifar / "cifar-10-batches-py" / "data_batch_3"
    raw = batch.read_bytes()
    batch.write_bytes(raw[: len(raw) // 2] if damage == "truncate" else b"not a pickle" * 100)
    out = gl_train(*image(cifar), "train.iters=4", cwd=tmp_path)
    assert out.returncode == 2
    line = one_line(out)
    assert line.startswith(f"gl-train: CIFAR-10: {batch} is corrupt or truncated") and "re-download" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"], "no run dir"


def test_a_truncated_stl10_file_is_one_line_naming_it(tmp_path):
    write_stl10(tmp_path)
    binary = tmp_path / "stl10_binary" / "unlabeled_X.bin"
    binary.write_bytes(binary.read_bytes()[:-100])
    ds = make_cfg("dataset=stl10", "model=cnn", f"dataset.root={tmp_path}", "dataset.check_integrity=false").dataset
    with pytest.raises(data.DataError, match=f"^STL-10: {binary} is truncated or corrupt"):
        data.load_images(ds)


@pytest.mark.parametrize("keep,steps", [(None, [0, 4, 6, 8, 10]), ("all", [0, 2, 4, 6, 8, 10]), ("1", [0, 10])])
def test_keep_checkpoints(tmp_path, keep, steps):
    extra = [f"train.keep_checkpoints={keep}"] if keep else []
    out = gl_train(*SYNTH, "train.iters=10", "train.ckpt_every=2", *extra, "hydra.run.dir=r", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert checkpoint.list_steps(tmp_path / "r") == steps


def test_gl_eval_says_which_steps_exist(tmp_path):
    for s in (0, 6, 8):
        checkpoint.save(tmp_path, s, {"config": {}})
    with pytest.raises(evaluate.EvalError, match=r"no checkpoint for step 2; it has 0, 6, 8 \(gl-train keeps"):
        evaluate.select_steps(tmp_path, "2")
    assert evaluate.select_steps(tmp_path, "all") == [0, 6, 8]


def test_an_unwritable_report_folder_is_one_line(tmp_path):
    assert gl_train(*SYNTH, "train.iters=4", "hydra.run.dir=runs/r", cwd=tmp_path).returncode == 0
    (tmp_path / "file").write_text("x")
    bad = [tmp_path / "file" / "out"]
    if os.geteuid() != 0:  # root writes into a read-only folder anyway
        (tmp_path / "ro").mkdir(mode=0o500)
        bad.append(tmp_path / "ro" / "out")
    for out_dir in bad:
        gl_report = [sys.executable, "-m", "gan_landscape.commands.report", str(tmp_path / "runs"), "--out", str(out_dir)]
        out = subprocess.run(gl_report, capture_output=True, text=True, timeout=120)
        assert out.returncode == 2
        assert one_line(out, "gl-report").startswith(f"gl-report: cannot write the report into {out_dir}")


def test_an_os_error_while_writing_is_one_line(tmp_path, monkeypatch):
    assert gl_train(*SYNTH, "train.iters=4", "hydra.run.dir=runs/r", cwd=tmp_path).returncode == 0

    def full(rep):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(report, "write", full)
    with pytest.raises(report.ReportError, match="cannot write the report into .*: No space left on device"):
        report.build([str(tmp_path / "runs"), "--out", str(tmp_path / "out")])


def test_ctrl_c_in_gl_eval_and_gl_landscape_is_one_line(capsys):
    def work():
        raise KeyboardInterrupt
    with pytest.raises(SystemExit) as stop:
        interrupt.stop_on_ctrl_c("gl-eval", work)
    assert stop.value.code == 130
    assert capsys.readouterr().err == "gl-eval: stopped by Ctrl-C; results written before it are kept, nothing partial\n"

