"""``gigafactory image build|list|show`` (hooked in by ``infra.cli``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

EXIT_FAILED, EXIT_INVALID = 1, 2


def cmd_build(args: argparse.Namespace) -> int:
    from ..image.arch import ARCHITECTURES
    from ..image.base import ImageBuildError
    from ..image.boot import ipxe_script
    from ..image.build import ImageBuildFailed, site_images
    from ..image.cache import ImageInputError
    from ..image.mirror import MirrorNotFound
    from ..plan import site_and_plan
    from ..runner.phase_files import PhaseInputError
    from ..vm.mirror_cache import MirrorCacheError
    from ..vm.mirrors import image_build_mirrors
    try:
        if args.boot_url is not None:
            ipxe_script(args.boot_url, "-", "-")            # refuses a URL that is not plain http(s)
        site, plan = site_and_plan(args.site)
        built = site_images(site, plan, Path(args.site).resolve(), args.node_type, **image_build_mirrors(site))
    except (ImageInputError, PhaseInputError, ValueError) as err:
        print(f"gigafactory image build: {err}", file=sys.stderr)
        return EXIT_INVALID
    except (ImageBuildFailed, ImageBuildError, MirrorNotFound, MirrorCacheError) as err:
        print(f"gigafactory image build: failed: {err}", file=sys.stderr)
        return EXIT_FAILED
    for image in built:
        if args.boot_url is not None:
            script = image.path / "netboot" / "boot.ipxe"
            fresh = script.with_suffix(f".ipxe.{os.getpid()}")
            fresh.write_text(ipxe_script(args.boot_url, image.node_type, image.key, console=ARCHITECTURES[image.arch].console))
            fresh.rename(script)
            print(f"{image.node_type}: {script} boots from {args.boot_url}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from ..image.cache import images_root, list_images
    images = list_images()
    if not images:
        print(f"no images in {images_root()}")
        return 0
    print(f"{'KEY':16}  {'NODE TYPE':16}  {'SITE':12}  {'SIZE':>9}  {'AGE':>7}  PACKAGES")
    for i in images:
        print(f"{i['key']:16}  {i['node_type']:16}  {i['site']:12}  {human(i['bytes']):>9}  {age(i['built']):>7}  {i['packages']}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from ..image.cache import ImageInputError, find_image
    try:
        image = find_image(args.key)
    except ImageInputError as err:
        print(f"gigafactory image show: {err}", file=sys.stderr)
        return EXIT_INVALID
    if args.json:
        json.dump(image, sys.stdout, indent=1)
        print()
        return 0
    t = image["type"]
    print(f"image {image['key']}: node type {image['node_type']} of site {image['site']} ({image['site_file']})")
    print(f"  path      {image['path']}")
    print(f"  size      {human(image['bytes'])}; built {image['built']} ({age(image['built'])} ago) "
          f"in {image['build_seconds']:.0f} s")
    print(f"  os        Debian {image['os']['release']} ({image['os']['suite']}), kernel {image['kernel']}")
    print(f"  hosts     {len(t['hosts'])} in pool(s) {', '.join(t['pools'])}")
    print(f"  groups    {', '.join(t['groups'])}")
    print(f"  phases    {', '.join(t['phases'])} (install part)")
    m = image["manifest"]
    print(f"  packages  {m['packages']}: " + ", ".join(f"{n} from {r}" for r, n in m["by_repository"].items()))
    for name in ("disk.raw", "disk.qcow2", "vmlinuz", "initrd.img", "netboot/vmlinuz", "netboot/initrd.img",
                 "netboot/root.squashfs", "netboot/boot.ipxe", "manifest.json"):
        path = Path(image["path"]) / name
        if path.exists():
            print(f"  {name:22} {human(path.stat().st_blocks * 512)}")
    return 0


def age(built: str) -> str:
    seconds = (datetime.now(UTC) - datetime.fromisoformat(built)).total_seconds()
    for unit, span in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= span:
            return f"{seconds / span:.0f} {unit}"
    return f"{seconds:.0f} s"


def human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def add_commands(sub) -> None:
    p = sub.add_parser("image", help="node images: each node type's software installed once (build, list, show)")
    isub = p.add_subparsers(dest="image_command", required=True, metavar="ACTION")
    b = isub.add_parser("build", help="build (or find in the cache) the image of each node type of a site")
    b.add_argument("site", help="path to inventories/<site>/site.yml")
    b.add_argument("--node-type", action="append", metavar="TYPE",
                   help="only this node type (repeatable; default: every node type with hosts)")
    b.add_argument("--boot-url", metavar="URL",
                   help="http(s) URL the network-boot bundle is served from, written into its iPXE script")
    b.set_defaults(func=cmd_build)
    ls = isub.add_parser("list", help="the images in the cache: key, node type, site, size, age")
    ls.set_defaults(func=cmd_list)
    s = isub.add_parser("show", help="one image: what it is for, its files and its packages' sources")
    s.add_argument("key", help="the image's key (a unique prefix will do)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_show)
