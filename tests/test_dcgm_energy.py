"""The DCGM job-energy Prolog/Epilog (slurm_compute's files/gigafactory-dcgm-energy), without GPU or DCGM.

dcgmi is a stand-in here (tests/dcgmi_standin.sh): it prints DCGM's documented ``dcgmi stats -v -j`` layout for
a known energy, and the tests alter that text to what a real dcgmi may print instead (a GPU without an energy
reading, an error, the summary without ``-v``). What a real DCGM on a real GPU prints was not run here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "playbooks/roles/slurm_compute/files/gigafactory-dcgm-energy"
STANDIN = Path(__file__).resolve().parent / "dcgmi_standin.sh"


def standin_stats(tmp_path: Path, job: str, gpus: str, joules: str) -> str:
    """What the stand-in prints for ``dcgmi stats -v -j JOB`` after a prolog's calls for ``gpus``."""
    etc, run = tmp_path / "standin-etc", tmp_path / "standin-run"
    etc.mkdir(exist_ok=True)
    (etc / "joules-per-gpu").write_text(f"{joules}\n")
    env = dict(os.environ, DCGMI_STANDIN_ETC=str(etc), DCGMI_STANDIN_RUN=str(run))

    def dcgmi(*args: str) -> str:
        return subprocess.run(["sh", str(STANDIN), *args], env=env, capture_output=True, text=True, check=True).stdout
    group = dcgmi("group", "-c", f"slurm-job-{job}").split()[-1]
    dcgmi("group", "-g", group, "-a", gpus)
    dcgmi("stats", "-g", group, "-s", job)
    return dcgmi("stats", "-v", "-j", job)


def parse(text: str, job: str = "7") -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(SCRIPT), "parse", job], input=text, capture_output=True, text=True)


def test_the_energy_of_every_gpu_of_the_job_is_summed(tmp_path):
    out = standin_stats(tmp_path, "7", "0,1,3", "30000")
    assert out.count("| Energy Consumed (Joules)           | 30000 ") == 3
    result = parse(out)
    assert (result.returncode, result.stdout) == (0, "3 90000\n"), result.stderr


def _drop_second_energy_row(text: str) -> str:
    lines = text.splitlines(keepends=True)
    rows = [i for i, line in enumerate(lines) if line.startswith("| Energy Consumed")]
    del lines[rows[1]]
    return "".join(lines)


def _first_block_twice(text: str) -> str:
    sep = "+------------------------------------------------------------------------------+\n| GPU ID"
    head, first, rest = text.split(sep, 2)
    return head + sep + first + sep + first + sep + rest


# (what a dcgmi might print instead, how the text is altered, what the refusal says)
MALFORMED = {
    "a GPU without an energy reading": (lambda t: t.replace("| 30000 ", "| Not Supported", 1), 'energy "Not Supported"'),
    "a GPU without its energy row": (_drop_second_energy_row, "GPU 1 has no energy row"),
    "DCGM's blank value printed raw": (lambda t: t.replace("| 30000       ", "| 9223372036854775792", 1), "not a whole number"),
    "a negative energy": (lambda t: t.replace("| 30000 ", "| -30000", 1), "not a whole number"),
    "a fractional energy": (lambda t: t.replace("| 30000 ", "| 300.5 ", 1), "not a whole number"),
    "another job's statistics": (lambda t: t.replace("for job: 7.", "for job: 77."), "statistics of another job"),
    "an error instead of statistics": (lambda t: "Error: Unable to retrieve job statistics. Return: No data is available.\n",
                                       "Error: Unable to retrieve"),
    "nothing at all": (lambda t: "", "no line saying the statistics"),
    "no GPU block": (lambda t: t.split("+---")[0], "no GPU in the statistics"),
    "the summary of dcgmi stats without -v": (lambda t: t.replace("GPU ID: 0", "Summary  ", 1), "outside a GPU block"),
    "a GPU listed twice": (_first_block_twice, "GPU 0 twice"),
    "a GPU ID that is no number": (lambda t: t.replace("GPU ID: 0", "GPU ID: x", 1), 'GPU ID "x" is not a number'),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_dcgmi_output_is_refused_naming_what_is_wrong(tmp_path, case):
    alter, says = MALFORMED[case]
    good = standin_stats(tmp_path, "7", "0,1,3", "30000")
    text = alter(good)
    assert text != good
    result = parse(text)
    assert result.returncode == 1 and result.stdout == "", result.stdout
    assert says in result.stderr, result.stderr


def test_parse_takes_only_a_job_id():
    result = parse("", job="7;id")
    assert result.returncode == 1 and "is not a job id" in result.stderr


# ---- the prolog and epilog as slurmd runs them, in a private mount namespace (root): the stand-in dcgmi and a
# sacct/sacctmgr pair keeping one job's AdminComment in a file are bound over /usr/local/bin (first on the script's
# PATH); /run and /var/log are private tmpfs, so the script's state and its log stay in the namespace.

FAKE_SACCT = """#!/bin/sh
cat "$FAKE/comment" 2>/dev/null || true
"""
FAKE_SACCTMGR = """#!/bin/sh
printf '%s\\n' "$*" >> "$FAKE/sacctmgr-calls"
for a in "$@"; do case $a in AdminComment=*) printf '%s\\n' "${a#AdminComment=}" > "$FAKE/comment";; esac; done
echo " Modified jobs..."
"""


def run_job(tmp_path: Path, env: dict[str, str], joules: str = "30000", comment: str | None = None) -> dict[str, str]:
    """Prolog, then epilog, of one job as slurmd runs them (a clean environment, the script's own PATH)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare (a private mount namespace)")
    bin_dir, fake, etc = tmp_path / "bin", tmp_path / "fake", tmp_path / "standin-etc"
    for d in (bin_dir, fake, etc):
        d.mkdir(exist_ok=True)
    for name, text in (("dcgmi", STANDIN.read_text()), ("sacct", FAKE_SACCT), ("sacctmgr", FAKE_SACCTMGR)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (etc / "joules-per-gpu").write_text(f"{joules}\n")
    if comment is not None:
        (fake / "comment").write_text(comment + "\n")
    for part in ("prolog.d", "epilog.d"):
        (tmp_path / part).mkdir(exist_ok=True)
        shutil.copy(SCRIPT, tmp_path / part / "50-gigafactory-dcgm-energy")
    exported = " ".join(f"{k}={v!r}" for k, v in env.items())
    body = textwrap.dedent(f"""\
        set -eu
        mount --make-rprivate /
        mount -t tmpfs tmpfs /run
        mount -t tmpfs tmpfs /var/log
        mkdir /var/log/slurm
        mount --bind {bin_dir} /usr/local/bin
        for part in prolog epilog; do
            env -i DCGMI_STANDIN_ETC={etc} FAKE={fake} {exported} {tmp_path}/$part.d/50-gigafactory-dcgm-energy \\
                > {tmp_path}/$part.out 2>&1 && echo 0 > {tmp_path}/$part.rc || echo $? > {tmp_path}/$part.rc
        done
        cat /var/log/slurm/gigafactory-dcgm-energy.log > {tmp_path}/log 2>/dev/null || : > {tmp_path}/log
        ls -A /run/dcgmi-standin/groups /run/dcgmi-standin/jobs > {tmp_path}/dcgm-left 2>&1 || true
        cat /run/dcgmi-standin/calls > {tmp_path}/calls 2>/dev/null || : > {tmp_path}/calls
        find /run/gigafactory-dcgm-energy -type f > {tmp_path}/state-left 2>/dev/null || : > {tmp_path}/state-left
        """)
    subprocess.run(["unshare", "--mount", "--fork", "sh", "-c", body], check=True, timeout=120)
    out = {name: (tmp_path / name).read_text() for name in
           ("prolog.rc", "epilog.rc", "prolog.out", "epilog.out", "log", "calls", "dcgm-left", "state-left")}
    out["comment"] = (fake / "comment").read_text() if (fake / "comment").exists() else ""
    return out


JOB = {"SLURM_JOB_ID": "7", "SLURMD_NODENAME": "node01", "SLURM_JOB_GPUS": "0,1", "SLURM_JOB_NUM_NODES": "1"}


@pytest.mark.root
def test_the_epilog_adds_its_word_to_the_admin_comment_keeping_the_others(tmp_path):
    out = run_job(tmp_path, JOB, comment="JS1:short dcgm-energy:node01:gpus=1:joules=5 dcgm-energy:node02:gpus=2:joules=9")
    assert out["prolog.rc"] == out["epilog.rc"] == "0\n", out
    # this node's older word replaced, the other node's and the other tool's kept
    assert out["comment"] == "dcgm-energy:node01:gpus=2:joules=60000 JS1:short dcgm-energy:node02:gpus=2:joules=9\n", out
    calls = [line.split(" ", 1)[1] for line in out["calls"].splitlines()]
    assert calls[:4] == ["group -c slurm-job-7", "group -g 2 -a 0,1", "stats -g 2 -e", "stats -g 2 -s 7"], calls
    assert calls[4:6] == ["stats -x 7", "stats -v -j 7"] and set(calls[6:]) == {"stats -r 7", "group -d 2"}, calls
    assert out["dcgm-left"].split() == ["/run/dcgmi-standin/groups:", "/run/dcgmi-standin/jobs:"], out["dcgm-left"]
    assert out["state-left"] == "", out["state-left"]
    assert "job 7: 2 GPUs used 60000 J, stored in its AdminComment" in out["log"], out["log"]


@pytest.mark.root
def test_a_refused_dcgm_reading_is_logged_stores_nothing_and_never_fails_the_node(tmp_path):
    out = run_job(tmp_path, JOB, joules="Not Supported", comment="JS1:short")
    assert out["prolog.rc"] == out["epilog.rc"] == "0\n" and out["epilog.out"] == "", out
    assert out["comment"] == "JS1:short\n", out
    assert 'epilog of job 7 failed, GPU energy not recorded: dcgmi stats -v -j 7: GPU 0: energy "Not Supported"' in out["log"], out["log"]
    # the DCGM group and recording are removed all the same
    assert out["dcgm-left"].split() == ["/run/dcgmi-standin/groups:", "/run/dcgmi-standin/jobs:"], out["dcgm-left"]
    assert out["state-left"] == "", out["state-left"]


@pytest.mark.root
def test_job_data_is_never_run_and_a_bad_job_id_only_logs(tmp_path):
    marker = tmp_path / "ran"
    out = run_job(tmp_path, {**JOB, "SLURM_JOB_ID": f"7;touch {marker}", "SLURM_JOB_GPUS": f"0$(touch {marker})"})
    assert out["prolog.rc"] == out["epilog.rc"] == "0\n", out
    assert not marker.exists() and out["calls"] == "" and out["comment"] == "", out
    assert f"prolog of job 7;touch {marker} failed, GPU energy not recorded: SLURM_JOB_ID '7;touch {marker}' is not a job id" in out["log"]


@pytest.mark.root
def test_a_job_without_gpus_on_the_node_leaves_dcgm_alone(tmp_path):
    out = run_job(tmp_path, {k: v for k, v in JOB.items() if k != "SLURM_JOB_GPUS"})
    assert out["prolog.rc"] == out["epilog.rc"] == "0\n", out
    assert out["calls"] == "" and out["log"] == "" and out["comment"] == "", out
