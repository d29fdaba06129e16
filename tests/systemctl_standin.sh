#!/bin/sh
# A stand-in for systemctl in role tests (no systemd here): one unit's enablement in $SYSTEMCTL_STANDIN/<unit>
# (enabled, disabled or masked; enabled when absent, as a package's maintainer script leaves a new service), every
# call appended to $SYSTEMCTL_STANDIN/calls. Answers what Ansible's systemd_service module asks: show, is-enabled,
# enable, disable, mask, unmask (start, stop and restart only recorded).
set -eu
dir=${SYSTEMCTL_STANDIN:?}
printf '%s\n' "$*" >>"$dir/calls"
action=${1:-}
unit=$(printf '%s\n' "${2:-}" | tr -d "'")
state=enabled
[ ! -f "$dir/$unit" ] || state=$(cat "$dir/$unit")
case $action in
    show)
        [ "$state" = masked ] && echo LoadState=masked || echo LoadState=loaded
        echo ActiveState=inactive
        ;;
    is-enabled)
        echo "$state"
        [ "$state" = enabled ]
        ;;
    enable | disable) [ "$state" = masked ] || echo "${action}d" >"$dir/$unit" ;;
    mask) echo masked >"$dir/$unit" ;;
    unmask) echo disabled >"$dir/$unit" ;;
    daemon-reload | start | stop | restart) ;;
    *) echo "systemctl stand-in: $action is not answered" >&2; exit 1 ;;
esac
