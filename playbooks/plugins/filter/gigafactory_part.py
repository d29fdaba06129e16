"""The filter every role's tasks/main.yml selects its parts with: ``gigafactory_part | gigafactory_parts``.

A role has an install part (tasks/install.yml: what every host of a node type shares, so that an image can hold it:
packages, held versions, DKMS builds, toolkits, node-type files) and a configure part (tasks/configure.yml: this
host's identity: hostname, addresses, rendered configuration, keys, started services). One variable, the same for
every role, chooses which run: ``gigafactory_part``, unset or ``all`` for both (a bare host), ``install`` (an image
being built in a chroot) or ``configure`` (a host booted from its image). Its default and its check live here only.
"""

from ansible.errors import AnsibleFilterError
from jinja2 import Undefined

try:
    from ansible.template import accept_args_markers   # ansible-core 2.19: let an unset variable reach the filter
except ImportError:                                    # before: Jinja's Undefined reaches it anyway
    def accept_args_markers(function):
        return function

PARTS = ("install", "configure")
DEFAULT = "all"


@accept_args_markers
def gigafactory_parts(value=None):
    """The parts a run of a role takes (install before configure) for a value of gigafactory_part."""
    if isinstance(value, Undefined):
        if getattr(value, "_undefined_name", None) not in (None, "gigafactory_part"):   # set, to something undefined
            raise AnsibleFilterError(f"gigafactory_part names {value._undefined_name!r}, which is undefined")
        value = DEFAULT
    if value == DEFAULT:
        return list(PARTS)
    if isinstance(value, str) and value in PARTS:
        return [value]
    raise AnsibleFilterError(f"gigafactory_part is {value!r}: it is one of {', '.join((DEFAULT, *PARTS))} "
                             f"(unset: {DEFAULT})")


class FilterModule:
    def filters(self):
        return {"gigafactory_parts": gigafactory_parts}
