"""Named virtual populations shared by the validation scenarios and the command's
``population=`` presets (configs/population/*.yaml mirror these; a test checks that the
two agree).

* ``CONTRACEPTION_VOLUNTEERS``: healthy eugonadal men of the male contraception trials
  (Liu 2006: 18-51 y, ~35% Chinese, healthy BMI).
* ``TRT_PATIENTS``: men on prescribed TRT. Older and heavier than the volunteers, with
  lower baseline testicular function: total T then comes out low or low-normal
  (median ~11 nmol/L, ~40% below 10.4 nmol/L) with LH normal to raised, as in men
  prescribed TRT for (often mild) hypogonadism.
* ``ANDROGEN_USERS``: recreational users of supraphysiological androgens (C9/C10: ~20-40
  y, eugonadal before use, muscular BMI).
"""

from __future__ import annotations

from popsim.population.design import CovariateSpec
from popsim.population.distributions import Distribution, fixed

CONTRACEPTION_VOLUNTEERS = CovariateSpec(
    age_years=Distribution("uniform", low=18.0, high=51.0),
    bmi_kg_m2=Distribution("normal", mean=24.0, sd=3.0, low=18.0, high=35.0),
    asian=Distribution("bernoulli", p=0.35),
    testicular_function=fixed(1.0),
)

# Ages of men prescribed TRT: median ~50 y (US prescription data span 40-64 y for most
# prescriptions; Baillargeon 2013, JAMA Intern Med 173:1465); BMI of hypogonadal men
# ~30 kg/m2 (EMAS: obesity is the main correlate of low T, Wu 2008). Testicular function
# (1 = eugonadal output) spread over 0.2-1: secondary (central, obesity-related) and
# primary hypogonadism are both common among them; assumption on the shape.
TRT_PATIENTS = CovariateSpec(
    age_years=Distribution("normal", mean=50.0, sd=10.0, low=25.0, high=75.0),
    bmi_kg_m2=Distribution("normal", mean=30.0, sd=4.5, low=20.0, high=45.0),
    asian=Distribution("bernoulli", p=0.0),
    testicular_function=Distribution("normal", mean=0.65, sd=0.25, low=0.2, high=1.0),
)

ANDROGEN_USERS = CovariateSpec(
    age_years=Distribution("uniform", low=20.0, high=40.0),
    bmi_kg_m2=Distribution("normal", mean=27.0, sd=3.0, low=20.0, high=38.0),
    asian=Distribution("bernoulli", p=0.0),
    testicular_function=fixed(1.0),
)

PRESETS = {"contraception_volunteers": CONTRACEPTION_VOLUNTEERS, "trt_patients": TRT_PATIENTS,
           "androgen_users": ANDROGEN_USERS}
