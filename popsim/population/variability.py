"""Inter-individual variability: correlated log-normal random effects (an omega matrix)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from popsim.model.parameters import PARAMETER_INDEX


@dataclass(frozen=True)
class Variability:
    """Log-normal IIV on model parameters: ``theta_i = theta_typical * exp(eta_i)``,
    ``eta ~ N(0, Omega)``.

    Attributes:
        cv: ``((parameter, cv), ...)``; omega_kk = log(1 + cv^2) (NONMEM's convention for
            exponential random effects, so cv is the CV of the parameter).
        correlation: ``((parameter_a, parameter_b, rho), ...)`` correlations of the etas.
    """

    cv: tuple[tuple[str, float], ...] = ()
    correlation: tuple[tuple[str, str, float], ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.cv)

    def omega(self) -> np.ndarray:
        """The covariance matrix of the etas, ``(n_effects, n_effects)``."""
        names = self.names
        sd = np.sqrt(np.log1p(np.asarray([c for _, c in self.cv], float) ** 2))
        corr = np.eye(len(names))
        index = {n: i for i, n in enumerate(names)}
        for a, b, rho in self.correlation:
            corr[index[a], index[b]] = corr[index[b], index[a]] = rho
        return corr * np.outer(sd, sd)

    def validate(self, where: str = "population.variability") -> None:
        """Raise ValueError naming the entry that is invalid."""
        seen = set()
        for name, cv in self.cv:
            if name not in PARAMETER_INDEX:
                raise ValueError(f"{where}.cv: '{name}' is not a model parameter (see docs/model.md)")
            if name in seen:
                raise ValueError(f"{where}.cv: '{name}' is given twice")
            seen.add(name)
            if not (isinstance(cv, (int, float)) and 0 <= cv <= 5):
                raise ValueError(f"{where}.cv['{name}'] must be a CV in [0, 5], got {cv!r}")
        for a, b, rho in self.correlation:
            for n in (a, b):
                if n not in seen:
                    raise ValueError(f"{where}.correlation names '{n}', which has no cv entry")
            if a == b or not -1 < rho < 1:
                raise ValueError(f"{where}.correlation ({a}, {b}) must pair two parameters with -1 < rho < 1")
        if self.cv:
            try:
                np.linalg.cholesky(self.omega() + 1e-12 * np.eye(len(self.cv)))
            except np.linalg.LinAlgError:
                raise ValueError(f"{where}: the correlations do not form a positive-definite omega matrix") from None

    def cholesky(self) -> np.ndarray:
        """Lower Cholesky factor of omega (zero rows for zero CVs are allowed)."""
        if not self.cv:
            return np.zeros((0, 0))
        return np.linalg.cholesky(self.omega() + 1e-12 * np.eye(len(self.cv)))


# Default IIV of the virtual population (CV of each parameter). Baseline widths follow
# the reference ranges in model-facts.md section 7; rate widths are assumptions until
# calibrated (docs/validation).
DEFAULT_VARIABILITY = Variability(
    cv=(
        ("t_base_nmol_l", 0.25), ("lh_base_iu_l", 0.35), ("fsh_base_iu_l", 0.40), ("e2_base_pg_ml", 0.30),
        ("inhibin_b_base_pg_ml", 0.30), ("sperm_base_m_ml", 0.55), ("shbg_base_nmol_l", 0.30),
        ("semen_volume_ml", 0.30), ("motility_fraction", 0.15),
        ("cl_testosterone_l_day", 0.20), ("k_release_enanthate_per_day", 0.20),
        ("k_release_cypionate_per_day", 0.20), ("k_release_undecanoate_per_day", 0.20),
        ("ic50_free_t_pmol_l", 0.20), ("k_pituitary_reserve_per_day", 0.40),
        ("k_leydig_regrowth_per_day", 0.40), ("k_leydig_atrophy_per_day", 0.30),
        # Suppression heterogeneity: calibrated to C3 (and C5): ~1/3 of non-Asian men keep
        # some sperm (0.05-3 M/mL) on TE 200 mg/week, >= 94% fall below 3 M/mL by 6 months.
        ("itt_support_ec50", 0.80), ("germ_death_max_per_day", 1.3),
        # Reserve rates: calibrated to C1/C4 (docs/validation.md); with the saturable, self-renewing
        # reserve their spread decides who ends treatment with an empty reserve and how long it
        # takes to refill (C1 tail: 10% not at 20 M/mL by 12 months).
        ("k_reserve_recovery_per_day", 0.8), ("k_reserve_depletion_per_day", 2.5),
        ("spermatogenesis_days", 0.05),
        # Leydig sensitivity to LH: Tornoe 2007 population fit (IIV CV 46% on L50).
        ("leydig_lh_ec50_iu_l", 0.46),
    ),
    correlation=(
        ("sperm_base_m_ml", "inhibin_b_base_pg_ml", 0.5),
        ("fsh_base_iu_l", "inhibin_b_base_pg_ml", -0.5),
        ("fsh_base_iu_l", "sperm_base_m_ml", -0.3),
        ("t_base_nmol_l", "shbg_base_nmol_l", 0.4),
        # Men whose reserve depletes fast also regrow it slowly (calibrated to C1; kept in the
        # bimodal-reserve refit).
        ("k_reserve_recovery_per_day", "k_reserve_depletion_per_day", -0.6),
        # C2 directions (Liu 2006), calibrated: men with a higher baseline LH (a testis that
        # needs more drive) regrow the reserve more slowly; men whose germ cells turn over
        # faster are suppressed faster and also refill faster.
        ("lh_base_iu_l", "k_reserve_recovery_per_day", -0.3),
        ("germ_death_max_per_day", "k_reserve_recovery_per_day", 0.4),
        # Men whose Leydig cells need more LH make less T at the same LH (assumption; C7: low-T
        # men with normal LH double T on clomiphene, Helo 2017, Katz 2012).
        ("t_base_nmol_l", "leydig_lh_ec50_iu_l", -0.5),
    ),
)
