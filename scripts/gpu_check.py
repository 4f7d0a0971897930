"""make gpu-check: everything that needs a GPU, in one command of a few minutes.

  1. every CUDA test (pytest -m cuda);
  2. a short bench (scripts/bench_gpu.py --quick, ~2 s a row);
  3. gl-train: 2,000 iterations of a stacked run (4 seeds of the quarter-width SN-CNN, RS-GAN) on a
     CIFAR-10 folder (default ../shared/data/cifar10-subset, or the path given);
  4. gl-eval of its seeds with random-valued Inception weights (fid.random_weights: the real weights
     cannot be downloaded here; the numbers then mean nothing, the pipeline is what is checked);
  5. gl-report of it.
Ends with one table (step, status, seconds, detail) and exits non-zero if any step failed.
Each step has its own time limit, and all of them one budget of BUDGET_S (under 5 minutes).
Without the CIFAR-10 folder (a GPU machine that got only the repository) it trains on random
pixels in CIFAR-10's format and says so; the steps check the pipeline, not the numbers.
Usage: python scripts/gpu_check.py [CIFAR10_DIR]
"""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
BUDGET_S = 285  # all steps together; each step also has its own limit below
# The package need not be installed (a bare GPU machine): every step imports it from ROOT.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def _text(out) -> str:
    return out.decode(errors="replace") if isinstance(out, bytes) else (out or "")


def step(name: str, cmd: list[str], results: list, timeout: float, deadline: float) -> bool:
    left = deadline - time.time()
    if left < 5:
        results.append((name, "SKIPPED", 0.0, f"no time left of the {BUDGET_S} s budget"))
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
    last = next((ln for ln in reversed(text.strip().splitlines()) if ln.strip()), "")
    results.append((name, "ok" if ok else "FAILED", time.time() - t0, last[:110]))
    return ok


def train_args(data: Path, run: Path) -> list[str]:
    """gl-train's overrides: 2,000 iterations of 4 stacked seeds, checkpoints and samples twice."""
    return ["dataset=cifar10", "model=cnn", "width=0.25", "loss=rsgan", "train.num_seeds=4",
            "train.iters=2000", "train.lr_decay_start=1000", "train.ckpt_every=1000",
            "train.sample_every=1000", "train.log_seconds=10", f"dataset.root={data}",
            "dataset.check_integrity=false", "dataset.download=false", f"hydra.run.dir={run}"]


def cifar_folder(arg: str | None, tmp: Path) -> tuple[Path, str]:
    """The CIFAR-10 folder to train on, and a note when it is a random-pixel stand-in."""
    data = Path(arg).resolve() if arg else ROOT.parent / "shared" / "data" / "cifar10-subset"
    if data.exists():
        return data, ""
    sys.path.insert(0, str(ROOT / "tests"))
    from fakes import write_cifar10  # real CIFAR-10 pickles, random pixels
    fake = tmp / "cifar-10-batches-py"
    write_cifar10(fake, n_per_batch=1000)
    return fake, f"{data} not found: trained on random pixels in CIFAR-10's format"


def main() -> int:
    import torch
    if not torch.cuda.is_available():
        print(f"gpu-check: no CUDA device here (torch {torch.__version__}); run it on a machine with "
              "a GPU. `make test` runs every CPU test.")
        return 1
    deadline = time.time() + BUDGET_S
    tmp = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    data, note = cifar_folder(sys.argv[1] if len(sys.argv) > 1 else None, tmp)
    run = tmp / "run"
    results = []
    step("CUDA tests", [PY, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider"], results,
         timeout=100, deadline=deadline)
    step("bench (quick)", [PY, "scripts/bench_gpu.py", "--quick", "--seconds", "2"], results,
         timeout=90, deadline=deadline)
    trained = step("gl-train 2000 it, 4 seeds", [PY, "-m", "gan_landscape.train", *train_args(data, run)],
                   results, timeout=90, deadline=deadline)
    if note:
        results.append(("data", "note", 0.0, note))
    if trained:
        weights = tmp / "random_inception.pth"
        made = step("random Inception weights", [
            PY, "-c", f"from gan_landscape import fid; fid.random_weights({str(weights)!r})"], results,
            timeout=30, deadline=deadline)
        if made:
            step("gl-eval (random Inception)", [
                PY, "-m", "gan_landscape.evaluate", f"run={run}", f"fid.weights={weights}",
                "fid.n_fake=2000", "fid.n_real=1000", f"fid.cache_dir={tmp / 'fid'}"], results,
                timeout=75, deadline=deadline)
        step("gl-report", [PY, "-m", "gan_landscape.report", str(run), "--out", str(tmp / "report")],
             results, timeout=30, deadline=deadline)
    print("\n| step | status | seconds | last line |\n|---|---|---:|---|")
    for name, status, sec, last in results:
        print(f"| {name} | {status} | {sec:.0f} | {last.replace('|', '/')} |")
    steps = [r for r in results if r[1] != "note"]
    failed = [r for r in steps if r[1] != "ok"]
    print(f"\ngpu-check: {len(steps) - len(failed)}/{len(steps)} steps ok; files in {tmp}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
