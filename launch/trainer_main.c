/* build/trainer: trains a GPT-2 model from a JSON config.
 *   trainer --config FILE.json [--set key=value ...]
 */
#include <errno.h>
#include <omp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm/comm.h"
#include "comm/watchdog.h"
#include "io/signals.h"
#include "kernels/env.h"
#include "trainer/config.h"
#include "trainer/init_from.h"
#include "trainer/train.h"

static bool quiet;   /* a rank other than 0: command-line errors are rank 0's to print */

static void say(FILE *f, const char *fmt, ...)
{
    if (quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: trainer --config FILE.json [--set key=value ...] [--resume auto|PATH]\n"
            "               [--init-from CK.h5]\n"
            "  --config FILE    run configuration (JSON object; keys in docs/config.md)\n"
            "  --set key=value  override one config key (repeatable, applied in order)\n"
            "  --resume auto|PATH  continue from the checkpoint OUT_DIR/latest names (auto:\n"
            "                   else the newest that loads, else a fresh start) or from PATH\n"
            "  --init-from CK.h5  start from that checkpoint's weights (build/import makes one\n"
            "                   from a Hugging Face GPT-2): its dimensions, a fresh optimizer\n"
            "  --help           this text\n"
            "SIGINT/SIGTERM/SIGHUP stop the run after the current step and save (a second\n"
            "one kills it).\n"
            "SIGUSR1 writes a checkpoint after the current step and goes on.\n"
            "Exit status: 0 done; 1 an error; 2 a bad command line, config or environment;\n"
            "3 a peer rank hung (the watchdog); 4 the training diverged (too many steps\n"
            "with a non-finite loss in a row: a restart would diverge again).\n");
}

/* Exit status 4: a supervisor (launch/run.sh) does not restart a run that
 * diverged, since it would resume from the same state and diverge again. */
enum { EXIT_DIVERGED = 4 };

/* The run's requests, made by the signal thread (io/signals); train_run is
 * given a pointer to it. */
static train_requests requests;

/* Stop signals already taken once, one bit per signal number. */
static atomic_uint stops_seen;

/* The first signal of a kind asks for a clean stop; a second one of that
 * kind kills as usual -- except in a Slurm job, where a cancel or requeue
 * signals every process of the job and the launcher (srun, mpirun) forwards
 * the same signal again: there a repeat is the same request, and Slurm's
 * SIGKILL after KillWait is the hard stop.  SIGUSR1 asks for a checkpoint. */
static bool on_signal(int sig)
{
    if (sig == SIGUSR1) {
        requests.checkpoints++;
        return true;
    }
    unsigned bit = 1u << sig;
    if ((atomic_fetch_or(&stops_seen, bit) & bit) && !getenv("SLURM_JOB_ID"))
        return false;
    requests.stop = 1;
    return true;
}

/* The first pass over argv: each option is known and has its value; finds
 * --config's file and --resume's value.  0, or the exit code after saying why. */
static int scan_args(int argc, char **argv, const char **config_path, const char **resume)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(argv[i], "--config") != 0 && strcmp(argv[i], "--set") != 0 &&
            strcmp(argv[i], "--resume") != 0 && strcmp(argv[i], "--init-from") != 0) {
            say(stderr, "trainer: unknown argument \"%s\" (try --help)\n", argv[i]);
            return 2;
        }
        if (i + 1 >= argc) {
            say(stderr, "trainer: %s needs a value\n", argv[i]);
            return 2;
        }
        /* one file and one resume source: a second is a mistake, not a choice */
        const char **once = strcmp(argv[i], "--config") == 0   ? config_path
                            : strcmp(argv[i], "--resume") == 0 ? resume
                                                               : NULL;
        if (once && *once) {
            say(stderr, "trainer: %s given twice\n", argv[i]);
            return 2;
        }
        if (once)
            *once = argv[i + 1];
        i++;
    }
    if (!*config_path) {
        say(stderr, "trainer: --config FILE is required (try --help)\n");
        return 2;
    }
    return 0;
}

/* The config: the file, then --set and --init-from in their order (so they
 * win over the file wherever they stand), then init_from's dimensions (or
 * those of the checkpoint resume will load) and the checks.  0, or -1 with
 * the reason in err. */
static int build_config(int argc, char **argv, const char *config_path, const char *resume,
                        run_config *cfg, char *err, size_t errlen)
{
    int rc = config_load_file(cfg, config_path, err, errlen);
    char init_from[600];
    for (int i = 1; i < argc && rc == 0; i += 2)
        if (strcmp(argv[i], "--set") == 0) {
            rc = config_set(cfg, argv[i + 1], err, errlen);
        } else if (strcmp(argv[i], "--init-from") == 0) {
            snprintf(init_from, sizeof init_from, "init_from=%s", argv[i + 1]);
            rc = config_set(cfg, init_from, err, errlen);
        }
    if (rc == 0 && cfg->init_from[0])
        rc = init_from_dims(cfg, resume, err, errlen);
    if (rc == 0)
        rc = config_finalize(cfg, err, errlen);
    return rc;
}

/* Parses the command line into cfg (and --resume's value into *resume): the
 * config file first, then every --set and --init-from in order, whatever
 * their position.  0 on success, else the exit code. */
static int parse_args(int argc, char **argv, run_config *cfg, const char **resume)
{
    char err[512];
    const char *config_path = NULL;
    config_defaults(cfg);
    int rc = scan_args(argc, argv, &config_path, resume);
    if (rc != 0)
        return rc;
    if (build_config(argc, argv, config_path, *resume, cfg, err, sizeof err) != 0) {
        say(stderr, "trainer: %s\n", err);
        return 2;
    }
    return 0;
}

static void choose_threads(const comm_world *w)
{
    int cpus = comm_cpus_available();
    const char *env = getenv("OMP_NUM_THREADS");
    if (env && *env) {
        if (atoi(env) > cpus && w->rank == 0)
            fprintf(stderr, "warning: OMP_NUM_THREADS=%s but each rank may run on %d CPU(s); "
                    "mpirun binds ranks to cores by default: use --bind-to none\n", env, cpus);
        return;
    }
    /* unbound ranks (--bind-to none) all see every CPU of the node: split them;
     * a rank that mpirun bound sees only its own */
    int share = cpus;
    if (cpus >= sysconf(_SC_NPROCESSORS_ONLN) && w->local_size > 1)
        share = cpus / w->local_size;
    omp_set_num_threads(share > 0 ? share : 1);
}

/* Rank 0's closing line on stderr. */
static void report_done(const train_result *res, const run_config *cfg)
{
    if (res->steps_run == 0) {   /* a resume at max_steps: no loss to report */
        fprintf(stderr, "done: nothing left to train: at step %d of max_steps %d\n", res->steps_done,
                cfg->max_steps);
        return;
    }
    char val[32] = "not evaluated";
    if (res->evaluated)
        snprintf(val, sizeof val, "%.4f", res->final_val_loss);
    fprintf(stderr, "done: %d steps, train loss %.4f, val loss %s, %.1f s training, %.0f tok/s (median)\n",
            res->steps_done, res->final_loss, val, res->train_seconds, res->tokens_per_s);
}

int main(int argc, char **argv)
{
    run_config cfg;
    char err[512];
    /* before MPI is up, only the launcher's environment says which rank this
     * is: mpirun's, or PMIx's (srun --mpi=pmix sets no OMPI_ variable) */
    const char *rank_env = getenv("OMPI_COMM_WORLD_RANK");
    if (!rank_env)
        rank_env = getenv("PMIX_RANK");
    quiet = rank_env && atoi(rank_env) != 0;
    const char *resume = NULL;   /* a fresh start */
    int rc = parse_args(argc, argv, &cfg, &resume);
    if (rc != 0)
        return rc;
    if (train_check_env(err, sizeof err) != 0 ||
        env_thread_counts("OMP_NUM_THREADS", err, sizeof err) != 0) {
        /* every rank says it: the environment may differ by host (GPT_ISA
         * against each host's CPU), unlike the command line */
        char host[256] = "";
        gethostname(host, sizeof host - 1);
        if (rank_env)
            fprintf(stderr, "trainer: rank %s on %s: %s\n", rank_env, host, err);
        else
            fprintf(stderr, "trainer: %s\n", err);
        return 2;
    }
    /* before MPI starts (its threads inherit the block, and it takes a second
     * or more on a busy host: a signal then would end the process by its
     * default action, a checkpoint request killing the run) and before any
     * product runs (io/signals.h says why no handler may run on those threads);
     * SIGHUP: a closed terminal saves rather than kills */
    static const int taken[] = {SIGINT, SIGTERM, SIGHUP, SIGUSR1};
    if (signals_start(taken, 4, on_signal) != 0) {
        fprintf(stderr, "trainer: cannot start the signal thread: %s\n", strerror(errno));
        return 1;
    }
    comm_world world;
    if (comm_init(&argc, &argv, &world, err, sizeof err) != 0) {
        fprintf(stderr, "trainer: %s\n", err);
        return 1;
    }
    choose_threads(&world);
    if (world.size > 1 && watchdog_start(world.rank, cfg.comm_timeout_s, world.hosts) != 0) {
        fprintf(stderr, "trainer: cannot start the watchdog thread\n");
        return 1;
    }
    train_result res;
    if (train_run(&cfg, resume, &world, &requests, &res, err, sizeof err) != 0) {
        fprintf(stderr, "trainer: rank %d: %s\n", world.rank, err);
        comm_finalize();   /* under the watchdog */
        watchdog_stop();
        return res.diverged ? EXIT_DIVERGED : res.bad_config ? 2 : 1;
    }
    comm_finalize();
    watchdog_stop();
    if (world.rank != 0)
        return 0;
    report_done(&res, &cfg);
    return 0;
}
