"""Rendering: configuration files and inventory views built from the plan."""

from .files import render_all, render_file, plan_as_dict
from .inventory import inventory_view

__all__ = ["inventory_view", "plan_as_dict", "render_all", "render_file"]
