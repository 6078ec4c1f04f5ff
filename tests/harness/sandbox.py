"""The sandbox inventory moved aside: extra vars that put its namespaces, directories, supervisord
and Walrus port where a test or bench wants them, so it never meets the README's demo or another test."""

import os

from harness.libvirtd import CACHE


def sandbox_vars(work, supervisor, cloud, outside, walrus_port):
    """Extra vars for inventories/sandbox: namespaces ``cloud`` and ``outside``, state under ``work``,
    daemons under ``supervisor`` (a harness Supervisor), Walrus on 127.0.0.1:``walrus_port``."""
    work = str(work)
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
