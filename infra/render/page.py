"""What the pages share (docs/pages.md): the Jinja2 environment with autoescape on, over the render layer's
templates, whose ``page_base.html.j2`` is every page's skeleton (its Content-Security-Policy, its style), and the
palette."""

from __future__ import annotations

from jinja2 import Environment, PackageLoader, StrictUndefined

# One colour per pool (or GPU model), in order (then again): distinct on white, readable under white text.
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
           "#bcbd22", "#393b79", "#637939")


def page_environment() -> Environment:
    # autoescape: every string of the site file (or of a node, or of Slurm's accounting) lands in HTML text or an
    # attribute value, escaped.
    return Environment(loader=PackageLoader("infra.render", "templates"), undefined=StrictUndefined, autoescape=True,
                       trim_blocks=True, lstrip_blocks=True)
