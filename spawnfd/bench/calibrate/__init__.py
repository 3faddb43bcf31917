"""A cost model of this host's real Linux kernel: ``spawnfd calibrate``.

The public names, re-exported explicitly below; see :mod:`.measure` for how the host is
measured, fitted and modelled.
"""

from .measure import COSTS as COSTS
from .measure import COUNTERS as COUNTERS
from .measure import TARGET_ERROR_PCT as TARGET_ERROR_PCT
from .measure import CostModel as CostModel
from .measure import ForkPoint as ForkPoint
from .measure import Measurements as Measurements
from .measure import Progress as Progress
from .measure import ValidationReport as ValidationReport
from .measure import ValidationRow as ValidationRow
from .measure import calibrate as calibrate
from .measure import counters_between as counters_between
from .measure import default_path as default_path
from .measure import describe_machine as describe_machine
from .measure import fit_fork as fit_fork
from .measure import fork_counters as fork_counters
from .measure import least_squares as least_squares
from .measure import main as main
from .measure import try_load as try_load
from .measure import validate as validate
