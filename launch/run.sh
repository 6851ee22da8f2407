#!/bin/sh
# launch/run.sh -- start build/trainer under mpirun for the common cases (issue 9).
#
#   launch/run.sh [-n RANKS] [--hostfile FILE | --hosts h1,h2,...] [--ranks-per-node K]
#                 [--threads T] [--tcp] [--iface LIST] [-o] [--kill-grace S] [--keepalive S]
#                 [--dry-run] [MPIRUN_OPTS...]
#                 -- [PROGRAM] TRAINER_ARGS...
#
# It prints the exact mpirun command on stderr, then execs it.  Anything before
# `--` that is not one of the options above goes to mpirun unchanged.  After
# `--`, arguments starting with "-" go to build/trainer (of this checkout); a
# first argument that does not start with "-" is taken as the program to run.
#
#   -n RANKS            total ranks (default: what the hosts/hostfile/ranks-per-node give,
#                       or 1 with neither hosts nor hostfile)
#   --hostfile FILE     Open MPI hostfile (see launch/hostfile.example)
#   --hosts LIST        comma-separated hosts; with --ranks-per-node K each gets K slots
#   --ranks-per-node K  K ranks on every node (--map-by ppr:K:node)
#   --threads T         OpenMP threads per rank (exported as OMP_NUM_THREADS to every
#                       rank).  T = 1 keeps Open MPI's binding (one core per rank);
#                       T > 1 or no --threads uses --bind-to none, because Open MPI
#                       binds each rank to a single core when np <= 2 and all its
#                       threads would share it.  (The alternative, --map-by slot:PE=T,
#                       needs T free cores per rank on every node; pass it yourself.)
#   --tcp               TCP only between ranks (--mca btl tcp,self), also within a node
#   --iface LIST        network interfaces/CIDRs for MPI and Open MPI's own traffic
#                       (btl_tcp_if_include and oob_tcp_if_include)
#   -o                  allow more ranks than slots (--oversubscribe)
#   --kill-grace S      when the job is stopped or aborted, the ranks get SIGTERM and S
#                       seconds before SIGKILL (--mca odls_base_sigkill_timeout S,
#                       default 15, Open MPI's own default is 1).  The trainer stops
#                       after the current step and saves a checkpoint on SIGTERM, which
#                       1 s is not enough for (open-mpi/ompi#12149).  The price: mpirun
#                       4.1 sleeps the whole grace, twice, on every stop or abort (a lost
#                       rank included), even when the ranks are gone at once, so the job
#                       ends about 2 x S after the failure; lower it when a fast exit
#                       matters more than a checkpoint at the stop.
#   --keepalive S       TCP keepalive on Open MPI's control connections: a node that
#                       disappears (cable, power) is noticed after about 3 x S seconds
#                       instead of hours (default 5; 0 keeps Open MPI's 300 s + 9 x 20 s).
#                       Keep 3 x S below the trainer's comm_timeout_s.
#   --dry-run           print the command, do not run it
#
# Always added: --allow-run-as-root when run as root; the kill grace and keepalive
# above; -x for the variables every rank needs if they are set
# (OMP_NUM_THREADS, GPT_CONTROL_TOKEN, GPT_ISA, GPT_PEAK_GFLOPS, ASAN_OPTIONS,
# LSAN_OPTIONS).  The trainer and data paths must be the same on every host
# (a shared or identical directory tree).

usage() {
    sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2
    exit "${1:-2}"
}
die() { echo "run.sh: $*" >&2; exit 2; }

# Quote one word for sh (for printing and eval).
q() {
    case $1 in
    '' | *[!A-Za-z0-9_./:=,@%+-]*) printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")" ;;
    *) printf '%s' "$1" ;;
    esac
}

here=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$here/$BUILD ;; esac

ranks="" hostfile="" hosts="" rpn="" threads="" tcp=0 iface="" over=0 dry=0 extra=""
grace=15 keepalive=5
need() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value"; }
posint() { case $2 in '' | *[!0-9]* | 0*) die "$1 must be a positive integer, got '$2'" ;; esac; }
while [ $# -gt 0 ]; do
    case $1 in
    -n | -np) need "$@"; posint "$1" "$2"; ranks=$2; shift 2 ;;
    --hostfile) need "$@"; [ -r "$2" ] || die "hostfile $2 not readable"; hostfile=$2; shift 2 ;;
    --hosts) need "$@"; hosts=$2; shift 2 ;;
    --ranks-per-node) need "$@"; posint "$1" "$2"; rpn=$2; shift 2 ;;
    --threads) need "$@"; posint "$1" "$2"; threads=$2; shift 2 ;;
    --tcp) tcp=1; shift ;;
    --iface) need "$@"; iface=$2; shift 2 ;;
    -o | --oversubscribe) over=1; shift ;;
    --kill-grace) need "$@"; posint "$1" "$2"; grace=$2; shift 2 ;;
    --keepalive) need "$@"; case $2 in 0) ;; *) posint "$1" "$2" ;; esac; keepalive=$2; shift 2 ;;
    --dry-run) dry=1; shift ;;
    -h | --help) usage 0 ;;
    --) shift; break ;;
    *) extra="$extra $(q "$1")"; shift ;;
    esac
done
[ -n "$hostfile" ] && [ -n "$hosts" ] && die "give --hostfile or --hosts, not both"
command -v mpirun >/dev/null 2>&1 || die "mpirun not found (make deps installs openmpi-bin)"

cmd=mpirun
[ "$(id -u)" -eq 0 ] && cmd="$cmd --allow-run-as-root"
if [ -n "$hostfile" ]; then
    cmd="$cmd --hostfile $(q "$hostfile")"
elif [ -n "$hosts" ]; then
    if [ -n "$rpn" ]; then   # every host needs K slots for ppr:K:node
        hosts=$(printf '%s' "$hosts" | sed "s/\([^,:]\{1,\}\)\(:[0-9]*\)\{0,1\}/\1:$rpn/g")
    fi
    cmd="$cmd --host $(q "$hosts")"
fi
[ -n "$ranks" ] && cmd="$cmd -np $ranks"
[ -z "$ranks" ] && [ -z "$hostfile" ] && [ -z "$hosts" ] && [ -z "$rpn" ] && cmd="$cmd -np 1"
[ -n "$rpn" ] && cmd="$cmd --map-by ppr:$rpn:node"
if [ "$threads" = 1 ]; then
    : # Open MPI's default binding: one core per rank
else
    cmd="$cmd --bind-to none"
fi
[ "$over" -eq 1 ] && cmd="$cmd --oversubscribe"
[ "$tcp" -eq 1 ] && cmd="$cmd --mca btl tcp,self"
[ -n "$iface" ] && cmd="$cmd --mca btl_tcp_if_include $(q "$iface") --mca oob_tcp_if_include $(q "$iface")"
cmd="$cmd --mca odls_base_sigkill_timeout $grace"
[ "$keepalive" -gt 0 ] && cmd="$cmd --mca oob_tcp_keepalive_time $keepalive \
--mca oob_tcp_keepalive_intvl $keepalive --mca oob_tcp_keepalive_probes 2"
if [ -n "$threads" ]; then
    cmd="$cmd -x OMP_NUM_THREADS=$threads"
elif [ -n "${OMP_NUM_THREADS:-}" ]; then
    cmd="$cmd -x OMP_NUM_THREADS"
fi
for v in GPT_CONTROL_TOKEN GPT_ISA GPT_PEAK_GFLOPS ASAN_OPTIONS LSAN_OPTIONS; do
    eval "set_=\${$v+x}"
    [ -n "$set_" ] && cmd="$cmd -x $v"
done
cmd="$cmd$extra"

case ${1:-} in
'' | -*)
    [ -x "$BUILD/trainer" ] || die "$BUILD/trainer not built (run make)"
    cmd="$cmd $(q "$BUILD/trainer")" ;;
esac
for a in "$@"; do cmd="$cmd $(q "$a")"; done

# the token is passed by name (-x), never printed; print the command as run
echo "+ $cmd" >&2
[ "$dry" -eq 1 ] && exit 0
eval "exec $cmd"
