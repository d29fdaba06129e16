"""Apply a site: run its phase playbooks in order through ansible-runner, in waves, with failure handling."""

from ..plan.phases import PHASES, Phase
from .up import OrchestrationError, RunOutcome, UpOptions, up

__all__ = ["PHASES", "OrchestrationError", "Phase", "RunOutcome", "UpOptions", "up"]
