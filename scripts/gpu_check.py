"""make gpu-check: everything that needs a GPU, in one command of a few minutes.

  1. every CUDA test (pytest -m cuda);
  2. a short bench (scripts/bench_gpu.py --quick, ~2 s a row; it fails when a graph row ran eagerly);
  3. gl-train: 2,000 iterations of a stacked run (4 seeds of the quarter-width SN-CNN, RS-GAN) on a
     CIFAR-10 folder; it passes when every seed's summary.json says finished and its iteration was
     captured as a CUDA graph (gl-train exits 0 also when seeds diverge or the capture fell back);
  4. gl-eval of its seeds with random-valued Inception weights (fid.random_weights: the real weights
     cannot be downloaded here; the numbers then mean nothing, the pipeline is what is checked);
  5. gl-report of it.
Ends with one table (step, status, seconds, detail) and exits non-zero if any step failed. Each
step has its own time limit (LIMITS), and all of them add up to the budget, BUDGET_S; a step that
finds too little of the budget left is SKIPPED (reported, not a failure: it was not checked).
The CIFAR-10 folder: the one given, else data/cifar10-subset in the repository (carried to a GPU
machine, see scripts/stand_in_data.py), else ../shared/data/cifar10-subset, else random pixels in
CIFAR-10's format (the pipeline is checked, not the numbers); the table says which.
Usage: python scripts/gpu_check.py [CIFAR10_DIR]
"""
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stand_in_data import cifar10_folder

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
# Seconds per step: a cold machine imports torch and autotunes cuDNN in each of these processes.
LIMITS = {"CUDA tests": 100, "bench (quick)": 70, "gl-train": 60, "random Inception weights": 15,
          "gl-eval": 40, "gl-report": 15}
BUDGET_S = sum(LIMITS.values())
MIN_START_S = 5  # a step with less of the budget left is skipped
SEEDS = 4
# The package need not be installed (a bare GPU machine): every step imports it from ROOT.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def _text(out) -> str:
    return out.decode(errors="replace") if isinstance(out, bytes) else (out or "")


def step(name: str, cmd: list[str], results: list, timeout: float, deadline: float, check=None) -> bool:
    """Run one step within its limit and what is left of the budget; `check(output)` -> (ok,
    detail) judges a step that exited 0 (default: ok, its last line)."""
    left = deadline - time.time()
    if left < MIN_START_S:
        results.append((name, "SKIPPED", 0.0, f"{left:.0f} s left of the {BUDGET_S} s budget"))
        return False
    timeout = min(timeout, left)
    print(f"\n== {name} (at most {timeout:.0f} s): {' '.join(cmd)}", flush=True)
    t0 = time.time()
    try:
        out = subprocess.run(cmd, cwd=ROOT, text=True, capture_output=True, timeout=timeout, env=ENV)
        ok, text = out.returncode == 0, out.stdout + out.stderr
    except subprocess.TimeoutExpired as e:  # its output arrives as bytes, whatever text= says
        ok, text = False, f"{_text(e.stdout)}{_text(e.stderr)}\ntimed out after {timeout:.0f} s"
    print(text[-6000:], flush=True)
    detail = next((ln for ln in reversed(text.strip().splitlines()) if ln.strip()), "")
    if ok and check is not None:
        ok, detail = check(text)
    results.append((name, "ok" if ok else "FAILED", time.time() - t0, detail[:110]))
    return ok


def train_args(data: Path, run: Path) -> list[str]:
    """gl-train's overrides: 2,000 iterations of 4 stacked seeds, checkpoints and samples twice."""
    return ["dataset=cifar10", "model=cnn", "width=0.25", "loss=rsgan", f"train.num_seeds={SEEDS}",
            "train.iters=2000", "train.lr_decay_start=1000", "train.ckpt_every=1000",
            "train.sample_every=1000", "train.log_seconds=10", f"dataset.root={data}",
            "dataset.check_integrity=false", "dataset.download=false", f"hydra.run.dir={run}"]


def train_verdict(run: Path, seeds: int = SEEDS) -> tuple[bool, str]:
    """Every seed's summary.json: finished, and trained by a captured CUDA graph."""
    paths = sorted(Path(run).glob("s*/summary.json")) or sorted(Path(run).glob("summary.json"))
    if len(paths) != seeds:
        return False, f"{len(paths)} of {seeds} seeds wrote a summary.json in {run}"
    bad = []
    for p in paths:
        s = json.loads(p.read_text())
        if s.get("status") != "finished":
            bad.append(f"{p.parent.name} {s.get('status')}: {s.get('error', '')}".strip())
        elif s.get("cuda_graph") != "captured":
            bad.append(f"{p.parent.name} cuda_graph {s.get('cuda_graph')}")
    if bad:
        return False, "; ".join(bad)
    return True, f"{seeds} seeds finished, cuda_graph captured"


def verdict(results: list) -> tuple[int, str]:
    """The exit status and the closing line: failed steps fail the check, skipped ones do not."""
    checked = [r for r in results if r[1] in ("ok", "FAILED", "SKIPPED")]
    failed = [r for r in checked if r[1] == "FAILED"]
    skipped = [r for r in checked if r[1] == "SKIPPED"]
    line = f"gpu-check: {len(checked) - len(failed) - len(skipped)}/{len(checked)} steps ok"
    if failed:
        line += f", {len(failed)} FAILED"
    if skipped:
        line += f", {len(skipped)} skipped for lack of time (not checked)"
    return (1 if failed else 0), line


def main() -> int:
    import torch
    if not torch.cuda.is_available():
        print(f"gpu-check: no CUDA device here (torch {torch.__version__}); run it on a machine with "
              "a GPU. `make test` runs every CPU test.")
        return 1
    deadline = time.time() + BUDGET_S
    tmp = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    try:
        data, note = cifar10_folder(tmp, sys.argv[1] if len(sys.argv) > 1 else None)
    except FileNotFoundError as e:
        print(f"gpu-check: {e}")
        return 2
    print(f"# gpu-check on {torch.cuda.get_device_name()}, torch {torch.__version__}; {note}", flush=True)
    run = tmp / "run"
    results = [("data", "note", 0.0, note)]
    step("CUDA tests", [PY, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider"], results,
         LIMITS["CUDA tests"], deadline)
    step("bench (quick)", [PY, "scripts/bench_gpu.py", "--quick", "--seconds", "2"], results,
         LIMITS["bench (quick)"], deadline)
    trained = step("gl-train", [PY, "-m", "gan_landscape.commands.train", *train_args(data, run)], results,
                   LIMITS["gl-train"], deadline, check=lambda text: train_verdict(run))
    if trained:
        weights = tmp / "random_inception.pth"
        made = step("random Inception weights", [
            PY, "-c", f"from gan_landscape import fid; fid.random_weights({str(weights)!r})"], results,
            LIMITS["random Inception weights"], deadline)
        if made:
            step("gl-eval", [
                PY, "-m", "gan_landscape.commands.evaluate", f"run={run}", f"fid.weights={weights}",
                "fid.n_fake=2000", "fid.n_real=1000", f"fid.cache_dir={tmp / 'fid'}"], results,
                LIMITS["gl-eval"], deadline)
        step("gl-report", [PY, "-m", "gan_landscape.commands.report", str(run), "--out", str(tmp / "report")],
             results, LIMITS["gl-report"], deadline)
    print("\n| step | status | seconds | detail |\n|---|---|---:|---|")
    for name, status, sec, detail in results:
        print(f"| {name} | {status} | {sec:.0f} | {detail.replace('|', '/')} |")
    code, line = verdict(results)
    print(f"\n{line}; files in {tmp}")
    return code


if __name__ == "__main__":
    sys.exit(main())
