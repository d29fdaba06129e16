"""The test bed's Python index (infra/vm/python_index.py): the execution host's pins (the inventory's own list), with
their dependencies, as wheels for the guests' CPython 3.13 on manylinux x86_64, served as a PEP 503 simple index on
loopback; pip, seeing nothing but that index, installs every pin at the controller's version for that Python.

The wheelhouse is filled through this machine's pip and its configured index, into a throw-away cache root; the
index is served and read in a private network namespace (loopback only), so the test bed's own index, if running,
is not touched."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from infra.runner.execution import execution_packages
from infra.vm import python_index
from infra.vm.python_index import GUEST_PLATFORMS, normalized, simple_index

root_only = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"),
                               reason="needs root, unshare and ip (a private network namespace)")


def test_a_simple_index_has_a_directory_per_normalized_project_name(tmp_path):
    wheels = []
    for name in ("PyYAML-6.0.4-cp313-cp313-manylinux2014_x86_64.whl", "python_hostlist-2.3.0-py3-none-any.whl",
                 "Jinja2-3.1.6-py3-none-any.whl"):
        (tmp_path / name).write_bytes(b"wheel")
        wheels.append(tmp_path / name)
    simple_index(wheels, tmp_path / "simple")
    assert sorted(p.name for p in (tmp_path / "simple").iterdir()) == ["jinja2", "python-hostlist", "pyyaml"]
    assert (tmp_path / "simple" / "python-hostlist" / "python_hostlist-2.3.0-py3-none-any.whl").is_file()
    assert normalized("Foo.Bar__baz") == "foo-bar-baz"


def test_the_guests_platforms_reach_debian_13s_glibc():
    assert "manylinux2014_x86_64" in GUEST_PLATFORMS and "manylinux_2_41_x86_64" in GUEST_PLATFORMS


def _pip_target() -> list[str]:
    flags = ["--only-binary=:all:", "--python-version", "3.13", "--implementation", "cp", "--abi", "cp313"]
    for platform in GUEST_PLATFORMS:
        flags += ["--platform", platform]
    return flags


@pytest.mark.root
@root_only
@pytest.mark.parametrize("strategy", ["linear", "mitogen_linear"])
def test_pip_installs_the_execution_hosts_pins_for_python_3_13_from_the_served_index(tmp_path, monkeypatch, strategy):
    cache = tmp_path / "cache"
    monkeypatch.setenv("GIGAFACTORY_CACHE", str(cache))
    pins = execution_packages(strategy)
    simple = python_index.build_index(pins)
    assert simple == cache / "python-index" / "simple"
    built = json.loads((cache / "python-index" / "sets" / f"{python_index.index_key(pins)}.json").read_text())
    assert built["pins"] == pins
    # an sdist-only pin (python-hostlist) came out a pure wheel
    assert "python_hostlist-2.3.0-py3-none-any.whl" in built["wheels"], built["wheels"]
    assert all(w.endswith("-none-any.whl") or "manylinux" in w for w in built["wheels"]), built["wheels"]
    # a second build of the same set downloads nothing
    before = sorted(p.name for p in simple.rglob("*.whl"))
    python_index.build_index(pins)
    assert sorted(p.name for p in simple.rglob("*.whl")) == before

    target = tmp_path / "site-packages"
    # pip sees only the served index (--isolated: none of this machine's pip configuration, no find-links)
    pip = [sys.executable, "-m", "pip", "install", "--isolated", "--no-cache-dir", "--disable-pip-version-check",
           "--index-url", python_index.HOST_URL, "--target", str(target), *_pip_target(),
           *[f"{n}=={v}" for n, v in sorted(pins.items())]]
    program = ("import subprocess, sys\n"
               "from infra.vm.python_index import serve_index, index_root\n"
               "serve_index()\n"
               f"code = subprocess.run({pip!r}).returncode\n"
               "import os, signal\n"
               "os.kill(int((index_root() / 'http.pid').read_text()), signal.SIGTERM)\n"
               "sys.exit(code)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    result = subprocess.run(["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$0" -c "$1"',
                             sys.executable, program], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    installed = dict(p.name.removesuffix(".dist-info").split("-") for p in target.glob("*.dist-info"))
    installed = {normalized(name): v for name, v in installed.items()}
    assert {normalized(n): installed.get(normalized(n)) for n in pins} == {normalized(n): v for n, v in pins.items()}
    assert list(target.glob("pydantic_core/_pydantic_core.cpython-313-x86_64-linux-gnu.so")), \
        sorted(p.name for p in (target / "pydantic_core").iterdir())
    assert "127.0.0.1" in (cache / "python-index" / "http.log").read_text()     # served by the index, not elsewhere


def test_an_image_build_reaches_the_python_index_a_test_site_names_through_loopback():
    """The image builder maps each test bed mirror the site names to this machine's loopback (its chroot relays)."""
    from pathlib import Path

    import yaml
    from conftest import DEMO, site_data

    from infra.vm.mirrors import testbed_mapping
    from infra.site import parse_site
    data = site_data(DEMO)
    assert testbed_mapping(parse_site(yaml.safe_dump(data), str(DEMO), Path(DEMO).parent)) == \
        {"http://10.0.2.2:3142": "http://127.0.0.1:3142"}
    data["repositories"]["python"] = python_index.GUEST_URL
    assert testbed_mapping(parse_site(yaml.safe_dump(data), str(DEMO), Path(DEMO).parent)) == \
        {"http://10.0.2.2:3142": "http://127.0.0.1:3142", "http://10.0.2.2:3143": "http://127.0.0.1:3143"}
