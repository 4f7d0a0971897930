"""Experiment configs: each composes with its sweep and builds the paper's nets; each smoke variant runs
end to end (gl-train --multirun, then gl-report) on CPU at tiny sizes; the launcher presets compose
and give submitit / joblib the right parameters without a cluster."""
import functools
import importlib.util
import itertools
import json
import os
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

from conftest import CONFIGS, ROOT
from fakes import write_cifar10, write_lsun_lmdb, write_stl10
from gan_landscape.commands import report
from gan_landscape.nets import build_generator

FULL = ["two_cluster", "five_gaussian", "synthetic_widths", "cifar10_widths", "width_claim", "stl10_widths", "lsun256"]
ALL = FULL + [f"{n}_smoke" for n in FULL]
LOSSES = {"jsgan", "hinge", "lsgan", "rsgan", "rphinge", "rplsgan"}


def hydra_cfg(*overrides):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


@functools.cache
def job_cfgs(name: str) -> tuple:
    """(experiment cfg, {job overrides: cfg}) for every job of the experiment's sweeps (extra sweeps
    included), seeds left out: a seed is a plain number and changes no composition. A smoke variant
    sweeps a subset of its full experiment's grid, so its jobs are composed through the full one's."""
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={name}"], return_hydra_config=True)
        params, jobs = cfg.hydra.sweeper.params, {}
        for extra in [[]] + [list(x) for x in cfg.plan.extra_sweeps]:
            for job in sweep_jobs(params, extra):
                key = tuple(o for o in job if not o.startswith("seed="))
                if key not in jobs and (not name.endswith("_smoke") or not jobs):
                    jobs[key] = compose("config", overrides=[f"experiment={name}", *key])
    return cfg, jobs


def load_reproduce():
    spec = importlib.util.spec_from_file_location("reproduce", ROOT / "scripts" / "reproduce.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def sweep_jobs(params: dict, extra=()) -> list[list[str]]:
    """The override lists Hydra's basic sweeper makes: the cartesian product, extra overrides winning."""
    merged = {**{str(k): str(v) for k, v in params.items()}, **dict(x.split("=", 1) for x in extra)}
    choices = []
    for o in OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in merged.items()]):
        vals = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
        choices.append([f"{o.key_or_group}={v}" for v in vals])
    return [list(c) for c in itertools.product(*choices)]


@pytest.mark.parametrize("name", ALL)
def test_every_experiment_and_every_job_of_its_sweep_composes(name):
    cfg, jobs = job_cfgs(name)
    assert cfg.experiment_name == name and cfg.hydra.sweep.dir == f"sweeps/{name}"
    assert cfg.plan.kind in ("synthetic", "image") and cfg.plan.seeds >= 1
    count = load_reproduce().count_jobs
    params, extras = cfg.hydra.sweeper.params, [list(x) for x in cfg.plan.extra_sweeps]
    assert sum(count(params, x) - len(sweep_jobs(params, x)) for x in [[]] + extras) == 0
    optims = {}
    for c in jobs.values():
        assert c.experiment_name == name and c.loss.name in LOSSES and c.optim.name in ("sgd", "adam")
        optims.setdefault((c.model.name, c.dataset.name), c.optim)
        if cfg.plan.kind == "image":
            assert c.fid.name == "paper"
    for (model, dataset), optim in optims.items():  # the authors' optimiser for each net x dataset
        assert optim == hydra_cfg(f"model={model}", f"dataset={dataset}").optim


@pytest.mark.parametrize("name,jobs,losses", [
    ("two_cluster", 6, LOSSES), ("five_gaussian", 6, LOSSES),
    ("cifar10_widths", 12 + 2, {"jsgan", "rsgan"}), ("stl10_widths", 12 + 2, {"jsgan", "rsgan"}),
    ("lsun256", 4, {"jsgan", "rsgan"})])
def test_full_experiments_sweep_the_paper_grid_with_its_settings(name, jobs, losses):
    cfg = hydra_cfg(f"experiment={name}")
    params = cfg.hydra.sweeper.params
    all_jobs = sweep_jobs(params) + [j for x in cfg.plan.extra_sweeps for j in sweep_jobs(params, list(x))]
    assert len(all_jobs) == jobs and set(params.loss.split(",")) == losses
    if cfg.plan.kind == "synthetic":
        expect = {"two_cluster": (100, 5000), "five_gaussian": (8, 20000)}[name]
        assert (cfg.train.num_seeds, cfg.train.iters) == expect
    else:
        assert (cfg.train.iters, cfg.train.lr_decay_start, cfg.train.batch_size) == (100000, 50000, 64)
        size = {"cifar10_widths": 32, "stl10_widths": 48, "lsun256": 256}[name]
        assert cfg.train.ema is None and cfg.dataset.image_size == size
        # a cell's seeds train as one stacked job: the CIFAR-10 table is 14 jobs of 3 seeds, not 42
        assert cfg.train.num_seeds == cfg.plan.seeds == {"lsun256": 1}.get(name, 3)


# G parameter counts of the authors' nets (shared/reference/papers.md §1.5, counted from networks.py;
# the released generators match): the widths in the configs are the paper's regular/half/quarter nets.
PAPER_G_PARAMS = {
    ("cifar10", "cnn", "1.0", False): 3_812_355, ("cifar10", "cnn", "0.5", False): 1_218_051,
    ("cifar10", "cnn", "0.25", False): 436_995, ("cifar10", "resnet", "1.0", False): 4_270_595,
    ("cifar10", "resnet", "0.5", False): 1_201_411, ("cifar10", "resnet", "0.25", False): 367_235,
    ("cifar10", "resnet", "0.5", True): 758_467, ("stl10", "cnn", "1.0", False): 5_133_315,
    ("stl10", "cnn", "0.5", False): 1_878_531, ("stl10", "cnn", "0.25", False): 767_235,
    ("stl10", "resnet", "1.0", False): 4_876_547, ("stl10", "resnet", "0.5", False): 1_814_659,
    ("stl10", "resnet", "0.25", False): 751_427,
}


@pytest.mark.parametrize("name", ["cifar10_widths", "stl10_widths", "lsun256"])
def test_image_sweeps_build_the_papers_generators(name):
    cells = {}
    for c in job_cfgs(name)[1].values():
        ds = c.dataset.name + (f"/{c.dataset.category}" if c.dataset.name == "lsun" else "")
        cells[(ds, c.model.name, str(c.width), bool(c.model.get("bottleneck", False)))] = c
    assert len(cells) == {"cifar10_widths": 7, "stl10_widths": 7, "lsun256": 2}[name]
    for key, c in cells.items():
        n = sum(p.numel() for p in build_generator(c).parameters())
        assert n == PAPER_G_PARAMS.get(key, 13_276_608 if c.model.name == "cnn256" else n), key


# ---------------------------------------------------------------- launchers

def test_slurm_launcher_gives_submitit_the_documented_parameters_without_a_cluster(monkeypatch, tmp_path):
    import submitit
    from hydra.utils import instantiate
    cfg = hydra_cfg("experiment=cifar10_widths", "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                    f"hydra.sweep.dir={tmp_path}")
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))  # "srun exists"
    seen = {}

    def no_submit(self, fn, *args):
        seen.update(sbatch=self._executor._make_submission_file_text("CMD", "UID"), jobs=len(args[0]),
                    retries=self._executor.max_num_timeout)
        return []

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", no_submit)
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=None, config=cfg)
    assert launcher.launch([["loss=jsgan"], ["loss=rsgan"]], initial_job_idx=0) == []
    for line in ("--partition=gpu", "--gpus-per-node=1", "--time=720", "--cpus-per-task=8", "--mem=32GB",
                 "--job-name=gl-cifar10_widths", f"--output={tmp_path}/.submitit/"):
        assert f"#SBATCH {line}" in seen["sbatch"], line
    assert seen["jobs"] == 2 and seen["retries"] == 3


def test_joblib_presets_compose_with_n_jobs(monkeypatch):
    packed = hydra_cfg("experiment=cifar10_widths", "hydra/launcher=joblib_gpu").hydra.launcher
    assert packed._target_.endswith("JoblibLauncher")
    assert packed.n_jobs == 4 and packed.prefer == "processes"
    monkeypatch.setenv("GL_N_JOBS", "8")
    assert hydra_cfg("hydra/launcher=joblib_gpu").hydra.launcher.n_jobs == 8
    assert hydra_cfg("hydra/launcher=joblib", "hydra.launcher.n_jobs=3").hydra.launcher.n_jobs == 3


# ---------------------------------------------------------------- smoke variants, end to end

def gl_train(*args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # 2 shared cores: spinning thread pools only slow us
    out = subprocess.run([sys.executable, "-m", "gan_landscape.commands.train", "--multirun", *args], cwd=cwd,
                         capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def statuses(sweep):
    return sorted(json.loads(p.read_text())["status"] for p in sweep.rglob("summary.json"))


def test_synthetic_smoke_sweeps_pack_jobs_rerun_as_no_op_and_report(tmp_path):
    # train.cpu_kernel=false: the autograd path, so a fresh machine does not first compile the fused
    # two-cluster kernel (tested in test_synthetic.py).
    tiny = ["train.iters=20", "train.log_every=10", "train.ckpt_every=10", "loss=jsgan,rsgan",
            "train.cpu_kernel=false"]
    gl_train("experiment=two_cluster_smoke", "hydra/launcher=joblib_gpu", "hydra.launcher.n_jobs=2",
             "train.num_seeds=3", *tiny, cwd=tmp_path)
    sweep = tmp_path / "sweeps" / "two_cluster_smoke"
    assert statuses(sweep) == ["finished"] * 2
    stamps = {p: p.stat().st_mtime_ns for p in sweep.glob("*/summary.json")}
    again = gl_train("experiment=two_cluster_smoke", "train.num_seeds=3", *tiny, cwd=tmp_path)  # same dirs
    assert again.stdout.count("already finished") == 2
    assert {p: p.stat().st_mtime_ns for p in sweep.glob("*/summary.json")} == stamps
    gl_train("experiment=five_gaussian_smoke", "train.num_seeds=2", *tiny, cwd=tmp_path)
    written = report.build([str(sweep), str(tmp_path / "sweeps" / "five_gaussian_smoke"),
                            "--out", str(tmp_path / "results")])
    assert [p.name for p in written] == ["five_gaussian_smoke.md", "two_cluster_smoke.md"]
    assert "| 3/3 |" in written[1].read_text() and "| 2/2 |" in written[0].read_text()
    assert (tmp_path / "results" / "two_cluster_smoke_samples.png").exists()


IMAGE_TINY = ["train.iters=2", "train.batch_size=4", "train.log_every=1", "train.sample_every=2",
              "train.ckpt_every=2", "train.lr_decay_start=1", "train.n_dis=1", "seed=0"]


@pytest.mark.parametrize("name,data,args,runs", [  # the smoke sweeps stack 2 seeds per job
    ("cifar10_widths_smoke", "cifar10", ["model=cnn,resnet", "width=0.03125", "loss=rsgan"], 4),
    ("stl10_widths_smoke", "stl10", ["model=cnn", "width=0.0625", "loss=jsgan,rsgan", "train.num_seeds=1"], 2),
    ("lsun256_smoke", "lsun", ["width=0.125", "loss=rsgan", "dataset.num_workers=0"], 2),
])
def test_image_smoke_sweeps_run_end_to_end_on_cpu(tmp_path, name, data, args, runs):
    root = tmp_path / "data"
    if data == "cifar10":
        write_cifar10(root / "cifar-10-batches-py", n_per_batch=4)
    elif data == "stl10":
        write_stl10(root, n=6)
    else:
        for cat in ("church_outdoor", "tower"):
            write_lsun_lmdb(root, cat, n=4, size=(72, 64))
    gl_train(f"experiment={name}", f"dataset.root={root}", "dataset.check_integrity=false",
             "train.device=cpu", *IMAGE_TINY, *args, cwd=tmp_path)
    sweep = tmp_path / "sweeps" / name
    assert statuses(sweep) == ["finished"] * runs
    assert all((p.parent / "samples" / "step_0000002.png").exists() for p in sweep.rglob("summary.json"))
    [md] = report.build([str(sweep), "--out", str(tmp_path / "results")])
    assert "not scored" in md.read_text() and (tmp_path / "results" / f"{name}_samples.png").exists()


def test_reproduce_dry_run_says_what_it_skips_and_why(capsys):
    reproduce = load_reproduce()
    assert reproduce.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert any("run " in ln and "two_cluster" in ln and "6 runs" in ln for ln in lines)
    if "0 GPU(s)" in out:
        assert any("SKIP cifar10_widths" in ln and "no GPU" in ln for ln in lines)
    assert any("run " in ln and "first_order_dynamics" in ln for ln in lines)
    if "0 GPU(s)" not in out:
        assert any("cifar10_widths" in ln and "14 jobs, 42 runs" in ln for ln in lines)


def test_the_results_index_keeps_every_experiments_provenance(tmp_path):
    """`--only b` after a run of a, b and c: b's sentence is the new one, a's the old one, which
    no longer names b; a report that is gone takes its account with it."""
    write_index = load_reproduce().write_index
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.md").write_text(f"# {name}\n")
    write_index(tmp_path, 60, 0, "make reproduce", ["a", "b", "c"], ["x", "y", "z"])
    (tmp_path / "c.md").unlink()
    index = write_index(tmp_path, 5, 0, "python scripts/reproduce.py --only b", ["b"], ["y"]).read_text()
    head = index.split("\n")[2]
    assert head.startswith("`make reproduce` made a on ") and "1m00s wall time" in head
    assert "`python scripts/reproduce.py --only b` made b on " in head and "0m05s wall time" in head
    assert json.loads((tmp_path / "provenance.json").read_text()).keys() == {"a", "b"}
    assert "## a" in index and "## b" in index


def test_a_refused_report_is_not_credited_to_this_run(monkeypatch):
    """gl-report refuses (a committed report of other runs): the index must not say this
    invocation made it; the width report, written by reproduce.py itself, still counts."""
    reproduce = load_reproduce()
    monkeypatch.setattr(reproduce.subprocess, "call", lambda *a, **k: 2)
    monkeypatch.setattr(reproduce, "write_widths", lambda own, out: None)
    ran = [reproduce.Experiment("five_gaussian", "synthetic"),
           reproduce.Experiment("synthetic_widths", "synthetic", report="widths")]
    failed = []
    done = reproduce.write_reports(ran, "results", failed)
    assert [e.name for e, _ in done] == ["synthetic_widths"] and failed == ["gl-report exited 2"]
    monkeypatch.setattr(reproduce.subprocess, "call", lambda *a, **k: 0)
    assert [d for _, d in reproduce.write_reports(ran, "results", [])] == ["sweeps/five_gaussian",
                                                                          "sweeps/synthetic_widths"]
