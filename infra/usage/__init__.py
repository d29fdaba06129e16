"""Metering: Slurm's accounting records priced from the site's tariffs (``gigafactory usage``).

Raw usage is what the scheduler recorded (``sacct``); prices, class factors, PUE and renewable shares come
from the site file afterwards. Pure functions, but for accounting.py, which runs sacct on the accounting host
through the NodeControl the command line gives it.
"""

from .periods import Period, parse_period
from .report import Report, TenantUsage, usage_report
from .sacct import SACCT_FIELDS, UsageInvalid, read_sacct

__all__ = ["SACCT_FIELDS", "Period", "Report", "TenantUsage", "UsageInvalid", "parse_period", "read_sacct", "usage_report"]
