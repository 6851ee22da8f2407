# "Hosts" on this machine for the multi-host tests and benchmarks, sourced by
# tests/e2e_multihost.sh and tests/bench_net.sh: network namespaces $nsA, $nsB
# (and $nsC with hosts_up 3), each with one link ($vA, $vB, $vC) to a switch (a
# bridge in namespace $nsS) and an address ($ipA, $ipB, $ipC), and
# $tmp/netns-rsh, an rsh agent for mpirun (plm_rsh_agent) that runs Open MPI's
# remote command in the named host's namespace instead of over ssh; a host whose
# link is down does not answer, as ssh would not.
# Needs root and `ip`; the caller sets $tmp (a scratch directory) first.
#   hosts_up [N]    N hosts (2, the default, or 3): 0, or 1 with the reason in
#                   $hosts_error (skip: no namespaces, veth or bridge here);
#                   fails the caller's way (fail) on later steps
#   hosts_down      kills what runs in the namespaces, removes them
#   link_rate RATE  token-bucket rate limit (tc tbf) on every host's link, both
#                   ways (as a NIC of that rate on each host), e.g. 1gbit or
#                   10gbit; "none" removes it
id=$$
nsS=gptmhS$id
nsA=gptmhA$id nsB=gptmhB$id nsC=gptmhC$id
vA=gmh${id}a vB=gmh${id}b vC=gmh${id}c   # interface names: at most 15 characters
ipA=10.200.0.1 ipB=10.200.0.2 ipC=10.200.0.3
host_names="A B"

# the value of variable $1$2, e.g. `var ns B` is $nsB
var() { eval "echo \$$1$2"; }

hosts_down() {
    for ns in "$nsA" "$nsB" "$nsC" "$nsS"; do   # processes left in the namespaces
        pids=$(ip netns pids "$ns" 2>/dev/null) || continue
        [ -n "$pids" ] && kill -9 $pids 2>/dev/null
    done
    for ns in "$nsA" "$nsB" "$nsC" "$nsS"; do ip netns del "$ns" 2>/dev/null; done
    return 0
}

# host X joined to the switch: its end $vX, the switch's end ${vX}s on the bridge
host_up() {
    ns=$(var ns "$1") dev=$(var v "$1")
    ip netns add "$ns" || fail "namespace of host $1"
    ip link add "$dev" type veth peer name "${dev}s" 2>"$tmp/nserr" ||
        { hosts_error="no veth pairs: $(head -1 "$tmp/nserr")"; return 1; }
    ip link set "$dev" netns "$ns" && ip link set "${dev}s" netns "$nsS" || fail "moving the veth ends"
    ip -n "$nsS" link set "${dev}s" master br0 && ip -n "$nsS" link set "${dev}s" up ||
        fail "switch port of host $1"
    ip -n "$ns" addr add "$(var ip "$1")/24" dev "$dev" && ip -n "$ns" link set lo up &&
        ip -n "$ns" link set "$dev" up || fail "address of host $1"
}

hosts_up() {
    case ${1:-2} in 2) host_names="A B" ;; 3) host_names="A B C" ;; *) fail "hosts_up: 2 or 3 hosts" ;; esac
    ip netns add "$nsS" 2>"$tmp/nserr" || { hosts_error="ip netns add failed: $(head -1 "$tmp/nserr")"; return 1; }
    ip -n "$nsS" link add br0 type bridge 2>"$tmp/nserr" ||
        { hosts_error="no bridge devices: $(head -1 "$tmp/nserr")"; return 1; }
    ip -n "$nsS" link set br0 up || fail "bridge up"
    for h in $host_names; do host_up "$h" || return 1; done
    # Open MPI runs `AGENT HOST orted ARGS...` (the words of one shell command
    # line, as for ssh); run it in HOST's namespace if its link is up
    {
        echo '#!/bin/sh'
        echo 'case $1 in'
        for h in $host_names; do echo "$(var ip "$h")) ns=$(var ns "$h") dev=$(var v "$h") ;;"; done
        echo '*) echo "netns-rsh: unknown host $1" >&2; exit 255 ;;'
        echo 'esac'
        echo 'ip -n $ns link show $dev | grep -q "state UP" || { echo "netns-rsh: $1 unreachable" >&2; exit 255; }'
        echo 'shift'
        echo 'exec ip netns exec "$ns" sh -c "$*"'
    } > "$tmp/netns-rsh"
    chmod +x "$tmp/netns-rsh"
}

# The bucket holds 1 ms of traffic (at least 64 KB): what a 1 ms timer tick
# must be able to release to keep the rate.  Each host's sending (its end) and
# receiving (the switch's end toward it) are shaped.
link_rate() {
    for h in $host_names; do
        for end in "$(var ns "$h"):$(var v "$h")" "$nsS:$(var v "$h")s"; do
            ns=${end%%:*} dev=${end#*:}
            tc -n "$ns" qdisc del dev "$dev" root 2>/dev/null || :
            [ "$1" = none ] && continue
            mbit=$(echo "$1" | awk '/gbit$/ {print $0 * 1000; next} /mbit$/ {print $0 + 0}')
            [ -n "$mbit" ] || fail "link_rate: rate $1 is not N(g|m)bit"
            burst=$((mbit / 8 > 64 ? mbit / 8 : 64))
            tc -n "$ns" qdisc add dev "$dev" root tbf rate "$1" burst "${burst}kb" latency 50ms ||
                fail "tc tbf $1 on $dev"
        done
    done
}
