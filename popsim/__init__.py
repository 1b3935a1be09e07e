"""popsim: GPU-accelerated population Monte Carlo of the male HPG axis.

Simulate virtual men through testosterone replacement, its cessation and recovery
protocols; get hormone and semen trajectories as labelled xarray Datasets, or run a whole
cohort study (popsim.Cohort, popsim.run_study, popsim.published_cohorts).
"""

from popsim.api import Cohort as Cohort
from popsim.api import StudyOutcome as StudyOutcome
from popsim.api import broadcast_parameters as broadcast_parameters
from popsim.api import dose_at as dose_at
from popsim.api import published_cohorts as published_cohorts
from popsim.api import run_study as run_study
from popsim.api import simulate as simulate
from popsim.devices import use_all_cpu_cores as use_all_cpu_cores
from popsim.dosing.regimen import DrugCourse as DrugCourse
from popsim.dosing.regimen import Regimen as Regimen
from popsim.dosing.regimen import RegimenError as RegimenError
from popsim.dosing.regimen import TRTCourse as TRTCourse
from popsim.dosing.table import compile_regimens as compile_regimens
from popsim.model.parameters import PARAMETER_NAMES as PARAMETER_NAMES
from popsim.outcomes.recovery import EndpointSpec as EndpointSpec
from popsim.outcomes.study import StudySpec as StudySpec
from popsim.population.design import CohortDesign as CohortDesign
from popsim.population.design import CovariateSpec as CovariateSpec
from popsim.population.design import MonitoringRule as MonitoringRule
from popsim.population.design import Protocol as Protocol
from popsim.population.design import ProtocolCourse as ProtocolCourse
from popsim.population.design import TRTArm as TRTArm
from popsim.population.design import TRTDesign as TRTDesign
from popsim.population.distributions import Distribution as Distribution
from popsim.population.distributions import fixed as fixed
from popsim.model.parameters import PARAMETERS as PARAMETERS
from popsim.model.parameters import default_parameters as default_parameters
from popsim.solve.settings import SolverSettings as SolverSettings

__version__ = "0.1.0"

__all__ = [
    "Cohort", "CohortDesign", "CovariateSpec", "Distribution", "EndpointSpec", "MonitoringRule", "Protocol",
    "ProtocolCourse", "StudyOutcome", "StudySpec", "TRTArm", "TRTDesign", "dose_at", "fixed", "published_cohorts",
    "run_study", "DrugCourse", "PARAMETERS", "PARAMETER_NAMES", "Regimen", "RegimenError", "SolverSettings",
    "TRTCourse", "broadcast_parameters", "compile_regimens", "default_parameters", "simulate", "use_all_cpu_cores",
    "__version__",
]
