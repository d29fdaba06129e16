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
import subprocess
import textwrap

import pytest
import yaml

from conftest import ROOT, RIGA, bin_path, site_data

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

# Every step writes its own log beside the others (after chroots.OVERLAY has mounted the chroot at $R).
BODY = textwrap.dedent("""\
    for run in 1 2; do
      "$ANSIBLE_PLAYBOOK" -i {site} -e ansible_python_interpreter={python} -e ansible_remote_tmp={tmp} {play} \\
          > {logs}/converge$run.log 2>&1
      echo $? > {logs}/converge$run.rc
    done
    cp {program} "$R/root/add.cu"
    chroot "$R" /bin/bash -lc 'echo "CUDA_HOME=$CUDA_HOME"; command -v nvcc; nvcc --version' > {logs}/shell.log 2>&1
    chroot "$R" /bin/bash -lc 'cd /root && nvcc -arch=sm_90 -o add add.cu && cuobjdump --list-elf add' > {logs}/build.log 2>&1
    echo $? > {logs}/build.rc
    chroot "$R" /root/add > {logs}/program.log 2>&1
    echo $? > {logs}/program.rc
    chroot "$R" dpkg-query -W -f '${{Package}} ${{Version}}\\n' nvidia-cuda-toolkit > {logs}/dpkg.log 2>&1
    """)


def test_distribution_toolkit_installs_and_compiles_for_the_sites_gpus(tmp_path):
    from chroots import cached_chroot, chroot_python, overlay_script
    base = cached_chroot("cuda", "trixie", ["python3", "python3-apt"], components=("main", "contrib", "non-free"))

    site = site_data(RIGA)
    site["software"]["cuda"] = {"versions": ["12.4"], "source": "distribution"}
    site_file = tmp_path / "site.yml"
    site_file.write_text(yaml.safe_dump(site))
    play = tmp_path / "play.yml"
    play.write_text(PLAY)
    program = tmp_path / "add.cu"
    program.write_text(PROGRAM)
    layers = tmp_path / "layers"        # several GB once the toolkit is in: removed below whatever happens
    logs = tmp_path / "logs"
    logs.mkdir()
    remote_tmp = tmp_path / "ansible-tmp"
    remote_tmp.mkdir()
    python = chroot_python(tmp_path / "python3-in-chroot", layers)
    script = overlay_script(base, layers, remote_tmp, BODY.format(tmp=remote_tmp, site=site_file, python=python, play=play,
                                                                  logs=logs, program=program))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(ROOT / "playbooks" / "roles"),
               ANSIBLE_PLAYBOOK=bin_path("ansible-playbook"))
    try:
        result = subprocess.run(["unshare", "--mount", "--fork", "bash", "-c", script], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=1800)
        log = {p.name: p.read_text() for p in logs.iterdir()}
    finally:
        shutil.rmtree(layers, ignore_errors=True)
    assert result.returncode == 0, result.stderr

    first, second = log["converge1.log"], log["converge2.log"]
    assert log["converge1.rc"].strip() == "0", first[-4000:]
    assert re.search(r"gpu0001\s*:\s*ok=\d+\s+changed=[1-9]", first), first[-2000:]
    assert log["converge2.rc"].strip() == "0", second[-4000:]
    assert re.search(r"gpu0001\s*:\s*ok=\d+\s+changed=0\s", second), second[-2000:]   # idempotent

    assert log["dpkg.log"].startswith("nvidia-cuda-toolkit 12.4."), log["dpkg.log"]
    shell = log["shell.log"]
    assert "CUDA_HOME=/usr/lib/nvidia-cuda-toolkit" in shell, shell
    assert "release 12.4" in shell, shell                                 # nvcc --version from the login shell

    assert log["build.rc"].strip() == "0", log["build.log"][-4000:]
    assert re.search(r"ELF file\s+1: add\.\d+\.sm_90\.cubin", log["build.log"]), log["build.log"]

    # The real runtime, with no driver and no GPU here: it must load, report version 12.4 and refuse.
    program_out = log["program.log"]
    assert log["program.rc"].strip() == "3", program_out
    assert program_out.startswith("runtime 12040: "), program_out
    assert "(0 devices)" in program_out, program_out
