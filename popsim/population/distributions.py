"""Covariate and regimen distributions, sampled per patient from folded PRNG keys."""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

KINDS = ("fixed", "uniform", "normal", "lognormal", "bernoulli", "choice")


@dataclass(frozen=True)
class Distribution:
    """A univariate distribution.

    Attributes:
        kind: one of KINDS.
        value: the value of a "fixed" distribution.
        low, high: bounds of "uniform"; optional truncation of "normal".
        mean, sd: "normal".
        median, cv: "lognormal" (cv of the distribution, not of its log).
        p: probability of 1 for "bernoulli".
        values, weights: support and (unnormalised) weights of "choice".
    """

    kind: str = "fixed"
    value: float | None = None
    low: float | None = None
    high: float | None = None
    mean: float | None = None
    sd: float | None = None
    median: float | None = None
    cv: float | None = None
    p: float | None = None
    values: tuple[float, ...] = ()
    weights: tuple[float, ...] = ()

    def validate(self, where: str) -> None:
        """Raise ValueError naming ``where`` and the missing or invalid field."""
        def need(*names):
            for name in names:
                if getattr(self, name) is None:
                    raise ValueError(f"{where}: a '{self.kind}' distribution needs '{name}'")
        if self.kind not in KINDS:
            raise ValueError(f"{where}.kind '{self.kind}' is unknown; valid kinds are {list(KINDS)}")
        if self.kind == "fixed":
            need("value")
        elif self.kind == "uniform":
            need("low", "high")
            if not self.high > self.low:
                raise ValueError(f"{where}: uniform needs high > low, got low={self.low}, high={self.high}")
        elif self.kind == "normal":
            need("mean", "sd")
            if self.sd <= 0:
                raise ValueError(f"{where}.sd must be > 0, got {self.sd}")
            if self.low is not None and self.high is not None and not self.high > self.low:
                raise ValueError(f"{where}: truncation needs high > low")
        elif self.kind == "lognormal":
            need("median", "cv")
            if self.median <= 0 or self.cv <= 0:
                raise ValueError(f"{where}: lognormal needs median > 0 and cv > 0")
        elif self.kind == "bernoulli":
            need("p")
            if not 0.0 <= self.p <= 1.0:
                raise ValueError(f"{where}.p must be in [0, 1], got {self.p}")
        elif self.kind == "choice":
            if not self.values:
                raise ValueError(f"{where}: a 'choice' distribution needs a non-empty 'values' list")
            if self.weights and (len(self.weights) != len(self.values) or min(self.weights) < 0 or sum(self.weights) <= 0):
                raise ValueError(f"{where}.weights must be {len(self.values)} non-negative numbers with a positive sum")

    def upper_bound(self) -> float:
        """Largest value the distribution produces (its 99.99th percentile if unbounded)."""
        k = self.kind
        if k == "fixed":
            return float(self.value)
        if k == "uniform":
            return float(self.high)
        if k == "normal":
            return float(self.high) if self.high is not None else float(self.mean + 3.72 * self.sd)
        if k == "lognormal":
            return float(self.median * math.exp(3.72 * math.sqrt(math.log1p(self.cv ** 2))))
        if k == "bernoulli":
            return 1.0
        return float(max(self.values))

    def sample(self, key) -> jnp.ndarray:
        """One draw (float scalar) from ``key``."""
        k = self.kind
        if k == "fixed":
            return jnp.asarray(self.value, jnp.float32)
        if k == "uniform":
            return jax.random.uniform(key, minval=self.low, maxval=self.high)
        if k == "normal":
            lo = -jnp.inf if self.low is None else (self.low - self.mean) / self.sd
            hi = jnp.inf if self.high is None else (self.high - self.mean) / self.sd
            return self.mean + self.sd * jax.random.truncated_normal(key, lo, hi)
        if k == "lognormal":
            sigma = jnp.sqrt(jnp.log1p(self.cv ** 2))
            return self.median * jnp.exp(sigma * jax.random.normal(key))
        if k == "bernoulli":
            return jax.random.bernoulli(key, self.p).astype(jnp.float32)
        weights = jnp.asarray(self.weights or (1.0,) * len(self.values), jnp.float32)
        index = jax.random.categorical(key, jnp.log(weights))
        return jnp.asarray(self.values, jnp.float32)[index]


def fixed(value: float) -> Distribution:
    """Shorthand for a fixed value."""
    return Distribution("fixed", value=value)
