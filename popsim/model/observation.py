"""Semen observation model: what a lab sees in one sample given the latent production.

Concentration in a sample = latent x log-normal within-man variation (CV ~30-50%);
a sample below the detection limit shows no sperm (azoospermic sample, reported as 0).
Total count = concentration x volume; total motile count = total x motile fraction.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def sample_semen(key, patient_ids, sample_index, latent_m_ml, cv_within, azoospermia_limit_m_ml,
                 volume_ml, motile_fraction):
    """Draw one semen sample per (patient, time).

    Args:
        key: PRNG key of the run's semen draws.
        patient_ids: ``(n_patients,)`` int ids; patient k's draws depend only on
            ``fold_in(key, k)`` so they do not change with population size or chunking.
        sample_index: ``(n_times,)`` int index of each sample time.
        latent_m_ml: ``(n_patients, n_times)`` latent concentration, M/mL.
        cv_within, azoospermia_limit_m_ml, volume_ml, motile_fraction: ``(n_patients,)``.

    Returns:
        ``(concentration_m_ml, total_motile_count_m)``, each ``(n_patients, n_times)``.
    """
    sigma = jnp.sqrt(jnp.log1p(cv_within ** 2))

    def one_patient(pid, latent, s, limit, vol, mot):
        k = jax.random.fold_in(key, pid)
        z = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(k, i), dtype=latent.dtype))(sample_index)
        conc = latent * jnp.exp(s * z)  # median of a sample = latent production
        conc = jnp.where(conc < limit, 0.0, conc)
        return conc, conc * vol * mot

    return jax.vmap(one_patient)(patient_ids, latent_m_ml, sigma, azoospermia_limit_m_ml, volume_ml,
                                 motile_fraction)
