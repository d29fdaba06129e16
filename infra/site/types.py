"""What each string of a site file may hold: one annotated type per kind of value.

Every string reaches a configuration file, a command line or a unit file sooner or
later, so each is refused where it enters unless its type allows it. Each type
carries a ``Constrained`` marker saying what it allows; the message of a refusal
quotes it, and ``tests/test_hostile_values.py`` fails if a model field holds a
string without one. No type here lets a control character, a line break or an
invisible formatting character through.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
import unicodedata
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field

from .openpgp import NotAKey, key_fingerprints


@dataclass(frozen=True)
class Constrained:
    """Marker on an annotated string type: ``what`` it may hold, in words a site engineer reads."""
    what: str


def _refusal(value: str, what: str, why: str = "") -> ValueError:
    return ValueError(f"{shown(value)} is not allowed{f' ({why})' if why else ''}: {what}")


def shown(value: Any, limit: int = 60) -> str:
    """``value`` as a problem quotes it: a 300-digit number or a long string cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _invisible(value: str) -> str | None:
    """The first control, formatting or line-separating character in ``value``, described; else None."""
    for ch in value:
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            return f"it contains the control or formatting character U+{ord(ch):04X}"
    return None


def _typed(what: str, check: Callable[[str], str | None], schema: dict[str, Any] | None = None) -> tuple:
    """Annotated metadata for a string type: the marker, a validator raising ``what`` on refusal, a JSON schema hint.

    ``check`` returns None if the value is fine, else a short reason.
    """
    def validate(value: str) -> str:
        why = _invisible(value) or check(value)
        if why is not None:
            raise _refusal(value, what, why if why else "")
        return value
    def extra(json_schema: dict[str, Any]) -> None:
        json_schema.setdefault("description", what)
        json_schema.update(schema or {})
    return (Constrained(what), AfterValidator(validate), Field(json_schema_extra=extra))


def _pattern(regex: str, max_length: int) -> Callable[[str], str | None]:
    compiled = re.compile(regex)

    def check(value: str) -> str | None:
        if len(value) > max_length:
            return f"longer than {max_length} characters"
        return None if compiled.fullmatch(value) else ""
    return check


# --- names --------------------------------------------------------------------------

_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
LABEL_WHAT = "a DNS label (RFC 1123): 1-63 lower-case letters, digits and '-', not starting or ending with '-'"

Name = Annotated[str, *_typed(LABEL_WHAT, _pattern(_LABEL, 63), {"pattern": f"^{_LABEL}$"})]
"""A name of something the site declares (pool, fabric, cluster, tenant, account, ...): it becomes group,
file, unit and Kubernetes names."""

HostName = Annotated[str, *_typed("a host name: " + LABEL_WHAT.removeprefix("a "), _pattern(_LABEL, 63),
                                  {"pattern": f"^{_LABEL}$"})]
"""One host of the site, as the plan knows it (a single label; the plan derives its addresses from it)."""


def _dns_name(value: str) -> str | None:
    if len(value) > 253:
        return "longer than 253 characters"
    labels = value.rstrip(".").split(".") if value != "." else [""]
    if not all(re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", label) for label in labels):
        return ""
    if all(label.isdigit() for label in labels):
        return "all-numeric, but not an IPv4 address"
    return None


def _ntp_server(value: str) -> str | None:
    try:
        ipaddress.IPv4Address(value)
        return None
    except ValueError:
        return _dns_name(value)


NtpServer = Annotated[str, *_typed(
    "a host name (dot-separated RFC 1123 labels of letters, digits and '-', at most 253 characters) "
    "or an IPv4 address", _ntp_server)]

# The kernel (net/core/dev.c, dev_valid_name) refuses names longer than 15 bytes (IFNAMSIZ - 1), '.' and '..',
# and any '/', ':' or white space. The name also lands in systemd unit names, udev rules, NetworkManager/ifupdown
# stanzas and command lines, so only the portable characters are allowed and the first is a letter or digit
# (no option-like '-name'). Every name the kernel, udev's predictable naming or an administrator usually gives
# (eth0, ib0, enp0s4, ens1f0np0, ibp12s0, bond0.40, rxe_ib0) fits.
_INTERFACE = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}"
InterfaceName = Annotated[str, *_typed(
    "a network interface name: 1-15 characters of letters, digits, '_', '.' and '-', starting with a letter "
    "or digit (the kernel's limit; no '/', ':' or white space)", _pattern(_INTERFACE, 15), {"pattern": f"^{_INTERFACE}$"})]

# shadow-utils' default (useradd's NAME_REGEX), without the trailing '$' of Samba machine accounts.
_USER = r"[a-z_][a-z0-9_-]{0,31}"
PosixUser = Annotated[str, *_typed(
    "a POSIX user name: a lower-case letter or '_', then up to 31 lower-case letters, digits, '_' or '-'",
    _pattern(_USER, 32), {"pattern": f"^{_USER}$"})]

# A Kubernetes label value (at most 63 characters, alphanumeric at both ends, '-', '_' and '.' between), which
# also stands as a Slurm GRES type or feature (no ':', ',', '=' or spaces).
_MODEL = r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?"
ModelName = Annotated[str, *_typed(
    "a model name usable as a Kubernetes label value and a Slurm GRES type: 1-63 letters, digits, '.', '_' "
    "and '-', starting and ending with a letter or digit (no ':', ',', '=' or spaces)",
    _pattern(_MODEL, 63), {"pattern": f"^{_MODEL}$"})]

# Identity-provider group names as OIDC group claims carry them: plain names, paths (Keycloak's '/tenants/acme'),
# e-mail-like names, UUIDs (Entra ID), prefixed names ('oidc:acme'). No spaces, commas or quotes.
_GROUP = r"[A-Za-z0-9_/][A-Za-z0-9._@:/=+-]{0,254}"
IdentityGroup = Annotated[str, *_typed(
    "an identity-provider group name: 1-255 letters, digits and '.', '_', '@', ':', '/', '=', '+', '-', "
    "starting with a letter, digit, '_' or '/' (no spaces, commas or quotes)", _pattern(_GROUP, 255),
    {"pattern": f"^{_GROUP}$"})]

_VENDOR = r"[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?"


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


Vendor = Annotated[str, BeforeValidator(_lower), *_typed(
    "a vendor name: 1-64 letters, digits, '.', '_' and '-', starting and ending with a letter or digit "
    "(compared in lower case)", _pattern(_VENDOR, 64), {"pattern": f"^{_VENDOR}$"})]

_MAC = r"[0-9a-f]{2}(:[0-9a-f]{2}){5}"


def _unicast_mac(value: str) -> str | None:
    """A network interface's own address: not group (multicast/broadcast: the first octet's low bit), not all zeros."""
    if (why := _pattern(_MAC, 17)(value)) is not None:
        return why
    if int(value[:2], 16) & 1:
        return "a multicast or broadcast address"
    return "all zeros" if value == "00:00:00:00:00:00" else None


MacAddress = Annotated[str, BeforeValidator(_lower), *_typed(
    "a MAC address of one interface (unicast): six pairs of hexadecimal digits separated by ':' such as '52:54:00:12:34:56', the "
    "first octet even (compared in lower case)", _unicast_mac, {"pattern": f"^{_MAC}$"})]
"""A network interface's hardware address: the boot server answers a host's DHCP requests by it."""

# --- text, paths, addresses ---------------------------------------------------------


def _single_line(max_length: int) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if len(value) > max_length:
            return f"longer than {max_length} characters"
        if value != value.strip():
            return "it starts or ends with white space"
        return None
    return check


Text = Annotated[str, *_typed(
    "one line of text, at most 200 characters, without control characters or surrounding white space",
    _single_line(200), {"maxLength": 200})]
"""Free-form description (an operator's name, a chassis model): shown to people, never parsed."""


# The POSIX portable filename character set plus '/': what every file format and unit file here
# (slurm.conf, fstab, exports, systemd units) takes without quoting.
_PATH = re.compile(r"/|(/[A-Za-z0-9._-]{1,255})+")


def _absolute_path(value: str) -> str | None:
    if not value.startswith("/"):
        return "not absolute"
    if len(value) > 4095:
        return "longer than 4095 characters"
    if any(part in (".", "..") for part in value.split("/")):
        return "it has a '.' or '..' component"
    if not _PATH.fullmatch(value):
        return "" if "//" not in value and not value.endswith("/") else "not normalised"
    if posixpath.normpath(value) != value:
        return "not normalised"
    return None


AbsolutePath = Annotated[str, *_typed(
    "an absolute, normalised path of '/'-separated names of letters, digits, '.', '_' and '-' "
    "(no '.' or '..' components, no trailing '/', no white space or other characters)", _absolute_path)]

_URL_CHARS = re.compile(r"[A-Za-z0-9._~:/@!$&()*+,;=%\[\]-]+")


def _url(value: str) -> str | None:
    if len(value) > 2048:
        return "longer than 2048 characters"
    if not _URL_CHARS.fullmatch(value):
        return "it contains white space, a quote or another character a URL must escape"
    try:
        parts = urlsplit(value)
        port = parts.port                           # raises ValueError on a port that is not a number
    except ValueError as err:
        return str(err)
    if port is not None and not 1 <= port <= 65535:
        return f"port {port} is not from 1 to 65535"
    if parts.scheme not in ("http", "https"):
        return "the scheme must be http or https"
    if not parts.hostname:
        return "it names no host"
    if parts.username is not None or parts.password is not None:
        return "credentials do not belong in a URL that lands in configuration files"
    if parts.query or parts.fragment or "?" in value or "#" in value:
        return "a repository URL has no query or fragment"
    return None


Url = Annotated[str, *_typed(
    "an http:// or https:// URL naming a host, without credentials, query, fragment, white space or quotes",
    _url, {"format": "uri"})]

# A container image repository as kubeadm's imageRepository and containerd take it: a registry host
# (with an optional port) and optional path components, no scheme.
_REGISTRY = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*")


def _registry(value: str) -> str | None:
    why = _pattern(_REGISTRY.pattern, 512)(value)
    port = value.split("/")[0].partition(":")[2]
    if why is None and port and not 1 <= int(port) <= 65535:
        return f"port {port} is not from 1 to 65535"
    return why


ImageRegistry = Annotated[str, *_typed(
    "a container image registry such as 'registry.example:5000' or 'registry.example/mirror': a host name, "
    "an optional port (1-65535) and optional lower-case path components, without a scheme", _registry)]


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _time_zone(value: str) -> str | None:
    return None if value in _zones() else "not in the time zone database"


TimeZone = Annotated[str, *_typed("a time zone of the IANA database, such as 'Europe/Riga' or 'UTC'", _time_zone)]

# --- formats of single fields -------------------------------------------------------

CountryCode = Annotated[str, *_typed("an ISO 3166-1 alpha-2 country code such as 'LV'",
                                     _pattern(r"[A-Z]{2}", 2), {"pattern": "^[A-Z]{2}$"})]
DriverBranch = Annotated[str, *_typed("an NVIDIA driver branch: three digits such as '570'",
                                      _pattern(r"\d{3}", 3), {"pattern": r"^\d{3}$"})]
def _wave_size(value: str) -> str | None:
    """As ``up --batch`` takes it (infra/orchestrate/waves.py): hosts above 0, a percentage from 1 to 100."""
    why = _pattern(r"\d{1,6}%?", 7)(value)
    if why is not None:
        return why
    n = int(value.rstrip("%"))
    return "0 hosts make no wave" if n == 0 else "more than 100%" if value.endswith("%") and n > 100 else None


WaveSize = Annotated[str, *_typed("a wave size: a number of hosts above 0 ('1') or a percentage from 1 to 100 ('25%')",
                                  _wave_size, {"pattern": r"^\d+%?$"})]


def _lustre_nid(value: str) -> str | None:
    match = re.fullmatch(r"(\d{1,3}(?:\.\d{1,3}){3})@(tcp|o2ib)\d{0,3}", value)
    if match is None:
        return ""
    try:
        ipaddress.IPv4Address(match[1])
    except ValueError:
        return "not an IPv4 address"
    return None


LustreNid = Annotated[str, *_typed("a Lustre NID: an IPv4 address, '@' and a network such as 'tcp' or 'o2ib0' "
                                   "(e.g. '10.42.255.10@tcp')", _lustre_nid,
                                   {"pattern": r"^\d+\.\d+\.\d+\.\d+@(tcp|o2ib)\d*$"})]
LustreFsName = Annotated[str, *_typed("a Lustre file system name: 1-8 lower-case letters, digits or '_'",
                                      _pattern(r"[a-z0-9_]{1,8}", 8), {"pattern": r"^[a-z0-9_]{1,8}$"})]

_FINGERPRINT = re.compile(r"[0-9A-F]{40}")


def _fingerprint(value: Any) -> Any:
    """An OpenPGP v4 fingerprint without its spaces, upper case: 'ABCD 1234 ...' -> 'ABCD1234...'."""
    return "".join(value.split(" ")).upper() if isinstance(value, str) else value


KeyFingerprint = Annotated[str, BeforeValidator(_fingerprint), *_typed(
    "an OpenPGP key fingerprint: 40 hexadecimal digits (spaces between groups allowed)",
    lambda v: None if _FINGERPRINT.fullmatch(v) else "", {"pattern": "^[0-9A-Fa-f ]+$"})]

# --- files beside the site file -----------------------------------------------------

_RELATIVE = re.compile(r"[A-Za-z0-9._-]{1,255}(/[A-Za-z0-9._-]{1,255})*")
_KEY_WHAT = ("a path relative to the site file's directory, inside it (names of letters, digits, '.', '_' and '-'; "
             "no '..'), of an OpenPGP public key file (binary, or ASCII-armoured '-----BEGIN PGP PUBLIC KEY BLOCK-----')")
MAX_KEY_BYTES = 1 << 20


def _beside_site_file(what: str) -> Callable[[Any, Any], Any]:
    """A validator turning a path relative to the site file's directory (the validation context's ``directory``)
    into its absolute path, refusing one that leaves that directory or holds anything but plain names."""
    def resolve(value: Any, info: Any) -> Any:
        if not isinstance(value, str):
            return value
        why = _invisible(value)
        if why is None and (value.startswith("/") or not _RELATIVE.fullmatch(value)
                            or any(part in (".", "..") for part in value.split("/"))):
            why = ""
        if why is not None:
            raise _refusal(value, what, why)
        directory = Path((info.context or {}).get("directory", "."))
        path = (directory / value).absolute()
        # A name inside the directory can still leave it through a symbolic link (of the file or of a directory on
        # the way): what it resolves to must be inside the directory's own resolved path. The outside path is not
        # quoted, nor anything of what it holds.
        if not path.resolve().is_relative_to(directory.resolve()):
            raise _refusal(value, what, "a symbolic link on the way leads outside the site file's directory")
        return path
    return resolve


def _key_file(path: Path) -> Path:
    if not path.is_file():
        raise ValueError(f"no key file at {str(path)!r}: expected {_KEY_WHAT}")
    with path.open("rb") as f:
        data = f.read(MAX_KEY_BYTES + 1)
    if len(data) > MAX_KEY_BYTES:
        raise ValueError(f"{str(path)!r} is larger than {MAX_KEY_BYTES} bytes: expected {_KEY_WHAT}")
    try:
        key_fingerprints(data)
    except NotAKey as err:
        raise ValueError(f"{str(path)!r} is not an OpenPGP public key ({err}): expected {_KEY_WHAT}") from None
    return path


KeyFile = Annotated[Path, Constrained(_KEY_WHAT), BeforeValidator(_beside_site_file(_KEY_WHAT), json_schema_input_type=str),
                    AfterValidator(_key_file)]
"""An OpenPGP key file named relative to the site file, held as its absolute path once validated."""


def _partition_key(value: Any) -> Any:
    """``0x12`` written unquoted reaches us as the integer 18: keep it as the hex string it was."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"0x{value:04x}"
    return value


PartitionKey = Annotated[str, BeforeValidator(_partition_key, json_schema_input_type=str | int), *_typed(
    "an InfiniBand partition key: '0x' and 1-4 hexadecimal digits such as '0x0100'",
    _pattern(r"0x[0-9a-fA-F]{1,4}", 6), {"pattern": "^0x[0-9a-fA-F]{1,4}$"})]


# --- billing and energy -------------------------------------------------------------

def _currency(value: str) -> str | None:
    return None if value in ISO_4217 else "not an active ISO 4217 currency code"


Currency = Annotated[str, *_typed("an ISO 4217 currency code: three upper-case letters such as 'EUR'",
                                  _currency, {"pattern": "^[A-Z]{3}$"})]

_PERIOD = r"\d{4}(-(0[1-9]|1[0-2]))?"
BillingPeriod = Annotated[str, *_typed("a period: a year ('2026') or a month ('2026-11')",
                                       _pattern(_PERIOD, 7), {"pattern": f"^{_PERIOD}$"})]

_DATA_WHAT = ("a path relative to the site file's directory, inside it (names of letters, digits, '.', '_' and '-'; "
              "no '..'), of a file that exists")


def _data_file(path: Path) -> Path:
    if not path.is_file():
        raise ValueError(f"no file at {str(path)!r}: expected {_DATA_WHAT}")
    return path


DataFile = Annotated[Path, Constrained(_DATA_WHAT), BeforeValidator(_beside_site_file(_DATA_WHAT), json_schema_input_type=str),
                     AfterValidator(_data_file)]
"""A data file named relative to the site file (e.g. the hourly energy supply), held as its absolute path."""


# --- numbers ------------------------------------------------------------------------


@dataclass(frozen=True)
class Bounded:
    """Marker on an annotated number type: its range, in words. ``tests/test_number_ranges.py`` fails if a model
    field holds an int or float without one."""
    what: str


def _number(kind: type, what: str, *, ge: float, le: float, gt: float | None = None) -> Any:
    """An int or float type from ``ge`` (or above ``gt``) to ``le``; a float is finite (no NaN, no infinity).

    The range is a validator, not ``Field(ge=, le=)``: pydantic keeps one ``ge`` and one ``le`` per field, the
    type's after the field's, so a field's own narrower ``Field(ge=1, le=16)`` would silently give way to it."""
    def bound(x: float) -> str:
        return str(int(x)) if float(x).is_integer() else str(x)

    def in_range(value: Any) -> Any:            # worded as pydantic words its own bounds
        if gt is not None and value <= gt:
            raise ValueError(f"Input should be greater than {bound(gt)} (got {shown(value)})")
        if gt is None and value < ge:
            raise ValueError(f"Input should be greater than or equal to {bound(ge)} (got {shown(value)})")
        if value > le:
            raise ValueError(f"Input should be less than or equal to {bound(le)} (got {shown(value)})")
        return value

    def schema(json_schema: dict[str, Any]) -> None:
        json_schema.setdefault("exclusiveMinimum" if gt is not None else "minimum", gt if gt is not None else ge)
        json_schema.setdefault("maximum", le)
    # a float is finite; a whole number is one (YAML's 'yes' is no count of 1)
    exact = {"allow_inf_nan": False} if kind is float else {"strict": True}
    return Annotated[kind, Bounded(what), Field(**exact, json_schema_extra=schema), AfterValidator(in_range)]


INT32_MAX = 2**31 - 1
Count = _number(int, "a whole number from 0 to 2147483647 (what Slurm's and Kubernetes' 32-bit fields hold)",
                ge=0, le=INT32_MAX)
"""How many of something (hosts, GPUs, CPUs, ports, shares); fields narrow the range with ``Field``."""
RackUnits = _number(int, "a whole number of rack units from 1 to 60", ge=1, le=60)
Gigabytes = _number(int, "a whole number of gigabytes from 0 to 1048576 (1 PB)", ge=0, le=2**20)
Megabytes = _number(int, "a whole number of megabytes from 0 to 1048576 (1 TB)", ge=0, le=2**20)
HugePages = _number(int, "a whole number of 2 MiB huge pages from 0 to 536870912 (1 PB)", ge=0, le=2**29)
Seconds = _number(int, "a whole number of seconds from 0 to 86400 (a day)", ge=0, le=86400)
VlanId = _number(int, "a VLAN ID from 1 to 4094 (IEEE 802.1Q)", ge=1, le=4094)
Mtu = _number(int, "an MTU in bytes from 576 to 65520 (IPoIB's connected mode at most)", ge=576, le=65520)
Kilowatts = _number(float, "a finite power in kW from 0 to 1000000 (1 GW)", ge=0, le=1_000_000)
GpuWatts = _number(int, "a whole number of watts from 1 to 5000 (one GPU's power limit)", ge=1, le=5000)
Terabytes = _number(float, "a finite size in TB from 0 to 1000000 (1 EB)", ge=0, le=1_000_000)
KilowattHours = _number(float, "a finite energy in kWh from 0 to 10000000000 (10 TWh)", ge=0, le=1e10)
CubicMetres = _number(float, "a finite volume in m³ from 0 to 1000000000", ge=0, le=1e9)
Share = _number(float, "a finite share from 0 to 1", ge=0, le=1)
Percent = _number(float, "a finite percentage from 0 to 100", ge=0, le=100)
Pue = _number(float, "a finite power usage effectiveness from 1.0 to 3.0", ge=1.0, le=3.0)
Price = _number(float, "a finite price per unit from 0 to 1000000 in the billing currency", ge=0, le=1_000_000)
"""A tariff: it becomes a TRESBillingWeights weight Slurm reads as a double and prices every job."""
Amount = _number(float, "a finite amount from 0 to 1000000000000 (10^12)", ge=0, le=10**12)
"""Money, e.g. a prepaid budget: on Slurm its billing-minutes (amount / class factor x 60) stay within 63 bits."""
PRICE_FACTOR_MIN = 0.01


def _price_factor(value: float) -> float:
    if 0 < value < PRICE_FACTOR_MIN:
        raise ValueError(f"{value!r} is not allowed: a price factor is 0 (free) or from {PRICE_FACTOR_MIN} to 100 "
                         "(a smaller one multiplies a prepaid budget's Slurm billing-minutes beyond what Slurm holds)")
    return value


PriceFactor = Annotated[float, Bounded(f"a finite factor: 0 (free) or from {PRICE_FACTOR_MIN} to 100"),
                        Field(ge=0, le=100, allow_inf_nan=False), AfterValidator(_price_factor)]

# ISO 4217's list one, active codes (January 2026): every currency a bill can be paid in. Left out: the codes
# for no currency and testing (XXX, XTS), precious metals (XAU, XAG, XPD, XPT) and accounting units (XBA-XBD,
# XDR, XSU, XUA); withdrawn codes (HRK 2023, SLL 2024, ZWL 2024, ANG 2025, BGN 2026 ...). Update it when the ISO
# 4217 maintenance agency publishes an amendment that adds or withdraws a code.
ISO_4217 = frozenset("""
AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD CAD CDF CHE CHF
CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD
HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD
MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN
PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD
TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
""".split())

# --- where mount points and daemon state belong ---------------------------------------

# Never below these: the system's own files, kernel interfaces and run-time state.
SYSTEM_PATHS = ("/etc", "/usr", "/boot", "/proc", "/sys", "/dev", "/bin", "/sbin", "/lib", "/lib32", "/lib64",
                "/libx32", "/run", "/var/run", "/var/lock", "/tmp", "/root", "/opt", "/var/log", "/var/cache")
STATE_ROOTS = ("/var/spool", "/var/lib", "/srv")
"""A daemon's state (slurmctld's StateSaveLocation): the FHS's places for spooled and variable state."""
MOUNT_ROOTS = ("/home", "/mnt", "/srv", "/scratch", "/lustre", "/gpfs", "/data", "/shared", "/projects", "/work", "/nfs")
"""Shared file systems mounted on every host: home directories, scratch and project file systems."""
EXPORT_ROOTS = ("/export", "/srv", "/home", "/data", "/scratch", "/nfs")
"""What an NFS server exports: its served trees, never its system."""


def _under(roots: tuple[str, ...], *, itself: bool) -> Callable[[str], str | None]:
    """A path check: absolute and normalised, below one of ``roots`` (or one of them ``itself``)."""
    def check(value: str) -> str | None:
        why = _absolute_path(value)
        if why is not None:
            return why
        if any(value == s or value.startswith(s + "/") for s in SYSTEM_PATHS) or value == "/":
            return "it is the system's own directory or below one"
        if not any((itself and value == r) or value.startswith(r + "/") for r in roots):
            return f"not {'at or ' if itself else ''}below {', '.join(roots)}"
        return None
    return check


def _slurm_state(value: str) -> str | None:
    """Below /var/spool or /var/lib, a directory of Slurm's own (slurmctld, slurm/...): the state directory is a
    mount point, which must not hide another daemon's state (/var/lib/dpkg, /var/lib/mysql, /var/spool/cron)."""
    why = _under(STATE_ROOTS, itself=False)(value)
    if why is None and value.startswith(("/var/spool/", "/var/lib/")) and not value.split("/")[3].startswith("slurm"):
        return "below /var/spool and /var/lib only a directory of Slurm's own, such as /var/spool/slurmctld"
    return why


StatePath = Annotated[str, *_typed(
    f"an absolute, normalised path below {', '.join(STATE_ROOTS)} (where a daemon keeps its state; below /var/spool "
    "and /var/lib a directory whose name starts with 'slurm')", _slurm_state)]
MountPoint = Annotated[str, *_typed(
    f"an absolute, normalised path at or below {', '.join(MOUNT_ROOTS)} (where shared file systems are mounted)",
    _under(MOUNT_ROOTS, itself=True))]
ExportPath = Annotated[str, *_typed(
    f"an absolute, normalised path at or below {', '.join(EXPORT_ROOTS)} (what an NFS server exports)",
    _under(EXPORT_ROOTS, itself=True))]
