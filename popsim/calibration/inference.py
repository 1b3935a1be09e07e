"""Posterior inference: NUTS (several chains) or SVI, reproducible from a seed.

Both return a :class:`Posterior`: draws of every latent site with a leading
``(chain, draw)`` shape, per-draw sampler statistics, and timings. NUTS starts every
chain from a short MAP optimisation (Adam on the same potential), which shortens warm-up
a lot for a hierarchical model whose typical set is far from the prior mean; SVI fits
an AutoNormal or AutoMultivariateNormal guide and draws from it (one "chain").
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro.infer import MCMC, NUTS, SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoDelta, AutoMultivariateNormal, AutoNormal
from numpyro.optim import Adam

from popsim.calibration.problem import DERIVATIVES

CHAIN_METHODS = ("parallel", "sequential", "vectorized")
MASS_MATRICES = ("laplace", "diagonal", "dense")
# Smallest curvature kept in the Laplace metric (unconstrained space, where every prior
# has a scale of about 1): flatter or negative directions get a standard deviation of at
# most 1/sqrt(0.05) ~ 4.5 instead of an unbounded one.
LAPLACE_MIN_CURVATURE = 0.05
# Smallest curvature of the Laplace fit's Newton steps and draws (unconstrained space): a
# standardised individual effect's Normal(0, 1) prior has curvature 1, so a direction the
# data and priors together curve less than that (the weakly identified IIV sd of a
# parameter each man's data say little about) is given the scale of that prior instead of
# an unbounded one, and is reported (run_laplace's "flat_directions").
LAPLACE_FIT_MIN_CURVATURE = 1.0
METHODS = ("nuts", "svi", "laplace")
# Sites with one row per patient: each man's likelihood depends only on his own row, which
# makes the Hessian's patient block block-diagonal (structured_hessian).
PATIENT_SITES = ("z", "eta", "log_theta")
GRADIENTS = DERIVATIVES  # how the likelihood is differentiated (make_predictor)
GUIDES = ("normal", "multivariate_normal")

_log = logging.getLogger(__name__)


class InferenceError(ValueError):
    """An invalid inference setting; the message names the field and the valid values."""


@dataclass(frozen=True)
class InferenceSettings:
    """How the posterior is computed.

    Attributes:
        method: "nuts", "svi" or "laplace" (the MAP estimate refined by Newton steps, and
            draws from the Gaussian with the inverse Hessian there: structured_hessian;
            about 2 (3 K + A) + newton_steps gradients, whatever the number of men).
        chains, warmup, samples: NUTS chains and draws per chain (SVI: ``samples`` draws).
        chain_method: "parallel" (one chain per device; the app makes one CPU device per
            core), "sequential" or "vectorized".
        target_accept: NUTS target acceptance probability.
        max_tree_depth: NUTS tree depth limit (2^depth leapfrog steps at most).
        mass_matrix: NUTS metric. "diagonal" (default) or "dense": numpyro's windowed
            adaptation during warm-up; "laplace": every chain starts at the mode of
            laplace_mode (Adam, then Newton steps) and the inverse of the structured
            Hessian there is the metric (dense, fixed; warm-up adapts only the step size),
            for near-Gaussian posteriors where a short warm-up cannot learn a dense metric.
        gradient: how the log density is differentiated (popsim.calibration.problem
            .make_predictor): "finite_difference" (default: forward differences in each
            man's parameters, one batched simulation of K + 1 copies of the cohort;
            1.4-1.7x faster than reverse mode on a 2-core CPU for K = 4, and NUTS stays
            exact because its acceptance uses the exact log density) or "reverse" (exact
            reverse mode through the integrator; cheaper when many parameters are
            estimated).
        init_steps: Adam steps of the MAP start (0: start from the prior medians).
        init_learning_rate: Adam step size of the MAP start.
        svi_steps, svi_learning_rate, guide: SVI settings ("normal" or "multivariate_normal").
        lbfgs_steps: L-BFGS iterations of the Laplace fit between the Adam start and the
            Newton steps (0: none); each about one gradient, against ~2 (K + G) for a
            Newton step.
        newton_steps: Newton steps of the Laplace fit after the Adam start (each one
            gradient and, while the step is not yet small, one structured Hessian).
        seed: PRNG seed; the same seed gives the same draws on the same machine.
        progress_bar: show NUTS/SVI progress.
    """

    method: str = "nuts"
    chains: int = 2
    warmup: int = 150
    samples: int = 150
    chain_method: str = "parallel"
    target_accept: float = 0.8
    max_tree_depth: int = 5
    mass_matrix: str = "diagonal"
    gradient: str = "finite_difference"
    init_steps: int = 200
    init_learning_rate: float = 0.03
    svi_steps: int = 2000
    svi_learning_rate: float = 0.01
    guide: str = "normal"
    newton_steps: int = 5
    lbfgs_steps: int = 0
    seed: int = 0
    progress_bar: bool = True


def validate_settings(s: InferenceSettings) -> None:
    """Raise InferenceError naming the first invalid field."""
    if s.method not in METHODS:
        raise InferenceError(f"inference.method must be one of {METHODS}, got {s.method!r}")
    if s.chain_method not in CHAIN_METHODS:
        raise InferenceError(f"inference.chain_method must be one of {CHAIN_METHODS}, got {s.chain_method!r}")
    if s.mass_matrix not in MASS_MATRICES:
        raise InferenceError(f"inference.mass_matrix must be one of {MASS_MATRICES}, got {s.mass_matrix!r}")
    if s.gradient not in GRADIENTS:
        raise InferenceError(f"inference.gradient must be one of {GRADIENTS}, got {s.gradient!r}")
    if s.guide not in GUIDES:
        raise InferenceError(f"inference.guide must be one of {GUIDES}, got {s.guide!r}")
    for name in ("chains", "samples", "svi_steps", "max_tree_depth"):
        value = getattr(s, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InferenceError(f"inference.{name} must be an integer >= 1, got {value!r}")
    for name in ("warmup", "init_steps", "seed", "newton_steps", "lbfgs_steps"):
        value = getattr(s, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InferenceError(f"inference.{name} must be an integer >= 0, got {value!r}")
    if not (isinstance(s.target_accept, (int, float)) and 0 < s.target_accept < 1):
        raise InferenceError(f"inference.target_accept must be in (0, 1), got {s.target_accept!r}")
    for name in ("init_learning_rate", "svi_learning_rate"):
        value = getattr(s, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise InferenceError(f"inference.{name} must be a number > 0, got {value!r}")


@dataclass
class Posterior:
    """Draws and diagnostics of an inference run.

    Attributes:
        draws: ``{site: (chains, draws, *site_shape)}`` latent and deterministic sites.
        sample_stats: ``{stat: (chains, draws)}`` (NUTS: diverging, accept_prob,
            step_size, tree_depth, n_steps, energy, lp; SVI: empty).
        method: "nuts", "svi" or "laplace".
        settings: the InferenceSettings used.
        timings_s: wall times, seconds: "init" (MAP start), "laplace" (its metric),
            "warmup_and_sampling" or "svi".
        losses: SVI/MAP loss trace (negative ELBO / potential), one value per step.
        n_gradient_evaluations: leapfrog steps of the kept draws (NUTS; warm-up not
            counted) or optimisation steps (SVI).
        metric: NUTS metric: {"mass_matrix": ...} plus, for "laplace", the dimension,
            the number of floored curvatures and the smallest and largest curvature.
    """

    draws: dict
    sample_stats: dict
    method: str
    settings: InferenceSettings
    timings_s: dict = field(default_factory=dict)
    losses: np.ndarray | None = None
    n_gradient_evaluations: int = 0
    metric: dict = field(default_factory=dict)

    @property
    def n_chains(self) -> int:
        return int(next(iter(self.draws.values())).shape[0])

    @property
    def n_draws(self) -> int:
        return int(next(iter(self.draws.values())).shape[1])


def map_start(model: Callable, settings: InferenceSettings, key) -> tuple[dict, np.ndarray, float]:
    """MAP estimate of the latent sites (AutoDelta + Adam, ``settings.init_steps`` steps):
    ``(constrained values, loss trace, seconds)``."""
    guide = AutoDelta(model, init_loc_fn=numpyro.infer.init_to_median(num_samples=15))
    svi = SVI(model, guide, Adam(settings.init_learning_rate), Trace_ELBO())
    t0 = time.perf_counter()
    result = svi.run(key, settings.init_steps, progress_bar=settings.progress_bar)
    values = guide.median(result.params)
    jax.block_until_ready(values)
    return values, np.asarray(result.losses), time.perf_counter() - t0


_NUTS_FIELDS = ("diverging", "accept_prob", "adapt_state.step_size", "num_steps", "energy", "potential_energy")


def _jittered_starts(model: Callable, start: dict, chains: int, key) -> dict:
    """Unconstrained starting values, one per chain: the MAP estimate jittered (every site,
    sd 0.05) so chains differ and r_hat can reveal poor mixing."""
    from numpyro.infer.util import unconstrain_fn

    unconstrained = unconstrain_fn(model, (), {}, start)
    leaves, tree = jax.tree.flatten(unconstrained)
    keys = jax.random.split(key, len(leaves))
    jittered = [a + 0.05 * jax.random.normal(k, (chains,) + a.shape, a.dtype) for a, k in zip(leaves, keys)]
    if chains == 1:  # numpyro takes a leading chain axis only for several chains
        jittered = [a[0] for a in jittered]
    return jax.tree.unflatten(tree, jittered)


def finite_difference_hessian(gradient: Callable, x: np.ndarray, step: float = 1e-2) -> np.ndarray:
    """Symmetrised Hessian ``(d, d)`` at ``x`` ``(d,)`` by central differences of
    ``gradient`` (``(d,)`` -> ``(d,)``), 2 d gradient calls, in float64."""
    x = np.asarray(x, np.float64)
    d = x.size
    hessian = np.empty((d, d))
    for i in range(d):
        shift = np.zeros(d)
        shift[i] = step
        up = np.asarray(gradient(x + shift), np.float64)
        down = np.asarray(gradient(x - shift), np.float64)
        hessian[:, i] = (up - down) / (2.0 * step)
    return 0.5 * (hessian + hessian.T)


def laplace_inverse_mass(model: Callable, start: dict, step: float = 1e-2) -> tuple[np.ndarray, dict]:
    """Inverse Hessian of the potential at ``start`` in numpyro's unconstrained space.

    The Hessian is taken by central differences of the (jitted, reverse-mode) gradient,
    2 d gradient calls for d unconstrained dimensions: an exact forward-over-reverse
    Hessian through the simulator's time loop takes XLA many minutes to compile, and a
    metric needs no more than a few digits. It is symmetrised and its eigenvalues are
    floored at LAPLACE_MIN_CURVATURE, so the metric is positive definite even off the mode
    or along weakly identified directions.

    Args:
        step: difference step in the unconstrained coordinates (each prior has a scale of
            about 1 there).

    Returns:
        ``(inverse_mass, info)``: ``(d, d)`` matrix in the order of
        ``jax.flatten_util.ravel_pytree`` of the unconstrained sites (numpyro's own
        flattening), and ``{"dimension", "floored_eigenvalues", "min_curvature",
        "max_curvature", "seconds"}``.
    """
    from jax.flatten_util import ravel_pytree
    from numpyro.infer.util import init_to_value, initialize_model

    t0 = time.perf_counter()
    info = initialize_model(jax.random.PRNGKey(0), model, init_strategy=init_to_value(values=start))
    flat, unravel = ravel_pytree(info.param_info.z)
    gradient = jax.jit(jax.grad(lambda x: info.potential_fn(unravel(x))))
    hessian = finite_difference_hessian(lambda x: gradient(jnp.asarray(x, flat.dtype)), np.asarray(flat), step)
    d = hessian.shape[0]
    if not np.all(np.isfinite(hessian)):
        raise FloatingPointError("the Hessian of the potential at the MAP start is not finite; "
                                 "use inference.mass_matrix=diagonal")
    curvature, vectors = np.linalg.eigh(hessian)
    floored = np.maximum(curvature, LAPLACE_MIN_CURVATURE)
    inverse_mass = (vectors / floored) @ vectors.T
    return inverse_mass, {"dimension": int(d), "floored_eigenvalues": int(np.sum(curvature < LAPLACE_MIN_CURVATURE)),
                          "min_curvature": float(curvature.min()), "max_curvature": float(curvature.max()),
                          "seconds": time.perf_counter() - t0}


def run_nuts(model: Callable, settings: InferenceSettings, latent_sites: tuple[str, ...]) -> Posterior:
    """Sample the posterior with NUTS (numpyro), ``settings.chains`` chains."""
    validate_settings(settings)
    key = jax.random.PRNGKey(settings.seed)
    init_key, run_key = jax.random.split(key)
    timings, losses, init_params = {}, None, None
    metric = {"dense_mass": settings.mass_matrix == "dense"}
    metric_info = {"mass_matrix": settings.mass_matrix}
    if settings.mass_matrix == "laplace":
        # Start every chain at the mode and use the inverse Hessian there as a fixed dense metric.
        fit = laplace_mode(model, settings, init_key)
        start, losses = fit["constrained"], fit["losses"]
        timings.update(fit["timings"])
        metric_info.update(fit["info"])
        metric = {"dense_mass": True, "adapt_mass_matrix": False, "inverse_mass_matrix": jnp.asarray(fit["covariance"])}
    elif settings.init_steps:
        start, losses, timings["init"] = map_start(model, settings, init_key)
    if settings.mass_matrix == "laplace" or settings.init_steps:
        start = {k: v for k, v in start.items() if k in latent_sites}
        init_params = _jittered_starts(model, start, settings.chains, jax.random.fold_in(key, 1))
    kernel = NUTS(model, target_accept_prob=settings.target_accept, max_tree_depth=settings.max_tree_depth, **metric)
    chain_method = settings.chain_method
    if chain_method == "parallel" and jax.local_device_count() < settings.chains:
        chain_method = "sequential"
    mcmc = MCMC(kernel, num_warmup=settings.warmup, num_samples=settings.samples, num_chains=settings.chains,
                chain_method=chain_method, progress_bar=settings.progress_bar)
    t0 = time.perf_counter()
    mcmc.run(run_key, init_params=init_params, extra_fields=_NUTS_FIELDS)
    draws = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    timings["warmup_and_sampling"] = time.perf_counter() - t0
    extra = mcmc.get_extra_fields(group_by_chain=True)
    stats = {
        "diverging": np.asarray(extra["diverging"]),
        "acceptance_rate": np.asarray(extra["accept_prob"]),
        "step_size": np.asarray(extra["adapt_state.step_size"]),
        "n_steps": np.asarray(extra["num_steps"]),
        "tree_depth": np.floor(np.log2(np.maximum(np.asarray(extra["num_steps"]), 1))).astype(int) + 1,
        "energy": np.asarray(extra["energy"]),
        "lp": -np.asarray(extra["potential_energy"]),
    }
    sampled_steps = int(stats["n_steps"].sum())
    return Posterior(draws=draws, sample_stats=stats, method="nuts", settings=settings, timings_s=timings,
                     losses=losses, n_gradient_evaluations=sampled_steps, metric=metric_info)


def run_svi(model: Callable, settings: InferenceSettings) -> Posterior:
    """Fit an AutoNormal / AutoMultivariateNormal guide and draw ``settings.samples`` from it."""
    validate_settings(settings)
    key = jax.random.PRNGKey(settings.seed)
    fit_key, draw_key = jax.random.split(key)
    guide_class = AutoNormal if settings.guide == "normal" else AutoMultivariateNormal
    guide = guide_class(model, init_loc_fn=numpyro.infer.init_to_median(num_samples=15))
    svi = SVI(model, guide, Adam(settings.svi_learning_rate), Trace_ELBO())
    t0 = time.perf_counter()
    result = svi.run(fit_key, settings.svi_steps, progress_bar=settings.progress_bar)
    jax.block_until_ready(result.params)
    elapsed = time.perf_counter() - t0
    predictive = numpyro.infer.Predictive(guide, params=result.params, num_samples=settings.samples)
    latent = predictive(draw_key)
    # Deterministic sites (theta, prediction) from the model at the guide's draws.
    with_det = numpyro.infer.Predictive(model, posterior_samples=latent, return_sites=["theta", "prediction"])(draw_key)
    draws = {k: np.asarray(v)[None] for k, v in {**latent, **with_det}.items() if not k.startswith("_")}
    return Posterior(draws=draws, sample_stats={}, method="svi", settings=settings, timings_s={"svi": elapsed},
                     losses=np.asarray(result.losses), n_gradient_evaluations=settings.svi_steps)


def structured_hessian(gradient: Callable, x: np.ndarray, unravel: Callable, patient_sites: dict,
                       step: float = 1e-2) -> tuple[np.ndarray, int]:
    """Hessian ``(d, d)`` of a hierarchical potential at ``x`` ``(d,)`` by central
    differences of ``gradient``, in 2 (K + G) gradient calls instead of 2 d.

    Each man's likelihood depends only on his own row of the patient sites (``(n, K)``
    each) and on the G global coordinates, so the patient-patient part of the Hessian is
    block-diagonal (n blocks of K x K). One difference that moves column k of every man's
    row at once therefore gives column k of every man's block together (a colouring of
    the Hessian's sparsity pattern, as in Curtis, Powell & Reid 1974); each global
    coordinate is differenced alone and gives its full column, hence by symmetry its
    row. The result is symmetrised.

    Args:
        gradient: ``(d,)`` -> ``(d,)`` gradient of the potential (flat, numpyro's order).
        x: the point.
        unravel: flat vector -> dict of sites (``jax.flatten_util.ravel_pytree``'s).
        patient_sites: ``{site: (n, K) array}`` of the point's patient sites (for shapes).
        step: difference step in the unconstrained coordinates.

    Returns:
        ``(hessian, gradient_calls)``.
    """
    from jax.flatten_util import ravel_pytree

    x = np.asarray(x, np.float64)
    d = x.size
    template = {k: np.zeros(np.shape(v)) for k, v in unravel(jnp.asarray(x)).items()}

    def flat(sites: dict) -> np.ndarray:
        return np.asarray(ravel_pytree({k: jnp.asarray(sites.get(k, template[k])) for k in template})[0], np.float64)

    # Which patient each flat coordinate of a patient site belongs to (-1: a global one).
    owner_patient = np.full(d, -1)
    for site, value in patient_sites.items():
        n, k = np.shape(value)
        patient_index = flat({site: np.broadcast_to(np.arange(n)[:, None] + 1.0, (n, k))})
        in_site = patient_index > 0
        owner_patient[in_site] = patient_index[in_site].astype(int) - 1
    in_patient = owner_patient >= 0
    hessian = np.zeros((d, d))
    calls = 0

    def column_of(direction: np.ndarray) -> np.ndarray:
        nonlocal calls
        calls += 2
        up = np.asarray(gradient(x + step * direction), np.float64)
        down = np.asarray(gradient(x - step * direction), np.float64)
        return (up - down) / (2.0 * step)

    # Colours of the patient block: one per (site, column).
    colours = sorted({(site, c) for site, v in patient_sites.items() for c in range(np.shape(v)[1])})
    for site, c in colours:
        n, k = np.shape(patient_sites[site])
        direction = flat({site: np.broadcast_to((np.arange(k) == c).astype(float), (n, k))})
        change = column_of(direction)
        moved = np.flatnonzero(direction)
        # Column j (man owner_patient[j]'s coordinate) keeps the rows of that man's coordinates.
        own_rows = in_patient[:, None] & (owner_patient[:, None] == owner_patient[moved][None, :])
        hessian[:, moved] = np.where(own_rows, change[:, None], 0.0)
    for j in np.flatnonzero(~in_patient):
        direction = np.zeros(d)
        direction[j] = 1.0
        hessian[:, j] = column_of(direction)
        hessian[j, in_patient] = hessian[in_patient, j]
    return 0.5 * (hessian + hessian.T), calls


def _flat_names(unravel: Callable, d: int) -> list[str]:
    """``site[i, j]`` label of each flat unconstrained coordinate (numpyro's order)."""
    from jax.flatten_util import ravel_pytree

    shapes = {k: np.shape(v) for k, v in unravel(jnp.zeros(d)).items()}
    labels = []
    for site in sorted(shapes):  # ravel_pytree flattens a dict by sorted key
        for index in np.ndindex(*shapes[site]):
            labels.append(f"{site}[{', '.join(map(str, index))}]" if index else site)
    return labels


def _lbfgs_refine(potential_gradient: Callable, x: np.ndarray, potential: float, grad: np.ndarray,
                  max_iterations: int):
    """Quasi-Newton descent (scipy's L-BFGS-B, no bounds) of the potential from ``x``: about
    one gradient per iteration, where a saddle-free Newton step costs a structured Hessian.

    Returns ``(x, potential, gradient, info)`` at the best point seen (the start if nothing
    was better); ``info``: iterations, gradients, scipy's message.
    """
    from scipy.optimize import minimize

    best = {"x": x, "potential": potential, "grad": grad}
    calls = 0

    def value_and_grad(v):
        nonlocal calls
        calls += 1
        value, g = potential_gradient(v)
        if not (np.isfinite(value) and np.all(np.isfinite(g))):
            return np.inf, np.zeros_like(g)  # the line search backs off
        if value < best["potential"]:
            best.update(x=np.array(v, np.float64), potential=value, grad=g)
        return value, g

    result = minimize(value_and_grad, x, jac=True, method="L-BFGS-B",
                      options={"maxiter": int(max_iterations), "maxcor": 20})
    info = {"iterations": int(result.nit), "gradients": calls, "message": str(result.message)}
    return best["x"], best["potential"], best["grad"], info


def laplace_mode(model: Callable, settings: InferenceSettings, key) -> dict:
    """The posterior mode and the Hessian there, in numpyro's unconstrained space: Adam
    (``init_steps``), optionally ``lbfgs_steps`` L-BFGS iterations (_lbfgs_refine), then
    up to ``newton_steps`` saddle-free Newton steps with the
    structured Hessian and a backtracking line search on the potential.

    Returns:
        ``{"mode": (d,) flat point, "unravel", "hessian": (d, d), "covariance": (d, d)
        (inverse Hessian, curvatures floored at LAPLACE_FIT_MIN_CURVATURE), "constrained":
        the mode's constrained sites, "losses": Adam's trace, "timings", "gradient_calls",
        "info": dimension, flat directions, curvatures, Newton steps, gradients}``.
    """
    from jax.flatten_util import ravel_pytree
    from numpyro.infer.util import constrain_fn, init_to_value, initialize_model

    timings = {}
    if settings.init_steps > 0:
        start, losses, timings["init"] = map_start(model, settings, key)
        init = {"init_strategy": init_to_value(values=start)}
    else:
        losses, init = None, {"init_strategy": numpyro.infer.init_to_median(num_samples=15)}
    t0 = time.perf_counter()
    info = initialize_model(jax.random.PRNGKey(0), model, **init)
    flat0, unravel = ravel_pytree(info.param_info.z)
    dtype = flat0.dtype
    value_and_gradient = jax.jit(jax.value_and_grad(lambda v: info.potential_fn(unravel(v))))

    def potential_gradient(v):
        value, grad = value_and_gradient(jnp.asarray(v, dtype))
        return float(value), np.asarray(grad, np.float64)

    patient_sites = {k: v for k, v in info.param_info.z.items() if k in PATIENT_SITES}
    x = np.asarray(flat0, np.float64)
    potential, grad = potential_gradient(x)
    start_gradient = float(np.max(np.abs(grad)))
    # A proper mode: the gradient has fallen well below its scale at the start. It does not
    # exist when a centred parameter's IIV sd can shrink to 0 with every man's value at the
    # typical one (the centred funnel, where the density grows without bound).
    gradient_tolerance = max(1.0, 0.05 * start_gradient)
    gradient_calls = 1
    lbfgs = None
    if settings.lbfgs_steps > 0:
        x, potential, grad, lbfgs = _lbfgs_refine(potential_gradient, x, potential, grad, settings.lbfgs_steps)
        gradient_calls += lbfgs["gradients"]
        timings["lbfgs"] = time.perf_counter() - t0
        if settings.progress_bar:
            _log.info("Laplace fit, L-BFGS: %d iterations, potential %.2f, largest gradient component %.3g "
                      "(%d gradients, %.0f s; %s)", lbfgs["iterations"], potential, float(np.max(np.abs(grad))),
                      lbfgs["gradients"], timings["lbfgs"], lbfgs["message"])
    newton = []
    hessian = None
    for _ in range(settings.newton_steps):
        hessian, calls = structured_hessian(lambda v: potential_gradient(v)[1], x, unravel, patient_sites)
        gradient_calls += calls
        # Saddle-free Newton step (curvatures by absolute value, floored): downhill along
        # a direction of negative curvature too, and bounded along flat ones.
        curvature, vectors = np.linalg.eigh(hessian)
        move = -(vectors / np.maximum(np.abs(curvature), LAPLACE_FIT_MIN_CURVATURE)) @ (vectors.T @ grad)
        accepted = False
        for fraction in (1.0, 0.5, 0.25, 0.125, 0.0625):
            trial = x + fraction * move
            trial_potential, trial_grad = potential_gradient(trial)
            gradient_calls += 1
            if np.isfinite(trial_potential) and trial_potential <= potential:
                accepted = True
                break
        decrease = potential - trial_potential if accepted else 0.0
        newton.append({"potential": trial_potential if accepted else potential, "fraction": fraction if accepted else 0.0,
                       "largest_gradient": float(np.max(np.abs(trial_grad if accepted else grad)))})
        if settings.progress_bar:
            _log.info("Laplace fit, Newton step %d of at most %d: potential %.2f, largest gradient "
                      "component %.3g, step fraction %g (%d gradients, %.0f s so far)", len(newton),
                      settings.newton_steps, newton[-1]["potential"], newton[-1]["largest_gradient"],
                      newton[-1]["fraction"], gradient_calls, time.perf_counter() - t0)
        if not accepted:
            break
        x, potential, grad = trial, trial_potential, trial_grad
        hessian = None  # the mode moved: take the Hessian again there
        # Stop early only at a mode: a step that barely lowers the potential can still leave
        # a large gradient along a flat direction (seen on the shipped example: 0.74 -> 2.12
        # for a decrease of 0.01), which the next Newton step removes.
        if decrease < 1e-2 and np.max(np.abs(grad)) <= gradient_tolerance:
            break
    if hessian is None:
        hessian, calls = structured_hessian(lambda v: potential_gradient(v)[1], x, unravel, patient_sites)
        gradient_calls += calls
    if not np.all(np.isfinite(hessian)):
        raise FloatingPointError("the Hessian of the potential at the MAP estimate is not finite; "
                                 "use inference.method=nuts or svi")
    curvature, vectors = np.linalg.eigh(hessian)
    floored = np.maximum(curvature, LAPLACE_FIT_MIN_CURVATURE)
    names = _flat_names(unravel, x.size)
    flat_directions = [{"curvature": float(c),
                        "largest_loadings": {names[j]: round(float(vectors[j, i]), 3)
                                             for j in np.argsort(-np.abs(vectors[:, i]))[:3]}}
                       for i, c in enumerate(curvature) if c < LAPLACE_FIT_MIN_CURVATURE]
    timings["laplace"] = time.perf_counter() - t0
    converged = bool(np.max(np.abs(grad)) <= gradient_tolerance)
    constrained = constrain_fn(model, (), {}, unravel(jnp.asarray(x, dtype)))
    return {"mode": x, "unravel": unravel, "dtype": dtype, "hessian": hessian,
            "covariance": (vectors / floored) @ vectors.T, "scale": vectors / np.sqrt(floored),
            "constrained": {k: v for k, v in constrained.items() if k in info.param_info.z},
            "losses": losses, "timings": timings, "gradient_calls": gradient_calls,
            "info": {"dimension": int(x.size), "converged": converged, "flat_directions": flat_directions,
                     "min_curvature": float(curvature.min()), "max_curvature": float(curvature.max()),
                     "newton_steps": newton, "lbfgs": lbfgs, "potential_at_mode": potential,
                     "largest_gradient_at_start": start_gradient,
                     "largest_gradient_at_mode": float(np.max(np.abs(grad))), "gradient_calls": gradient_calls}}


def run_laplace(model: Callable, settings: InferenceSettings) -> Posterior:
    """Laplace approximation: the mode (laplace_mode) and ``samples`` draws from the
    Gaussian in numpyro's unconstrained space with the inverse Hessian there as
    covariance (curvatures floored at LAPLACE_FIT_MIN_CURVATURE), mapped back to the
    constrained sites."""
    from numpyro.infer.util import constrain_fn

    validate_settings(settings)
    key = jax.random.PRNGKey(settings.seed)
    init_key, draw_key = jax.random.split(key)
    fit = laplace_mode(model, settings, init_key)
    x, unravel = fit["mode"], fit["unravel"]
    normal = np.asarray(jax.random.normal(draw_key, (settings.samples, x.size)), np.float64)
    flat_draws = x[None, :] + normal @ fit["scale"].T
    constrain = jax.jit(jax.vmap(lambda v: constrain_fn(model, (), {}, unravel(v))))
    latent = {k: v for k, v in constrain(jnp.asarray(flat_draws, fit["dtype"])).items() if k in fit["constrained"]}
    with_det = numpyro.infer.Predictive(model, posterior_samples=latent, return_sites=["theta", "prediction"])(draw_key)
    draws = {k: np.asarray(v)[None] for k, v in {**latent, **with_det}.items() if not k.startswith("_")}
    return Posterior(draws=draws, sample_stats={}, method="laplace", settings=settings, timings_s=fit["timings"],
                     losses=fit["losses"], n_gradient_evaluations=fit["gradient_calls"], metric=fit["info"])


def run_inference(model: Callable, settings: InferenceSettings, latent_sites: tuple[str, ...]) -> Posterior:
    """NUTS, SVI or the Laplace approximation according to ``settings.method``."""
    validate_settings(settings)
    if settings.method == "nuts":
        return run_nuts(model, settings, latent_sites)
    if settings.method == "laplace":
        return run_laplace(model, settings)
    return run_svi(model, settings)
