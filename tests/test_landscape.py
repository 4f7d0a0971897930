"""gl-landscape: the eigen-solvers against dense autograd matrices, the path-angle on hand-built
games, and the whole tool on tiny synthetic and image run dirs."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.func import functional_call

from conftest import make_cfg
from gan_landscape.analysis import game as gm
from gan_landscape.commands import landscape as L
from gan_landscape.losses import get_loss

F64 = torch.float64


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny nets: a second thread only adds sync overhead, 10-100x on a shared, busy CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---------------------------------------------------------------- eigen-solvers vs dense

def _tiny(loss_name, n_pieces):
    """A 1-3-1 tanh G and a 1-4-1 sigmoid D on 16 two-cluster points, as a Game (in 1 or 2 data
    pieces) and as a function of the flat parameters for the dense references."""
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(1, 3), nn.Tanh(), nn.Linear(3, 1)).to(F64)
    D = nn.Sequential(nn.Linear(1, 4), nn.Sigmoid(), nn.Linear(4, 1)).to(F64)
    x = torch.cat([torch.rand(8, 1), 4 + torch.rand(8, 1)]).to(F64)
    z = torch.linspace(-2, 2, 16, dtype=F64)[:, None]
    loss = get_loss(loss_name)

    def losses(xb, zb, g_mod=G, d_mod=D):
        f_real, f_fake = d_mod(xb)[:, 0], d_mod(g_mod(zb))[:, 0]
        return loss.g(f_real, f_fake), loss.d(f_real, f_fake)

    def pieces():
        for idx in torch.arange(16).chunk(n_pieces):
            yield len(idx) / 16, *losses(x[idx], z[idx])

    game = gm.Game(list(G.parameters()), list(D.parameters()), pieces, single_piece=n_pieces == 1)
    names = [n for n, _ in G.named_parameters()], [n for n, _ in D.named_parameters()]

    def at(w):
        """(L_G, L_D) at flat parameters w, differentiable in w."""
        ps = torch.split(w, [p.numel() for p in game.params])
        shapes = [p.shape for p in game.params]
        vals = [p.view(s) for p, s in zip(ps, shapes)]
        g = dict(zip(names[0], vals[: len(names[0])]))
        d = dict(zip(names[1], vals[len(names[0]):]))
        f_real = functional_call(D, d, (x,))[:, 0]
        f_fake = functional_call(D, d, (functional_call(G, g, (z,)),))[:, 0]
        return loss.g(f_real, f_fake), loss.d(f_real, f_fake)

    return game, at


def _dense_refs(game, at):
    w0, n_g = game.get_flat(), game.n_g
    h_g = torch.autograd.functional.hessian(lambda wg: at(torch.cat([wg, w0[n_g:]]))[0], w0[:n_g])
    h_d = torch.autograd.functional.hessian(lambda wd: at(torch.cat([w0[:n_g], wd]))[1], w0[n_g:])

    def v(w):
        lg, ld = at(w)
        gg = torch.autograd.grad(lg, w, create_graph=True)[0][:n_g]
        gd = torch.autograd.grad(ld, w, create_graph=True)[0][n_g:]
        return torch.cat([gg, gd])

    jac = torch.autograd.functional.jacobian(v, w0)
    return {"g": h_g.numpy(), "d": h_d.numpy(), "game": jac.numpy()}


@pytest.mark.parametrize("loss_name,n_pieces", [("jsgan", 1), ("rsgan", 2)])
def test_eigen_solvers_match_dense(loss_name, n_pieces):
    game, at = _tiny(loss_name, n_pieces)
    ref = _dense_refs(game, at)
    assert game.n_g == 10 and game.n_d == 13
    for which in ("g", "d", "game"):  # the operators are the matrices (J^T for the game)
        np.testing.assert_allclose(gm.dense(game, which), ref[which], atol=1e-10)
    for which in ("g", "d"):
        exact = np.linalg.eigvalsh(ref[which])
        top = gm.eigenvalues(gm.operator(game, which), 4, True, "LM")  # ARPACK: 4 < n - 1
        assert top["converged"]
        np.testing.assert_allclose(top["values"], exact[np.argsort(-np.abs(exact))][:4], atol=1e-9)
        low = gm.eigenvalues(gm.operator(game, which), 2, True, "SA")
        np.testing.assert_allclose(np.sort(low["values"]), exact[:2], atol=1e-9)
        shifted = gm.smallest(gm.operator(game, which), 2, True, np.abs(exact).max())
        np.testing.assert_allclose(np.sort(shifted["values"]), exact[:2], atol=1e-9)
        assert shifted["converged"] and shifted["matvecs"] > 0
    exact = np.linalg.eigvals(ref["game"])
    top = gm.eigenvalues(gm.operator(game, "game"), 6, False, "LM")
    np.testing.assert_allclose(np.abs(top["values"]), np.sort(np.abs(exact))[::-1][:6], rtol=1e-8)
    assert all(np.abs(exact - lam).min() < 1e-8 for lam in top["values"])
    low = gm.eigenvalues(gm.operator(game, "game"), 2, False, "SR")
    assert np.allclose(np.sort(low["values"].real), np.sort(exact.real)[:2], atol=1e-8)
    low = gm.smallest(gm.operator(game, "game"), 2, False, np.abs(exact).max())
    assert np.allclose(np.sort(low["values"].real), np.sort(exact.real)[:2], atol=1e-8)


def test_smallest_known_from_the_top_k_only_when_it_must_hold_them():
    """diag(-10, -9, -8, 7, 1, 0.5, ...): the top 5 by magnitude hold every eigenvalue below -1."""
    diag = np.array([-10.0, -9, -8, 7, 1] + list(np.linspace(0.5, -0.5, 25)))
    op = gm.LinearOperator((30, 30), matvec=lambda x: diag * np.ravel(x), dtype=np.float64)
    top = gm.eigenvalues(op, 5, True, "LM")
    np.testing.assert_allclose(sorted(gm.known_smallest(top, 3)["values"]), [-10, -9, -8])
    assert gm.known_smallest(top, 4) is None                      # -0.5 could hide a 4th
    assert gm.known_smallest({**top, "converged": False}, 3) is None
    shifted = gm.smallest(op, 4, True, 10.0, tol=1e-10)
    np.testing.assert_allclose(sorted(shifted["values"]), [-10, -9, -8, -0.5], atol=1e-8)


def test_verdict_is_undetermined_only_without_a_negative_eigenvalue():
    def entry(smallest, converged):
        return {"top": [5.0, 1.0], "smallest": smallest, "smallest_converged": converged, "scale": 5.0}
    psd, unknown, negative = entry([1e-5, 0.5], True), entry([0.5], False), entry([-0.5], False)
    v = gm.verdict({"hessian_g": psd, "hessian_d": psd, "jacobian": psd}, 1e-3)
    assert (v["local_nash"], v["locally_stable"]) == (True, True) and "undetermined" not in v["text"]
    v = gm.verdict({"hessian_g": psd, "hessian_d": unknown, "jacobian": psd}, 1e-3)
    assert (v["local_nash"], v["locally_stable"]) == (None, True)
    assert v["text"].startswith("locally stable stationary point, local Nash undetermined (a smallest")
    v = gm.verdict({"hessian_g": psd, "hessian_d": negative, "jacobian": unknown}, 1e-3)
    assert (v["local_nash"], v["locally_stable"]) == (False, None)
    assert v["text"].startswith("local stability undetermined, not a local Nash equilibrium (a smallest")


# ---------------------------------------------------------------- path-angle on toy games

def _scalar_game(lg, ld):
    x, y = (torch.zeros(1, dtype=F64, requires_grad=True) for _ in range(2))
    return gm.Game([x], [y], lambda: iter([(1.0, lg(x, y).sum(), ld(x, y).sum())]))


def test_path_angle_bilinear_is_pure_rotation():
    """min_x max_y xy: v = (y, -x). From (1, 0) to the equilibrium (0, 0) the field is orthogonal to
    the path everywhere: a path-angle of exactly 90 degrees."""
    game = _scalar_game(lambda x, y: x * y, lambda x, y: -x * y)
    a = np.linspace(-0.1, 1.1, 100)
    p = gm.path_angle(game, torch.tensor([1.0, 0.0], dtype=F64), torch.zeros(2, dtype=F64), a)
    assert np.abs(p["cosine"]).max() == 0.0 and np.abs(p["dot"]).max() == 0.0
    np.testing.assert_allclose(p["grad_norm"], np.abs(1 - a), atol=1e-15)
    eig = gm.eigenvalues(gm.operator(game, "game"), 2, False)  # tiny: the dense fallback
    np.testing.assert_allclose(sorted(eig["values"].imag), [-1, 1])
    np.testing.assert_allclose(eig["values"].real, 0, atol=1e-15)


def test_path_angle_pure_minimisation_flips_sign_at_one():
    """Both players minimising their own convex quadratic: cos(v, w_start - w_end) is the same
    positive constant before the minimum and its negative after (Berard et al.'s 'step')."""
    game = _scalar_game(lambda x, y: x ** 2, lambda x, y: 3 * y ** 2)
    a = np.linspace(-0.1, 1.1, 100)
    p = gm.path_angle(game, torch.tensor([1.0, 2.0], dtype=F64), torch.zeros(2, dtype=F64), a)
    cos = np.asarray(p["cosine"])
    assert (np.sign(cos) == np.sign(1 - a)).all()
    np.testing.assert_allclose(np.abs(cos), np.abs(cos[0]), rtol=1e-12)
    assert np.abs(cos[0]) > 0.5
    v = gm.spectrum(game, make_cfg("run_dir=x", config_name="landscape").eig, 0)["verdict"]
    assert v["local_nash"] and v["locally_stable"]


# ---------------------------------------------------------------- gl-landscape on run dirs

@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    from gan_landscape.commands.train import run
    d = tmp_path_factory.mktemp("synthetic_run")
    run(make_cfg("loss=jsgan", "train.num_seeds=2", "train.iters=3", "train.log_every=1",
                 "train.device=cpu"), d)
    return d


def _landscape_cfg(run_dir, *extra):
    return make_cfg(f"run_dir={run_dir}", "path.points=12", "eig.k=6", "slices.points=6",
                    "slices.d_steps=400", *extra, config_name="landscape")


def test_synthetic_end_to_end_and_deterministic(synthetic_run):
    cfg = _landscape_cfg(synthetic_run, "seed_index=1")
    first = L.analyse(cfg)
    out = synthetic_run / "landscape"
    for name in ("landscape_step_0000003_s1.json", "path_angle_step_0000003_s1.png",
                 "eigenvalues_step_0000003_s1.png", "loss_slices_step_0000003_s1.png"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "landscape_step_0000003_s1.json").read_text())
    assert {"path_angle", "eigenvalues", "loss_slices", "at_checkpoint", "timing_s"} <= set(saved)
    assert saved["seed"] == 1 and saved["n_params_g"] == 46 and saved["n_params_d"] == 141
    assert len(saved["path_angle"]["cosine"]) == 12
    assert len(saved["eigenvalues"]["jacobian"]["top"]) == 6
    assert set(saved["eigenvalues"]["verdict"]) >= {"local_nash", "locally_stable", "text"}
    # The paper's landscape: a basin around the collapsed point for JS, none for RS.
    assert saved["loss_slices"]["jsgan"]["barrier"] > 0.05
    assert saved["loss_slices"]["rsgan"]["barrier"] < 0.01
    second = L.analyse(cfg)
    strip = lambda r: json.dumps({k: v for k, v in r.items() if k != "timing_s"}, default=str)  # noqa: E731
    assert strip(first) == strip(second)


def test_errors_are_one_line(synthetic_run, tmp_path):
    with pytest.raises(L.LandscapeError, match="no run dir"):
        L.analyse(_landscape_cfg(tmp_path / "nope"))
    with pytest.raises(L.LandscapeError, match=r"no checkpoint for step 999 .*have: 0, 3"):
        L.analyse(_landscape_cfg(synthetic_run, "step=999"))
    with pytest.raises(L.LandscapeError, match="seed_index=5"):
        L.analyse(_landscape_cfg(synthetic_run, "seed_index=5"))
    exe = os.path.join(os.path.dirname(sys.executable), "gl-landscape")
    res = subprocess.run([exe, f"run_dir={tmp_path / 'nope'}"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [f"gl-landscape: no run dir at {tmp_path / 'nope'}"]
    assert list(tmp_path.iterdir()) == []  # nothing written in the cwd


def test_spectral_norm_refresh_finds_the_top_singular_value():
    lin = nn.utils.spectral_norm(nn.Linear(6, 5))
    L.refresh_spectral_norm(lin, 100)
    w = lin.weight_orig.detach()
    sigma = lin.weight_u @ (w @ lin.weight_v)
    assert torch.allclose(sigma, torch.linalg.matrix_norm(w, 2), rtol=1e-5)


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """A tiny SN-CNN (width 1/32) trained two steps on a fake CIFAR-10, on CPU."""
    from fakes import write_cifar10
    from gan_landscape.commands.train import run
    d = tmp_path_factory.mktemp("image_run")
    write_cifar10(d / "cifar10" / "cifar-10-batches-py", n_per_batch=8)
    run(make_cfg("dataset=cifar10", "model=cnn", "width=0.03125", f"dataset.root={d / 'cifar10'}",
                 "dataset.check_integrity=false", "dataset.download=false", "train.iters=2",
                 "train.lr_decay_start=null", "train.batch_size=8", "train.device=cpu", "train.log_every=1",
                 "loss=rsgan"), d / "run")
    return d / "run"


def test_image_run_end_to_end(image_run, caplog):
    """The path in two data chunks (so BN sees the chunk's statistics), the eigenvalues on one
    cached chunk, and the progress lines of both."""
    cfg = make_cfg(f"run_dir={image_run}", "path.points=3", "image.n_real=8", "image.chunk=4",
                   "eig.enabled=false", config_name="landscape")
    with caplog.at_level("INFO"):
        res = L.analyse(cfg)
    assert res["kind"] == "image" and res["n_real"] == 8 and res["chunk"] == 4
    assert np.isfinite(res["path_angle"]["cosine"]).all() and len(res["path_angle"]["alpha"]) == 3
    assert "loss_slices" not in res and "eigenvalues" not in res
    assert (image_run / "landscape" / "path_angle_step_0000002.png").exists()
    assert "path-angle: point 1/3 (alpha -0.100)" in caplog.text and "point 3/3" in caplog.text
    assert L.analyse(cfg)["path_angle"] == res["path_angle"]  # deterministic
    caplog.clear()
    with caplog.at_level("INFO"):
        eig = L.analyse(make_cfg(f"run_dir={image_run}", "path.enabled=false", "image.n_real=4",
                                 "image.chunk=4", "eig.k=1", "eig.k_extreme=1", "eig.ncv=4", "eig.tol=1e-2",
                                 config_name="landscape"))["eigenvalues"]
    assert {"hessian_g", "hessian_d", "jacobian", "verdict"} <= set(eig)
    assert eig["hessian_g"]["n"] + eig["hessian_d"]["n"] == eig["jacobian"]["n"]
    assert "eigen-solve jacobian, 1 smallest: started" in caplog.text
    assert f"{eig['jacobian']['matvecs']} products" in caplog.text or "products in" in caplog.text
