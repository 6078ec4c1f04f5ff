"""The sandbox inventory moved aside: extra vars that put its namespaces, directories, supervisord
and Walrus port where a test or bench wants them, so it never meets the README's demo or another test."""

import os

from harness.libvirtd import CACHE
from harness.runner import REPO_ROOT


# cloud-init's guest needs more memory than the busybox one; cores are the scheduler's bookkeeping here
VM_TYPES = {"m1.small": {"cores": 1, "memory_mb": 128, "disk_gb": 2},
            "t1.cloud": {"cores": 1, "memory_mb": 512, "disk_gb": 3}}


def sandbox_cloud_settings():
    """The sandbox inventory's euca_cloud (group_vars), for a test to extend (e.g. with VM_TYPES)."""
    import yaml

    path = REPO_ROOT / "inventories" / "sandbox" / "group_vars"
    for name in sorted(os.listdir(path)):
        data = yaml.safe_load((path / name).read_text()) if name.endswith(".yml") else None
        if data and "euca_cloud" in data:
            return data["euca_cloud"]
    raise AssertionError("no euca_cloud in the sandbox's group_vars")


def api_port(walrus_port):
    """The EC2 API's loopback port of a sandbox whose Walrus has ``walrus_port`` (1000 below it)."""
    return walrus_port - 1000


def sandbox_vars(work, supervisor, cloud, outside, walrus_port):
    """Extra vars for inventories/sandbox: namespaces ``cloud`` and ``outside``, state under ``work``,
    daemons under ``supervisor`` (a harness Supervisor), Walrus on 127.0.0.1:``walrus_port``, the EC2
    API on 127.0.0.1:``api_port(walrus_port)``, its dispatcher running playbooks with these same vars."""
    base = _cloud_vars(str(work), supervisor, cloud, outside, walrus_port)
    port = api_port(walrus_port)
    return dict(base, clc_api_listen="127.0.0.1:%d" % port,
                clc_api_endpoint="http://127.0.0.1:%d/services/Eucalyptus/" % port,
                clc_api_lib_dir=os.path.join(str(work), "api-lib"), clc_api_config=os.path.join(str(work), "api.json"),
                clc_api_private_data_dir=os.path.join(str(work), "api-runner"), clc_api_dispatcher_extra_vars=base,
                clc_api_walrus_url=base["euca_walrus_url"])


def _cloud_vars(work, supervisor, cloud, outside, walrus_port):
    CACHE.mkdir(parents=True, exist_ok=True)
    return dict(
        supervisor.role_vars,
        euca_namespace=cloud, euca_outside_namespace=outside,
        euca_ledger=os.path.join(work, "clc", "ledger.sqlite"), euca_dhcp_state_dir=os.path.join(work, "dhcp"),
        euca_dhcp_user="root",  # a test's temporary directory is not searchable by dnsmasq's own user
        euca_metadata_snapshot=os.path.join(work, "metadata", "snapshot.json"),
        walrus_store_dir=os.path.join(work, "walrus"), walrus_state_dir=os.path.join(work, "walrus-nginx"),
        walrus_listen="127.0.0.1:%d" % walrus_port, euca_walrus_url="http://127.0.0.1:%d" % walrus_port,
        sc_volumes_dir=os.path.join(work, "volumes"), sc_tgt_socket=os.path.join(work, "tgt", "socket"),
        nc_libvirtd_state_dir=os.path.join(work, "libvirtd"), nc_libvirt_cache_dir=str(CACHE),
        nc_instances_dir=os.path.join(work, "instances"), nc_image_cache_dir=os.path.join(work, "image-cache"),
    )
