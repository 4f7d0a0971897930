"""The game's vector field, the path-angle and the eigenvalues of its Jacobian (Berard et al., 2020).

A game here is: G minimises L_G over `g_params`, D minimises L_D over `d_params` (each player's own
loss, as the trainers use them). The game vector field is v(w) = (grad_G L_G, grad_D L_D) over
w = (G's parameters, D's parameters). Everything is generic over a `Game`: a bilinear toy game, the
synthetic MLPs and the image nets all work through the same functions.

Second-order quantities are matrix-free: `operator(game, which)` is a SciPy LinearOperator whose
matvec is one double-backward pass, and ARPACK (`eigs` / `eigsh`) finds the extreme eigenvalues.
For the game Jacobian J the matvec computes J^T u = grad_w <v(w), u>, as Berard et al.'s code does:
J^T has the same eigenvalues as J and costs one backward pass instead of a forward-over-reverse one.
Every solve logs its start, a line every `HEARTBEAT_S` seconds, and its end with the number of
products it took: on an image net one product costs a forward and two backward passes.
"""
import logging
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import torch
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigs, eigsh

Tensor = torch.Tensor
WHICH = ("g", "d", "game")
HEARTBEAT_S = 30.0
log = logging.getLogger(__name__)


@dataclass
class Game:
    """`pieces()` yields (weight, L_G, L_D) per data chunk at the parameters' current values; the
    full-data losses are the weighted sums. One piece whenever the data fit in one pass."""
    g_params: list[Tensor]
    d_params: list[Tensor]
    pieces: Callable[[], Iterable[tuple[float, Tensor, Tensor]]]
    single_piece: bool = True  # then second-order products reuse one first-order graph

    @property
    def params(self) -> list[Tensor]:
        return self.g_params + self.d_params

    @property
    def n_g(self) -> int:
        return sum(p.numel() for p in self.g_params)

    @property
    def n_d(self) -> int:
        return sum(p.numel() for p in self.d_params)

    def get_flat(self) -> Tensor:
        return flat(self.params).detach().clone()

    @torch.no_grad()
    def set_flat(self, w: Tensor) -> None:
        torch.nn.utils.vector_to_parameters(w.to(self.params[0]), self.params)


def flat(tensors) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _grad(out: Tensor, params: list[Tensor], create_graph=False, retain_graph=None) -> list[Tensor]:
    """d out / d params, zeros for parameters `out` does not depend on (a loss that is linear in
    a player's parameters has a constant gradient, whose own gradient is then all zeros)."""
    if not out.requires_grad:
        return [torch.zeros_like(p) for p in params]
    gs = torch.autograd.grad(out, params, create_graph=create_graph, retain_graph=retain_graph,
                             allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, gs)]


def _piece_field(game: Game, lg: Tensor, ld: Tensor, create_graph: bool, which: str = "game"):
    """Both players' gradients on one piece; only the one a Hessian needs when which is 'g' / 'd'."""
    gg = _grad(lg, game.g_params, create_graph, retain_graph=True) if which != "d" else []
    gd = _grad(ld, game.d_params, create_graph, retain_graph=create_graph) if which != "g" else []
    return gg + gd


def field(game: Game) -> dict:
    """The game vector field v on the full data, flattened, and both players' losses."""
    v, lg_sum, ld_sum = 0, 0.0, 0.0
    for w, lg, ld in game.pieces():
        v = v + w * flat(_piece_field(game, lg, ld, create_graph=False))
        lg_sum, ld_sum = lg_sum + w * lg.item(), ld_sum + w * ld.item()
    return {"v": v.detach(), "loss_g": lg_sum, "loss_d": ld_sum}


def path_angle(game: Game, w_start: Tensor, w_end: Tensor, alphas, on_point=None) -> dict:
    """Berard et al.'s path-angle along w(a) = (1 - a) w_start + a w_end.

    cosine = <v, d> / (|v| |d|) with d = w_start - w_end, their convention: the players move along
    -v, so a positive cosine means the update points towards w_end. `on_point(a)` runs after the
    parameters are set (the image nets interpolate their buffers there). |v| is the Euclidean norm;
    Berard et al. plot its square."""
    d = (w_start - w_end).to(w_start)
    d_norm = d.norm().item()
    out = {k: [] for k in ("alpha", "cosine", "dot", "grad_norm", "g_grad_norm", "d_grad_norm",
                           "loss_g", "loss_d")}
    for a in map(float, alphas):
        game.set_flat((1 - a) * w_start + a * w_end)
        if on_point is not None:
            on_point(a)
        f = field(game)
        v = f["v"].to(d)
        dot = torch.dot(v, d).item()
        vn = v.norm().item()
        out["alpha"].append(a)
        out["dot"].append(dot / max(d_norm, 1e-300))
        out["cosine"].append(dot / max(vn * d_norm, 1e-300))  # 0 where v vanishes
        out["grad_norm"].append(vn)
        out["g_grad_norm"].append(v[: game.n_g].norm().item())
        out["d_grad_norm"].append(v[game.n_g:].norm().item())
        out["loss_g"].append(f["loss_g"])
        out["loss_d"].append(f["loss_d"])
    game.set_flat(w_end)
    return out


# ---------------------------------------------------------------- second order

def matvec_fn(game: Game, which: str) -> Callable[[Tensor], Tensor]:
    """u -> M^T u, M = grad_G^2 L_G (which='g'), grad_D^2 L_D ('d') or the game Jacobian ('game').
    With one data piece its first-order graph is built once and reused by every product; with
    several, each product rebuilds them piece by piece, so memory stays at one piece."""
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    cached = None
    ps = {"g": game.g_params, "d": game.d_params, "game": game.params}[which]

    def graphs():
        nonlocal cached
        if cached is not None:
            return cached
        out = ((w, _piece_field(game, lg, ld, True, which)) for w, lg, ld in game.pieces())
        if game.single_piece:
            cached = list(out)
            return cached
        return out

    def mv(u: Tensor) -> Tensor:
        acc = 0
        us = torch.split(u, [p.numel() for p in ps])
        for w, grads in graphs():
            dot = sum((g * x.view_as(g)).sum() for g, x in zip(grads, us))
            acc = acc + w * flat(_grad(dot, ps, retain_graph=cached is not None))
        return acc.detach()

    return mv


def operator(game: Game, which: str) -> LinearOperator:
    """A float64 LinearOperator for SciPy's ARPACK over `matvec_fn`."""
    mv = matvec_fn(game, which)
    p0 = game.params[0]
    n = {"g": game.n_g, "d": game.n_d, "game": game.n_g + game.n_d}[which]

    def np_mv(x):
        u = torch.as_tensor(np.asarray(x).reshape(-1), dtype=p0.dtype, device=p0.device)
        return mv(u).double().cpu().numpy()

    return LinearOperator((n, n), matvec=np_mv, dtype=np.float64)


def dense(game: Game, which: str) -> np.ndarray:
    """The matrix itself, by n products with basis vectors (tiny nets and tests only)."""
    return _dense_matrix(operator(game, which)).T  # the operator applies M^T


def eigenvalues(op: LinearOperator, k: int, symmetric: bool, which: str = "LM", seed: int = 0,
                tol: float = 0.0, maxiter: int | None = None, ncv: int | None = None) -> dict:
    """The k eigenvalues of `op` ARPACK finds for `which` ('LM' largest magnitude, 'SA'/'SR'
    smallest algebraic / real part, ...), sorted by decreasing magnitude. Tiny operators (k too
    close to n for ARPACK) are solved densely. A non-converged run reports the Ritz values that did
    converge, with converged = False, rather than failing the whole analysis. Also returns how many
    products (`matvecs`) and seconds the solve took."""
    n = op.shape[0]
    k = min(k, n)
    v0 = np.random.RandomState(seed).standard_normal(n)  # ARPACK's own start is call-order dependent
    op, count, t0 = _counted(op)
    converged = True
    if k >= (n - 1 if symmetric else n - 2):
        vals = _dense_eigs(op, symmetric, which, k)
    else:
        solver = eigsh if symmetric else eigs
        try:
            ncv = None if ncv is None else min(n, max(ncv, 2 * k + 1))
            vals = solver(op, k=k, which=which, v0=v0, tol=tol, maxiter=maxiter, ncv=ncv,
                          return_eigenvectors=False)
        except ArpackNoConvergence as e:
            vals, converged = e.eigenvalues, False
    return {"values": _by_magnitude(np.asarray(vals)), "converged": converged, "which": which, "k": k,
            "n": n, "matvecs": count[0], "seconds": round(time.time() - t0, 2)}


def smallest(op: LinearOperator, k: int, symmetric: bool, scale: float, seed: int = 0,
             tol: float = 0.0, maxiter: int | None = None, ncv: int | None = None) -> dict:
    """The k smallest eigenvalues (real part) of `op`, as the largest of scale * I - op. The Ritz
    values are the same; what changes is ARPACK's stopping test, relative to each Ritz value: near
    zero, where a trained net's smallest Hessian eigenvalues sit, the unshifted test asks for ever
    more restarts, while shifted it asks for accuracy tol * scale, the scale the verdict reads signs
    at. `scale`: the largest magnitude found (0 = unshifted)."""
    shifted = LinearOperator(op.shape, matvec=lambda x: scale * x - op.matvec(x), dtype=op.dtype)
    res = eigenvalues(shifted, k, symmetric, "LA" if symmetric else "LR", seed, tol, maxiter, ncv)
    return {**res, "values": _by_magnitude(scale - res["values"]), "which": "SA" if symmetric else "SR"}


def known_smallest(top: dict, k: int) -> dict | None:
    """The k smallest (real part) eigenvalues when a converged top-k by magnitude already holds
    them, else None: every eigenvalue outside it has |lambda| <= m, the least magnitude inside, so
    Re lambda >= -m; those inside with Re lambda < -m are all there are below -m. (An indefinite
    Hessian's top-20 usually holds its 3 most negative eigenvalues: no solve needed.)"""
    vals = top["values"]
    if not top["converged"] or len(vals) < top["k"] or top["k"] >= top["n"]:
        return None
    below = vals[vals.real < -np.abs(vals).min()]
    if len(below) < k:
        return None
    return {**top, "values": _by_magnitude(below[np.argsort(below.real, kind="stable")[:k]]),
            "matvecs": 0, "seconds": 0.0, "which": "from top-k"}


def _by_magnitude(vals: np.ndarray) -> np.ndarray:
    return vals[np.lexsort((-vals.imag if np.iscomplexobj(vals) else vals, -np.abs(vals)))]


def _counted(op: LinearOperator):
    """op with a product counter and a progress line every HEARTBEAT_S seconds."""
    count, t0, last = [0], time.time(), [time.time()]

    def mv(x):
        count[0] += 1
        if time.time() - last[0] > HEARTBEAT_S:
            last[0] = time.time()
            log.info(f"  ... {count[0]} products, {last[0] - t0:.0f} s")
        return op.matvec(x)

    return LinearOperator(op.shape, matvec=mv, dtype=op.dtype), count, t0


def _dense_matrix(op) -> np.ndarray:
    return np.stack([op.matvec(e) for e in np.eye(op.shape[0])], 1)


def _dense_eigs(op, symmetric, which, k):
    m = _dense_matrix(op)
    vals = np.linalg.eigvalsh((m + m.T) / 2) if symmetric else np.linalg.eigvals(m)
    key = {"LM": -np.abs(vals), "SA": vals.real, "SR": vals.real, "LA": -vals.real,
           "LR": -vals.real, "LI": -vals.imag, "SM": np.abs(vals)}[which]
    return vals[np.argsort(key, kind="stable")[:k]]


# ---------------------------------------------------------------- spectrum and verdict

def spectrum(game: Game, e, seed: int) -> dict:
    """Top-k (largest magnitude, as Berard et al.) and the k_extreme smallest (real part) eigenvalues
    of G's Hessian, D's Hessian and the game Jacobian, with the verdict. `e`: the `eig` config."""
    out = {}
    for name, which, sym in (("hessian_g", "g", True), ("hessian_d", "d", True), ("jacobian", "game", False)):
        op = operator(game, which)
        top = _logged(name, f"top {e.k} by magnitude", lambda: eigenvalues(
            op, e.k, sym, "LM", seed, e.tol, e.maxiter, e.get("ncv")))
        scale = float(np.abs(top["values"]).max()) if len(top["values"]) else 0.0
        bottom = known_smallest(top, e.k_extreme)
        if bottom is None:
            bottom = _logged(name, f"{e.k_extreme} smallest", lambda: smallest(
                op, e.k_extreme, sym, scale, seed, e.tol_extreme, e.maxiter_extreme, e.get("ncv")))
        else:
            log.info(f"eigen-solve {name}, {e.k_extreme} smallest: among the top {e.k} (no solve)")
        out[name] = {"n": top["n"], "top": _enc(top["values"]), "top_converged": top["converged"],
                     "smallest": _enc(bottom["values"]), "smallest_converged": bottom["converged"],
                     "scale": scale, "matvecs": top["matvecs"] + bottom["matvecs"]}
    out["verdict"] = verdict(out, e.rel_zero)
    return out


def _logged(name: str, what: str, solve: Callable[[], dict]) -> dict:
    log.info(f"eigen-solve {name}, {what}: started")
    res = solve()
    log.info(f"eigen-solve {name}, {what}: {'converged' if res['converged'] else 'NOT converged'}, "
             f"{res['matvecs']} products in {res['seconds']:.1f} s")
    return res


def _enc(vals: np.ndarray):
    """Real eigenvalues as floats, complex ones as [re, im]."""
    if np.iscomplexobj(vals):
        return [[float(v.real), float(v.imag)] for v in vals]
    return [float(v) for v in vals]


def _nonneg(entry, rel_zero: float) -> bool | None:
    """Whether every eigenvalue has a real part >= 0 (zero within rel_zero of the largest
    magnitude): False as soon as one found is negative, True only if the smallest-eigenvalue solve
    converged, else None (undetermined)."""
    vals = [v[0] if isinstance(v, list) else v for v in entry["smallest"] + entry["top"]]
    if vals and min(vals) < -rel_zero * entry["scale"]:
        return False
    return True if entry["smallest_converged"] and entry["smallest"] else None


def verdict(s: dict, rel_zero: float) -> dict:
    """Nash: both players' Hessians PSD; locally stable: every Jacobian eigenvalue has Re >= 0
    (gradient play converges nearby). Both describe the point as if it were stationary: read them
    with the field's norm there."""
    g, d, stable = (_nonneg(s[n], rel_zero) for n in ("hessian_g", "hessian_d", "jacobian"))
    nash = False if False in (g, d) else (True if g and d else None)
    if nash:
        text = "local Nash equilibrium (both players' Hessians PSD)"
    else:
        text = {True: "locally stable stationary point", None: "local stability undetermined",
                False: "not locally stable (a Jacobian eigenvalue has negative real part)"}[stable]
        text += {False: ", not a local Nash equilibrium", None: ", local Nash undetermined"}[nash]
    if None in (nash, stable):
        text += " (a smallest-eigenvalue solve did not converge: raise eig.maxiter_extreme)"
    return {"g_hessian_psd": g, "d_hessian_psd": d, "locally_stable": stable, "local_nash": nash,
            "text": text}
