"""gl-report on fabricated run dirs: the numbers, the missing-seed flag, the files, runs in every
state (failed, diverged, no config, half-written files), where reports go and the provenance that
keeps one report from overwriting another."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

from gan_landscape.commands import report
from gan_landscape.report import tables
from gan_landscape.losses import LOSSES

PLAN = {"kind": "image", "seeds": 3}
GL_REPORT = os.path.join(os.path.dirname(sys.executable), "gl-report")


def fake_run(root, name, config, summary, fid_records=(), grid=False):
    run = root / name
    run.mkdir(parents=True)
    if config is not None:
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
    name = f"cifar10-{model}-w{width}{'-bn' if bottleneck else ''}-{loss}-s{seed}"
    summary = {"status": status, "iters": 100, "dataset": "cifar10", "model": model, "width": width,
               "loss": loss, "seed": seed, "experiment": "cifar10_widths", "identity": f"id-{name}"}
    recs = [] if fid is None else [
        {"step": 50, "generator": "raw", "fid": 999.0, "protocol": "paper"},        # not the final step
        {"step": 100, "generator": "ema", "fid": 888.0, "protocol": "paper"},       # not the raw G
        {"step": 100, "generator": "raw", "fid": 777.0, "protocol": "standard"},    # another protocol
        {"step": 100, "generator": "raw", "fid": fid, "protocol": "paper", "n_fake": 10000}]
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
    assert "rsgan − jsgan, rphinge − hinge, rplsgan − lsgan" in text  # the twins, from the registry
    for png in ("cifar10_widths_fid_recall_vs_width.png", "cifar10_widths_samples.png"):
        assert (out / png).stat().st_size > 0 and f"]({png})" in text


def test_seeds_asked_can_be_given_on_the_command_line(image_sweep, tmp_path):
    report.build([str(image_sweep), "--out", str(tmp_path), "--seeds", "2"])
    rows = read_csv(tmp_path / "cifar10_widths.csv")
    assert rows[("cnn", "0.25", "False", "rsgan")]["flag"] == "False"
    assert rows[("resnet", "0.5", "True", "rsgan")]["flag"] == "True"


def synthetic_run(root, loss, verdicts, dataset="two_cluster", asked=4, status="finished"):
    seeds = [{"seed": k, "mode_counts": [50, 50], "modes_covered": 2 if v == "covered" else 1, "verdict": v}
             for k, v in enumerate(verdicts)]
    cfg = {"experiment_name": dataset, "width": 1.0, "seed": 0,
           "plan": {"kind": "synthetic", "seeds": asked}, "dataset": {"name": dataset, "kind": "synthetic"},
           "loss": {"name": loss}, "model": {"name": "mlp"}}
    collapsed = sum(v != "covered" for v in verdicts)
    summary = {"status": status, "loss": loss, "dataset": dataset, "num_seeds": len(verdicts),
               "collapse_rate": collapsed / len(verdicts), "collapsed": collapsed, "seeds": seeds,
               "seconds": 1.5, "identity": f"id-{dataset}-{loss}"}
    return fake_run(root, f"{dataset}-mlp-{loss}-s0", cfg, summary)


def test_synthetic_report_collapse_rates_interval_and_flag(tmp_path):
    sweep = tmp_path / "two_cluster"
    synthetic_run(sweep, "rsgan", ["covered"] * 3)   # one seed short of the 4 asked
    synthetic_run(sweep, "jsgan", ["collapsed", "covered", "diverged", "collapsed"])
    [md] = report.build([str(sweep), "--out", str(tmp_path / "results")])
    rows = list(csv.DictReader(open(tmp_path / "results" / "two_cluster.csv")))
    assert [r["loss"] for r in rows] == ["jsgan", "rsgan"]  # the registry's order
    js, rs = rows
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
    assert tables.wilson(0, 0) == (0.0, 1.0)
    lo, hi = tables.wilson(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    assert tables.mean_std([]) == (None, None) and tables.mean_std([3.0]) == (3.0, None)


def test_paper_table_has_every_cell_of_the_width_grids_and_cites_its_source():
    table = tables.paper_fid()
    for ds in ("cifar10", "stl10"):
        cells = [("cnn", w, False) for w in (1.0, 0.5, 0.25)] + \
                [("resnet", w, False) for w in (1.0, 0.5, 0.25)] + [("resnet", 0.5, True)]
        for model, w, bn in cells:
            for loss in ("jsgan", "rsgan"):
                assert (ds, model, w, bn, loss) in table
    assert all(v["source"] for v in table.values())
    # No number without a page to cite: a filled cell must say where it comes from.
    assert all("NOT FOUND" not in v["source"] for v in table.values() if v["fid"] is not None)
    assert {k[1] for k in tables.paper_synthetic()} == set(LOSSES)


# ---------------------------------------------------------------- runs in every state

def broken_runs(sweep):
    """A failed `width=abc` job, a failed job with no config.yaml, a killed run's half lines."""
    fake_run(sweep, "cifar10-cnn-wabc-jsgan-s0",
             {"experiment_name": "cifar10_widths", "width": "abc", "dataset": {"name": "cifar10", "kind": "image"},
              "loss": {"name": "jsgan"}, "model": {"name": "cnn"}},
             {"status": "failed", "error": "width=abc: expected a number > 0"})
    fake_run(sweep, "job-3", None, {"status": "failed", "error": "could not compose:\nmodel=nope"})
    killed = image_run(sweep, "cnn", 0.25, "jsgan", 7, None, status="running")
    (killed / "metrics.jsonl").write_text('{"step": 1, "loss_d": 0.5}\n{"step": 2, "los')
    (killed / "fid.jsonl").write_text('{"step": 100, "generator": "raw", "fid": 12.0, "proto')
    hidden = sweep / ".submitit" / "123"
    hidden.mkdir(parents=True)
    (hidden / "summary.json").write_text("{not json")


def test_failed_diverged_and_half_written_runs_are_reported_not_fatal(image_sweep, tmp_path):
    broken_runs(image_sweep)
    [md] = report.build([str(image_sweep), "--out", str(tmp_path / "out")])
    text = md.read_text()
    assert "10 run(s)" in text and "2 failed" in text and "1 stale" in text and "1 diverged" in text
    unplaced = text.split("Runs not in the table")[1]
    assert "cifar10-cnn-wabc-jsgan-s0 | failed | width=abc: expected a number > 0 |" in unplaced
    assert "job-3 | failed | could not compose: model=nope |" in unplaced  # one line
    js = read_csv(tmp_path / "out" / "cifar10_widths.csv")[("cnn", "0.25", "False", "jsgan")]
    assert (js["n"], js["fid_mean"], js["notes"]) == ("3", "42.0", "1 stale")  # killed: running, lock free


def test_cli_on_a_sweep_with_failed_jobs_then_refusal_and_bad_input(image_sweep, tmp_path):
    """Through the real CLI: a broken sweep reports (exit 0, no traceback); a report over a file
    without provenance is one line, status 2, and the file is untouched; so is a missing folder."""
    broken_runs(image_sweep)
    ok = subprocess.run([GL_REPORT, str(image_sweep)], capture_output=True, text=True, cwd=tmp_path)
    assert ok.returncode == 0 and "Traceback" not in ok.stderr, ok.stderr
    assert (image_sweep / "report" / "cifar10_widths.md").exists()
    results = tmp_path / "results"
    results.mkdir()
    (results / "cifar10_widths.md").write_text("committed\n")
    bad = subprocess.run([GL_REPORT, str(image_sweep), "--out", "results"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.splitlines() == ["gl-report: results/cifar10_widths.md exists and has no "
                                       "cifar10_widths.sources.json, so it was not made by gl-report from "
                                       "these runs; pass --force to overwrite it, or --out DIR"]
    assert sorted(p.name for p in results.iterdir()) == ["cifar10_widths.md"]
    assert (results / "cifar10_widths.md").read_text() == "committed\n"
    missing = subprocess.run([GL_REPORT, "nope"], capture_output=True, text=True, cwd=tmp_path)
    assert (missing.returncode, missing.stderr) == (2, "gl-report: no such directory: nope\n")


def test_a_folder_without_runs_is_one_line(tmp_path):
    with pytest.raises(report.ReportError, match="no runs"):
        report.build([str(tmp_path)])


# ---------------------------------------------------------------- where reports go, provenance

def test_default_output_is_beside_the_runs_and_never_results(image_sweep, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one = image_sweep / "cifar10-cnn-w0.25-jsgan-s0"
    [md] = report.build([str(one)])
    assert md == one / "report" / "cifar10_widths.md"
    [md] = report.build(["sweeps/cifar10_widths"])
    assert md == image_sweep.relative_to(tmp_path) / "report" / "cifar10_widths.md"
    assert not (tmp_path / "results").exists()
    with pytest.raises(report.ReportError, match="come from several folders"):
        report.build(["sweeps/cifar10_widths/cifar10-cnn-w0.25-jsgan-s1", "sweeps/cifar10_widths/cifar10-cnn-w0.25-jsgan-s2"])
    src = json.loads((image_sweep / "report" / "cifar10_widths.sources.json").read_text())
    assert src["made_by"] == "gl-report" and "cifar10_widths.md" in src["files"]
    assert {e["identity"] for e in src["runs"]} == {f"id-{p.name}" for p in image_sweep.iterdir()
                                                     if p.name != "report"}
    assert {e["path"] for e in src["runs"]} >= {"../cifar10-cnn-w0.25-jsgan-s0"}


def test_provenance_allows_the_same_or_more_runs_and_refuses_other_runs(tmp_path):
    sweep, out = tmp_path / "two_cluster", tmp_path / "results"
    js = synthetic_run(sweep, "jsgan", ["covered", "collapsed"])
    report.build([str(js), "--out", str(out)])                   # a report of one run ...
    synthetic_run(sweep, "rsgan", ["covered"] * 2)
    report.build([str(sweep), "--out", str(out)])                # ... grows into the sweep's
    report.build([str(sweep), "--out", str(out)])                # the same runs again
    assert "rsgan" in (out / "two_cluster.md").read_text()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(report.ReportError, match=r"was made from other runs \(1 of its 2 .* id-two_cluster-rsgan"):
        report.build([str(js), "--out", str(out)])               # one run must not replace the sweep's
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    report.build([str(js), "--out", str(out), "--force"])
    assert "rsgan" not in (out / "two_cluster.md").read_text()
    runs = json.loads((out / "two_cluster.sources.json").read_text())["runs"]
    assert [(e["identity"], e["path"]) for e in runs] == [("id-two_cluster-jsgan", "../two_cluster/" + js.name)]


def test_runs_without_identity_are_known_by_path(tmp_path):
    sweep, out = tmp_path / "two_cluster", tmp_path / "out"
    synthetic_run(sweep, "jsgan", ["covered"])
    fake_run(sweep, "failed", None, {"status": "failed", "error": "boom"})
    report.build([str(sweep), "--out", str(out)])
    src = json.loads((out / "two_cluster.sources.json").read_text())
    assert {"identity": None, "status": "failed", "path": "../two_cluster/failed"} in src["runs"]
    (sweep / "failed" / "summary.json").unlink()   # without the failed job: other runs
    with pytest.raises(report.ReportError, match="e.g. path:../two_cluster/failed"):
        report.build([str(sweep), "--out", str(out)])


def test_a_file_the_new_report_no_longer_makes_is_removed(tmp_path):
    sweep, out = tmp_path / "two_cluster", tmp_path / "out"
    run = synthetic_run(sweep, "jsgan", ["covered"])
    report.build([str(sweep), "--out", str(out)])
    assert (out / "two_cluster_collapse_rate.png").exists()
    (run / "summary.json").write_text(json.dumps({"status": "running", "identity": "id-two_cluster-jsgan"}))
    [md] = report.build([str(sweep), "--out", str(out)])
    assert not (out / "two_cluster_collapse_rate.png").exists() and "1 stale" in md.read_text()
    assert "two_cluster_collapse_rate.png" not in json.loads((out / "two_cluster.sources.json").read_text())["files"]


def test_kinds_of_one_experiment_get_one_report_each(image_sweep, tmp_path):
    run = synthetic_run(image_sweep, "jsgan", ["covered"])
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**cfg, "experiment_name": "cifar10_widths"}))
    mds = report.build([str(image_sweep), "--out", str(tmp_path / "out")])
    assert [m.name for m in mds] == ["cifar10_widths_image.md", "cifar10_widths_synthetic.md"]


# ---------------------------------------------------------------- image scores: strictly by protocol_key

def keyed(key, n_fake, fid, recall, **kw):
    return {"step": 100, "generator": "raw", "protocol": "paper", "protocol_key": key, "fid": fid,
            "n_fake": n_fake, "n_real_used": 10000, "split": "test", "reals": "random", "reals_seed": 3,
            "g_mode": "train", "quantize": "truncate", "resize": "tf1", "weights_sha256": "abcd1234",
            "precision": 0.7, "recall": recall, "metrics": {"prc": {"k": 3}}, **kw}


def test_image_report_never_averages_across_protocol_keys_and_flags_what_is_not_a_paper_fid(tmp_path):
    """A stack scored with 200 fakes in seed 0 and 100 (random weights) in seeds 1-2: two tables,
    each flagged; within a key, FID and recall are averaged per cell, with the pairing gaps."""
    sweep = tmp_path / "sweeps" / "width_claim"
    for loss, base in (("jsgan", 40.0), ("rsgan", 30.0)):
        for seed in range(3):
            run = image_run(sweep, "cnn", 0.25, loss, seed, None)
            rec = (keyed("aaaa", 200, base, 0.2) if seed == 0 else
                   keyed("bbbb", 100, base + seed, 0.1 * seed + (0.2 if loss == "rsgan" else 0),
                         random_weights=True))
            (run / "fid.jsonl").write_text(json.dumps(rec) + "\n")
    out = tmp_path / "out"
    [md] = report.build([str(sweep), "--out", str(out)])
    text = md.read_text()
    assert "### FID protocol `aaaa`" in text and "### FID protocol `bbbb`" in text
    assert "200 fakes vs 10000 test reals (random, seed 3); G in train mode" in text
    assert "**Not a paper FID**: 200 fakes where the protocol asks 10000." in text
    assert "**Not a paper FID**: random Inception weights in 4 run(s); 100 fakes where the protocol asks 10000." in text
    rows = list(csv.DictReader(open(out / "cifar10_widths.csv")))
    got = {(r["protocol_key"], r["loss"]): r for r in rows}
    assert (float(got[("aaaa", "jsgan")]["fid_mean"]), got[("aaaa", "jsgan")]["n"]) == (40.0, "1")
    rs = got[("bbbb", "rsgan")]
    assert (float(rs["fid_mean"]), float(rs["fid_std"]), rs["n"]) == (31.5, pytest.approx(0.7071, abs=1e-4), "2")
    assert float(rs["recall_mean"]) == pytest.approx(0.35) and float(rs["gap_vs_separable"]) == pytest.approx(-10)
    assert float(rs["recall_gap_vs_separable"]) == pytest.approx(0.2)
    assert "| 0.350 ± 0.071 |" in text and "| 0.200 |" in text  # recall, and its gap on the rsgan row
    for png in ("cifar10_widths_fid_recall_vs_width_aaaa.png", "cifar10_widths_fid_recall_vs_width_bbbb.png"):
        assert (out / png).stat().st_size > 0 and f"]({png})" in text
