"""The site file as a typed model: every key known, every value typed.

Strict where a typo would otherwise pass silently: an unknown key is an error
(``extra="forbid"``). Checks that relate one part of the file to another live in
``checks.py``; this module holds only shapes and single-field formats.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from .healing import ACTIONS, SIGNALS
from .hostlists import Hostlist
from .impact import DRAIN, LIVE, NONE, REBOOT, REPLACE, RESTART, Cost, Impact
from .types import (Amount, BillingPeriod, Constrained, Count, CountryCode, CubicMetres, KilowattHours, Currency, DataFile, DriverBranch, ExportPath,
                    Gigabytes, GpuWatts, HostName, HugePages, IdentityGroup, ImageRegistry, Kilowatts, MacAddress, Megabytes, MountPoint,
                    Mtu, Percent, Price, PriceFactor, Pue, RackUnits, Seconds, Share, StatePath, Terabytes, VlanId,
                    InterfaceName, KeyFile, KeyFingerprint, LustreFsName, LustreNid, ModelName, Name, NtpServer, PartitionKey,
                    PosixUser, Text, TimeZone, Url, Vendor, WaveSize)

_TIME = re.compile(r"^(?:(\d{1,10})-)?(\d{1,10})(?::(\d{1,10}))?(?::(\d{1,10}))?$")
SLURM_MINUTES_MAX = 2**32 - 2          # Slurm keeps a time limit in minutes in 32 bits (2^32 - 1 is INFINITE)


def _slurm_time(value: str) -> str:
    """Slurm time limits: ``minutes``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``, ``UNLIMITED``."""
    if value.upper() in ("UNLIMITED", "INFINITE"):
        return "UNLIMITED"
    match = _TIME.fullmatch(value)
    if not match:
        raise ValueError(f"{value[:40]!r} is not a Slurm time limit; write e.g. '04:00:00', '2-00:00:00' or 'UNLIMITED'")
    days, *rest = match.groups()
    numbers = [int(x) for x in rest if x is not None]
    if days is not None:                            # D-HH, D-HH:MM, D-HH:MM:SS
        minutes = int(days) * 1440 + numbers[0] * 60 + (numbers[1] if len(numbers) > 1 else 0)
    elif len(numbers) == 3:                         # HH:MM:SS
        minutes = numbers[0] * 60 + numbers[1]
    else:                                           # minutes, MM:SS
        minutes = numbers[0]
    if minutes > SLURM_MINUTES_MAX:
        raise ValueError(f"{value!r} is longer than Slurm holds ({SLURM_MINUTES_MAX} minutes); write 'UNLIMITED'")
    return value


def _version(parts: int):
    pattern = re.compile(r"^\d+(\.\d+){" + str(parts - 1) + "}$")

    def check(value: Any) -> str:
        value = str(value)
        if not pattern.fullmatch(value):
            example = ".".join(["1", "33", "0"][:parts])
            raise ValueError(f"{value!r} is not a version of the form {example!r}")
        return value

    return check


def _network(value: Any) -> str:
    try:
        return str(ipaddress.IPv4Network(str(value), strict=True))
    except ValueError as err:
        raise ValueError(f"{value!r} is not an IPv4 network in CIDR notation such as '10.40.0.0/16' ({err})") from None


Cidr = Annotated[str, Constrained("an IPv4 network in CIDR notation"), BeforeValidator(_network)]
SlurmTime = Annotated[str, Constrained("a Slurm time limit"), AfterValidator(_slurm_time)]
MajorMinor = Annotated[str, Constrained("a version of the form '1.33'"), BeforeValidator(_version(2))]


# Phases several fields land on together (infra/plan/phases.py names them all).
POWER = ("power", "health")       # the planned GPU power limit: role gpu_power sets it (live), the health gate checks it
KEYED = ("base", "rdma", "gpu", "slurm", "kubernetes")    # install from a mirror whose key site_repository_key writes
CLUSTER = ("kubernetes", "health")                         # the cluster's bootstrap, and the health gate's API checks
PARTITIONED = ("rdma", "health")                           # InfiniBand partitions: opensm, and the health gate


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- site, policy, os, repositories -------------------------------------------------


class PowerDomain(Strict):
    """A node of the site's power tree below the facility: a hall or room, a row, a PDU; racks name their domain."""
    IMPACT: ClassVar[Cost] = LIVE.on(*POWER)     # the GPU power limits are chosen against it
    name: Annotated[Name, NONE]                  # racks name it; renamed with them, no limit moves
    kw: Kilowatts = Field(gt=0, description="The IT power this domain's feed gives (PUE applies at the facility only).")
    parent: Name | None = Field(default=None, description="The domain it hangs from; default: the facility.")


class Power(Strict):
    IMPACT: ClassVar[Cost] = LIVE.on(*POWER)     # the facility's budget (facility_kw / pue) bounds the GPU power limits
    facility_kw: Kilowatts = Field(gt=0, description="Contracted power for IT load and cooling together.")
    pue: Pue = Field(description="Design power usage effectiveness.")
    renewable_share: Annotated[Share, NONE]      # reports only
    domains: list[PowerDomain] = Field(
        default_factory=list, max_length=100_000,
        description="The power tree below the facility (halls, rows, PDUs), parents before or after children.")


class SiteInfo(Strict):
    name: Annotated[Name, REPLACE.on_every()]
    country: Annotated[CountryCode, NONE] = Field(description="ISO 3166-1 alpha-2 country code.")
    timezone: Annotated[TimeZone, RESTART.on("base")] = "UTC"
    operator: Annotated[Text, NONE] = ""
    power: Annotated[Power, LIVE.on(*POWER)]
    ntp_servers: Annotated[list[NtpServer], RESTART.on("base")] = Field(
        default_factory=list,
        description="Time sources: hosts of the site (they serve the management network) or external addresses. "
                    "Default: the Slurm controllers, else the first host.")


class Policy(Strict):
    IMPACT: ClassVar[Impact] = NONE    # checked when the site validates; nothing on a host
    jurisdiction: Literal["eu", "none"] = "none"
    approved_vendors: list[Vendor] | None = Field(
        default=None, description="When set, every node type and switch vendor must be listed.")


class OperatingSystem(Strict):
    distribution: Annotated[Literal["debian"], REPLACE.on_every()] = "debian"
    release: Annotated[Literal["12", "13"], REBOOT.on("base", "slurm")] = "13"
    security_updates: Annotated[bool, LIVE.on("base")] = Field(default=True, description="Include Debian's security suite in the APT sources "
                                   "(from repositories.debian_security, else <repositories.debian>-security).")


class Repository(Strict):
    """A package mirror: its URL and, for APT repositories, the OpenPGP key that signs it."""
    IMPACT: ClassVar[Cost] = LIVE.on_holder()    # APT sources: the next install reads them, where the mirror is used
    url: Url
    # every repository's key is on every host of a phase whose roles install from one (role site_repository_key)
    signed_by: Annotated[KeyFile | None, LIVE.on(*KEYED)] = Field(default=None, description="OpenPGP public key file that signs the repository, "
                                      "relative to the site file's directory (held as its absolute path once loaded).")
    fingerprint: Annotated[KeyFingerprint | None, LIVE.on(*KEYED)] = Field(default=None, description="Fingerprint of the signing key; spaces are dropped.")


def _repository_mapping(value: Any) -> Any:
    return {"url": value} if isinstance(value, str) else value


MirrorRepository = Annotated[Repository, BeforeValidator(_repository_mapping, json_schema_input_type=str | Repository)]
"""A repository written as its URL alone, or as ``{url, signed_by, fingerprint}``."""


class Repositories(Strict):
    """The site's own mirrors. An absent entry keeps the distribution's default sources."""
    debian: Annotated[MirrorRepository | None, LIVE.on("base")] = None
    debian_security: Annotated[MirrorRepository | None, LIVE.on("base")] = Field(default=None, description="Mirror of Debian's security suite; "
                                                     "default: <repositories.debian>-security.")
    cuda: Annotated[MirrorRepository | None, LIVE.on("gpu")] = None
    doca: Annotated[MirrorRepository | None, LIVE.on("rdma")] = None
    slurm: Annotated[MirrorRepository | None, LIVE.on("slurm")] = None
    enroot: Annotated[MirrorRepository | None, LIVE.on(*KEYED)] = None       # its key: KEYED; its URL: slurm
    charts: Annotated[MirrorRepository | None, LIVE.on()] = Field(      # the Pulumi program's Helm releases
        default=None, description="Helm chart mirror for Kubernetes add-ons.")
    kubernetes: Annotated[MirrorRepository | None, LIVE.on(*KEYED)] = Field(default=None, description="Mirror of the Kubernetes project's Debian packages "
                                                "(kubeadm, kubelet, kubectl): one flat repository per minor version at <url>/v<version>/deb/.")
    images: Annotated[ImageRegistry | None, RESTART.on("kubernetes")] = Field(
        default=None, description="Container image registry mirror: kubeadm's control-plane images "
                                  "and the pod sandbox image come from it (an air-gapped site's own registry).")
    python: Annotated[Url | None, LIVE.on("base")] = Field(default=None, description="Python package index mirror (the simple API pip's --index-url takes): "
                               "execution hosts install ansible-core and ansible-runner from it; default: the index pip on the "
                               "host is configured with.")

    def urls(self) -> dict[str, str]:
        """Each declared mirror's URL (the image registry as written), by name."""
        out: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is not None:
                out[name] = value if isinstance(value, str) else value.url
        return out


# --- software -----------------------------------------------------------------------

Source = Literal["repository", "distribution"]


class NvidiaDriver(Strict):
    IMPACT: ClassVar[Cost] = REBOOT.on("gpu", "health")  # a new kernel module: the GPUs idle, the node rebooted
    branch: DriverBranch = Field(description="Driver branch, e.g. '570'.")
    flavor: Literal["open", "proprietary"] = "open"
    source: Source = "repository"


def _versions_mapping(value: Any) -> Any:
    return {"versions": value} if isinstance(value, (list, str)) else value


def _version_mapping(value: Any) -> Any:
    return {"version": value} if isinstance(value, (str, int, float)) else value


class Cuda(Strict):
    IMPACT: ClassVar[Cost] = LIVE.on("gpu", "health")    # user-space toolkits installed beside each other
    versions: list[MajorMinor] = Field(min_length=1)
    default: MajorMinor | None = None
    source: Source = "repository"


class SlurmSoftware(Strict):
    IMPACT: ClassVar[Cost] = RESTART.on("slurm")  # slurmdbd, slurmctld, then slurmd restart; slurmstepd keeps jobs running
    version: MajorMinor
    source: Source = "repository"


class Software(Strict):
    nvidia_driver: Annotated[NvidiaDriver | None, REBOOT.on("gpu", "health")] = None
    cuda: Annotated[Annotated[Cuda, BeforeValidator(_versions_mapping, json_schema_input_type=list[str] | Cuda)] | None, LIVE.on("gpu", "health")] = None
    rdma: Annotated[Literal["doca-ofed", "inbox"], REBOOT.on("rdma")] = "inbox"
    slurm: Annotated[Annotated[SlurmSoftware, BeforeValidator(_version_mapping, json_schema_input_type=str | SlurmSoftware)] | None, RESTART.on("slurm")] = None


# --- networks and fabrics -----------------------------------------------------------


class Network(Strict):
    cidr: Annotated[Cidr, REPLACE.on_every()]
    vlan: Annotated[VlanId | None, REBOOT.on("base")] = None
    mtu: Annotated[Mtu, DRAIN.on("base")] = Field(default=1500, le=9216)
    reserved: Annotated[list[Cidr], REPLACE.on_every()] = Field(default_factory=list, description="Ranges kept for external systems.")
    interface: Annotated[InterfaceName | None, REBOOT.on("base")] = Field(
        default=None, description="Host interface carrying this network, if configured by the base role.")


class Networks(Strict):
    management: Annotated[Network, REPLACE.on_every()]
    bmc: Annotated[Network | None, LIVE.on("base")] = None       # out of band: only /etc/hosts and the plan's networks
    storage: Annotated[Network | None, REBOOT.on("base")] = None


class Switch(Strict):
    vendor: Annotated[Vendor, NONE]
    model: Annotated[ModelName, NONE]
    ports: Annotated[Count, LIVE.on()] = Field(ge=4, le=1024)      # the plan's tiers and switch count; no phase reads it
    power_kw: Annotated[Kilowatts, LIVE.on(*POWER)]        # the facility's load: the GPU power limits
    rack_units: Annotated[RackUnits, NONE] = 1


class SubnetManager(Strict):
    IMPACT: ClassVar[Cost] = RESTART.on("rdma", "health")  # opensm restarts; the fabric forwards on its programmed routes meanwhile
    kind: Literal["opensm", "ufm"] = "opensm"
    hosts: Hostlist = Field(min_length=1, description="Primary first, then standbys.")


class FabricIp(Strict):
    IMPACT: ClassVar[Cost] = DRAIN.on("rdma", "health")   # every host's IPoIB addresses: jobs talking over them lose their peers
    cidr: Cidr
    mode: Literal["datagram", "connected"] = "datagram"
    mtu: Mtu | None = None


# One rail's link rate in Gb/s for each fabric rate (InfiniBand 4x ports: EDR 100, HDR 200, NDR 400, XDR 800; Ethernet
# as named): the acceptance's floor on real HCAs is a fraction of it (playbooks/acceptance.yml, docs/testbed.md).
RATE_GBITS: dict[str, int] = {"edr": 100, "hdr": 200, "ndr": 400, "xdr": 800,
                              "25g": 25, "100g": 100, "200g": 200, "400g": 400, "800g": 800}


class Fabric(Strict):
    name: Annotated[Name, LIVE.on("rdma", "slurm", "health")]
    kind: Annotated[Literal["infiniband", "roce"], REBOOT.on("rdma", "health")]
    rate: Annotated[Literal[tuple(RATE_GBITS)], LIVE.on("rdma", "health")]   # the health gate's link rate
    rails: Annotated[Count, DRAIN.on("rdma", "health")] = Field(default=1, ge=1, le=16)
    topology: Annotated[Literal["rail-optimized", "fat-tree"], LIVE.on("slurm")] = "fat-tree"
    scalable_unit: Annotated[Count, LIVE.on("slurm")] = Field(default=32, ge=1, le=65536, description="Nodes per scalable unit.")
    switch: Annotated[Switch, NONE]
    subnet_manager: Annotated[SubnetManager | None, RESTART.on("rdma", "health")] = None
    ipoib: Annotated[FabricIp | None, DRAIN.on("rdma", "health")] = Field(default=None, validation_alias=AliasChoices("ipoib", "ip"),
                                   description="IP over the fabric (IPoIB, or plain IP on RoCE): one subnet per rail.")
    interfaces: Annotated[list[InterfaceName] | None, DRAIN.on("rdma", "health")] = Field(
        default=None, description="Per-rail host interfaces, if not the default ib0..ibN.")

    @property
    def link_gbits(self) -> int:
        """One rail's link rate in Gb/s (``rate`` as a number)."""
        return RATE_GBITS[self.rate]


# --- hardware and placement ---------------------------------------------------------


class GpuPowerLimit(Strict):
    """The range ``nvidia-smi -pl`` accepts on this GPU model, and the vendor's default limit."""
    IMPACT: ClassVar[Cost] = LIVE.on(*POWER)     # the plan chooses the limit from it; role gpu_power sets it
    min: Annotated[GpuWatts, NONE]               # a floor: a budget binds the limit whatever it is, or refuses the site
    max: GpuWatts
    default: GpuWatts

    @model_validator(mode="after")
    def _ordered(self) -> GpuPowerLimit:
        if not self.min <= self.default <= self.max:
            raise ValueError(f"min {self.min} W <= default {self.default} W <= max {self.max} W does not hold")
        return self


class Gpu(Strict):
    model: Annotated[ModelName, DRAIN.on("slurm", "health")] = Field(description="GPU model; it names the Slurm GRES type and Kubernetes labels.")
    count: Annotated[Count, DRAIN.on("slurm", "health", "power")] = Field(le=72)      # power: a limited type's draw
    memory_gb: Annotated[Gigabytes, NONE] = 0
    nvswitch: Annotated[bool, DRAIN.on("gpu")] = False
    power_limit_w: Annotated[GpuPowerLimit | None, LIVE.on(*POWER)] = Field(
        default=None, description="Each GPU's power-limit range; the node type's power_kw is its draw with every GPU "
                                  "at max. Declared: the plan lowers the limit (down to min) where a power domain needs it.")


class Nvlink(Strict):
    """A rack-scale NVLink domain (GB200/GB300 NVL72): the node type is one compute tray of it."""
    trays: Annotated[Count, LIVE.on("slurm")] = Field(      # Slurm's blocks and the imex job script's map
        ge=2, le=72, description="Compute trays (nodes) per NVLink domain: 18 for an NVL72; one Slurm block.")
    switch_trays: Annotated[Count, LIVE.on(*POWER)] = Field(default=9, ge=0, le=36, description="NVLink switch trays per domain.")
    switch_tray_kw: Annotated[Kilowatts, LIVE.on(*POWER)] = Field(default=0, le=100, description="Power of one switch tray.")
    switch_tray_units: Annotated[RackUnits, NONE] = 1


class Cpu(Strict):
    IMPACT: ClassVar[Cost] = DRAIN.on("slurm")   # the node's Slurm definition (CPUs, sockets, cores, threads)
    sockets: Count = Field(ge=1, le=8)
    cores_per_socket: Count = Field(ge=1, le=512)
    threads_per_core: Count = Field(default=1, ge=1, le=8)
    arch: Annotated[Literal["x86_64", "aarch64"], REPLACE.on("gpu", "slurm")] = Field(
        default="x86_64", description="CPU architecture (aarch64 for Grace): the node image's Debian architecture.")


PCI_ADDRESS = re.compile(r"^(?:[0-9a-f]{4}:)?[0-9a-f]{2}:[01][0-9a-f]\.[0-7]$")


def _pci_address(value: Any) -> str:
    value = str(value).lower()
    if not PCI_ADDRESS.fullmatch(value):
        raise ValueError(f"{value[:40]!r} is not a PCI address such as '0000:03:00.0' or '03:00.0'")
    return value


PciAddress = Annotated[str, Constrained("a PCI address such as '0000:03:00.0'"), BeforeValidator(_pci_address)]


class Hca(Strict):
    model: Annotated[ModelName, LIVE.on("rdma")]        # the rdma role's rdma_hca_model
    count: Annotated[Count, DRAIN.on("gpu", "health")] = Field(le=16, description="HCAs on compute rails; default: as many as ports.")
    ports: Annotated[tuple[PciAddress, ...], DRAIN.on("rdma")] = Field(       # the rdma role's rail interfaces and devices
        default=(), max_length=16,
        description="The compute rails' HCA ports by PCI address, rail 1 first (a tray's mlx5_N numbering counts its DPUs too).")

    @model_validator(mode="before")
    @classmethod
    def _count_from_ports(cls, data: Any) -> Any:
        if isinstance(data, dict) and "count" not in data and isinstance(data.get("ports"), (list, tuple)):
            data = {**data, "count": len(data["ports"])}
        return data

    @model_validator(mode="after")
    def _one_port_per_rail(self) -> Hca:
        if self.ports and len(self.ports) != self.count:
            raise ValueError(f"count is {self.count} but {len(self.ports)} ports are named; one port per rail")
        if len(set(self.ports)) != len(self.ports):
            raise ValueError("ports names a PCI address twice")
        return self


class NodeType(Strict):
    vendor: Annotated[Vendor, NONE]
    model: Annotated[Text, NONE] = Field(description="Chassis model, as the vendor writes it (descriptive).")
    gpu: Annotated[Gpu | None, DRAIN.on("gpu", "slurm", "health")] = None
    cpu: Annotated[Cpu, DRAIN.on("slurm")]
    memory_gb: Annotated[Gigabytes, DRAIN.on("slurm")] = Field(ge=1)
    hca: Annotated[Hca | None, DRAIN.on("rdma", "health")] = None
    local_nvme_tb: Annotated[Terabytes, LIVE.on()] = 0           # read by no phase
    power_kw: Annotated[Kilowatts, LIVE.on(*POWER)]     # a limited type's draw beside its GPUs: the power limits
    rack_units: Annotated[RackUnits, NONE] = Field(le=48)
    hugepages_2m: Annotated[HugePages, REBOOT.on("base")] = Field(default=0, description="2 MiB huge pages reserved at boot.")
    nvlink: Annotated[Nvlink | None, DRAIN.on("gpu", "slurm")] = Field(     # slurm: SwitchType, the imex job script
        default=None, description="Set when the node type is a compute tray of a rack-scale NVLink domain (needs IMEX).")
    liquid_kw: Annotated[Kilowatts, NONE] = Field(
        default=0, description="Of power_kw, the heat carried off by liquid; the rest is the air load.")

    @model_validator(mode="after")
    def _nvlink_needs_gpus(self) -> NodeType:
        if self.nvlink is not None and self.gpu is None:
            raise ValueError("nvlink: a tray of an NVLink domain has GPUs; declare gpu")
        if self.liquid_kw > self.power_kw:
            raise ValueError(f"liquid_kw ({self.liquid_kw:g}) exceeds power_kw ({self.power_kw:g})")
        limit = self.gpu.power_limit_w if self.gpu else None
        if limit is not None and self.gpu.count * limit.max / 1000 > self.power_kw + 1e-9:
            raise ValueError(f"power_kw ({self.power_kw:g}) is less than its {self.gpu.count} GPUs at their max limit "
                             f"({self.gpu.count} x {limit.max} W); power_kw is the node's draw with every GPU at max")
        return self

    @property
    def gpus(self) -> int:
        return self.gpu.count if self.gpu else 0

    @property
    def hcas(self) -> int:
        return self.hca.count if self.hca else 0


class PowerShelves(Strict):
    IMPACT: ClassVar[Impact] = NONE    # planning: the rack's power check
    count: Count = Field(ge=1, le=32)
    kw: Kilowatts = Field(gt=0, le=200, description="Output of one power shelf.")


class RackCooling(Strict):
    IMPACT: ClassVar[Impact] = NONE    # planning: the rack's cooling check
    liquid_kw: Kilowatts = Field(description="Heat the rack's liquid loop removes.")
    air_kw: Kilowatts = Field(description="Heat the room's air removes from the rack.")


class Rack(Strict):
    IMPACT: ClassVar[Impact] = NONE    # placement: where a host is planned, not what runs on it
    names: Hostlist = Field(min_length=1)
    power_kw: Kilowatts = Field(gt=0, description="The feed the row gives each rack.")
    units: RackUnits = 42
    power_shelves: PowerShelves | None = Field(default=None, description="The rack's own power shelves (rack-scale systems).")
    cooling: RackCooling | None = Field(default=None, description="Liquid and air cooling capacity per rack; default: air only, up to power_kw.")
    domain: Annotated[Name | None, LIVE.on(*POWER)] = Field(default=None, description="The power domain (site.power.domains) feeding these racks; "
                                                          "default: the facility directly.")


class Pool(Strict):
    name: Annotated[Name, LIVE.on()]                           # the pool_<name> group: no play addresses it
    type: Annotated[Name, DRAIN.on("base", "rdma", "slurm", "health")] = Field(description="A key of node_types.")
    hosts: Annotated[Hostlist, LIVE.on("base", "rdma", "health")] = Field(min_length=1)     # added hosts are new, removed ones removed
    racks: Annotated[Hostlist, LIVE.on("slurm")] = Field(min_length=1)   # a block site's blocks are its racks (topology.conf)
    fabric: Annotated[Name | None, DRAIN.on("base", "rdma", "health")] = Field(
        default=None, description="Fabric the pool's HCAs attach to; default: the only fabric.")
    macs: Annotated[dict[HostName, MacAddress], RESTART.on("boot")] = Field(
        default_factory=dict, description="Each host's management interface (the one it boots from), by host name: "
                                          "the boot server's DHCP entry for it. Hosts without one do not boot from an image.")


# --- Slurm, Kubernetes, storage, tenants --------------------------------------------


class Accounting(Strict):
    host: Annotated[HostName, RESTART.on("slurm")]


class Flexible(Strict):
    """Flexible capacity (docs/power.md): the partition is open only in the hours when the site's renewable supply
    (energy.forecast, else energy.supply) covers ``renewable_share`` of the load; its jobs are priced at ``class``."""
    # slurm.conf's State=DOWN and the controllers' flexible.json: scontrol reconfigure, the timer re-reads the file
    IMPACT: ClassVar[Cost] = LIVE.on("slurm")
    # the windows `up` computes (gf_flexible): phase slurm re-run by `up`, not an input of the Pulumi program's
    renewable_share: Annotated[Share, LIVE.on("slurm")] = Field(description="The share of the load the renewable "
                                                                "supply must cover in an hour for the partition to be open in it.")
    class_: Annotated[Name, NONE] = Field(alias="class", description="A class of billing.classes: its price factor "
                                          "prices the partition's jobs (reports only).")


class Partition(Strict):
    IMPACT: ClassVar[Cost] = LIVE.on("slurm")    # scontrol reconfigure: running jobs keep their limits
    name: Name
    pools: list[Name] = Field(min_length=1)
    default: bool = False
    max_time: SlurmTime = "UNLIMITED"
    max_nodes: Annotated[Count, Field(ge=1)] | None = None
    flexible: Flexible | None = Field(default=None, description="Flexible capacity: open only in the hours the "
                                      "renewable supply covers a share of the load (docs/power.md).")


class Slurm(Strict):
    cluster: Annotated[Name, REPLACE.on("slurm")]    # slurmctld refuses a state saved under another ClusterName
    controllers: Annotated[list[HostName], RESTART.on("base", "slurm")] = Field(min_length=1, max_length=2, description="Primary, then backup.")
    accounting: Annotated[Accounting, RESTART.on("slurm")]
    login: Annotated[list[HostName], LIVE.on("slurm")] = Field(default_factory=list)
    partitions: Annotated[list[Partition], LIVE.on("slurm")] = Field(min_length=1)
    topology: Annotated[Literal["auto", "tree", "block", "none"], RESTART.on("slurm")] = Field(
        default="auto", description="Slurm's topology plugin: tree (a switch per scalable unit), block (a block per NVLink "
                                    "domain, Slurm 24.11), none; auto: block if a Slurm pool's node type has nvlink, else tree.")
    block_sizes: Annotated[list[Annotated[Count, Field(ge=1)]] | None, LIVE.on("slurm")] = Field(
        default=None, min_length=1, max_length=16,
        description="topology.conf's BlockSizes (block topology): the domain's trays, then trays x 2^k (k <= 15) for each "
                    "aggregation of adjacent domains; default: up to what one scalable unit of the fabric holds.")
    containers: Annotated[Literal["pyxis", "none"], RESTART.on("slurm")] = "none"
    state_save_location: Annotated[StatePath, RESTART.on("slurm")] = "/var/spool/slurmctld"


# --- remediation: the healing fleet (infra/site/healing.py's table, docs/healing.md) ---------


# What a change costs: the remediation service (role remediation, phase slurm on the controllers, phase kubernetes on
# each cluster's first control plane) restarts with its new configuration; no job notices. The diagnosis settings
# also reach the nodes' signal agent (node_health, phase health).
HEALING_COST = RESTART.on("slurm", "kubernetes")
DIAGNOSIS_COST = RESTART.on("slurm", "kubernetes", "health")
HealingSignal = Literal[tuple(SIGNALS)]
HealingAction = Literal[ACTIONS]


class Escalate(Strict):
    IMPACT: ClassVar[Cost] = HEALING_COST
    count: Count = Field(ge=2, le=100, description="Occurrences of the signal on one node ...")
    window_s: Count = Field(ge=60, le=2_592_000, description="... within this many seconds (at most 30 days) ...")
    action: HealingAction = Field(description="... take this action instead (more severe than the rule's).")


class HealingRule(Strict):
    """An override of a default rule: the first rule matching a signal and its code wins, the site's before the defaults."""
    IMPACT: ClassVar[Cost] = HEALING_COST
    signal: HealingSignal
    codes: list[Annotated[Count, Field(le=65535)]] = Field(default_factory=list, max_length=256,
                                                           description="Codes (XIDs) it matches; none: every code.")
    action: HealingAction
    escalate: Escalate | None = None

    @model_validator(mode="after")
    def _escalation_more_severe(self) -> HealingRule:
        if self.escalate is not None and ACTIONS.index(self.escalate.action) <= ACTIONS.index(self.action):
            raise ValueError(f"escalate.action {self.escalate.action!r} is not more severe than action {self.action!r}; "
                             f"actions from least to most: {', '.join(ACTIONS)}")
        return self


class Breaker(Strict):
    IMPACT: ClassVar[Cost] = HEALING_COST
    share: Share = Field(default=0.05, gt=0, description="The breaker opens when more than this share of the Slurm nodes "
                                                         "is flagged within window_s (a fabric or power event).")
    window_s: Count = Field(default=600, ge=60, le=86400)
    min_nodes: Count = Field(default=3, ge=1, description="... and at least this many nodes.")


class Remediation(Strict):
    """The remediation service on the Slurm controllers and each Kubernetes cluster's first control plane (role
    remediation): it reads the plan's remediation.json."""
    IMPACT: ClassVar[Cost] = HEALING_COST
    enabled: Annotated[bool, DIAGNOSIS_COST] = True
    interval_s: Count = Field(default=5, ge=1, le=3600, description="Seconds between two polls of Slurm's nodes.")
    breaker: Breaker = Breaker()
    diagnose_level: Annotated[Count, DIAGNOSIS_COST] = Field(default=2, ge=1, le=4, description="dcgmi diag -r level a node passes before it returns.")
    diagnose_timeout_s: Annotated[Count, DIAGNOSIS_COST] = Field(default=1800, ge=60, le=86400)
    periodic_diag_s: Annotated[Count, DIAGNOSIS_COST] = Field(
        default=3600, ge=0, le=7 * 86400, description="Seconds between two dcgmi diag -r 1 on each idle node in "
                                                      "service (0: never); a failure drains it for a diagnosis.")
    rules: list[HealingRule] = Field(default_factory=list, max_length=256, description="Overrides, before infra/site/"
                                     "healing.py's default rules (docs/healing.md); the first rule matching wins.")


class Kubernetes(Strict):
    name: Annotated[Name, REPLACE.on(*CLUSTER)]
    version: Annotated[MajorMinor, DRAIN.on(*CLUSTER)]              # kubeadm upgrade: each node cordoned and drained
    control_plane: Annotated[list[HostName], RESTART.on(*CLUSTER)] = Field(min_length=1)
    # gpu: an NVLink tray's host IMEX service is masked on a cluster's workers (nvidia_driver, gf_imex_service)
    workers: Annotated[list[Name], DRAIN.on(*CLUSTER, "gpu")] = Field(min_length=1, description="Pools whose hosts are the cluster's workers.")
    pod_cidr: Annotated[Cidr, REPLACE.on(*CLUSTER)]                 # kubeadm cannot move it: the cluster is rebuilt
    service_cidr: Annotated[Cidr, REPLACE.on(*CLUSTER)]
    addons: Annotated[list[Literal["gpu-operator", "network-operator", "nfd", "kueue", "monitoring", "opencost", "compute-domains"]],
                      LIVE.on()] = Field(
        default_factory=list, description="Helm add-ons; opencost prices the cluster's namespaces from billing.tariffs "
                                          "and needs monitoring (its Prometheus) and a billing section; compute-domains "
                                          "(NVIDIA's DRA driver, ComputeDomains for NVLink-domain workers) needs gpu-operator.")
    rdma: Annotated[Literal["shared", "sriov"], REBOOT.on()] = "shared"   # SR-IOV virtual functions: the Pulumi program's operator
    prometheus: Annotated[Url | None, NONE] = Field(
        default=None, description="The cluster's Prometheus (its HTTP API's base URL, e.g. the monitoring add-on's, "
                                  "reached from where gigafactory usage runs): tenants' namespace usage is read from it.")


class NfsStorage(Strict):
    IMPACT: ClassVar[Cost] = DRAIN.on()   # remounted on every host: nothing may hold a file open on it (no phase mounts it yet)
    name: Annotated[Name, LIVE.on()]
    kind: Literal["nfs"]
    server: HostName
    export: ExportPath
    mount: MountPoint
    capacity_tb: Annotated[Terabytes, NONE] = Field(gt=0)


class LustreStorage(Strict):
    IMPACT: ClassVar[Cost] = DRAIN.on()
    name: Annotated[Name, LIVE.on()]
    kind: Literal["lustre"]
    mgs: LustreNid = Field(description="MGS NID, e.g. '10.42.255.10@tcp'.")
    fsname: LustreFsName
    mount: MountPoint
    capacity_tb: Annotated[Terabytes, NONE] = Field(gt=0)


Storage = Annotated[NfsStorage | LustreStorage, Field(discriminator="kind")]


class TenantSlurm(Strict):
    IMPACT: ClassVar[Cost] = LIVE.on("slurm")    # sacctmgr (role slurm_tenants): limits and shares apply to the next job
    account: Name
    gpus: Count | None = None
    cpus: Count | None = None
    nodes: Count | None = None
    fairshare: Count = 1


class TenantKubernetes(Strict):
    IMPACT: ClassVar[Cost] = LIVE.on()    # the namespace's objects (ResourceQuota, RoleBinding): the Pulumi program's
    cluster: Name
    namespace: Name
    gpus: Count
    group: IdentityGroup | None = Field(default=None, description="Identity-provider group bound to the namespace; default: the tenant name.")


class Money(Strict):
    """An amount with its currency written out (units explicit)."""
    IMPACT: ClassVar[Cost] = LIVE.on("slurm")        # a prepaid budget: GrpTRESMins on the tenant's QOS
    amount: Amount = Field(gt=0, description="More than 0: a prepaid budget of nothing is a typo (no budget: leave "
                           "prepaid out).")
    currency: Currency


class TenantBilling(Strict):
    IMPACT: ClassVar[Cost] = LIVE.on("slurm")        # the class's factor divides a prepaid budget
    class_: Name | None = Field(default=None, alias="class", description="A class of billing.classes; "
                                "default: no class (price factor 1).")
    prepaid: Money | None = Field(default=None, description="Prepaid budget: on Slurm, GrpTRESMins=billing on the "
                                  "tenant's account; new jobs wait when it is spent.")


class Tenant(Strict):
    IMPACT: ClassVar[Cost] = LIVE.on()    # accounts, quotas and namespaces: on the controller and the API
    name: Name
    slurm: Annotated[TenantSlurm | None, LIVE.on("slurm")] = None
    kubernetes: TenantKubernetes | None = None
    storage_tb: dict[Name, Terabytes] = Field(default_factory=dict)
    fabric_isolation: Annotated[bool, DRAIN.on(*PARTITIONED)] = Field(default=False, description="Own InfiniBand partition key.")
    pools: Annotated[list[Name], DRAIN.on(*PARTITIONED)] = Field(
        default_factory=list, description="Pools whose hosts are dedicated to the tenant (whole hosts); "
                                          "fabric_isolation needs them.")
    partition_key: Annotated[PartitionKey | None, DRAIN.on(*PARTITIONED)] = Field(default=None, description="InfiniBand P_Key of the tenant's partition, "
                                               "0x0001-0x7ffd; default: derived from the tenant's name.")
    billing: Annotated[TenantBilling | None, LIVE.on("slurm")] = None


# --- billing and energy -------------------------------------------------------------


class Tariffs(Strict):
    """Prices in billing.currency; each key names its unit."""
    IMPACT: ClassVar[Cost] = LIVE.on("slurm")    # TRESBillingWeights and PriorityWeightTRES: scontrol reconfigure
    gpu_hour: dict[ModelName, Price] = Field(default_factory=dict, description="Per GPU model (node_types.*.gpu.model).")
    cpu_hour: Price = Field(default=0, description="Per hardware thread (Slurm CPU) and hour.")
    memory_gb_hour: Price = 0
    storage_tb_month: Annotated[dict[Name, Price], LIVE.on()] = Field(default_factory=dict, description="Per storage system (storage.*.name).")
    energy_kwh: Annotated[Price, LIVE.on()] = Field(default=0, description="Per facility kWh (IT energy × PUE).")


class TenantClass(Strict):
    IMPACT: ClassVar[Cost] = LIVE.on("slurm")        # a prepaid tenant's budget in billing minutes
    name: Annotated[Name, LIVE.on()]
    price_factor: PriceFactor = 1.0


class Billing(Strict):
    IMPACT: ClassVar[Cost] = LIVE.on("slurm")
    currency: Annotated[Currency, NONE]
    period: Annotated[Literal["month"], NONE] = "month"
    timezone: Annotated[TimeZone | None, NONE] = Field(default=None, description="Time zone periods are cut in; default: site.timezone.")
    tariffs: Tariffs
    classes: Annotated[list[TenantClass], LIVE.on()] = Field(default_factory=list)


class PueByPeriod(Strict):
    IMPACT: ClassVar[Impact] = NONE    # reports only
    period: BillingPeriod
    pue: Pue


class FacilityByPeriod(Strict):
    """What the facility's own meters read over a period beyond IT energy, for the EED report (Delegated Regulation
    (EU) 2024/1364): energy reused and water taken in."""
    IMPACT: ClassVar[Impact] = NONE    # reports only
    period: BillingPeriod
    reused_kwh: KilowattHours | None = Field(default=None, description="Waste heat reused outside the data "
                                     "centre (kWh): the energy reuse factor's numerator.")
    water_m3: CubicMetres | None = Field(default=None, description="Total water input (m³): the water usage "
                                   "effectiveness's numerator.")


class Energy(Strict):
    IMPACT: ClassVar[Cost] = RESTART.on("slurm")  # acct_gather_energy and its frequency: slurmd restarts
    node: Literal["ipmi", "pm_counters", "none"] = Field(default="none", description="How node energy is measured "
                                                          "(Slurm's acct_gather_energy plugin).")
    gpu: Literal["dcgm-job-stats", "dcgm-exporter", "none"] = "none"
    node_frequency_s: Seconds = Field(default=30, ge=1, le=3600, description="AcctGatherNodeFreq: seconds between node samples.")
    pue: Annotated[list[PueByPeriod], NONE] = Field(default_factory=list, description="PUE measured per year or month; "
                                   "default: site.power.pue.")
    supply: Annotated[DataFile | None, NONE] = Field(default=None, description="Hourly supply CSV beside the site file: "
                                    "hour,grid_kwh,onsite_renewable_kwh,contracted_renewable_kwh,carbon_g_per_kwh.")
    facility: Annotated[list[FacilityByPeriod], NONE] = Field(default_factory=list, description="Energy reused and "
                                    "water taken in per year or month, as the facility's meters read them (EED).")
    # the flexible partitions' windows: `up` renders them into the controllers' flexible.json
    forecast: Annotated[DataFile | None, LIVE.on("slurm")] = Field(default=None, description="Hourly supply forecast "
                                    "CSV beside the site file, in energy.supply's format: the flexible partitions' "
                                    "hours come from it (else from energy.supply).")


# --- provisioning and the local test bed --------------------------------------------


CONTROLLER = "controller"   # the execution host that is the machine running `gigafactory up`


class Execution(Strict):
    """Where Ansible runs: execution hosts (hosts of the site, or ``controller``) and how a wave's hosts are split
    among them, one shard per execution host (ansible-runner's transmit, worker, process)."""
    IMPACT: ClassVar[Impact] = NONE    # how `up` runs, not what it applies
    # but an execution host gets Ansible from the base phase (role execution_host)
    hosts: Annotated[list[HostName], LIVE.on("base")] = Field(default_factory=lambda: [CONTROLLER], min_length=1, description=(
        "Execution hosts: host names of the site, or 'controller' for the machine running gigafactory up."))
    split: Literal["scalable_unit", "rack", "count"] = Field(default="count", description=(
        "How a wave's hosts are split: by scalable unit or by rack (an execution host takes its own first), "
        "or in equal runs of hosts in plan order."))
    idle_timeout: Seconds = Field(default=3600, ge=1, description=(
        "Seconds a shard's worker may stay silent (no event) before its execution host is given up: the worker is "
        "stopped and the shard's hosts are reported unreachable. Longer than the slowest single task."))


class BootImages(Strict):
    """The host that serves node images on the management network: DHCP (or proxy DHCP), TFTP with iPXE, and the
    images' network-boot bundles over HTTP (the boot_server role, docs/images.md)."""
    server: Annotated[HostName, RESTART.on("boot")] = Field(description="The host serving node images (a host of a pool).")
    proxy_dhcp: Annotated[bool, RESTART.on("boot")] = Field(
        default=False, description="Answer only PXE requests and leave addresses to the network's own DHCP server.")


class Provisioning(Strict):
    IMPACT: ClassVar[Impact] = NONE
    max_fail_percent: Percent = 10
    max_unavailable_percent: Percent = Field(
        default=10, gt=0,
        description="Day-two rollouts of drain- and reboot-class changes: at most this share of a Slurm partition's "
                    "nodes (of a Kubernetes cluster's workers, of a pool's hosts) out of service at once; "
                    "at least one node.")
    batch: list[WaveSize] = Field(
        default_factory=lambda: ["1", "25%", "100%"], description="Wave sizes: a canary first, then larger waves.")
    user: PosixUser = "root"
    execution: Execution = Execution()
    strategy: Literal["linear", "free", "mitogen_linear", "mitogen_free"] = Field(default="linear", description=(
        "Ansible's strategy for every phase; the mitogen_ ones need the mitogen package beside Ansible (the [mitogen] "
        "extra) on the controller and on every execution host."))
    images: Annotated[BootImages | None, RESTART.on("boot")] = None


class Testbed(Strict):
    """Local QEMU virtual machines standing in for the site's hosts (demo and tests)."""
    IMPACT: ClassVar[Cost] = REBOOT.on()  # the VMs restart with their new size
    memory_mb: Megabytes = Field(default=2048, ge=512)
    cpus: Count = Field(default=2, ge=1, le=1024)


class Site(Strict):
    # A field holding sections or entries: its class is what adding or removing one costs.
    # Its phases: those adding or removing one re-runs (a section always there: those its fields land on).
    site: Annotated[SiteInfo, REPLACE.on_every()]
    policy: Annotated[Policy, NONE] = Policy()
    os: Annotated[OperatingSystem, REBOOT.on_every()] = OperatingSystem()
    repositories: Annotated[Repositories, LIVE.on(*KEYED)] = Repositories()
    software: Annotated[Software, REBOOT.on("rdma", "gpu", "slurm", "health")] = Software()
    networks: Annotated[Networks, REPLACE.on_every()]
    fabrics: Annotated[list[Fabric], DRAIN.on("base", "rdma", "slurm", "health")] = Field(default_factory=list)
    node_types: Annotated[dict[Name, NodeType], NONE] = Field(min_length=1)   # used only through a pool's type
    racks: Annotated[list[Rack], NONE] = Field(min_length=1)
    pools: Annotated[list[Pool], LIVE.on("base", "rdma", "health")] = Field(min_length=1)     # its hosts are new, or removed
    slurm: Annotated[Slurm | None, DRAIN.on("base", "slurm", "health")] = None   # health: the nodes' diagnosis settings
    kubernetes: Annotated[list[Kubernetes], DRAIN.on(*CLUSTER, "gpu")] = Field(default_factory=list)
    storage: Annotated[list[Storage], DRAIN.on()] = Field(default_factory=list)
    tenants: Annotated[list[Tenant], LIVE.on("slurm")] = Field(default_factory=list)
    billing: Annotated[Billing | None, LIVE.on("slurm")] = None
    energy: Annotated[Energy | None, RESTART.on("slurm")] = None
    remediation: Annotated[Remediation | None, HEALING_COST] = Field(default=None, description=(
        "The healing fleet (docs/healing.md); default on every Slurm site; {enabled: false} turns it off."))
    provisioning: Annotated[Provisioning, NONE] = Provisioning()
    testbed: Annotated[Testbed | None, REBOOT.on_every()] = None    # a test bed's hosts: no ansible_host
