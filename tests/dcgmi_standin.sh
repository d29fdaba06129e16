#!/bin/sh
# A stand-in for NVIDIA's dcgmi, for tests: this machine has no GPU and no DCGM. It answers the calls that
# gigafactory-dcgm-energy makes (group -c/-g -a/-d, stats -e/-s/-x/-j/-r) the way DCGM 4's dcgmi prints them
# (DCGM's dcgmi/ProcessStats.cpp stencils and its documented `dcgmi stats --job --verbose` layout: per GPU a block
# headed "GPU ID: N" with a row "Energy Consumed (Joules)"), every GPU of a job having used the joules written in
# $ETC/joules-per-gpu (whatever that file holds is printed as the value: write "Not Supported" to have it refused).
# Each call is appended to $RUN/calls with the node it ran on. It measures nothing.
set -eu
ETC=${DCGMI_STANDIN_ETC:-/etc/dcgmi-standin}
RUN=${DCGMI_STANDIN_RUN:-/run/dcgmi-standin}
node=${SLURMD_NODENAME:-host}
mkdir -p "$RUN/groups" "$RUN/jobs"
printf '%s %s\n' "$node" "$*" >>"$RUN/calls"

row() { printf '| %-35s| %-39s |\n' "$1" "$2"; }
rule() { printf '+------------------------------------+-----------------------------------------+\n'; }
section() { printf '%s\n' "$1"; }

block() {   # block GPU JOULES: one GPU's part of `dcgmi stats -v -j`
    printf '+------------------------------------------------------------------------------+\n'
    printf '| %-77s|\n' "GPU ID: $1"
    printf '+====================================+=========================================+\n'
    section '|-----  Execution Stats  ------------+-----------------------------------------|'
    row "Start Time" "Mon Nov 30 09:44:28 2026"
    row "End Time" "Mon Nov 30 09:44:31 2026"
    row "Total Execution Time (sec)" "3.02"
    row "No. of Processes" "1"
    section '+-----  Performance Stats  ----------+-----------------------------------------+'
    row "Energy Consumed (Joules)" "$2"
    row "Power Usage (Watts)" "Avg: 612.5, Max: 698.2, Min: 95.1"
    row "Max GPU Memory Used (bytes)" "81604378624"
    row "SM Clock (MHz)" "Avg: 1755, Max: 1980, Min: 345"
    row "Memory Clock (MHz)" "Avg: 2619, Max: 2619, Min: 2619"
    row "SM Utilization (%)" "Avg: 97, Max: 100, Min: 0"
    row "Memory Utilization (%)" "Avg: 41, Max: 58, Min: 0"
    row "PCIe Rx Bandwidth (megabytes)" "Avg: N/A, Max: N/A, Min: N/A"
    row "PCIe Tx Bandwidth (megabytes)" "Avg: N/A, Max: N/A, Min: N/A"
    section '+-----  Event Stats  ----------------+-----------------------------------------+'
    row "Single Bit ECC Errors" "0"
    row "Double Bit ECC Errors" "0"
    row "PCIe Replay Warnings" "0"
    row "Critical XID Errors" "0"
    section '+-----  Slowdown Stats  -------------+-----------------------------------------+'
    row "Due to - Power (%)" "0"
    row "       - Thermal (%)" "0"
    row "       - Reliability (%)" "0"
    row "       - Board Limit (%)" "0"
    row "       - Low Utilization (%)" "0"
    row "       - Sync Boost (%)" "0"
    section '+--  Compute Process Utilization  ---+-----------------------------------------+'
    row "PID" "4242"
    row "    Avg SM Utilization (%)" "97"
    row "    Avg Memory Utilization (%)" "41"
    section '+-----  Overall Health  -------------+-----------------------------------------+'
    row "Overall Health" "Healthy"
    rule
    printf '\n'
}

case "$1 ${2:-}" in
    "group -c")
        exec 9>"$RUN/lock"
        flock 9
        id=$(cat "$RUN/next" 2>/dev/null || echo 2)
        echo $((id + 1)) >"$RUN/next"
        : >"$RUN/groups/$id"
        echo "Successfully created group \"$3\" with a group ID of $id"
        ;;
    "group -g")
        [ -f "$RUN/groups/$3" ] || { echo "Error: The Group is not found"; exit 1; }
        printf '%s\n' "$5" >"$RUN/groups/$3"
        echo "Add to group operation successful."
        ;;
    "group -d")
        rm "$RUN/groups/$3"
        echo "Successfully removed group $3"
        ;;
    "stats -g")
        case $4 in
            -e) echo "Successfully started process watches." ;;
            -s)
                cp "$RUN/groups/$3" "$RUN/jobs/$node-$5"
                echo "Successfully started recording stats for $5."
                ;;
        esac
        ;;
    "stats -x")
        [ -f "$RUN/jobs/$node-$3" ] || { echo "Error: Job $3 was not found."; exit 1; }
        echo "Successfully stopped recording stats for $3."
        ;;
    "stats -v")
        [ -f "$RUN/jobs/$node-$4" ] || { echo "Error: Unable to retrieve job statistics. Return: No data is available."; exit 1; }
        joules=$(cat "$ETC/joules-per-gpu")
        printf 'Successfully retrieved statistics for job: %s. \n' "$4"
        for gpu in $(tr ',' ' ' <"$RUN/jobs/$node-$4"); do
            block "$gpu" "$joules"
        done
        ;;
    "stats -r")
        rm "$RUN/jobs/$node-$3"
        echo "Successfully removed job $3."
        ;;
    *)
        echo "dcgmi stand-in: not answered: $*" >&2
        exit 2
        ;;
esac
