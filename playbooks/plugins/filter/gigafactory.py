"""Filters that check or escape a value for the syntax a role's template or command inserts it into.

The functions live in infra/render/escape.py, shared with the render layer's templates; this plugin makes
them Ansible filters (ansible.cfg's filter_plugins) and turns a refusal into Ansible's error.
"""

import functools

from ansible.errors import AnsibleFilterError

try:
    from infra.render.escape import FILTERS, UnsafeValue
except ImportError as err:  # the inventory plugin needs the package as well, and says so first
    raise ImportError(f"the gigafactory filters need the gigafactory package in Ansible's Python: {err}") from err


def _ansible_filter(function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except UnsafeValue as err:
            raise AnsibleFilterError(str(err)) from err
    return wrapper


class FilterModule:
    def filters(self):
        return {name: _ansible_filter(function) for name, function in FILTERS.items()}
