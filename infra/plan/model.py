"""The plan: everything derived from a site file, as plain frozen data."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..site.fabric import FabricPlan
from ..site.healing import HEAL_PREFIX, Rule
from ..site.placement import Domain, RackUse
from ..site.power import PowerPlan


@dataclass(frozen=True, slots=True)
class HostPlan:
    name: str
    pool: str
    node_type: str
    rack: str
    rack_unit: int                      # lowest unit the host occupies, counted from 1 at the bottom
    groups: tuple[str, ...]
    addresses: dict[str, str]           # network -> "address/prefixlen"
    rails: tuple[str, ...] = ()          # per fabric rail: "address/prefixlen"
    fabric: str | None = None
    scalable_unit: int | None = None    # 1-based SU number on its fabric, GPU nodes only

    def address(self, network: str = "management") -> str:
        """The bare address on ``network`` (no prefix length)."""
        return self.addresses[network].split("/")[0]


@dataclass(frozen=True, slots=True)
class NetworkPlan:
    name: str
    cidr: str
    vlan: int | None
    mtu: int
    interface: str | None
    blocks: dict[str, str]              # host-name prefix -> block CIDR


@dataclass(frozen=True, slots=True)
class PartitionPlan:
    """One InfiniBand partition: its P_Key and its members by host (the rdma role maps hosts to port GUIDs)."""
    name: str
    key: str                            # "0x7fff"
    full: tuple[str, ...]
    limited: tuple[str, ...]
    tenant: str | None = None
    default: bool = False               # the default partition: every other port limited, switches and the SM full
    index0: bool = False                # at P_Key index 0 of its full members (not its limited ones): their default P_Key


@dataclass(frozen=True, slots=True)
class SlurmNodeGroup:
    hostlist: str
    addresses: str                      # NodeAddr: the management addresses, in the hostlist's expanded order
    pool: str
    node_type: str
    cpus: int
    sockets: int
    cores_per_socket: int
    threads_per_core: int
    real_memory_mb: int
    gres: str | None                    # e.g. "gpu:h200:8"
    features: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SlurmPartition:
    name: str
    nodes: str
    default: bool
    max_time: str
    max_nodes: int | None
    billing_weights: str | None = None  # TRESBillingWeights: currency per hour of each TRES (billing section)
    exclusive: bool = False             # OverSubscribe=EXCLUSIVE: NVLink trays, one job per node (one IMEX daemon each)
    # flexible capacity (docs/power.md): open only in the hours the renewable supply covers this share of the load
    # (State=DOWN in slurm.conf; the controllers' gigafactory-flexible opens it), its jobs priced at this class
    flexible_share: float | None = None
    flexible_class: str | None = None


# How long a rebooting node may take to come back (a GPU server's firmware alone can take minutes): Slurm's
# ResumeTimeout, after which slurmctld sets a node it was asked to reboot DOWN, and the rollout's own limit.
REBOOT_TIMEOUT_S = 1800


@dataclass(frozen=True, slots=True)
class NvlinkDomain:
    """One NVLink domain of Slurm's nodes: its trays and their IMEX addresses (management), in the pool's order."""
    name: str                           # placement's: the rack's name (or <rack>-<i>), as topology.conf's block
    nodes: tuple[tuple[str, str], ...]  # (host, management address)


# Slurm's own user: slurmctld and slurmdbd run as it (slurm.conf's and slurmdbd.conf's SlurmUser), it owns
# StateSaveLocation (often NFS that squashes root) and the logs; slurm_common creates it with the site's fixed IDs,
# the remediation service runs as it, and `gigafactory health` reads the service's state as it.
SLURM_USER = "slurm"


@dataclass(frozen=True, slots=True)
class SlurmPlan:
    cluster: str
    controllers: tuple[tuple[str, str], ...]   # (host, management address), primary first
    accounting: tuple[str, str]
    login: tuple[str, ...]
    nodes: tuple[SlurmNodeGroup, ...]
    partitions: tuple[SlurmPartition, ...]
    topology: tuple[tuple[str, str], ...]      # tree: (switch, "Nodes=..." or "Switches=...")
    state_save_location: str
    containers: str
    accounting_tres: str = "gres/gpu"           # AccountingStorageTRES: gres/gpu and gres/gpu:<model>
    priority_weight_tres: str | None = None     # PriorityWeightTRES, from the tariffs
    energy_gather: str | None = None            # AcctGatherEnergyType plugin, from energy.node
    energy_frequency_s: int | None = None       # AcctGatherNodeFreq
    budget_enforced: bool = False               # a tenant is prepaid: AccountingStorageEnforce gains 'safe'
    reboot_timeout_s: int = REBOOT_TIMEOUT_S    # ResumeTimeout: how long slurmctld waits for a node `scontrol reboot`s
    job_scripts: tuple[str, ...] = ()           # Prolog/Epilog pairs slurm_compute installs in prolog.d/epilog.d (JOB_SCRIPTS)
    prolog_flags: tuple[str, ...] = ()          # PrologFlags: Alloc for job scripts, Contain for a node energy plugin
    switch_type: str | None = None              # SwitchType: switch/nvidia_imex where Slurm has NVLink trays
    nvlink_domains: tuple[NvlinkDomain, ...] = ()   # the IMEX job script's map (gigafactory-nvlink.conf)
    topology_plugin: str | None = None          # TopologyPlugin: "tree" (topology's switches) or "block" (blocks)
    blocks: tuple[tuple[str, str], ...] = ()     # (block, hostlist): one per NVLink domain of the Slurm pools, rack order
    block_sizes: tuple[int, ...] = ()           # BlockSizes: the domain's trays, then the aggregations (trays x 2^k)
    user: str = SLURM_USER                      # SlurmUser


# The remediation service's files on the shared StateSaveLocation (they follow slurmctld's failover), and its metrics.
REMEDIATION_STATE = "gigafactory-remediation"
REMEDIATION_METRICS = "/var/lib/prometheus/node-exporter/gigafactory_remediation.prom"
# On a Kubernetes cluster: the service's state on the first control plane, and the identity it acts with there.
KUBERNETES_REMEDIATION_STATE = "/var/lib/gigafactory-remediation"
KUBERNETES_ADMIN_CONFIG = "/etc/kubernetes/admin.conf"
GPU_RESOURCE = "nvidia.com/gpu"                 # a pod asking for it is a GPU pod (evicted by a requeue)


@dataclass(frozen=True, slots=True)
class RemediationPlan:
    """The remediation service's configuration (remediation.json, docs/healing.md): the site's choices, the Slurm
    plan's, and the rules in the order they match (the site's overrides, then infra/site/healing.py's RULES)."""
    cluster: str | None                 # Slurm's ClusterName; None on a site with Kubernetes only
    interval_s: int
    breaker_share: float
    breaker_window_s: int
    breaker_min_nodes: int
    diagnose_level: int
    diagnose_timeout_s: int
    reboot_timeout_s: int
    periodic_diag_s: int
    state_dir: str | None               # on Slurm's StateSaveLocation; None without Slurm
    rules: tuple[Rule, ...]
    reason_prefix: str = HEAL_PREFIX
    metrics_file: str = REMEDIATION_METRICS


@dataclass(frozen=True, slots=True)
class RailPodPool:
    fabric: str
    fabric_kind: str                    # infiniband or roce
    rail: int
    interface: str                      # host interface of the rail (the pods' parent link)
    cidr: str                           # the rail's subnet
    pod_pool: str                       # part of the subnet no host block (nor the gateway block) uses


@dataclass(frozen=True, slots=True)
class ClusterPricing:
    """OpenCost's custom prices for one cluster, from billing.tariffs (infra/plan/tariffs.py): per hour, in currency."""
    currency: str
    cpu_hour: float                     # per Kubernetes CPU (one hardware thread), as tariffs.cpu_hour
    ram_gib_hour: float                 # per GiB of memory, as tariffs.memory_gb_hour
    gpu_hour: float                     # one price for every GPU of the cluster (a weighted mean if models differ)
    storage_gib_hour: float             # per GiB of volume, from storage_tb_month (a weighted mean if systems differ)
    gpu_tariffs: dict[str, float]       # GPU model of the cluster's workers -> its tariff (0: none)
    storage_tariffs: dict[str, float]   # storage system weighed in -> its tariff per TB-month (0: none)


@dataclass(frozen=True, slots=True)
class ClusterPlan:
    name: str
    version: str
    group: str                          # inventory group of all the cluster's hosts
    control_plane: tuple[str, ...]
    api_endpoint: str                   # management address of the first control-plane host
    worker_pools: tuple[str, ...]
    workers: int
    gpus: int
    cpus_per_gpu: int                   # hardware threads per GPU across the workers (0 without GPUs)
    memory_gb_per_gpu: int
    local_nvme: bool                    # every worker has local NVMe
    pod_cidr: str
    service_cidr: str
    addons: tuple[str, ...]
    rdma: str
    rails: tuple[RailPodPool, ...]
    pricing: ClusterPricing | None = None   # with a billing section: what OpenCost prices the cluster at


@dataclass(frozen=True, slots=True)
class Capacity:
    nodes: int
    gpus: int
    racks_used: int
    racks_declared: int
    switches: int
    it_kw: float
    facility_kw: float
    facility_budget_kw: float
    renewable_share: float

    @property
    def headroom_kw(self) -> float:
        return round(self.facility_budget_kw - self.facility_kw, 3)


@dataclass(frozen=True)
class Plan:
    site: str
    hosts: dict[str, HostPlan]
    networks: dict[str, NetworkPlan]
    fabrics: tuple[FabricPlan, ...]
    slurm: SlurmPlan | None
    capacity: Capacity
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)   # group -> hosts, in host order
    kubernetes: tuple[ClusterPlan, ...] = ()                            # per ``kubernetes`` entry, in site order
    ntp_servers: tuple[str, ...] = ()                                   # the hosts' time sources
    partitions: dict[str, tuple[PartitionPlan, ...]] = field(default_factory=dict)   # InfiniBand fabric -> partitions
    racks: dict[str, RackUse] = field(default_factory=dict)             # every declared rack: limits, planned load, domains
    domains: tuple[Domain, ...] = ()                                    # NVLink domains, in the order the racks stand
    remediation: RemediationPlan | None = None                          # the healing fleet: Slurm sites, unless disabled
    power: PowerPlan | None = None                                      # the power tree's loads and the GPU power limits
