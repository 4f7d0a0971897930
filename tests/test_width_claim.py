"""experiment=width_claim_smoke end to end on a CPU with a random Inception: gl-train's sweep,
gl-eval with the protocol's metrics (plan.eval_overrides), gl-report's table and figure, every
part flagged as not a real FID."""
import csv
import json

import pytest
from omegaconf import OmegaConf

from conftest import CONFIGS, make_cfg
from fakes import write_cifar10
from gan_landscape.commands import evaluate, report
from test_experiments import gl_train, statuses

pytestmark = [pytest.mark.filterwarnings("ignore:FID statistics from"), pytest.mark.usefixtures("private_cache")]


def test_width_claim_is_the_smallest_cell_set_of_the_claim():
    cfg = OmegaConf.load(f"{CONFIGS}/experiment/width_claim.yaml")
    params = cfg.hydra.sweeper.params
    assert (params.model, params.width, params.loss) == ("cnn", "1.0,0.25", "jsgan,rsgan")
    assert cfg.train.num_seeds == 3 and cfg.train.iters == 12000 and list(cfg.plan.extra_sweeps) == []


def test_width_claim_smoke_trains_scores_and_reports_on_cpu(tmp_path):
    root = tmp_path / "data"
    write_cifar10(root / "cifar-10-batches-py", n_per_batch=40)
    gl_train("experiment=width_claim_smoke", f"dataset.root={root}", "dataset.check_integrity=false",
             "train.device=cpu", "train.iters=4", "train.sample_every=4", "train.ckpt_every=4",
             "train.log_every=2", "train.lr_decay_start=2", "train.n_dis=1", cwd=tmp_path)
    sweep = tmp_path / "sweeps" / "width_claim_smoke"
    assert statuses(sweep) == ["finished"] * 8  # 2 widths x 2 losses x 2 stacked seeds
    plan = OmegaConf.load(f"{CONFIGS}/experiment/width_claim_smoke.yaml").plan
    tally = evaluate.evaluate(make_cfg(f"run={sweep}", *plan.eval_overrides, "which=[raw]", "device=cpu",
                                       config_name="eval"))
    assert tally.n == 8 and not tally.failed
    rec = json.loads(next(sweep.rglob("fid.jsonl")).read_text().splitlines()[0])
    assert rec["random_weights"] and "NOT a real FID" in rec["warning"]
    assert {"fid", "recall", "coverage", "kid_mean", "prd_f8"} <= set(rec)
    [md] = report.build([str(sweep), "--out", str(tmp_path / "results")])
    text = md.read_text()
    assert text.count("### FID protocol") == 1 and "**Not a paper FID**: random Inception weights in 8 run(s)" in text
    rows = list(csv.DictReader(open(tmp_path / "results" / "width_claim_smoke.csv")))
    assert len(rows) == 4 and all(r["n"] == "2" and r["recall_mean"] != "" for r in rows)
    assert (tmp_path / "results" / "width_claim_smoke_fid_recall_vs_width.png").stat().st_size > 0
