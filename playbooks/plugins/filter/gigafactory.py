"""Filters that check or escape a value for the syntax a role's template or command inserts it into.

The functions live in infra/render/escape.py, shared with the render layer's templates; this plugin makes them
Ansible filters (ansible.cfg's filter_plugins) and turns a refusal into Ansible's error. It loads that file from
this checkout by its path (it imports nothing but the standard library), so that the roles apply the same rules
as the render layer of the same checkout, whatever else is on Ansible's Python path.
"""

import functools
import importlib.util
from pathlib import Path

from ansible.errors import AnsibleFilterError

_ESCAPE = Path(__file__).resolve().parents[3] / "infra" / "render" / "escape.py"


def _load_escape():
    if not _ESCAPE.is_file():        # the playbooks without their checkout: the installed package's copy
        import infra.render.escape
        return infra.render.escape
    spec = importlib.util.spec_from_file_location("gigafactory_render_escape", _ESCAPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_escape = _load_escape()


def _ansible_filter(function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except _escape.UnsafeValue as err:
            raise AnsibleFilterError(str(err)) from err
    return wrapper


class FilterModule:
    def filters(self):
        return {name: _ansible_filter(function) for name, function in _escape.FILTERS.items()}
