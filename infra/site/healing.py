"""The healing fleet's one table: what each signal a node reports means, and what the remediation service does.

A node's signal agent (node_health's ``gigafactory-node-health --signals``) reports signals through Slurm (the
node's ``Extra`` field); the remediation service on the active controller (role ``remediation``) maps each to
an action by this table, after the site's overrides (``remediation.rules``), and acts through Slurm. The service
reads the table as JSON the plan renders (``remediation.json``): it holds no table of its own.

Actions, from least to most:
- ``ignore``: an event is recorded, nothing else (application faults: the job's own error).
- ``requeue``: the node's requeueable jobs are requeued, the node stays in service.
- ``drain``: drained (running jobs finish or are requeued), then diagnosed and returned once the diagnosis passes.
- ``reboot``: drained, rebooted (``scontrol reboot ASAP``), diagnosed, returned once the diagnosis passes.
- ``repair``: drained and held for hardware repair; only a person returns it.
``escalate``: the same signal ``count`` times on one node within ``window_s`` takes ``action`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass

ACTIONS = ("ignore", "requeue", "drain", "reboot", "repair")      # in order of severity

# A node's states in the service (docs/healing.md): healthy (absent from its state), suspect (a signal taken, its
# action held back: the breaker is open), draining, rebooting, diagnosing, awaiting_repair, held (someone else's drain).
STATES = ("healthy", "suspect", "draining", "rebooting", "diagnosing", "awaiting_repair", "held")
HEAL_PREFIX = "gigafactory-heal"        # the drain reasons the service writes: "gigafactory-heal: <step> <signal>..."
GATE_PREFIX = "gigafactory-health"      # the acceptance gate's (node_health): neither the service's nor someone else's

# On a Kubernetes cluster (docs/healing.md, "Kubernetes"): the Node annotations that stand for Slurm's fields (the
# agent's report for Extra, the reason and its time for Reason and reason_changed_at), the reboot the service asks of
# the node's agent, the gate's own cordon mark (node_health's node_health_kubernetes_annotation), and the taint
# ``<HEAL_TAINT>=<step>:NoSchedule`` on a node the service took out of service.
KUBERNETES_ANNOTATIONS = {"report": "gigafactory/heal-report", "reason": "gigafactory/heal-reason",
                          "reason_at": "gigafactory/heal-reason-at", "reboot": "gigafactory/heal-reboot",
                          "gate": "gigafactory/node-health"}
HEAL_TAINT = "gigafactory/heal"

# Each signal: where it comes from, what it means. Codes (XIDs) are matched by the rules below.
SIGNALS: dict[str, str] = {
    "xid": "an NVIDIA XID event in the kernel log (code: the XID)",
    "ecc_contained": "a contained uncorrectable ECC error (the GPU retired the page; the job on it is lost)",
    "ecc_uncontained": "an uncontained uncorrectable ECC error, or a row remap that failed",
    "dcgm_health": "DCGM's background health watch reports a failure (dcgmi health -c)",
    "dcgm_diag": "a DCGM diagnostic run failed (code: its level)",
    "ib_link_down": "a compute rail's port is not ACTIVE/LinkUp",
    "ib_errors": "a rail's symbol, link-recovery or link-downed counters rose past their threshold since the last report",
    "health_check": "the node acceptance gate (HealthCheckProgram) failed a check (code: none; detail: the check)",
    "unresponsive": "slurmctld marks the node NOT_RESPONDING (it stopped answering)",
}


@dataclass(frozen=True, slots=True)
class Escalation:
    count: int                  # occurrences of the signal on one node ...
    window_s: int               # ... within this many seconds ...
    action: str                 # ... take this action instead


@dataclass(frozen=True, slots=True)
class Rule:
    signal: str
    codes: tuple[int, ...]      # empty: every code (or a signal without codes)
    action: str
    escalate: Escalation | None = None


DAY = 86400
# The defaults (docs/healing.md lists them, tests check each). The first rule matching a signal and its code wins.
RULES: tuple[Rule, ...] = (
    Rule("xid", (79,), "reboot", Escalation(2, DAY, "repair")),        # fallen off the bus
    Rule("xid", (48, 95), "reboot", Escalation(2, DAY, "repair")),     # double-bit / uncontained ECC
    Rule("xid", (94,), "requeue", Escalation(3, DAY, "reboot")),       # contained ECC: the job is lost, the GPU goes on
    Rule("xid", (63, 64), "drain", Escalation(2, 7 * DAY, "repair")),  # row remap pending / failed
    Rule("xid", (74,), "reboot", Escalation(2, DAY, "repair")),        # NVLink error
    Rule("xid", (119, 120), "reboot", Escalation(2, DAY, "repair")),   # GSP timeout / error
    Rule("xid", (13, 31, 43, 45), "ignore"),                          # the application's fault, or its job was killed
    Rule("xid", (), "drain", Escalation(3, DAY, "repair")),            # any other XID: look before it takes work again
    Rule("ecc_contained", (), "requeue", Escalation(3, DAY, "reboot")),
    Rule("ecc_uncontained", (), "reboot", Escalation(2, DAY, "repair")),
    Rule("dcgm_health", (), "drain", Escalation(2, DAY, "repair")),
    Rule("dcgm_diag", (1,), "drain", Escalation(2, DAY, "repair")),   # the periodic quick run: diagnose at the level
    Rule("dcgm_diag", (), "repair"),                                   # a diagnosis failed
    Rule("ib_link_down", (), "drain", Escalation(3, DAY, "repair")),
    Rule("ib_errors", (), "drain", Escalation(3, 7 * DAY, "repair")),
    Rule("health_check", (), "drain", Escalation(3, DAY, "repair")),
    Rule("unresponsive", (), "reboot", Escalation(2, DAY, "repair")),
)
