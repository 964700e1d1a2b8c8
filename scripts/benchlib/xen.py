"""Xen 4.17 from Debian's arm64 package, for the boot comparison (bench.sh --with-xen).

Fetched, never installed: `dpkg --add-architecture arm64` (when missing) and
`apt-get update`, then `apt-get download xen-hypervisor-4.17-arm64:arm64` into
.cache/xen/ and `dpkg-deb -x`; the hypervisor is the package's /boot/xen-4.17-arm64, an
arm64 Image QEMU's -kernel starts at EL2. The QEMU command line is run.sh's linux recipe
(`scripts/run.sh linux --print-qemu`) with Xen's differences given as options
(xen_options): Xen's image instead of the hypervisor's, Xen's own command line, and
dom0's console. Dom0 is the same kernel and initramfs as the other boot rows, loaded by
the same two guest-loader devices.
"""
import glob
import os
import shutil
import subprocess
import tempfile

from .common import REPO, BenchError, progress

PACKAGE = "xen-hypervisor-4.17-arm64"
CACHE = os.path.join(REPO, ".cache", "xen")
# Xen's own command line: its console on the DT's PL011; everything else Xen's defaults
# (dom0 gets 512 MiB and one vCPU per physical CPU; Xen scrubs free memory at boot).
XEN_ARGS = "console=dtuart"
# Dom0's whole command line: its console is Xen's (hvc0), not the PL011.
XEN_DOM0_ARGS = "console=hvc0 hyp.check=1 hyp.smp=2"


def xen_options(image):
    """The run.sh options that make its linux recipe a Xen boot, and dom0's command line
    (for --guest-cmdline)."""
    return ["--hypervisor", image, "--append", XEN_ARGS], XEN_DOM0_ARGS


def _as_root(cmd):
    return cmd if os.geteuid() == 0 else ["sudo"] + cmd


def _run(cmd, what, cwd=None):
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise BenchError("--with-xen: %s failed (%s): %s" % (
            what, " ".join(cmd), (result.stderr or result.stdout).strip()[-800:]))
    return result.stdout


def ensure_xen():
    """(path of the Xen image, package version), fetching the package on first use."""
    image = os.path.join(CACHE, "xen-4.17-arm64")
    version_file = os.path.join(CACHE, "version")
    if os.path.isfile(image) and os.path.isfile(version_file):
        return image, open(version_file).read().strip()
    progress("--with-xen: fetching %s:arm64" % PACKAGE)
    foreign = _run(["dpkg", "--print-foreign-architectures"], "listing dpkg architectures").split()
    if "arm64" not in foreign:
        _run(_as_root(["dpkg", "--add-architecture", "arm64"]), "dpkg --add-architecture arm64")
        _run(_as_root(["apt-get", "update", "-qq"]), "apt-get update")
    os.makedirs(CACHE, exist_ok=True)
    for old in glob.glob(os.path.join(CACHE, PACKAGE + "_*.deb")):
        os.remove(old)
    download = ["apt-get", "download", "-qq", PACKAGE + ":arm64"]
    if subprocess.run(download, cwd=CACHE, capture_output=True).returncode != 0:
        _run(_as_root(["apt-get", "update", "-qq"]), "apt-get update")
        _run(download, "apt-get download %s:arm64" % PACKAGE, cwd=CACHE)
    debs = glob.glob(os.path.join(CACHE, PACKAGE + "_*_arm64.deb"))
    if not debs:
        raise BenchError("--with-xen: apt-get download left no %s .deb in %s" % (PACKAGE, CACHE))
    deb = debs[0]
    version = _run(["dpkg-deb", "-f", deb, "Version"], "reading the package version").strip()
    with tempfile.TemporaryDirectory() as tmp:
        _run(["dpkg-deb", "-x", deb, tmp], "dpkg-deb -x")
        found = glob.glob(os.path.join(tmp, "boot", "xen-4.17-arm64"))
        if not found:
            raise BenchError("--with-xen: %s has no /boot/xen-4.17-arm64" % os.path.basename(deb))
        shutil.copy(found[0], image)
    with open(version_file, "w") as f:
        f.write(version + "\n")
    progress("--with-xen: %s %s ready in %s" % (PACKAGE, version, os.path.relpath(CACHE, REPO)))
    return image, version
