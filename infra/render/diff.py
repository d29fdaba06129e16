"""``gigafactory diff`` output: each change with its class and hosts, then the hosts by class; as text or JSON."""

from __future__ import annotations

import json
from typing import Any

from ..plan.diff import HOST_CLASSES, NOTHING, Change, SiteDiff
from ..site.hostlists import compress
from ..site.impact import NONE


def diff_as_dict(diff: SiteDiff, against: str) -> dict[str, Any]:
    """The JSON shape tools read (docs/day-two.md)."""
    groups = diff.by_class()
    return {
        "site": diff.site,
        "against": against,
        "changes": [{
            "field": c.field, "old": c.old, "new": c.new, "impact": str(c.impact),
            "hosts": compress(c.hosts), "host_count": len(c.hosts),
            "new_hosts": compress(c.new_hosts), "removed_hosts": compress(c.removed_hosts),
        } for c in diff.changes],
        "hosts": {cls: {"count": len(groups.get(cls, ())), "hosts": compress(groups.get(cls, ()))} for cls in HOST_CLASSES},
    }


def diff_as_json(diff: SiteDiff, against: str) -> str:
    return json.dumps(diff_as_dict(diff, against), indent=1) + "\n"


def _value(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, (dict, list)):
        text = json.dumps(value, separators=(", ", ": "))
        return text if len(text) <= 100 else text[:97] + "..."
    return repr(value) if isinstance(value, str) else str(value)


def _hosts(c: Change) -> str:
    parts = []
    if c.hosts:
        parts.append(f"{compress(c.hosts)} ({len(c.hosts)} host{'s' if len(c.hosts) != 1 else ''})")
    if c.new_hosts:
        parts.append(f"new {compress(c.new_hosts)} ({len(c.new_hosts)})")
    if c.removed_hosts:
        parts.append(f"removed {compress(c.removed_hosts)} ({len(c.removed_hosts)})")
    if parts:
        return ", ".join(parts)
    return "nothing to do on a host" if c.impact is NONE else "no host (the controller or the cluster's API)"


def diff_as_text(diff: SiteDiff, against: str) -> str:
    n = len(diff.changes)
    lines = [f"{diff.site}: {n} change{'s' if n != 1 else ''} against {against}"]
    for c in diff.changes:
        lines.append(f"  {c.field}: {_value(c.old)} -> {_value(c.new)}")
        lines.append(f"      {str(c.impact):8} {_hosts(c)}")
    lines.append("hosts by what they need:")
    for cls, hosts in diff.by_class().items():
        label = "nothing" if cls == NOTHING else cls
        lines.append(f"  {label:8} {len(hosts):6}  {compress(hosts)}")
    return "\n".join(lines) + "\n"
