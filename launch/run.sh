#!/bin/sh
# launch/run.sh -- start build/trainer under mpirun for the common cases.
#
#   launch/run.sh [-n RANKS] [--hostfile FILE | --hosts h1,h2,...] [--ranks-per-node K]
#                 [--threads T] [--tcp] [--iface LIST] [-o] [--kill-grace S] [--keepalive S]
#                 [--max-restarts N] [--dry-run] [MPIRUN_OPTS...]
#                 -- [PROGRAM] TRAINER_ARGS...
#
# It prints the exact mpirun command on stderr, then runs it as a child in a
# session of its own (setsid) and stays its parent: SIGTERM, SIGINT or SIGHUP
# to run.sh reach mpirun as one SIGTERM (the trainer saves after its current
# step and exits), SIGUSR1 as SIGUSR1 (it saves and goes on).  run.sh exits with
# the job's code, or 0 after such a stop when the trainer logged a new "done"
# record (mpirun reports a job it signalled as failed even when every rank
# saved and exited 0).
#
# Anything before `--` that is not one of the options above goes to mpirun
# unchanged.  After `--`, arguments starting with "-" go to build/trainer (of
# this checkout); a first argument that does not start with "-" is taken as
# the program to run.
#
#   -n RANKS            total ranks (default: what the hosts/hostfile/ranks-per-node give,
#                       or 1 with neither hosts nor hostfile)
#   --hostfile FILE     Open MPI hostfile (see launch/hostfile.example)
#   --hosts LIST        comma-separated hosts, each HOST or HOST:SLOTS; with
#                       --ranks-per-node K those without a count get K slots
#   --ranks-per-node K  K ranks on every node (--map-by ppr:K:node); a HOST:SLOTS in
#                       --hosts with SLOTS other than K is refused (K is what each
#                       host gets: give the count in one place), and so is a --map-by
#                       of yours, which would replace ppr:K:node
#   --threads T         OpenMP threads per rank (exported as OMP_NUM_THREADS to every
#                       rank).  Default, on this machine alone (no hosts, no hostfile)
#                       with OMP_NUM_THREADS unset: its CPUs divided among the ranks,
#                       so the ranks' threads never outnumber its cores (each rank
#                       would otherwise start one per CPU, and OpenMP's threads spin
#                       at every barrier waiting for one that lost its core); with
#                       more ranks than CPUs none is set and --bind-to none is added
#                       (each rank then runs one thread: the trainer divides the
#                       node's CPUs among its ranks itself, at least 1 each).
#                       T = 1 keeps Open MPI's binding (one core per rank);
#                       T > 1 or no --threads uses --bind-to none, because Open MPI
#                       binds each rank to a single core when np <= 2 and all its
#                       threads would share it.  (The alternative, --map-by slot:PE=T,
#                       needs T free cores per rank on every node; pass it yourself.)
#                       A --bind-to of yours, or a --map-by with PE=N (which binds each
#                       rank to N cores), replaces run.sh's --bind-to none.
#   --tcp               TCP only between ranks (--mca btl tcp,self), also within a node
#   --iface LIST        network interfaces/CIDRs for MPI and Open MPI's own traffic
#                       (btl_tcp_if_include and oob_tcp_if_include)
#   -o                  allow more ranks than slots (--oversubscribe)
#   --kill-grace S      when the job is stopped or aborted, the ranks get SIGTERM and S
#                       seconds before SIGKILL (--mca odls_base_sigkill_timeout S,
#                       default 15, Open MPI's own default is 1).  The trainer stops
#                       after the current step and saves a checkpoint on SIGTERM, which
#                       1 s is not enough for (docs/operations.md).  The price: mpirun
#                       4.1 sleeps the whole grace, twice, on every stop or abort (a lost
#                       rank included), even when the ranks are gone at once, so the job
#                       ends about 2 x S after the failure; lower it when a fast exit
#                       matters more than a checkpoint at the stop.
#   --keepalive S       TCP keepalive on Open MPI's control connections: a node that
#                       disappears (cable, power) is noticed after about 3 x S seconds
#                       instead of 8 minutes (default 5; 0 keeps Open MPI's 300 s + 9 x 20 s).
#                       Keep 3 x S below the trainer's comm_timeout_s.
#   --max-restarts N    supervise the job: when it exits non-zero (a rank died, a host
#                       vanished), start it again with --resume auto (a --resume PATH
#                       of yours stays until the job has saved), at most N times,
#                       leaving out hosts that no longer answer (checked with the rsh
#                       agent mpirun uses: ssh, or --mca plm_rsh_agent CMD); -n shrinks
#                       in proportion.  Each restart is an "event" record in OUT_DIR's
#                       log.jsonl, and the trainer gets GPT_RESTARTS=K (its event
#                       "restart K: started again at step S" and gpt_restarts_total say
#                       so).  Never restarted: exit code 2 (a bad config, command line
#                       or environment), 4 (the training diverged: resumed, it would
#                       again), a failure with no new step and no host lost since the
#                       last start, or a job stopped by SIGTERM/SIGINT/SIGHUP to run.sh.
#   --dry-run           print the command as the first start would run it, and exit
#
# Always added: --allow-run-as-root when run as root; the kill grace and keepalive
# above; -x GPT_RESTARTS (0, then the restart count); -x for the variables every
# rank needs if they are set (OMP_NUM_THREADS, GPT_CONTROL_TOKEN, GPT_LOADER_TOKEN,
# GPT_ISA, GPT_PEAK_GFLOPS, GPT_PEAK_BF16_GFLOPS, GPT_BF16_EMULATE,
# GPT_PRECISION_CACHE, ASAN_OPTIONS, LSAN_OPTIONS; by name, so a token never
# shows in the printed command).  The trainer and data paths must be the same
# on every host (a shared or identical directory tree).

# --help: on stdout, as every program of build/ prints it
usage() {
    sed -n '2,/^$/s/^# \{0,1\}//p' "$0"
    exit 0
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

ranks="" hostfile="" hosts="" rpn="" threads="" tcp=0 iface="" over=0 dry=0 extra="" maxr=0 ubind=0
umap=""
grace=15 keepalive=5
# An option where the value belongs is the user's next option, not a value:
# taken as one, `--hosts --dry-run` would run the job for real.  (A negative
# number is left to posint, which says what it must be.)
need() {
    [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value"
    case $2 in -*[!0-9]*) die "$1 needs a value, not the option $2" ;; esac
}
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
    --max-restarts) need "$@"; case $2 in 0) ;; *) posint "$1" "$2" ;; esac; maxr=$2; shift 2 ;;
    --dry-run) dry=1; shift ;;
    # mpirun options passed on, noted when they bind the ranks: run.sh's own
    # --bind-to none must then stay out (mpirun takes the last binding given,
    # --bind-to none undoes a PE=N mapping's, and the printed command would
    # show two)
    --bind-to | -bind-to) need "$@"; ubind=1; extra="$extra $(q "$1") $(q "$2")"; shift 2 ;;
    --map-by | -map-by)
        need "$@"; umap=$2
        case $2 in *:[Pp][Ee]=*) ubind=1 ;; esac
        extra="$extra $(q "$1") $(q "$2")"; shift 2 ;;
    -h | --help) usage ;;
    --) shift; break ;;
    *) extra="$extra $(q "$1")"; shift ;;
    esac
done
[ -n "$hostfile" ] && [ -n "$hosts" ] && die "give --hostfile or --hosts, not both"
# mpirun takes the last --map-by: the user's would silently replace the
# ppr:K:node that --ranks-per-node is
[ -n "$rpn" ] && [ -n "$umap" ] && die "--ranks-per-node $rpn is --map-by ppr:$rpn:node, which" \
    "--map-by $umap would replace: give one (with --map-by, a host's slots go in --hosts HOST:N or the hostfile)"
# ppr:K:node puts K ranks on every host whatever its count says, and the count
# would be rewritten to K: another count of the user's is a contradiction
if [ -n "$hosts" ] && [ -n "$rpn" ]; then
    for h in $(printf '%s' "$hosts" | tr ',' ' '); do
        case $h in
        *:*) [ "${h#*:}" = "$rpn" ] ||
            die "--hosts gives $h, but --ranks-per-node $rpn puts $rpn ranks on every host: give the count once" ;;
        esac
    done
fi
# (not inside a multi-node Slurm or PBS allocation, where mpirun spreads the
# ranks over nodes this one's CPU count says nothing about)
if [ -z "$threads" ] && [ -z "${OMP_NUM_THREADS:-}" ] && [ -z "$hostfile$hosts" ] &&
    [ "${SLURM_JOB_NUM_NODES:-1}" -le 1 ] && [ -z "${PBS_NODEFILE:-}" ]; then
    cpus=$(nproc 2>/dev/null || echo 1)
    per=${ranks:-${rpn:-1}}
    [ "$per" -le "$cpus" ] && threads=$((cpus / per))
fi
command -v mpirun >/dev/null 2>&1 || die "mpirun not found (make deps installs openmpi-bin)"

# the program (build/trainer unless the first word after -- names one) and its arguments
prog=""
case ${1:-} in
'' | -*)
    [ -x "$BUILD/trainer" ] || die "$BUILD/trainer not built (run make)"
    prog=" $(q "$BUILD/trainer")" ;;
esac
targs="" resumed="" skip_next=0 from_path=0
for a in "$@"; do
    targs="$targs $(q "$a")"
    # the restarts' arguments: any --resume replaced by --resume auto
    if [ "$skip_next" -eq 1 ]; then
        skip_next=0
        [ "$a" = auto ] || from_path=1
        continue
    fi
    case $a in --resume) skip_next=1; continue ;; esac
    resumed="$resumed $(q "$a")"
done
resumed="$resumed --resume auto"

# Builds the mpirun line in $cmd for the current hosts/hostfile/ranks and trainer args $1.
build_cmd() {
    cmd=mpirun
    [ "$(id -u)" -eq 0 ] && cmd="$cmd --allow-run-as-root"
    if [ -n "$hostfile" ]; then
        cmd="$cmd --hostfile $(q "$hostfile")"
    elif [ -n "$hosts" ]; then
        if [ -n "$rpn" ]; then   # every host needs K slots for ppr:K:node (those without a count)
            hosts=$(printf '%s' "$hosts" | sed "s/\([^,:]\{1,\}\)\(:[0-9]*\)\{0,1\}/\1:$rpn/g")
        fi
        cmd="$cmd --host $(q "$hosts")"
    fi
    [ -n "$ranks" ] && cmd="$cmd -np $ranks"
    [ -z "$ranks" ] && [ -z "$hostfile" ] && [ -z "$hosts" ] && [ -z "$rpn" ] && cmd="$cmd -np 1"
    [ -n "$rpn" ] && cmd="$cmd --map-by ppr:$rpn:node"
    if [ "$threads" = 1 ]; then
        : # Open MPI's default binding: one core per rank
    elif [ "$ubind" -eq 1 ]; then
        : # the user's binding, among the options passed on
    else
        cmd="$cmd --bind-to none"
    fi
    [ "$over" -eq 1 ] && cmd="$cmd --oversubscribe"
    [ "$tcp" -eq 1 ] && cmd="$cmd --mca btl tcp,self"
    [ -n "$iface" ] && cmd="$cmd --mca btl_tcp_if_include $(q "$iface") --mca oob_tcp_if_include $(q "$iface")"
    cmd="$cmd --mca odls_base_sigkill_timeout $grace"
    [ "$keepalive" -gt 0 ] && cmd="$cmd --mca oob_tcp_keepalive_time $keepalive"\
" --mca oob_tcp_keepalive_intvl $keepalive --mca oob_tcp_keepalive_probes 2"
    if [ -n "$threads" ]; then
        cmd="$cmd -x OMP_NUM_THREADS=$threads"
    elif [ -n "${OMP_NUM_THREADS:-}" ]; then
        cmd="$cmd -x OMP_NUM_THREADS"
    fi
    for v in GPT_CONTROL_TOKEN GPT_LOADER_TOKEN GPT_RESTARTS GPT_ISA GPT_PEAK_GFLOPS \
        GPT_PEAK_BF16_GFLOPS GPT_BF16_EMULATE GPT_PRECISION_CACHE ASAN_OPTIONS LSAN_OPTIONS; do
        eval "set_=\${$v+x}"
        [ -n "$set_" ] && cmd="$cmd -x $v"
    done
    cmd="$cmd$extra$prog$1"
}

# ---- the job, supervised: restarted on failure up to --max-restarts times ----

# out_dir, for the restart records: the last --set out_dir=, else the config file's
out_dir() {
    od="" cfg="" prev=""
    for a in "$@"; do
        case $prev in
        --set) case $a in out_dir=*) od=${a#out_dir=} ;; esac ;;
        --config) cfg=$a ;;
        esac
        prev=$a
    done
    [ -z "$od" ] && [ -r "$cfg" ] &&
        od=$(tr '\n' ' ' < "$cfg" | sed -n 's/.*"out_dir"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')
    printf '%s' "${od:-runs/default}"
}
log=$(out_dir "$@")/log.jsonl
# records of a kind in the log (0 while there is none)
count_in_log() { n=$(grep -c "$1" "$log" 2>/dev/null); echo "${n:-0}"; }
steps_logged() { count_in_log '"type":"step"'; }
saves_logged() { count_in_log '"type":"checkpoint"'; }
# the trainer's closing records: one more than before a stop means it saved and finished
runs_done() { count_in_log '"message":"done"'; }

# the rsh agent mpirun uses (--mca plm_rsh_agent CMD, which may hold spaces,
# or OMPI_MCA_plm_rsh_agent; of Open MPI's "A : B" list the first), else ssh
# that never prompts
agent=$(eval "printf '%s\n' $extra" | awk 'prev == "plm_rsh_agent" { a = $0 } { prev = $0 } END { print a }')
agent=${agent:-${OMPI_MCA_plm_rsh_agent:-}}
agent=${agent%% :*}
agent=${agent:-ssh -o BatchMode=yes -o ConnectTimeout=5}
host_answers() {
    case $1 in localhost | 127.* | "$(hostname)" | "$(hostname -f 2>/dev/null)") return 0 ;; esac
    timeout 15 $agent "$1" true </dev/null >/dev/null 2>&1
}
# Drops hosts that do not answer from $hosts or $hostfile (a filtered copy);
# sets alive and total (in slots; 0 0 without hosts).
prune_hosts() {
    alive=0 total=0
    if [ -n "$hosts" ]; then
        kept=""
        for h in $(printf '%s' "$hosts" | tr ',' ' '); do
            n=${h#*:}; [ "$n" = "$h" ] && n=1
            total=$((total + n))
            if host_answers "${h%%:*}"; then kept="$kept${kept:+,}$h"; alive=$((alive + n)); fi
        done
        hosts=$kept
    elif [ -n "$hostfile" ]; then
        new="$sv_tmp/hostfile.$attempt"
        : > "$new"
        while read -r h rest; do
            case $h in '' | '#'*) continue ;; esac
            n=$(printf '%s' "$rest" | sed -n 's/^\(.*[[:space:]]\)\{0,1\}slots=\([0-9]*\).*/\2/p'); n=${n:-1}
            total=$((total + n))
            if host_answers "$h"; then echo "$h $rest" >> "$new"; alive=$((alive + n)); fi
        done < "$hostfile"
        hostfile=$new
    fi
}
# One "event" record in log.jsonl (the trainer is not running: no interleaving).
log_event() {
    [ -d "$(dirname "$log")" ] || return 0
    step=$(grep -o '"step":[0-9]*' "$log" 2>/dev/null | tail -1 | cut -d: -f2)
    msg=$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')
    printf '{"type":"event","step":%s,"message":"%s","restarts":%s,"time":%s}\n' \
        "${step:-0}" "$msg" "$2" "$(date +%s.%N)" >> "$log"
}

attempt=0 args=$targs saves_before=$(saves_logged) rc=""
# the job's attempt (0 the first); set before the dry run, so that it prints
# the command as run
GPT_RESTARTS=$attempt; export GPT_RESTARTS
# the token is passed by name (-x), never printed; print the command as run
[ "$dry" -eq 1 ] && { build_cmd "$args"; echo "+ $cmd" >&2; exit 0; }
# mpirun runs in a session of its own: a terminal's Ctrl-C reaches run.sh
# alone, which forwards one SIGTERM.  Open MPI takes a second signal (the
# terminal's SIGINT and then ours) as "kill now", and no rank would save.
session=$(command -v setsid >/dev/null && echo "setsid " || :)
sv_tmp=$(mktemp -d)
child="" stopping=0
trap 'stopping=1; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null' TERM INT HUP
# (a checkpoint request with no job running has nothing to save: said, not kept,
# since a job just starting would die of a SIGUSR1 before it handles one)
trap 'if [ -n "$child" ]; then kill -USR1 "$child" 2>/dev/null; else
      echo "run.sh: no job is running: the checkpoint request (SIGUSR1) is dropped" >&2; fi' USR1
trap 'rm -rf "$sv_tmp"' EXIT
while :; do
    build_cmd "$args"
    echo "+ $cmd" >&2
    before=$(steps_logged) done_before=$(runs_done)
    # a stop that came while no job ran (before the first, between two) found
    # none to pass it to: the job is not started (the next command forks it)
    if [ "$stopping" -eq 1 ]; then
        echo "run.sh: stopped by a signal before the job started" >&2; exit "${rc:-143}"
    fi
    eval "exec $session$cmd" &
    child=$!
    while :; do   # a trapped signal interrupts wait: wait again until the job is gone
        wait "$child"; rc=$?
        kill -0 "$child" 2>/dev/null || break
    done
    child=""
    [ "$rc" -eq 0 ] && exit 0
    if [ "$stopping" -eq 1 ]; then
        # mpirun reports a job it signalled as failed even when every rank saved and exited 0
        if [ "$(runs_done)" != "$done_before" ]; then
            echo "run.sh: stopped by a signal: the trainer saved and finished" >&2; exit 0
        fi
        echo "run.sh: stopped by a signal (job exit code $rc): not restarting" >&2; exit "$rc"
    fi
    [ "$maxr" -eq 0 ] && exit "$rc"   # not supervised: nothing to say about restarts
    if [ "$rc" -eq 2 ]; then
        echo "run.sh: exit code 2 (bad configuration, arguments or environment): not restarting" >&2; exit 2
    fi
    if [ "$rc" -eq 4 ]; then
        echo "run.sh: exit code 4 (the training diverged; resumed, it would again): not restarting" >&2; exit 4
    fi
    if [ "$attempt" -ge "$maxr" ]; then
        echo "run.sh: job failed (exit code $rc) after $attempt restarts: giving up" >&2; exit "$rc"
    fi
    prune_hosts
    if [ "$total" -gt 0 ] && [ "$alive" -eq 0 ]; then
        echo "run.sh: job failed (exit code $rc) and no host answers: giving up" >&2; exit "$rc"
    fi
    if [ "$(steps_logged)" = "$before" ] && [ "$alive" -eq "$total" ]; then
        echo "run.sh: job failed (exit code $rc) without a new step and with every host" \
             "answering: not restarting (the same start would fail again)" >&2; exit "$rc"
    fi
    if [ -n "$ranks" ] && [ "$alive" -lt "$total" ]; then
        ranks=$((ranks * alive / total))
        [ "$ranks" -lt 1 ] && ranks=1
    fi
    attempt=$((attempt + 1))
    GPT_RESTARTS=$attempt
    lost=""
    [ "$alive" -lt "$total" ] && lost=", $((total - alive)) of $total slots lost to hosts that do not answer"
    why="restart $attempt of $maxr: the job exited with code $rc$lost; resuming from the last checkpoint"
    echo "run.sh: $why" >&2
    log_event "$why" "$attempt"
    # a job started with --resume PATH resumes from PATH again until it has
    # saved: out_dir holds none of its checkpoints before, and auto would
    # start afresh (or from an older run's) instead
    [ "$from_path" -eq 0 ] || [ "$(saves_logged)" != "$saves_before" ] && args=$resumed
    sleep 1
done
