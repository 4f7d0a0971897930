"""gl-report on fabricated sweep dirs: the numbers, the missing-seed flag, the files, bad input."""
import csv
import json

import numpy as np
import pytest
import yaml
from PIL import Image

from gan_landscape import report

PLAN = {"kind": "image", "seeds": 3}


def fake_run(root, name, config, summary, fid_records=(), grid=False):
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "summary.json").write_text(json.dumps(summary))
    if fid_records:
        (run / "fid.jsonl").write_text("".join(json.dumps(r) + "\n" for r in fid_records))
    if grid:
        (run / "samples").mkdir()
        for step in (10, 20):  # the mosaic takes the last grid
            img = Image.fromarray(np.full((16, 16, 3), step, np.uint8))
            img.save(run / "samples" / f"step_{step:07d}.png")
    return run


def image_run(root, model, width, loss, seed, fid, status="finished", bottleneck=False, **kw):
    cfg = {"experiment_name": "cifar10_widths", "seed": seed, "width": width, "plan": PLAN,
           "dataset": {"name": "cifar10", "kind": "image"}, "loss": {"name": loss},
           "model": {"name": model, **({"bottleneck": bottleneck} if model == "resnet" else {})}}
    summary = {"status": status, "iters": 100, "dataset": "cifar10", "model": model, "width": width,
               "loss": loss, "seed": seed, "experiment": "cifar10_widths"}
    recs = [] if fid is None else [
        {"step": 50, "generator": "raw", "fid": 999.0, "protocol": "paper"},        # not the final step
        {"step": 100, "generator": "ema", "fid": 888.0, "protocol": "paper"},       # not the raw G
        {"step": 100, "generator": "raw", "fid": 777.0, "protocol": "standard"},    # another protocol
        {"step": 100, "generator": "raw", "fid": fid, "protocol": "paper", "n_fake": 10000}]
    name = f"loss={loss},model={model},seed={seed},width={width}" + (",bn" if bottleneck else "")
    return fake_run(root, name, cfg, summary, recs, **kw)


@pytest.fixture
def image_sweep(tmp_path):
    sweep = tmp_path / "sweeps" / "cifar10_widths"
    for seed, fid in enumerate([40.0, 42.0, 44.0]):
        image_run(sweep, "cnn", 0.25, "jsgan", seed, fid, grid=seed == 0)
    image_run(sweep, "cnn", 0.25, "rsgan", 0, 30.0, grid=True)
    image_run(sweep, "cnn", 0.25, "rsgan", 1, 34.0)
    image_run(sweep, "cnn", 0.25, "rsgan", 2, None, status="diverged")
    # FID only in summary.json (as gl-eval leaves it), the bottleneck cell
    run = image_run(sweep, "resnet", 0.5, "rsgan", 0, None, bottleneck=True)
    s = json.loads((run / "summary.json").read_text())
    s["fid"] = {"raw": 25.5, "ema": None, "protocol": "paper", "step": 100}
    (run / "summary.json").write_text(json.dumps(s))
    return sweep


def read_csv(path):
    return {(r["model"], r["width"], r["bottleneck"], r["loss"]): r for r in csv.DictReader(open(path))}


def test_image_report_mean_std_count_flag_gap_and_files(image_sweep, tmp_path):
    out = tmp_path / "results"
    [md] = report.build([str(image_sweep), "--out", str(out)])
    rows = read_csv(out / "cifar10_widths.csv")
    js, rs = rows[("cnn", "0.25", "False", "jsgan")], rows[("cnn", "0.25", "False", "rsgan")]
    assert (float(js["fid_mean"]), float(js["fid_std"]), js["n"], js["flag"]) == (42.0, 2.0, "3", "False")
    assert (float(rs["fid_mean"]), rs["n"], rs["flag"]) == (32.0, "2", "True")
    assert float(rs["fid_std"]) == pytest.approx(2 * 2 ** 0.5, abs=1e-4)
    assert float(rs["gap_vs_separable"]) == pytest.approx(-10.0) and js["gap_vs_separable"] == ""
    assert rs["paper_fid"] == "" and "NOT FOUND" in rs["paper_source"] and "1 diverged" in rs["notes"]
    bn = rows[("resnet", "0.5", "True", "rsgan")]
    assert (float(bn["fid_mean"]), bn["fid_std"], bn["n"]) == (25.5, "", "1")
    text = md.read_text()
    assert "| 2/3* |" in text and "| 3/3 |" in text and "n/a" in text and "-10.00" in text
    for png in ("cifar10_widths_fid_vs_width.png", "cifar10_widths_samples.png"):
        assert (out / png).stat().st_size > 0 and f"]({png})" in text


def test_seeds_asked_can_be_given_on_the_command_line(image_sweep, tmp_path):
    report.build([str(image_sweep), "--out", str(tmp_path), "--seeds", "2"])
    rows = read_csv(tmp_path / "cifar10_widths.csv")
    assert rows[("cnn", "0.25", "False", "rsgan")]["flag"] == "False"
    assert rows[("resnet", "0.5", "True", "rsgan")]["flag"] == "True"


def synthetic_run(root, loss, verdicts, dataset="two_cluster", asked=4):
    seeds = [{"seed": k, "mode_counts": [50, 50], "modes_covered": 2 if v == "covered" else 1, "verdict": v}
             for k, v in enumerate(verdicts)]
    cfg = {"experiment_name": dataset, "width": 1.0, "seed": 0,
           "plan": {"kind": "synthetic", "seeds": asked}, "dataset": {"name": dataset, "kind": "synthetic"},
           "loss": {"name": loss}, "model": {"name": "mlp"}}
    collapsed = sum(v != "covered" for v in verdicts)
    summary = {"status": "finished", "loss": loss, "dataset": dataset, "num_seeds": len(verdicts),
               "collapse_rate": collapsed / len(verdicts), "collapsed": collapsed, "seeds": seeds,
               "seconds": 1.5}
    return fake_run(root, f"loss={loss}", cfg, summary)


def test_synthetic_report_collapse_rates_interval_and_flag(tmp_path):
    sweep = tmp_path / "two_cluster"
    synthetic_run(sweep, "jsgan", ["collapsed", "covered", "diverged", "collapsed"])
    synthetic_run(sweep, "rsgan", ["covered"] * 3)   # one seed short of the 4 asked
    [md] = report.build([str(sweep), "--out", str(tmp_path / "results")])
    rows = {r["loss"]: r for r in csv.DictReader(open(tmp_path / "results" / "two_cluster.csv"))}
    js, rs = rows["jsgan"], rows["rsgan"]
    assert (js["family"], js["seeds"], js["collapsed"], float(js["collapse_rate"]), js["diverged"]) == \
        ("separable", "4", "3", 0.75, "1")
    assert (rs["family"], rs["collapsed"], rs["flag"]) == ("pairing", "0", "True")
    assert float(rs["collapse_rate"]) == 0.0
    assert float(rs["ci_low"]) == 0.0 and 0.4 < float(rs["ci_high"]) < 0.8  # Wilson, 0 of 3
    assert float(js["modes_covered_mean"]) == 1.25 and "bad basins" in js["paper_claim"]
    text = md.read_text()
    assert "| 3/4* |" in text and "| 4/4 |" in text and "two_cluster_collapse_rate.png" in text
    assert (tmp_path / "results" / "two_cluster_collapse_rate.png").exists()


def test_wilson_interval_and_mean_std():
    assert report.wilson(0, 0) == (0.0, 1.0)
    lo, hi = report.wilson(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    assert report.mean_std([]) == (None, None) and report.mean_std([3.0]) == (3.0, None)


@pytest.mark.parametrize("make,expect", [(lambda p: p / "missing", "no such directory"),
                                         (lambda p: p, "no runs (summary.json)")])
def test_bad_input_ends_in_one_line(tmp_path, make, expect):
    with pytest.raises(SystemExit) as e:
        report.build([str(make(tmp_path)), "--out", str(tmp_path / "out")])
    msg = str(e.value.code)
    assert msg.startswith("gl-report: ") and expect in msg and "\n" not in msg


def test_paper_table_has_every_cell_of_the_width_grids_and_cites_its_source():
    table = report.paper_fid()
    for ds in ("cifar10", "stl10"):
        cells = [("cnn", w, False) for w in (1.0, 0.5, 0.25)] + \
                [("resnet", w, False) for w in (1.0, 0.5, 0.25)] + [("resnet", 0.5, True)]
        for model, w, bn in cells:
            for loss in ("jsgan", "rsgan"):
                assert (ds, model, w, bn, loss) in table
    assert all(v["source"] for v in table.values())
    # No number without a page to cite: a filled cell must say where it comes from.
    assert all("NOT FOUND" not in v["source"] for v in table.values() if v["fid"] is not None)
    assert {k[1] for k in report.paper_synthetic()} == set(report.LOSS_ORDER)
