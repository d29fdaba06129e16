"""The test bed's mirrors as a site's guests name them (a Debian cache, infra/vm/mirror_cache.py, and a Python index,
infra/vm/python_index.py, both on this machine's loopback): the mapping an image build is handed, and their start."""

from __future__ import annotations

import urllib.parse

from ..runner.execution import execution_packages
from ..site.model import Site
from . import mirror_cache, python_index


def testbed_mapping(site: Site) -> dict[str, str]:
    """A test bed's site names its mirrors as its guests see them; here they are on this machine's loopback
    (infra/vm/mirror_cache.py for Debian, infra/vm/python_index.py for pip): guest URL origin -> this machine's, for
    each the site names. Empty for a real site."""
    if site.testbed is None:
        return {}
    named = {urllib.parse.urlsplit(u).netloc for u in site.repositories.urls().values()}
    out = {}
    for guest_url, here_url in ((mirror_cache.GUEST_URL, mirror_cache.HOST_URL),
                                (python_index.GUEST_URL, python_index.HOST_URL)):
        guest, here = urllib.parse.urlsplit(guest_url), urllib.parse.urlsplit(here_url)
        if guest.netloc in named:
            out[f"{guest.scheme}://{guest.netloc}"] = f"{here.scheme}://{here.netloc}"
    return out


def start_testbed_mirrors(site: Site, mapping: dict[str, str]) -> None:
    """Start the test bed's mirrors the site names (as the demo does): Debian's cache, and the Python index with
    what the site's execution hosts install."""
    origins = {urllib.parse.urlsplit(g).netloc for g in mapping}
    if urllib.parse.urlsplit(mirror_cache.GUEST_URL).netloc in origins:
        mirror_cache.ensure_mirror_cache()
    if urllib.parse.urlsplit(python_index.GUEST_URL).netloc in origins:
        python_index.ensure_python_index(execution_packages(site.provisioning.strategy))


def image_build_mirrors(site: Site) -> dict:
    """The keyword arguments an image build of ``site`` takes for the test bed's mirrors (``mapping``,
    ``start_mirrors`` of ``infra.image.build.site_images``): none for a real site."""
    mapping = testbed_mapping(site)
    return {"mapping": mapping, "start_mirrors": (lambda: start_testbed_mirrors(site, mapping)) if mapping else None}
