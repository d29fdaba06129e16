#!/bin/bash
# The scenarios of tests/test_nvlink_slurm_real.py, run once inside its cluster's namespaces: R is the chroot, OUT the
# folder each scenario records into (job ids, node lists, states). Every wait is bounded; the first failure stops.
set -euo pipefail
R=$1 OUT=$2
S() { timeout 30 chroot "$R" "$@"; }

wait_for() {    # wait_for SECONDS COMMAND...: until COMMAND succeeds
    local end=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt "$end" ] || { echo "gave up waiting for: $*" >&2; S squeue >&2; S sinfo -N >&2; exit 1; }
        sleep 0.5
    done
}
running() { [ "$(S squeue --noheader -j "$1" -o %T)" = RUNNING ]; }
gone() { [ -z "$(S squeue --noheader -j "$1" -o %T 2>/dev/null)" ]; }
all_idle() { [ -z "$(S squeue --noheader)" ] && [ "$(S sinfo --noheader -N -o %t | sort -u)" = idle ]; }
submit() {      # submit NAME ARGS...: a job that sleeps until cancelled; its id in OUT/NAME.id
    local id
    id=$(S sbatch --parsable -A lab -J "$1" -o /dev/null "${@:2}" --wrap 'sleep 300')
    echo "$id" >"$OUT/$1.id"
    echo "$id"
}
start() {       # start NAME ARGS...: submitted and running; its nodes in OUT/NAME.nodes
    local id
    id=$(submit "$@")
    wait_for 60 running "$id"
    S squeue --noheader -j "$id" -o %N >"$OUT/$1.nodes"
}
cancel() {      # cancel NAME...: cancelled, and gone (their epilogs done)
    local name
    for name in "$@"; do S scancel "$(cat "$OUT/$name.id")"; done
    for name in "$@"; do wait_for 60 gone "$(cat "$OUT/$name.id")"; done
}
lists() {       # every node's IMEX node list, one line per node: "node addresses..."
    local dir
    for dir in "$R"/var/lib/imex-standin/node*; do
        printf '%s %s\n' "${dir##*/}" "$(tr '\n' ' ' <"$dir/nodes_config.cfg" 2>/dev/null || true)" | sed 's/ *$//'
    done
}

# --segment: a 16-node segment inside one block; 32 nodes of 16-node segments, one in each
start segment16 -N 16 --segment=16
cancel segment16
start segment32 -N 32 --segment=16
cancel segment32
wait_for 60 all_idle

# --exclusive=topo: a 2-node job takes its whole block; a 16-node job goes to the other block
start exclusive -N 2 --exclusive=topo
S sinfo --noheader -N -o '%N %t' >"$OUT/exclusive.states"
start beside -N 16
cancel exclusive beside
wait_for 60 all_idle

# a tray of b1 drained, b2 held by a job: a 16-node segment still starts in b1
start holder -w 'node[19-36]'
echo node05 >"$OUT/drained.node"
S scontrol update nodename=node05 state=drain reason=test
start drained -N 16 --segment=16
cancel drained
S scontrol update nodename=node05 state=resume

# two 8-node jobs at once in b1 (b2 still held): each node's list while they run, and after
start first -N 8
start second -N 8
S squeue --noheader -o '%i %T %N' >"$OUT/both.squeue"
lists >"$OUT/lists.during"
cancel first second holder
wait_for 60 all_idle
lists >"$OUT/lists.after"

# a prolog that fails (the stand-in refuses to start the daemon on node36): the node drains
touch "$R/var/lib/imex-standin/node36/fail"
failing=$(submit failing -w node36)
wait_for 60 sh -c "chroot '$R' scontrol show node node36 | grep -q 'Reason=Prolog error'"
S scontrol show node node36 >"$OUT/failing.node_state"
S scancel "$failing"
touch "$OUT/done"
