"""The healing fleet's configuration: the site's ``remediation`` section (defaults on every Slurm site) merged with
infra/site/healing.py's default rules and the Slurm plan's state location and reboot timeout."""

from __future__ import annotations

import posixpath

from ..site.healing import RULES, Escalation, Rule
from ..site.model import HealingRule, Remediation, Site
from .model import REBOOT_TIMEOUT_S, REMEDIATION_STATE, ClusterPlan, RemediationPlan, SlurmPlan


def plan_remediation(site: Site, slurm: SlurmPlan | None, clusters: tuple[ClusterPlan, ...] = ()) -> RemediationPlan | None:
    """The remediation service's configuration, one for Slurm and every Kubernetes cluster; None with neither or with
    ``remediation: {enabled: false}``. Without Slurm: no Slurm cluster, the reboot timeout Slurm's default."""
    declared = site.remediation if site.remediation is not None else Remediation()
    if (slurm is None and not clusters) or not declared.enabled:
        return None
    b = declared.breaker
    return RemediationPlan(
        cluster=slurm.cluster if slurm else None, interval_s=declared.interval_s,
        breaker_share=b.share, breaker_window_s=b.window_s, breaker_min_nodes=b.min_nodes,
        diagnose_level=declared.diagnose_level, diagnose_timeout_s=declared.diagnose_timeout_s,
        periodic_diag_s=declared.periodic_diag_s,
        reboot_timeout_s=slurm.reboot_timeout_s if slurm else REBOOT_TIMEOUT_S,
        state_dir=posixpath.join(slurm.state_save_location, REMEDIATION_STATE) if slurm else None,
        rules=(*map(site_rule, declared.rules), *RULES))


def site_rule(rule: HealingRule) -> Rule:
    """An override of the site file as a rule of the table."""
    e = rule.escalate
    return Rule(rule.signal, tuple(rule.codes), rule.action,
                Escalation(e.count, e.window_s, e.action) if e is not None else None)
