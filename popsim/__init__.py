"""popsim: GPU-accelerated population Monte Carlo of the male HPG axis.

Simulate virtual men through testosterone replacement, its cessation and recovery
protocols; get hormone and semen trajectories as labelled xarray Datasets.
"""

from popsim.api import broadcast_parameters as broadcast_parameters
from popsim.api import simulate as simulate
from popsim.devices import use_all_cpu_cores as use_all_cpu_cores
from popsim.dosing.regimen import DrugCourse as DrugCourse
from popsim.dosing.regimen import Regimen as Regimen
from popsim.dosing.regimen import RegimenError as RegimenError
from popsim.dosing.regimen import TRTCourse as TRTCourse
from popsim.dosing.table import compile_regimens as compile_regimens
from popsim.model.parameters import PARAMETER_NAMES as PARAMETER_NAMES
from popsim.model.parameters import PARAMETERS as PARAMETERS
from popsim.model.parameters import default_parameters as default_parameters
from popsim.solve.settings import SolverSettings as SolverSettings

__version__ = "0.1.0"

__all__ = [
    "DrugCourse", "PARAMETERS", "PARAMETER_NAMES", "Regimen", "RegimenError", "SolverSettings",
    "TRTCourse", "broadcast_parameters", "compile_regimens", "default_parameters", "simulate", "use_all_cpu_cores",
    "__version__",
]
