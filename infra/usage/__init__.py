"""Metering: Slurm's accounting records and Kubernetes namespaces' usage priced from the site's tariffs
(``gigafactory usage``).

Raw usage is what the schedulers recorded (``sacct``; kube-state-metrics and the DCGM exporter in each cluster's
Prometheus); prices, class factors, PUE and renewable shares come from the site file afterwards. Pure functions,
but for accounting.py, which runs sacct on the accounting host through the NodeControl the command line gives it,
and prometheus.py, which queries a cluster's Prometheus over HTTP.
"""

from .periods import Period, parse_period
from .report import Report, TenantUsage, usage_report
from .sacct import SACCT_FIELDS, UsageInvalid, read_sacct

__all__ = ["SACCT_FIELDS", "Period", "Report", "TenantUsage", "UsageInvalid", "parse_period", "read_sacct", "usage_report"]
