"""Files the site file names stay beside it: a symbolic link cannot lead a key or the supply file outside the site's
directory, and a signing key is read as OpenPGP packets with its fingerprint checked when the site gives one."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
import yaml
from conftest import RIGA, bin_path, run, site_data
from metering_data import with_billing

from infra.site import SiteInvalid, load_site
from infra.site.openpgp import NotAKey, crc24, dearmour, key_fingerprints

KEYS = Path(__file__).parent / "keys"             # a throw-away key made with gpg: ed25519, a cv25519 subkey
PRIMARY, SUBKEY = "04206DE7719AAE0B677A831382ECAA2973440187", "064FF5E96B9C73306282CB63DF4B2E31942D5BD9"
SECRET = "do-not-print-me-0451"                   # what an outside file holds: it must never reach an error
CUDA = "http://mirror.riga-1.internal/cuda/debian13/x86_64"


def problems(site: Path) -> list[str]:
    with pytest.raises(SiteInvalid) as err:
        load_site(site)
    return [str(p) for p in err.value.problems]


def site_with(directory: Path, data: dict) -> Path:
    path = directory / "site.yml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def outside(tmp_path) -> Path:
    """A directory beside the site's: a real key and a CSV holding SECRET, both outside the site's directory."""
    out = tmp_path / "outside"
    out.mkdir()
    (out / "key.asc").write_text((KEYS / "test.asc").read_text() + f"\n{SECRET}\n")
    (out / "supply.csv").write_text(f"hour,{SECRET}\n")
    (tmp_path / "site").mkdir()
    return out


@pytest.mark.parametrize("link, target", [
    ("key.asc", "outside/key.asc"),                           # the file itself is a link
    ("keys", "outside"),                                      # a directory on the way is
])
def test_a_key_file_that_leaves_the_site_directory_through_a_symlink_is_refused(tmp_path, outside, link, target):
    (tmp_path / "site" / link).symlink_to(tmp_path / target)
    data = site_data(RIGA)
    data["repositories"]["cuda"] = {"url": CUDA, "signed_by": "keys/key.asc" if link == "keys" else "key.asc"}
    found = problems(site_with(tmp_path / "site", data))
    assert len(found) == 1 and found[0].startswith("repositories.cuda.signed_by: "), found
    assert "a symbolic link on the way leads outside the site file's directory" in found[0]
    assert SECRET not in found[0] and str(outside) not in found[0]


def test_a_supply_file_that_leaves_the_site_directory_is_refused_without_its_content(tmp_path, outside):
    (tmp_path / "site" / "supply.csv").symlink_to(outside / "supply.csv")
    data = with_billing(site_data(RIGA))
    data["energy"]["supply"] = "supply.csv"
    site = site_with(tmp_path / "site", data)
    result = run([bin_path("gigafactory"), "usage", str(site), "--period", "2026-11", "--sacct", "/dev/null"], timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result
    assert "energy.supply: " in result.stderr and "symbolic link" in result.stderr, result.stderr
    assert SECRET not in result.stdout + result.stderr


def test_a_symlink_that_stays_inside_the_site_directory_is_followed(tmp_path):
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "cuda-2026.asc").write_text((KEYS / "test.asc").read_text())
    (tmp_path / "cuda.asc").symlink_to("keys/cuda-2026.asc")
    data = site_data(RIGA)
    data["repositories"]["cuda"] = {"url": CUDA, "signed_by": "cuda.asc", "fingerprint": PRIMARY}
    assert load_site(site_with(tmp_path, data)).repositories.cuda.signed_by == tmp_path / "cuda.asc"


# --- OpenPGP packets ----------------------------------------------------------------


def test_a_real_key_reads_the_same_armoured_and_binary_with_gpg_s_fingerprints():
    assert key_fingerprints((KEYS / "test.asc").read_bytes()) == [PRIMARY, SUBKEY]
    assert key_fingerprints((KEYS / "test.gpg").read_bytes()) == [PRIMARY, SUBKEY]


@pytest.mark.parametrize("path, fingerprint", [
    ("/etc/apt/trusted.gpg.d/debian-archive-trixie-stable.asc", "41587F7DB8C774BCCF131416762F67A0B2C39DE4"),
    ("/usr/share/keyrings/debian-archive-keyring.gpg", "1F89983E0081FDE018F3CC9673A4F27B8DD47936"),
])
def test_debian_s_own_keyrings_read(path, fingerprint):
    if not Path(path).exists():
        pytest.skip(f"{path} is not on this machine")
    assert fingerprint in key_fingerprints(Path(path).read_bytes())


def _armour(packets: bytes, crc: bool = True) -> bytes:
    body = base64.b64encode(packets).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    check = ["=" + base64.b64encode(crc24(packets).to_bytes(3, "big")).decode()] if crc else []
    return "\n".join(["-----BEGIN PGP PUBLIC KEY BLOCK-----", "Comment: made by hand", "", *lines, *check,
                      "-----END PGP PUBLIC KEY BLOCK-----", ""]).encode()


def test_armour_without_its_crc_line_reads():
    assert key_fingerprints(_armour((KEYS / "test.gpg").read_bytes(), crc=False)) == [PRIMARY, SUBKEY]
    assert dearmour(_armour(b"\x99\x00\x00")) == b"\x99\x00\x00"


BINARY = (KEYS / "test.gpg").read_bytes()


@pytest.mark.parametrize("data, fragment", [
    (b"\x99\x01\x0d\x04" + bytes(64), "cut off"),                       # the right first byte, then nothing of a key
    (b"\x98", "cut off"),
    (b"", "no packets"),
    (b"\x04" + BINARY[1:], "not a packet header"),
    (bytes([0x94]) + BINARY[1:], "a secret key"),                       # old format, tag 5: a secret key packet
    (bytes([0xC6, 0xE1]) + BINARY[2:], "partial body length"),
    (bytes([0xB4]) + BINARY[1:], "not a public-key packet (tag 6)"),    # tag 13, a user ID first
    (BINARY[:-3], "cut off"),
    (_armour(BINARY)[:-40], "no '-----END PGP PUBLIC KEY BLOCK-----' line"),
    (re.sub(rb"\n=\S{4}\n", b"\n=AAAA\n", _armour(BINARY)), "CRC24"),
    (re.sub(rb"\n=\S{4}\n", b"\n=AAAAqOWq\n", _armour(BINARY)), "CRC24"),
    (_armour(BINARY).replace(b"Comment: made by hand\n\n", b"Comment: made by hand\n\n!!", 1), "not valid base64"),
    (b"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n-----END PGP PRIVATE KEY BLOCK-----\n", "does not start with"),
])
def test_what_is_not_a_public_key_is_refused_without_quoting_it(data, fragment):
    with pytest.raises(NotAKey) as err:
        key_fingerprints(data)
    assert fragment in str(err.value), err.value
    assert len(str(err.value)) < 200


def test_a_key_file_with_the_right_first_byte_but_no_key_is_refused_by_the_site(tmp_path):
    (tmp_path / "cuda.gpg").write_bytes(b"\x99\x01\x0d\x04" + bytes(64))
    data = site_data(RIGA)
    data["repositories"]["cuda"] = {"url": CUDA, "signed_by": "cuda.gpg"}
    (found,) = problems(site_with(tmp_path, data))
    assert found.startswith("repositories.cuda.signed_by: ") and "is not an OpenPGP public key (a packet" in found, found


@pytest.mark.parametrize("fingerprint", [PRIMARY, SUBKEY, " ".join(PRIMARY[i:i + 4] for i in range(0, 40, 4)).lower()])
def test_a_fingerprint_of_the_key_or_a_subkey_matches(tmp_path, fingerprint):
    (tmp_path / "cuda.gpg").write_bytes(BINARY)
    data = site_data(RIGA)
    data["repositories"]["cuda"] = {"url": CUDA, "signed_by": "cuda.gpg", "fingerprint": fingerprint}
    assert load_site(site_with(tmp_path, data)).repositories.cuda.fingerprint in (PRIMARY, SUBKEY)


def test_a_fingerprint_the_key_file_does_not_hold_is_refused_with_exit_2(tmp_path):
    (tmp_path / "cuda.asc").write_text((KEYS / "test.asc").read_text())
    data = site_data(RIGA)
    data["repositories"]["cuda"] = {"url": CUDA, "signed_by": "cuda.asc", "fingerprint": "41587F7DB8C774BCCF131416762F67A0B2C39DE4"}
    result = run([bin_path("gigafactory"), "validate", str(site_with(tmp_path, data))], timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result
    assert (f"  repositories.cuda.fingerprint: the key file repositories.cuda.signed_by holds no key with fingerprint "
            f"41587F7DB8C774BCCF131416762F67A0B2C39DE4; it holds {PRIMARY}, {SUBKEY}") in result.stderr, result.stderr
