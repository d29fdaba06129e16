"""The cuda role with the distribution source, for real: Debian 13's CUDA toolkit installed into a Debian 13 chroot.

Ansible runs on this machine against riga-1's gpu0001 (connection local); every module runs under the chroot's own
Python (the interpreter is ``chroot <root> python3``), so APT, dpkg and the profile script act on the chroot, which is
an overlay of a cached minimal Debian 13 in a private mount namespace: nothing on this machine changes. Then a login
shell in the chroot must find the role's nvcc, compile a kernel for the site's GPUs (H200: sm_90) and run the program
against the real CUDA runtime, which, with no driver here, must say so.

There is no GPU here: the program cannot run a kernel. Both facts are asserted, not skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import textwrap

import pytest

from conftest import RIGA, site_data

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("debootstrap") or not shutil.which("unshare"),
                       reason="needs root, debootstrap and unshare"),
]

PLAY = """
- name: The cuda role on a GPU node (a chroot here)
  hosts: gpu0001
  connection: local
  gather_facts: false
  roles:
    - cuda
"""

PROGRAM = textwrap.dedent("""\
    #include <cstdio>
    #include <cuda_runtime.h>

    __global__ void add(const float *a, const float *b, float *c, int n) {
        int i = blockIdx.x * blockDim.x + threadIdx.x;
        if (i < n) c[i] = a[i] + b[i];
    }

    int main() {
        int count = 0;
        cudaError_t err = cudaGetDeviceCount(&count);
        std::printf("runtime %d: %s (%d devices)\\n", CUDART_VERSION, cudaGetErrorString(err), count);
        return err == cudaSuccess ? 0 : 3;
    }
    """)


def test_distribution_toolkit_installs_and_compiles_for_the_sites_gpus(tmp_path):
    from chroots import RoleRun
    site = site_data(RIGA)
    site["software"]["cuda"] = {"versions": ["12.4"], "source": "distribution"}
    run = RoleRun(tmp_path, site, PLAY)
    program = tmp_path / "add.cu"
    program.write_text(PROGRAM)
    try:
        run.run(run.converge("converge1") + run.converge("converge2")
                + f'cp {program} "$R/root/add.cu"\n'
                + run.chroot("shell", 'bash -lc \'echo "CUDA_HOME=$CUDA_HOME"; command -v nvcc; nvcc --version\'')
                + run.chroot("build", "bash -lc 'cd /root && nvcc -arch=sm_90 -o add add.cu && cuobjdump --list-elf add'; echo rc=$?")
                + run.chroot("program", "/root/add; echo rc=$?")
                + run.chroot("dpkg", "dpkg-query -W -f '${Package} ${Version}\\n' nvidia-cuda-toolkit"), timeout=1800)
        log = run.log()
    finally:
        run.clean()                     # several GB once the toolkit is in

    assert run.changed("converge1", "gpu0001") > 0
    assert run.changed("converge2", "gpu0001") == 0             # idempotent
    assert log["dpkg"].startswith("nvidia-cuda-toolkit 12.4."), log["dpkg"]
    shell = log["shell"]
    assert "CUDA_HOME=/usr/lib/nvidia-cuda-toolkit" in shell, shell
    assert "release 12.4" in shell, shell                       # nvcc --version from the login shell

    assert log["build"].rstrip().endswith("rc=0"), log["build"][-4000:]
    assert re.search(r"ELF file\s+1: add\.\d+\.sm_90\.cubin", log["build"]), log["build"]

    # The real runtime, with no driver and no GPU here: it must load, report version 12.4 and refuse.
    program_out = log["program"]
    assert program_out.startswith("runtime 12040: "), program_out
    assert "(0 devices)" in program_out and program_out.rstrip().endswith("rc=3"), program_out
