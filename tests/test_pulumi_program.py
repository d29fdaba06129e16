"""The Pulumi program under mocks: resource graph, providers, quotas, Kubernetes schemas, secrets, scale.

Pulumi's engine is not available here, so the program runs with ``pulumi.runtime.set_mocks``
(installed before the program is imported) in one subprocess per site and mode
(``tests/pulumi_mock_run.py``): mocks are process-wide, so no runtime is shared between cases.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from conftest import DEMO, RIGA, ROOT, site_data
from metering_data import with_billing
from nvlink_data import doubled_inference, with_nvlink_inference
from infra.plan import build_plan
from infra.stack.charts import CHARTS
from infra.site import validate_data
from infra.site.checks import RESERVED_NAMESPACES, run_checks
from infra.site.hostlists import expand

HARNESS = Path(__file__).with_name("pulumi_mock_run.py")
MIRROR = "http://mirror.small.internal/charts"
COMPONENTS = {"NodeConfiguration", "KubernetesCluster", "SiteNetwork", "SiteStorage", "Tenants"}
CRD_GROUPS = ("mellanox.com/", "kueue.x-k8s.io/", "resource.nvidia.com/")


def small_site() -> dict:
    """riga-1 shrunk to 14 GPU nodes with a second, SR-IOV cluster, an NFS allotment and a chart mirror."""
    d = site_data(RIGA)
    d["site"]["name"] = "small"
    d["repositories"]["charts"] = MIRROR
    d["pools"][0].update(hosts="gpu[0001-0008]", racks="a[01-02]")
    d["pools"][1].update(hosts="gpu[0009-0012]", racks="a[03]")
    d["pools"].insert(2, {"name": "lab", "type": "hgx-h200", "hosts": "gpu[0013-0014]", "racks": "a[04]"})
    d["pools"][3]["hosts"].append("k8s-cp04")
    d["kubernetes"].append({"name": "lab", "version": "1.31", "control_plane": ["k8s-cp04"], "workers": ["lab"],
                            "pod_cidr": "10.128.0.0/16", "service_cidr": "10.97.0.0/16",
                            "addons": ["network-operator", "nfd"], "rdma": "sriov"})
    d["tenants"][0]["slurm"]["gpus"] = 32
    d["tenants"][1]["slurm"]["gpus"] = 16
    d["tenants"][0]["kubernetes"]["gpus"] = 16
    d["tenants"][2]["kubernetes"]["gpus"] = 8
    d["tenants"].append({"name": "lab-team", "kubernetes": {"cluster": "lab", "namespace": "lab", "gpus": 12, "group": "lab-admins"},
                         "storage_tb": {"home": 5, "datasets": 2.5}})
    return d


def metered_site() -> dict:
    """small with billing (tests/metering_data.py) and OpenCost on both clusters: riga-infer's GPUs are all H200,
    lab's are H200 and B200 at different tariffs, and lab's tenant has storage on two systems."""
    d = with_billing(small_site())
    d["billing"]["tariffs"]["gpu_hour"]["B200"] = 4.0
    h200 = d["node_types"]["hgx-h200"]
    d["node_types"]["hgx-b200"] = {**h200, "gpu": {**h200["gpu"], "model": "B200"}}
    d["pools"].insert(3, {"name": "lab-b", "type": "hgx-b200", "hosts": "gpu[0015-0016]", "racks": "a[05]"})
    d["kubernetes"][0]["addons"].append("opencost")
    d["kubernetes"][1]["workers"].append("lab-b")
    d["kubernetes"][1]["addons"] += ["opencost", "monitoring"]      # listed first, installed after
    return d


def big_site() -> dict:
    """riga-1 at 100,000 GPUs (12,500 eight-GPU nodes): bigger pools, racks and fabric subnet; same clusters and tenants."""
    d = site_data(RIGA)
    d["site"]["power"]["facility_kw"] = 250_000
    d["racks"][0] = {"names": "a[0001-3125]", "power_kw": 45, "units": 48}
    d["pools"][0].update(hosts="gpu[00001-12000]", racks="a[0001-3000]")
    d["pools"][1].update(hosts="gpu[12001-12500]", racks="a[3001-3125]")
    d["fabrics"][0]["ipoib"]["cidr"] = "10.128.0.0/12"
    return d


def bad_site() -> dict:
    """An inconsistent Kubernetes section: a tenant on an unknown cluster, a pod network over the management network,
    OpenCost on a site without billing."""
    d = site_data(RIGA)
    d["kubernetes"][0]["pod_cidr"] = "10.40.0.0/16"
    d["kubernetes"][0]["addons"].append("opencost")
    d["tenants"][2]["kubernetes"]["cluster"] = "riga-serve"
    return d


def riga_from_archives() -> dict:
    """riga-1 without its chart mirror: the add-ons come from the pinned archives in charts/ (the other path)."""
    d = site_data(RIGA)
    d["repositories"].pop("charts")
    return d


SITES = {"riga-1": riga_from_archives, "small": small_site, "metered": metered_site, "big": big_site,
         "bad": bad_site, "demo": lambda: site_data(DEMO),
         "nvlink": lambda: with_nvlink_inference(riga_from_archives()),           # tests/nvlink_data.py
         "nvlink-double": lambda: doubled_inference(riga_from_archives())}
RUNS = [("riga-1", "preview"), ("riga-1", "up"), ("small", "preview"), ("small", "up"), ("metered", "up"), ("demo", "up"),
        ("big", "up"), ("bad", "up"), ("nvlink", "up"), ("nvlink-double", "up")]
MIRRORED = ("small", "metered")             # sites with a chart mirror


@pytest.fixture(scope="session")
def site_files(tmp_path_factory) -> dict[str, Path]:
    out = {"demo": DEMO}
    for name in ("riga-1", "small", "metered", "big", "bad", "nvlink", "nvlink-double"):
        path = tmp_path_factory.mktemp(name) / "site.yml"
        path.write_text(yaml.safe_dump(SITES[name]()))
        out[name] = path
    return out


def _run(path: Path, mode: str) -> dict:
    result = subprocess.run([sys.executable, str(HARNESS), str(path), mode], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout)


@pytest.fixture(scope="session")
def runs(site_files) -> dict[tuple[str, str], dict]:
    """Every (site, mode) run, two at a time (the machine has two cores)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {key: pool.submit(_run, site_files[key[0]], key[1]) for key in RUNS}
        return {key: future.result() for key, future in futures.items()}


@functools.cache
def site_and_clusters(name: str):
    site = validate_data(SITES[name]())
    plan = build_plan(site)
    return site, plan, {c.name: c for c in plan.kubernetes}


def by_type(run: dict, suffix: str) -> list[dict]:
    return [r for r in run["resources"] if r["type"].split(":")[-1] == suffix]


def kubernetes_objects(run: dict) -> list[dict]:
    return [r for r in run["resources"] if r["type"].startswith("kubernetes:") and not r["type"].startswith("kubernetes:helm.sh")]


def cluster_of(resource: dict, clusters) -> str:
    matches = [c for c in clusters if resource["name"].startswith(f"{c}-")]
    assert len(matches) == 1, resource["name"]
    return matches[0]


def quantity_bytes(value: str) -> float:
    units = {"T": 10**12, "G": 10**9, "Ti": 2**40, "Gi": 2**30}
    for suffix in sorted(units, key=len, reverse=True):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * units[suffix]
    return float(value)


SUCCESSFUL = [key for key in RUNS if key[0] != "bad"]
WITH_KUBERNETES = [key for key in SUCCESSFUL if key[0] in ("riga-1", "small", "metered", "nvlink")]


@pytest.mark.parametrize("key", SUCCESSFUL, ids="-".join)
def test_program_runs_without_error(runs, key):
    assert runs[key]["error"] is None


def test_riga1_resource_graph(runs):
    run = runs[("riga-1", "up")]
    counts: dict[str, int] = {}
    for r in run["resources"]:
        counts[r["type"].split(":")[-1]] = counts.get(r["type"].split(":")[-1], 0) + 1
    assert counts == {
        "NodeConfiguration": 1, "KubernetesCluster": 1, "SiteNetwork": 1, "SiteStorage": 1, "Tenants": 1,
        "AnsiblePhase": 7,                     # base, rdma, gpu, power, slurm, health + kubeadm of riga-infer
        "kubernetes": 1,                       # the cluster's provider
        "Release": 6,                          # four add-ons, NFS and Lustre CSI drivers
        "ConfigMap": 1,                        # the DCGM exporter's metrics list
        "NicClusterPolicy": 1, "IPoIBNetwork": 8,
        "Namespace": 2, "ResourceQuota": 4, "LimitRange": 2, "NetworkPolicy": 2, "RoleBinding": 2,
        "ResourceFlavor": 1, "ClusterQueue": 2, "LocalQueue": 2,
        "StorageClass": 3, "PersistentVolume": 2, "PersistentVolumeClaim": 2,
    }
    phases = sorted(r["name"] for r in by_type(run, "AnsiblePhase"))
    assert phases == ["nodes-base", "nodes-gpu", "nodes-health", "nodes-power", "nodes-rdma", "nodes-slurm", "riga-infer-kubeadm"]


@pytest.mark.parametrize("key", [("riga-1", "up"), ("demo", "up")], ids="-".join)
def test_phase_resources_wait_for_each_other_in_the_orchestrations_order(runs, key):
    """Each phase resource depends on the one the orchestration runs before it; every cluster's bootstrap stands in
    for the kubernetes phase, and the phase after it waits for all of them."""
    from infra.orchestrate import PHASES
    run = runs[key]
    phases = {r["urn"]: r for r in by_type(run, "AnsiblePhase")}
    name = {urn: r["inputs"]["phase"] for urn, r in phases.items()}
    waits = {urn: sorted(name[d] for d in r["dependencies"] if d in phases) for urn, r in phases.items()}
    declared = [p.name for p in PHASES if p.name in name.values()]
    for urn, phase in name.items():
        i = declared.index(phase)
        assert waits[urn] == ([declared[i - 1]] * list(name.values()).count(declared[i - 1]) if i else []), (phase, waits[urn])


@pytest.mark.parametrize("key", SUCCESSFUL, ids="-".join)
def test_components_parent_their_resources(runs, key):
    run = runs[key]
    urns = {r["urn"]: r for r in run["resources"]}
    for r in run["resources"]:
        kind = r["type"].split(":")[-1]
        if kind in COMPONENTS:
            assert r["parent"].split("::")[-2] == "pulumi:pulumi:Stack", r["urn"]
        else:
            parent = urns.get(r["parent"])
            assert parent is not None and parent["type"].split(":")[-1] in COMPONENTS, (r["urn"], r["parent"])


@pytest.mark.parametrize("key", WITH_KUBERNETES, ids="-".join)
def test_every_kubernetes_resource_uses_its_clusters_provider(runs, key):
    run = runs[key]
    providers = {r["name"]: r["urn"] for r in by_type(run, "kubernetes") if r["type"] == "pulumi:providers:kubernetes"}
    _, _, clusters = site_and_clusters(key[0])
    assert set(providers) == set(clusters)
    k8s = [r for r in run["resources"] if r["type"].startswith("kubernetes:")]
    assert k8s
    for r in k8s:
        assert r["provider"].rsplit("::", 1)[0] == providers[cluster_of(r, clusters)], r["urn"]
    assert not any(r["provider"] for r in by_type(run, "AnsiblePhase"))


@pytest.mark.parametrize("key", WITH_KUBERNETES, ids="-".join)
def test_quotas_equal_the_site_file(runs, key):
    run = runs[key]
    site, _, _ = site_and_clusters(key[0])
    tenants = [t for t in site.tenants if t.kubernetes]
    quotas = {r["inputs"]["metadata"]["namespace"]: r["inputs"]["spec"]["hard"]
              for r in by_type(run, "ResourceQuota") if r["inputs"]["metadata"]["name"] == "gpu"}
    queues = {r["inputs"]["metadata"]["name"]: r["inputs"]["spec"] for r in by_type(run, "ClusterQueue")}
    storage = {r["inputs"]["metadata"]["namespace"]: r["inputs"]["spec"]["hard"]
               for r in by_type(run, "ResourceQuota") if r["inputs"]["metadata"]["name"] == "storage"}
    assert set(quotas) == {t.kubernetes.namespace for t in tenants}
    for t in tenants:
        assert quotas[t.kubernetes.namespace] == {"requests.nvidia.com/gpu": str(t.kubernetes.gpus)}
        cluster = next(c for c in site.kubernetes if c.name == t.kubernetes.cluster)
        if "kueue" in cluster.addons:
            flavor = queues[t.name]["resourceGroups"][0]["flavors"][0]["resources"]
            assert {"name": "nvidia.com/gpu", "nominalQuota": str(t.kubernetes.gpus)} in flavor
        else:
            assert t.name not in queues
        expected = {f"{name}.storageclass.storage.k8s.io/requests.storage": tb * 10**12 for name, tb in t.storage_tb.items()}
        got = {k: quantity_bytes(v) for k, v in storage.get(t.kubernetes.namespace, {}).items()}
        assert got == expected
    for pv in by_type(run, "PersistentVolume"):
        tenant = next(t for t in tenants if pv["inputs"]["spec"]["claimRef"]["namespace"] == t.kubernetes.namespace)
        assert quantity_bytes(pv["inputs"]["spec"]["capacity"]["storage"]) == tenant.storage_tb["datasets"] * 10**12


@pytest.mark.parametrize("key", WITH_KUBERNETES, ids="-".join)
def test_builtin_objects_validate_against_the_clusters_kubernetes_schema(runs, key):
    run = runs[key]
    _, _, clusters = site_and_clusters(key[0])
    checked = 0
    for r in kubernetes_objects(run):
        obj = r["inputs"]
        if obj["apiVersion"].startswith(CRD_GROUPS):
            continue
        version = clusters[cluster_of(r, clusters)].version
        kubernetes_validate.validate(obj, version, strict=True)
        checked += 1
    assert checked >= 10


def test_schema_validation_can_fail():
    bad = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "gpu"}, "spec": {"hardd": {}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.33", strict=True)


def test_riga1_rdma_networks(runs):
    run = runs[("riga-1", "up")]
    _, plan, clusters = site_and_clusters("riga-1")
    cluster = clusters["riga-infer"]
    [policy] = by_type(run, "NicClusterPolicy")
    assert policy["inputs"]["metadata"]["name"] == "nic-cluster-policy"
    shared = json.loads(policy["inputs"]["spec"]["rdmaSharedDevicePlugin"]["config"])
    assert [c["selectors"]["ifNames"] for c in shared["configList"]] == [[f"ib{r}"] for r in range(8)]
    assert set(policy["inputs"]["spec"]["secondaryNetwork"]) == {"cniPlugins", "multus", "ipamPlugin", "ipoib"}
    rails = {r.rail: r for f in plan.fabrics for r in f.rails}
    networks = sorted(by_type(run, "IPoIBNetwork"), key=lambda r: r["name"])
    assert [n["inputs"]["metadata"]["name"] for n in networks] == [f"compute-rail{r}" for r in range(8)]
    for n in networks:
        spec = n["inputs"]["spec"]
        rail = rails[int(spec["master"][2:])]
        ipam = json.loads(spec["ipam"])
        pool = ipaddress.IPv4Network(ipam["range"])
        assert ipam["type"] == "whereabouts" and spec["networkNamespace"] == "default"
        assert pool.subnet_of(ipaddress.IPv4Network(rail.cidr))
        assert not any(pool.overlaps(ipaddress.IPv4Network(b)) for b in rail.blocks.values())
    assert cluster.rails[0].pod_pool == "10.50.16.0/20"
    assert runs[("riga-1", "up")]["outputs"]["attachments"] == {"riga-infer": [f"default/compute-rail{r}" for r in range(8)]}


def test_small_site_sriov_cluster_uses_host_device_networks(runs):
    run = runs[("small", "up")]
    policies = {p["name"]: p["inputs"]["spec"] for p in by_type(run, "NicClusterPolicy")}
    assert "sriovDevicePlugin" in policies["lab-nic-cluster-policy"] and "ipoib" not in policies["lab-nic-cluster-policy"]["secondaryNetwork"]
    assert "rdmaSharedDevicePlugin" in policies["riga-infer-nic-cluster-policy"]
    lab = [r for r in by_type(run, "HostDeviceNetwork")]
    assert len(lab) == 8 and all(r["inputs"]["spec"]["resourceName"].startswith("nvidia.com/rdma_sriov_compute_rail") for r in lab)
    assert not any(r["name"].startswith("lab-") for r in by_type(run, "ClusterQueue") + by_type(run, "ResourceFlavor"))
    [binding] = [r for r in by_type(run, "RoleBinding") if r["name"].startswith("lab-")]
    assert binding["inputs"]["subjects"][0]["name"] == "lab-admins"


@pytest.mark.parametrize("key", WITH_KUBERNETES, ids="-".join)
def test_addons_are_pinned_helm_releases_from_the_sites_charts(runs, key):
    run = runs[key]
    releases = by_type(run, "Release")
    assert releases
    pinned = {c.chart: c.version for c in CHARTS.values()}
    for r in releases:
        inputs = r["inputs"]
        chart = inputs["chart"]
        if key[0] in MIRRORED:
            assert inputs["repositoryOpts"] == {"repo": MIRROR}
            assert inputs["version"] == pinned[chart]
        else:
            assert "repositoryOpts" not in inputs
            path = Path(chart)
            assert path.parent == ROOT / "charts" and path.name == f"{path.name.rsplit('-', 1)[0]}-{inputs['version']}.tgz"
            assert pinned[path.name.rsplit("-", 1)[0]] == inputs["version"]
        assert "://" not in json.dumps(inputs).replace(MIRROR, "")
    gpu = next(r for r in releases if r["name"] == "riga-infer-gpu-operator")["inputs"]["values"]
    assert gpu["driver"]["enabled"] is False and gpu["dcgmExporter"]["enabled"] is True


def test_chart_namespaces_are_reserved_from_tenants():
    assert {c.namespace for c in CHARTS.values()} - {"kube-system"} <= set(RESERVED_NAMESPACES)


@pytest.mark.parametrize("mode", ["preview", "up"])
def test_kubeconfig_is_a_secret(runs, mode):
    run = runs[("riga-1", mode)]
    assert run["kubeconfig_secret"] == {"riga-infer": True}
    assert run["secret_outputs"]["kubeconfigs"] is True
    [provider] = [r for r in run["resources"] if r["type"] == "pulumi:providers:kubernetes"]
    secret = provider["inputs"]["kubeconfig"]
    assert isinstance(secret, dict) and "4dabf18193072939515e22adb298388d" in secret
    kubeconfig = run["outputs"]["kubeconfigs"]
    if mode == "preview":
        assert kubeconfig == "<unknown>" or kubeconfig == {"riga-infer": "<unknown>"}
    else:
        assert kubeconfig["riga-infer"].startswith("apiVersion: v1")


def test_address_plan_is_a_stack_output(runs):
    outputs = runs[("riga-1", "up")]["outputs"]
    assert outputs["pools"]["infer"]["addresses"]["management"] == {"first": "10.40.1.97", "last": "10.40.1.128"}
    assert outputs["networks"]["storage"]["cidr"] == "10.42.0.0/16"
    assert outputs["rails"]["compute-rail3"]["cidr"] == "10.50.96.0/19"
    assert outputs["capacity"] == {"nodes": 139, "gpus": 1024}


def _unstacked(resource: dict) -> str:
    """The URN without its stack name."""
    return resource["urn"].split("::", 1)[1]


def test_resource_count_does_not_grow_with_node_count(runs):
    riga, big = runs[("riga-1", "up")], runs[("big", "up")]
    assert big["outputs"]["capacity"]["gpus"] == 100_000
    assert len(big["resources"]) == len(riga["resources"])
    assert sorted(map(_unstacked, big["resources"])) == sorted(map(_unstacked, riga["resources"]))
    assert len(riga["resources"]) < 100
    hashes = lambda run: {r["name"]: r["inputs"]["inputs_hash"] for r in by_type(run, "AnsiblePhase")}  # noqa: E731
    assert all(hashes(big)[name] != h for name, h in hashes(riga).items())


# --- rack-scale NVLink: NVIDIA's DRA driver with ComputeDomains, one ComputeDomain per tenant namespace -------------

COMPUTE_DOMAIN_API = "resource.nvidia.com/v1beta1"       # ComputeDomain's, as the pinned chart's CRD serves it
DRA_VALUES = {"resources": {"computeDomains": {"enabled": True}, "gpus": {"enabled": False}},
              "nvidiaDriverRoot": "/", "resourceApiVersion": "resource.k8s.io/v1"}


def test_nvlink_cluster_installs_the_dra_driver_after_the_gpu_operator(runs):
    run = runs[("nvlink", "up")]
    releases = releases_of(run, "riga-infer")
    dra = releases["compute-domains"]
    inputs = dra["inputs"]
    assert (inputs["name"], inputs["namespace"], inputs["version"]) == ("nvidia-dra-driver-gpu", "nvidia-dra-driver-gpu", "25.12.0")
    assert inputs["chart"] == str(ROOT / "charts" / "nvidia-dra-driver-gpu-25.12.0.tgz")      # no mirror: the archive
    assert inputs["createNamespace"] is True and inputs["atomic"] is True
    assert inputs["values"] == DRA_VALUES
    assert releases["gpu-operator"]["urn"] in dra["dependencies"]
    for key in (("riga-1", "up"), ("small", "up"), ("metered", "up")):           # no NVLink workers: no driver
        assert not [r for r in by_type(runs[key], "Release") if "dra-driver" in r["inputs"]["chart"]]


def test_mirrored_dra_chart_comes_from_the_sites_mirror():
    """The same rule as every add-on: with repositories.charts, the chart by name and pinned version from the mirror."""
    from infra.stack.charts import ChartSource
    args = ChartSource(MIRROR, ROOT / "charts").release_args(CHARTS["compute-domains"])
    assert (args["chart"], args["version"], args["repository_opts"].repo) == ("nvidia-dra-driver-gpu", "25.12.0", MIRROR)


def test_each_tenant_namespace_on_an_nvlink_cluster_gets_a_compute_domain(runs):
    run = runs[("nvlink", "up")]
    site, _, _ = site_and_clusters("nvlink")
    dra = releases_of(run, "riga-infer")["compute-domains"]
    namespaces = {r["inputs"]["metadata"]["name"]: r["urn"] for r in by_type(run, "Namespace")}
    domains = {r["inputs"]["metadata"]["namespace"]: r for r in by_type(run, "ComputeDomain")}
    tenants = [t for t in site.tenants if t.kubernetes]
    assert set(domains) == {t.kubernetes.namespace for t in tenants} == {"acme-ai", "gov-lv"}
    for t in tenants:
        domain = domains[t.kubernetes.namespace]
        obj = domain["inputs"]
        assert (obj["apiVersion"], obj["kind"], obj["metadata"]["name"]) == (COMPUTE_DOMAIN_API, "ComputeDomain", f"{t.name}-nvlink")
        assert obj["spec"] == {"numNodes": 0, "channel": {"resourceClaimTemplate": {"name": f"{t.name}-nvlink-channel"}}}
        assert {dra["urn"], namespaces[t.kubernetes.namespace]} <= set(domain["dependencies"])    # the CRD, the namespace
    for key in (("riga-1", "up"), ("small", "up")):
        assert not by_type(runs[key], "ComputeDomain")


def test_compute_domains_are_per_tenant_and_cluster_never_per_tray(runs):
    """Doubling the NVLink pool's trays declares the same resources; against riga-1 the NVLink site adds the driver's
    release and one ComputeDomain per tenant namespace, nothing else."""
    nvlink, double, riga = runs[("nvlink", "up")], runs[("nvlink-double", "up")], runs[("riga-1", "up")]
    assert (nvlink["outputs"]["capacity"]["nodes"], double["outputs"]["capacity"]["nodes"]) == (139, 171)
    assert sorted(map(_unstacked, double["resources"])) == sorted(map(_unstacked, nvlink["resources"]))
    added = set(map(_unstacked, nvlink["resources"])) - set(map(_unstacked, riga["resources"]))
    assert sorted(u.split("::")[-1] for u in added) == [
        "riga-infer-acme-ai-nvlink", "riga-infer-compute-domains", "riga-infer-gov-lv-nvlink"]
    assert len(nvlink["resources"]) == len(riga["resources"]) + 3


def test_preview_and_up_declare_the_same_graph(runs):
    for site in ("riga-1", "small"):
        preview, up = runs[(site, "preview")], runs[(site, "up")]
        assert sorted(r["urn"] for r in preview["resources"]) == sorted(r["urn"] for r in up["resources"])


def test_demo_site_without_kubernetes_declares_node_phases_only(runs):
    run = runs[("demo", "up")]
    kinds = sorted(r["type"].split(":")[-1] for r in run["resources"])
    assert not [r for r in run["resources"] if r["type"].startswith("kubernetes:")]
    assert sorted(r["name"] for r in by_type(run, "AnsiblePhase")) == ["nodes-base", "nodes-health", "nodes-rdma", "nodes-slurm"]
    assert "SiteNetwork" in kinds and "Tenants" in kinds


def test_inconsistent_kubernetes_section_fails_before_any_resource(runs):
    run = runs[("bad", "up")]
    assert run["resources"] == []
    assert run["error"]["type"] == "RunError"
    message = run["error"]["message"]
    assert "nothing was declared" in message
    assert "tenants[2].kubernetes.cluster: unknown cluster 'riga-serve'" in message
    assert "kubernetes[0].addons: the opencost add-on prices from billing.tariffs; the site has no billing section" in message
    assert "kubernetes[0].pod_cidr: 10.40.0.0/16 overlaps" in message
    assert "Traceback" not in message


def test_sdk_is_not_shadowed_when_infra_is_the_working_directory():
    """Pulumi runs ``main: infra/`` with infra/ first on sys.path (and may start ``python -m pulumi.dynamic``
    there): no folder of infra/ may take the SDK's name, and no sys.path workaround hides one."""
    probe = "import pulumi, pulumi.dynamic, infra.stack.node_configuration; print(pulumi.__file__)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT / "infra")
    assert result.returncode == 0, result.stderr
    # the SDK, wherever it is installed (CI's .venv sits inside the checkout), never a folder of infra/
    assert not Path(result.stdout.strip()).is_relative_to(ROOT / "infra")
    assert "sys.path" not in (ROOT / "infra" / "__main__.py").read_text()


def test_kueue_queues_tie_each_tenant_namespace_to_its_cluster_queue(runs):
    run = runs[("riga-1", "up")]
    site, _, _ = site_and_clusters("riga-1")
    namespaces = {r["inputs"]["metadata"]["name"]: r["inputs"]["metadata"]["labels"] for r in by_type(run, "Namespace")}
    [flavor] = by_type(run, "ResourceFlavor")
    assert flavor["inputs"]["apiVersion"] == "kueue.x-k8s.io/v1beta1"
    queues = {r["inputs"]["metadata"]["name"]: r["inputs"] for r in by_type(run, "ClusterQueue")}
    local = {r["inputs"]["metadata"]["namespace"]: r["inputs"] for r in by_type(run, "LocalQueue")}
    for tenant in (t for t in site.tenants if t.kubernetes):
        ns = tenant.kubernetes.namespace
        queue = queues[tenant.name]
        assert queue["apiVersion"] == "kueue.x-k8s.io/v1beta1" and "namespace" not in queue["metadata"]
        selector = queue["spec"]["namespaceSelector"]["matchLabels"]
        assert selector.items() <= namespaces[ns].items()
        assert not any(selector.items() <= labels.items() for name, labels in namespaces.items() if name != ns)
        group = queue["spec"]["resourceGroups"][0]
        assert group["flavors"][0]["name"] == flavor["inputs"]["metadata"]["name"]
        assert group["coveredResources"] == [r["name"] for r in group["flavors"][0]["resources"]]
        assert local[ns]["spec"] == {"clusterQueue": tenant.name} and local[ns]["metadata"]["name"] == "default"


def test_storage_classes_and_lustre_volumes_follow_the_site(runs):
    run = runs[("riga-1", "up")]
    _, plan, _ = site_and_clusters("riga-1")
    classes = {r["inputs"]["metadata"]["name"]: r["inputs"] for r in by_type(run, "StorageClass")}
    assert set(classes) == {"home", "datasets", "local-nvme"}
    assert classes["home"]["provisioner"] == "nfs.csi.k8s.io"
    assert classes["home"]["parameters"]["server"] == plan.hosts["nfs01"].address("storage") == "10.42.7.1"
    assert classes["home"]["parameters"]["share"] == "/export/home"
    assert classes["local-nvme"]["provisioner"] == "kubernetes.io/no-provisioner"
    assert classes["local-nvme"]["volumeBindingMode"] == "WaitForFirstConsumer"
    volumes = {r["inputs"]["spec"]["claimRef"]["namespace"]: r["inputs"]["spec"] for r in by_type(run, "PersistentVolume")}
    assert volumes["acme-ai"]["csi"] == {"driver": "lustre-csi.hpe.com", "fsType": "lustre", "volumeHandle": "10.42.255.10@tcp:/data/acme-ai"}
    claims = {r["inputs"]["metadata"]["namespace"]: r["inputs"] for r in by_type(run, "PersistentVolumeClaim")}
    assert claims["gov-lv"]["spec"]["volumeName"] == "datasets-gov-lv" and claims["gov-lv"]["metadata"]["name"] == "datasets"


# --- metering: DCGM exporter, kube-state-metrics, Kueue metrics, OpenCost priced from the tariffs ---------------------

HOURS_PER_MONTH = 365 * 24 / 12       # OpenCost's month
BYTES_PER_TB, BYTES_PER_GIB = 10**12, 2**30
WITH_GPU_OPERATOR = [("riga-1", "up"), ("small", "up"), ("metered", "up")]


def releases_of(run: dict, cluster: str) -> dict[str, dict]:
    """The cluster's Helm releases by add-on (the CHARTS key), as declared."""
    by_chart = {c.chart: key for key, c in CHARTS.items()}
    out = {}
    for r in by_type(run, "Release"):
        if r["name"].startswith(f"{cluster}-"):
            chart = r["inputs"]["chart"]
            out[by_chart.get(chart) or by_chart[Path(chart).name.rsplit("-", 1)[0]]] = r
    return out


def allowlist(values: dict) -> dict[str, set[str]]:
    """kube-state-metrics' metricLabelsAllowlist as {resource: labels}: ``pods=[a,b]`` -> {"pods": {"a", "b"}}."""
    out: dict[str, set[str]] = {}
    for entry in values["kube-state-metrics"]["metricLabelsAllowlist"]:
        resource, labels = entry.split("=", 1)
        assert labels.startswith("[") and labels.endswith("]"), entry
        out.setdefault(resource, set()).update(labels[1:-1].split(","))
    return out


@pytest.mark.parametrize("key", WITH_GPU_OPERATOR, ids="-".join)
def test_dcgm_exporter_maps_gpus_to_pods_and_exports_their_energy(runs, key):
    run = runs[key]
    _, _, clusters = site_and_clusters(key[0])
    for name, cluster in clusters.items():
        releases = releases_of(run, name)
        maps = [r for r in by_type(run, "ConfigMap") if r["name"].startswith(f"{name}-")]
        if "gpu-operator" not in cluster.addons:
            assert not maps and "gpu-operator" not in releases
            continue
        operator = releases["gpu-operator"]
        dcgm = operator["inputs"]["values"]["dcgmExporter"]
        assert dcgm["enabled"] is True
        assert {"name": "DCGM_EXPORTER_KUBERNETES", "value": "true"} in dcgm["env"]
        [config] = maps
        assert config["inputs"]["metadata"]["namespace"] == operator["inputs"]["namespace"]
        assert dcgm["config"] == {"name": config["inputs"]["metadata"]["name"]}
        assert operator["urn"] in config["dependencies"]          # its namespace is the release's
        rows = [line.split(",", 2) for line in config["inputs"]["data"]["dcgm-metrics.csv"].splitlines()
                if line and not line.startswith("#")]
        fields = {field.strip(): kind.strip() for field, kind, _ in rows}
        assert fields["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"] == "counter"
        assert fields["DCGM_FI_DEV_GPU_UTIL"] == "gauge"
        # the chart's honorLabels (false): the pod's namespace is exported_namespace, what the usage report reads
        assert dcgm["serviceMonitor"] == {"enabled": "monitoring" in cluster.addons, "honorLabels": False}
        from infra.usage.prometheus import DCGM_NAMESPACE
        assert DCGM_NAMESPACE == "exported_namespace"


@pytest.mark.parametrize("key", [("riga-1", "up"), ("metered", "up")], ids="-".join)
def test_kube_state_metrics_keeps_the_labels_that_attribute_gpu_requests(runs, key):
    """The label tying a namespace to its tenant (the one Kueue's ClusterQueues select on) and Kueue's queue label."""
    run = runs[key]
    _, _, clusters = site_and_clusters(key[0])
    namespaces = {r["inputs"]["metadata"]["name"]: r for r in by_type(run, "Namespace")}
    queues = by_type(run, "ClusterQueue")
    checked = 0
    for name, cluster in clusters.items():
        if "monitoring" not in cluster.addons:
            continue
        kept = allowlist(releases_of(run, name)["monitoring"]["inputs"]["values"])
        assert "kueue.x-k8s.io/queue-name" in kept["pods"] and "kueue.x-k8s.io/queue-name" in kept["jobs"]
        # the node label the usage report reads a GPU's model from, in kube-state-metrics' spelling of it
        from infra.usage.prometheus import GPU_PRODUCT
        assert {GPU_PRODUCT} == {"label_" + re.sub(r"[^a-zA-Z0-9_]", "_", label) for label in kept["nodes"]}
        for queue in (q for q in queues if q["name"].startswith(f"{name}-")):
            selector = queue["inputs"]["spec"]["namespaceSelector"]["matchLabels"]
            assert set(selector) <= kept["namespaces"], selector
            checked += 1
        for ns in (n for n in namespaces.values() if n["name"].startswith(f"{name}-")):
            labels = set(ns["inputs"]["metadata"]["labels"]) - {"app.kubernetes.io/managed-by"}
            assert labels and labels <= kept["namespaces"], labels
    assert checked


def test_kueue_is_scraped_where_the_cluster_has_prometheus(runs):
    from infra.stack.cluster import addon_values
    run = runs[("riga-1", "up")]
    releases = releases_of(run, "riga-infer")
    kueue = releases["kueue"]
    assert kueue["inputs"]["values"] == {"enablePrometheus": True,
                                         "metrics": {"prometheusNamespace": releases["monitoring"]["inputs"]["namespace"]}}
    assert releases["monitoring"]["urn"] in kueue["dependencies"]      # its ServiceMonitor needs the CRD
    _, _, clusters = site_and_clusters("riga-1")
    alone = dataclasses.replace(clusters["riga-infer"], addons=("kueue",))
    assert addon_values(alone)["kueue"] == {"enablePrometheus": False}


def _expected_prices(site, cluster_name: str) -> dict[str, float]:
    """OpenCost's prices from the site file, by hand: GPU and storage tariffs weighted by what the cluster holds."""
    tariffs = site.billing.tariffs
    cluster = next(c for c in site.kubernetes if c.name == cluster_name)
    pools = {p.name: p for p in site.pools}
    gpus: dict[str, int] = {}
    for pool in cluster.workers:
        nt = site.node_types[pools[pool].type]
        gpus[nt.gpu.model] = gpus.get(nt.gpu.model, 0) + nt.gpu.count * len(expand(pools[pool].hosts))
    tb: dict[str, float] = {}
    for t in site.tenants:
        if t.kubernetes and t.kubernetes.cluster == cluster_name:
            for system, amount in t.storage_tb.items():
                tb[system] = tb.get(system, 0) + amount
    tb_month = sum(tariffs.storage_tb_month[s] * a for s, a in tb.items()) / sum(tb.values())
    return {
        "CPU": tariffs.cpu_hour,                                   # per Kubernetes CPU = hardware thread
        "RAM": tariffs.memory_gb_hour,                             # per GiB, as Slurm's G
        "GPU": sum(tariffs.gpu_hour[m] * n for m, n in gpus.items()) / sum(gpus.values()),
        "storage": tb_month * BYTES_PER_GIB / BYTES_PER_TB / HOURS_PER_MONTH,
    }


def test_opencost_prices_are_the_tariffs_converted(runs):
    run = runs[("metered", "up")]
    site, _, clusters = site_and_clusters("metered")
    assert all("opencost" in c.addons for c in clusters.values())
    for name in clusters:
        model = releases_of(run, name)["opencost"]["inputs"]["values"]["opencost"]["customPricing"]
        assert model["enabled"] is True and model["provider"] == "custom"
        prices = model["costModel"]
        assert prices["currencyCode"] == site.billing.currency == "EUR"
        for key, value in _expected_prices(site, name).items():
            assert "e" not in prices[key].lower(), prices[key]
            assert float(prices[key]) == pytest.approx(value, rel=5e-10, abs=0), (name, key)
            if key != "storage":
                assert prices[f"spot{key}"] == prices[key]              # nothing is spot: the same price
        assert {prices[k] for k in ("zoneNetworkEgress", "regionNetworkEgress", "internetNetworkEgress")} == {"0"}
        assert (prices["gpuLabel"], prices["gpuLabelValue"]) == ("nvidia.com/gpu.present", "true")
    tariffs = site.billing.tariffs
    gpu = {name: float(releases_of(run, name)["opencost"]["inputs"]["values"]["opencost"]["customPricing"]["costModel"]["GPU"])
           for name in clusters}
    assert gpu["riga-infer"] == tariffs.gpu_hour["H200"]                    # one model: its tariff exactly
    assert tariffs.gpu_hour["H200"] < gpu["lab"] < tariffs.gpu_hour["B200"]   # two: between them
    warned = [p for p in run_checks(site) if p.severity == "warning" and p.path.startswith("kubernetes[")]
    assert sorted(p.path for p in warned) == ["kubernetes[1].addons", "kubernetes[1].addons"]
    assert any("B200 4, H200 2.5" in p.message for p in warned) and any("datasets 20, home 30" in p.message for p in warned)


def test_opencost_reads_the_clusters_prometheus_and_is_scraped(runs):
    run = runs[("metered", "up")]
    for name in ("riga-infer", "lab"):
        releases = releases_of(run, name)
        opencost, monitoring = releases["opencost"], releases["monitoring"]
        values = opencost["inputs"]["values"]["opencost"]
        assert opencost["inputs"]["namespace"] == CHARTS["opencost"].namespace
        assert values["prometheus"]["internal"] == {
            "enabled": True, "serviceName": f"{monitoring['inputs']['name']}-prometheus",
            "namespaceName": monitoring["inputs"]["namespace"], "port": 9090}
        assert values["prometheus"]["external"] == {"enabled": False}
        assert values["metrics"]["serviceMonitor"]["enabled"] is True
        assert values["exporter"]["defaultClusterId"] == name
        assert monitoring["urn"] in opencost["dependencies"]


def test_no_opencost_without_billing(runs):
    """riga-1 has no billing: no OpenCost release; asked for without billing the site is refused (the 'bad' run);
    with billing but not asked for, a cluster gets none."""
    from infra.stack.cluster import addon_values
    for key in (("riga-1", "up"), ("small", "up")):
        charts = {Path(r["inputs"]["chart"]).name for r in by_type(runs[key], "Release")}
        assert not [c for c in charts if c.startswith("opencost")], charts
        assert "opencost" not in json.dumps([r["inputs"] for r in by_type(runs[key], "Release")]).lower()
    site = validate_data(with_billing(site_data(RIGA)))
    [cluster] = build_plan(site).kubernetes
    assert cluster.pricing is not None and "opencost" not in addon_values(cluster)
    assert runs[("bad", "up")]["resources"] == []


def test_opencost_prices_keep_ten_significant_digits_without_exponent():
    from infra.plan.tariffs import price_text
    for value in (2.5, 0.01, 20 * BYTES_PER_GIB / BYTES_PER_TB / HOURS_PER_MONTH, 1e-9 / 3, 1234.56789012345):
        text = price_text(value)
        assert "e" not in text.lower() and float(text) == pytest.approx(value, rel=5e-10, abs=0), text
