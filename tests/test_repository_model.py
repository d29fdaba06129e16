"""Repositories: a plain URL or {url, signed_by, fingerprint}; the key file is found beside the site file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import RIGA, site_data

from infra.plan import build_plan
from infra.render.inventory import group_vars
from infra.site import SiteInvalid, load_site, validate_data
from infra.site.model import Repository

KEY = (Path(__file__).parent / "keys" / "test.asc").read_text()     # a throw-away key made with gpg
FINGERPRINT = "0420 6DE7 719A AE0B 677A  831382ec aa29 7344 0187"


def write_site(directory: Path, data: dict) -> Path:
    path = directory / "site.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(SiteInvalid) as err:
        load_site(path)
    return [str(p) for p in err.value.problems]


def test_plain_urls_become_repositories_and_reach_the_roles_as_strings():
    site = load_site(RIGA)
    assert site.repositories.debian == Repository(url="http://mirror.riga-1.internal/debian")
    assert site.repositories.debian_security is None and site.os.security_updates is True
    variables = group_vars(site, build_plan(site))
    assert variables["gf_repositories"] == {
        "debian": "http://mirror.riga-1.internal/debian",
        "cuda": "http://mirror.riga-1.internal/cuda/debian13/x86_64",
        "doca": "http://mirror.riga-1.internal/doca/debian13/x86_64",
        "slurm": "http://mirror.riga-1.internal/slurm/debian13",
        "enroot": "http://mirror.riga-1.internal/enroot/debian13",
        "kubernetes": "http://mirror.riga-1.internal/kubernetes",
        "charts": "http://mirror.riga-1.internal/charts",
    }


def test_a_key_file_is_resolved_beside_the_site_file_and_the_fingerprint_normalised(tmp_path):
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "mirror.asc").write_text(KEY)
    data = site_data(RIGA)
    data["repositories"]["cuda"] = {"url": "http://mirror.riga-1.internal/cuda", "signed_by": "keys/mirror.asc",
                                    "fingerprint": FINGERPRINT}
    data["repositories"]["debian_security"] = "http://mirror.riga-1.internal/debian-security"
    site = load_site(write_site(tmp_path, data))
    cuda = site.repositories.cuda
    assert cuda.signed_by == tmp_path / "keys" / "mirror.asc"
    assert cuda.fingerprint == "04206DE7719AAE0B677A831382ECAA2973440187"
    assert site.repositories.urls()["cuda"] == "http://mirror.riga-1.internal/cuda"
    assert site.repositories.urls()["debian_security"] == "http://mirror.riga-1.internal/debian-security"


@pytest.mark.parametrize("signed_by, fragment", [
    ("keys/absent.asc", "no key file at"),
    ("site.yml", "is not an OpenPGP public key"),
    ("../outside.asc", "inside it"),
    ("/etc/passwd", "relative to the site file's directory"),
    ("keys/a\nb.asc", "U+000A"),
])
def test_a_bad_key_file_is_named_by_its_field(tmp_path, signed_by, fragment):
    (tmp_path / "keys").mkdir()
    (tmp_path / "outside.asc").write_text(KEY)
    data = site_data(RIGA)
    data["repositories"]["slurm"] = {"url": "http://mirror.riga-1.internal/slurm", "signed_by": signed_by}
    found = problems(write_site(tmp_path / "keys", data) if signed_by == "site.yml" else write_site(tmp_path, data))
    assert len(found) == 1 and found[0].startswith("repositories.slurm.signed_by: "), found
    assert fragment in found[0]


@pytest.mark.parametrize("fingerprint", ["0123", "G123456789ABCDEF0123456789ABCDEF01234567", "0123456789ABCDEF\n0123456789ABCDEF01234567"])
def test_a_fingerprint_is_forty_hex_digits(fingerprint):
    data = site_data(RIGA)
    data["repositories"]["doca"] = {"url": "http://mirror.riga-1.internal/doca", "fingerprint": fingerprint}
    with pytest.raises(SiteInvalid) as err:
        validate_data(data)
    assert [p.path for p in err.value.problems] == ["repositories.doca.fingerprint"]
    assert "40 hexadecimal digits" in str(err.value)


def test_the_image_registry_stays_a_registry_reference():
    data = site_data(RIGA)
    data["repositories"]["images"] = "registry.riga-1.internal:5000"
    assert validate_data(data).repositories.urls()["images"] == "registry.riga-1.internal:5000"
    data["repositories"]["images"] = "registry.riga-1.internal:5000\nimageRepository: evil"
    with pytest.raises(SiteInvalid) as err:
        validate_data(data)
    assert [p.path for p in err.value.problems] == ["repositories.images"]
