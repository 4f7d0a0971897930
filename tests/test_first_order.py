"""Li et al.'s two-Gaussian model: exact gradients, optimal-D convergence, the sweep, and the table
and figure gl-report makes of its run dir."""
import numpy as np
import pytest

from conftest import make_cfg
from gan_landscape.kinds import first_order as fo
from gan_landscape.commands import report
from gan_landscape.files import write_json

MU_STAR = np.array([-0.5, 0.5])


def _fd(f, x, eps=1e-6):
    out = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = eps
        out[idx] = (f(x + e) - f(x - e)).sum() / (2 * eps)
    return out


def test_gradients_match_finite_differences():
    rng = np.random.RandomState(0)
    mu = rng.uniform(-2, 2, (5, 2))
    e = np.sort(rng.uniform(-3, 3, (5, 4)), 1)
    l, r = e[:, [0, 2]], e[:, [1, 3]]
    d_mu, d_l, d_r = fo.grads(MU_STAR, mu, l, r)
    for got, wrt in ((d_mu, "mu"), (d_l, "l"), (d_r, "r")):
        def f(v):
            args = {"mu": mu, "l": l, "r": r, wrt: v}
            return fo.objective(MU_STAR, args["mu"], args["l"], args["r"])
        np.testing.assert_allclose(got, _fd(f, {"mu": mu, "l": l, "r": r}[wrt]), atol=1e-8)


def _tv_objective(mu):
    """max over all D of L = 1 + integral of (g* - g_mu)^+, by quadrature: the optimal-D value."""
    xs = np.linspace(-15, 15, 300001)
    h = fo.mix_pdf(xs[None], MU_STAR[None])[0] - fo.mix_pdf(xs[None], mu[None])[0]
    return 1 + np.clip(h, 0, None).sum() * (xs[1] - xs[0])


def test_optimal_d_gradient_is_the_gradient_of_the_optimal_value():
    """Envelope theorem: d/dmu max_D L = dL/dmu at the optimal intervals (roots of g* - g_mu)."""
    for mu in (np.array([0.9, -0.2]), np.array([-1.5, 2.0]), np.array([0.3, 0.35])):
        got = fo.optimal_mu_grad(MU_STAR, mu[None])[0]
        ref = np.array([(_tv_objective(mu + d) - _tv_objective(mu - d)) / 2e-5 for d in np.eye(2) * 1e-5])
        np.testing.assert_allclose(got, ref, atol=2e-5)


def test_optimal_d_dynamics_converge_from_a_generic_init():
    mu0 = np.array([[0.9, -0.2], [-0.8, 0.1], [0.6, 1.0]])
    traj = fo.simulate(MU_STAR, mu0, None, None, None, 600, 0.1, 0.1)
    np.testing.assert_allclose(np.sort(traj[-1], 1), np.broadcast_to(MU_STAR, (3, 2)), atol=0.02)
    assert (fo.classify(traj, MU_STAR, 0.1, 0.25, 0.1) == "converged").all()


def test_projection_keeps_two_ordered_intervals():
    rng = np.random.RandomState(1)
    e = rng.randn(500, 4)
    p = fo.project_endpoints(e)
    assert (np.diff(p, axis=1) >= -1e-12).all()
    np.testing.assert_allclose(p.sum(1), e.sum(1))                  # isotonic regression keeps the mean
    np.testing.assert_array_equal(fo.project_endpoints(p), p)        # a projection
    ordered = np.sort(e, 1)
    np.testing.assert_array_equal(fo.project_endpoints(ordered), ordered)
    # optimality against every ordered candidate on a grid, for one violating point
    x = np.array([[1.0, -1.0, 0.5, 0.0]])
    best = fo.project_endpoints(x)
    grid = np.sort(np.random.RandomState(2).uniform(-1.5, 1.5, (20000, 4)), 1)
    assert ((grid - x) ** 2).sum(1).min() >= ((best - x) ** 2).sum() - 1e-12


def test_classify_outcomes():
    T = 100
    traj = np.zeros((T + 1, 4, 2))
    traj[:, 0] = [0.5, -0.5]                                  # converged (swapped)
    traj[:, 1] = [0.05, 0.0]                                  # collapsed
    traj[:, 2, 0] = 0.5 * np.sin(np.arange(T + 1) / 3)        # oscillating
    traj[:, 3] = [2.0, -2.0]                                  # stuck far away
    np.testing.assert_array_equal(fo.classify(traj, MU_STAR, 0.1, 0.25, 0.1),
                                  ["converged", "collapsed", "oscillating", "stuck"])


def _sweep():
    cfg = make_cfg("experiment=first_order_dynamics", "dataset.num_inits=30", "train.iters=200",
                   "dataset.d_steps=[1,5]", "dataset.plot_inits=3")
    return fo.sweep(cfg)


def test_sweep_gives_every_setting_and_the_papers_dichotomy():
    res = _sweep()
    assert [s["name"] for s in res["settings"]] == ["optimal D", "k = 1", "k = 5"]
    for s in res["settings"]:
        assert sum(s[o] for o in fo.OUTCOMES) == pytest.approx(1) and len(s["labels"]) == 30
        assert np.asarray(s["trajectories"]).shape[1:] == (3, 2)
    # even on this short run: optimal D beats one first-order step
    assert res["settings"][0]["converged"] > res["settings"][1]["converged"]


def test_gl_report_writes_the_table_and_figure_from_the_run_dir(tmp_path):
    res = _sweep()
    run = tmp_path / "runs" / "first_order_dynamics" / "gmm_intervals-intervals-s0"
    write_json(run / "first_order_dynamics.json", res)
    write_json(run / "summary.json", {"status": "finished", "experiment": "first_order_dynamics",
                                      "identity": "0123456789abcdef"})
    [md] = report.build([str(run)])
    assert md == run / "report" / "first_order_dynamics.md"
    lines = md.read_text().splitlines()
    head = lines.index("| discriminator | converged | collapsed | oscillating | stuck |")
    rows = [[c.strip() for c in ln.split("|")[1:-1]] for ln in lines[head + 2:head + 5]]
    assert rows == [[s["name"], *(f"{s[o]:.1%}" for o in fo.OUTCOMES)] for s in res["settings"]]
    assert (run / "report" / "first_order_dynamics.png").stat().st_size > 0
    assert "![first-order dynamics](first_order_dynamics.png)" in lines
