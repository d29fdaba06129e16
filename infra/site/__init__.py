"""The site model: the site file as typed, validated data (no I/O beyond loading)."""

from .load import load_site, parse_site, site_warnings, validate_data
from .model import Site
from .problems import Problem, SiteInvalid

__all__ = ["Problem", "Site", "SiteInvalid", "load_site", "parse_site", "site_warnings", "validate_data"]
