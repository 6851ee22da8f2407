# Two "hosts" on this machine for the multi-host tests and benchmarks, sourced
# by tests/e2e_multihost.sh and tests/bench_net.sh: network namespaces $nsA
# and $nsB joined by a veth pair ($vA, $vB) with addresses $ipA and $ipB, and
# $tmp/netns-rsh, an rsh agent for mpirun (plm_rsh_agent) that runs Open MPI's
# remote command in the named host's namespace instead of over ssh; a host whose
# link is down does not answer, as ssh would not.
# Needs root and `ip`; the caller sets $tmp (a scratch directory) first.
#   hosts_up        0, or 1 with the reason in $hosts_error (skip: no namespaces
#                   or veth here); fails the caller's way (fail) on later steps
#   hosts_down      kills what runs in the namespaces, removes them
#   link_rate RATE  token-bucket rate limit (tc tbf) on both ends of the link,
#                   e.g. 1gbit or 10gbit; "none" removes it
id=$$
nsA=gptmhA$id nsB=gptmhB$id
vA=gmh${id}a vB=gmh${id}b          # interface names: at most 15 characters
ipA=10.200.0.1 ipB=10.200.0.2

hosts_down() {
    for ns in "$nsA" "$nsB"; do   # processes left in the namespaces
        pids=$(ip netns pids "$ns" 2>/dev/null) || continue
        [ -n "$pids" ] && kill -9 $pids 2>/dev/null
    done
    ip netns del "$nsA" 2>/dev/null
    ip netns del "$nsB" 2>/dev/null
    ip link del "$vA" 2>/dev/null   # gone with its namespace unless it never moved
    return 0
}

hosts_up() {
    ip netns add "$nsA" 2>"$tmp/nserr" || { hosts_error="ip netns add failed: $(head -1 "$tmp/nserr")"; return 1; }
    ip netns add "$nsB" || fail "second namespace"
    ip link add "$vA" type veth peer name "$vB" 2>"$tmp/nserr" ||
        { hosts_error="no veth pairs: $(head -1 "$tmp/nserr")"; return 1; }
    ip link set "$vA" netns "$nsA" && ip link set "$vB" netns "$nsB" || fail "moving the veth ends"
    ip -n "$nsA" addr add "$ipA/24" dev "$vA" && ip -n "$nsB" addr add "$ipB/24" dev "$vB" || fail "addresses"
    for ns in "$nsA" "$nsB"; do ip -n "$ns" link set lo up || fail "lo up in $ns"; done
    ip -n "$nsA" link set "$vA" up && ip -n "$nsB" link set "$vB" up || fail "veth up"
    # Open MPI runs `AGENT HOST orted ARGS...` (the words of one shell command
    # line, as for ssh); run it in HOST's namespace
    cat > "$tmp/netns-rsh" <<RSH
#!/bin/sh
case \$1 in
$ipA) ns=$nsA ;;
$ipB) ns=$nsB; ip -n $nsB link show $vB | grep -q "state UP" || { echo "netns-rsh: \$1 unreachable" >&2; exit 255; } ;;
*) echo "netns-rsh: unknown host \$1" >&2; exit 255 ;;
esac
shift
exec ip netns exec "\$ns" sh -c "\$*"
RSH
    chmod +x "$tmp/netns-rsh"
}

# The bucket holds 1 ms of traffic (at least 64 KB): what a 1 ms timer tick
# must be able to release to keep the rate.  Both directions are shaped.
link_rate() {
    for end in "$nsA:$vA" "$nsB:$vB"; do
        ns=${end%%:*} dev=${end#*:}
        tc -n "$ns" qdisc del dev "$dev" root 2>/dev/null || :
        [ "$1" = none ] && continue
        mbit=$(echo "$1" | awk '/gbit$/ {print $0 * 1000; next} /mbit$/ {print $0 + 0}')
        [ -n "$mbit" ] || fail "link_rate: rate $1 is not N(g|m)bit"
        burst=$((mbit / 8 > 64 ? mbit / 8 : 64))
        tc -n "$ns" qdisc add dev "$dev" root tbf rate "$1" burst "${burst}kb" latency 50ms ||
            fail "tc tbf $1 on $dev"
    done
}
