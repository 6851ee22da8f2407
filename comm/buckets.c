#include "comm/buckets.h"

#include "comm/local_exchange.h"
#include "comm/watchdog.h"
#include "kernels/clock.h"
#include "kernels/convert.h"

#include <mpi.h>
#include <omp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* Buckets whose reduce-scatter is in flight at once: backward completes
 * about one bucket per layer, so two keep the exchange going while costing
 * two buckets of memory.  Ready buckets beyond them wait for a slot (the
 * progress thread starts them), never the training thread. */
enum { SLOTS = 2 };

/* Pairs exchange at most one message each way per bucket and phase, posted
 * in bucket order on both sides, so one tag per phase matches them all. */
enum { TAG_SCATTER = 0, TAG_GATHER = 1, TAG_PARAMS = 2 };

/* Each part goes as messages of at most CHUNK_BYTES.  Over TCP, Open MPI
 * moves one large message each way between two ranks at about half the
 * link's rate (the two directions take turns: docs/scaling.md); parts cut
 * into 1 MB messages keep both directions busy at the full rate.  Messages between
 * two ranks with one tag match in the order posted, and both ends cut a part
 * the same way, so each chunk lands where its receive expects it. */
enum { CHUNK_BYTES = 1 << 20 };

/* A bucket's state in the parameter allgather: not in it, waiting its turn
 * to be posted, posted, arrived. */
enum { PARAMS_IDLE, PARAMS_QUEUED, PARAMS_POSTED, PARAMS_ARRIVED };

/* Parameter buckets in flight at once.  Posted all together, they share the
 * link and all land near the end, the first block's with the LM head's; a
 * few at a time in the order forward reads them, the first arrive first and
 * forward computes behind the rest. */
enum { PARAMS_WINDOW = 4 };

/* Open MPI moves a large message along only inside MPI calls (over TCP about
 * one fragment per socket and call), and backward reports only between its
 * ops, tens of ms apart.  So while anything is in flight a progress thread
 * advances it every PROGRESS_US: tests, adds the received parts, starts the
 * next phase; the training thread only starts buckets and, at the end,
 * waits.  Both take one lock around every MPI call here, which is all
 * MPI_THREAD_SERIALIZED asks. */
enum { PROGRESS_US = 200 };

/* How often a wait on a bucket's messages tells the watchdog again which
 * peers it still waits for (wait_requests). */
#define STALL_S 1.0

/* One phase's requests for every bucket ([count][per], bucket i's from
 * i * per on), each beside the rank it exchanges with, so a stalled wait can
 * name the peers it waits for. */
typedef struct {
    MPI_Request *req;
    int *peer;
} phase_requests;

struct grad_buckets {
    float *grads;
    int count;                /* buckets, the shard's pieces; bucket 0 is the last one of
                               * the arena */
    /* prefixes of the buckets, in order: reduce-scatter posted, then
     * reduce-scatter done (summed; allgather posted), then all done */
    int started, reduced, finished;   /* started: written under the lock with an
                                       * atomic store, as buckets_ready reads it
                                       * without the lock */
    size_t ready_from;        /* gradients from this arena offset on are final */
    int per;                  /* requests per bucket and phase: 2 per other rank and chunk */
    phase_requests scatter, gather;
    double busy_s;            /* seconds inside these calls since buckets_begin */
    double flight_s;          /* seconds with an exchange in flight since buckets_begin */
    double flight_since;      /* when the current in-flight period began (< 0: none) */
    const zero_shard *shard;
    buckets_mode mode;
    bool bf16;                /* the wire carries bf16 (BUCKETS_WIRE_BF16) */
    size_t elem;              /* bytes of one value on the wire */
    void *recv;               /* [SLOTS][size-1][piece] wire values: the other ranks' parts */
    size_t piece;             /* the largest slice of one bucket */
    /* bf16 wire only: what is sent, converted from the arena ([SLOTS][bucket]
     * for the reduce-scatter, [SLOTS][piece] for our summed part), and the
     * others' summed parts ([SLOTS][size-1][piece]) until they are widened */
    uint16_t *scatter_out, *gather_out, *gather_in;
    size_t bucket_max;        /* the largest bucket */
    /* ZeRO's parameter allgather (buckets_params_start), on the same buckets */
    float *params;
    bool pbf16;               /* this allgather carries bf16 */
    uint16_t *psend;          /* bf16 wire, ZeRO: our slices as sent ([shard len]) */
    uint16_t *pstage;         /* bf16 received for the buckets read early
                               * (buckets_params_read_early), else NULL */
    size_t *pstage_at;        /* [count]: where bucket i's peers' slices start in
                               * pstage (in peer order); SIZE_MAX: received in place */
    phase_requests pgather;
    unsigned char *pstate;    /* [count]: PARAMS_* */
    int *porder;              /* [count]: the queued buckets in forward's order */
    int pnext, pqueued;       /* porder[pnext..pqueued) are not posted yet */
    int pposted;              /* posted and not yet arrived */
    double pstart, pflight_s; /* when it was posted; how long until all arrived */
    bool threaded;            /* the progress thread runs */
    double progress_cpu_s;    /* the progress thread's CPU time so far, as it last read it */
    double cpu_reported;      /* progress_cpu_s when buckets_progress_cpu_seconds last read it */
    pthread_t progress;
    pthread_mutex_t lock;     /* held around every MPI call on these requests */
    pthread_cond_t wake;      /* in flight, or quitting */
    bool in_flight, quit;
    int *stalled;             /* [size]: the peers a stalled wait still waits for */
    local_exchange *local;    /* buckets_create_shared: the exchange through shared memory,
                               * which every call below hands on */
};

/* grads[lo, hi) = 0, the whole pages inside it returned to the kernel (a
 * private anonymous page reads back as zeros); any allocation's interior
 * pages are ours alone, so neither alignment nor mmap is needed. */
static void release_range(float *grads, size_t lo, size_t hi)
{
    if (hi <= lo)
        return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)(grads + lo), z = (uintptr_t)(grads + hi);
    uintptr_t pa = (a + page - 1) & ~(page - 1), pz = z & ~(page - 1);
    if (pz <= pa || madvise((void *)pa, pz - pa, MADV_DONTNEED) != 0) {
        memset((void *)a, 0, z - a);
        return;
    }
    memset((void *)a, 0, pa - a);
    memset((void *)pz, 0, z - pz);
}

/* Where bucket i's requests start in a phase's arrays. */
static size_t first_request(const grad_buckets *b, int i)
{
    return (size_t)i * (size_t)b->per;
}

static int phase_alloc(phase_requests *ph, size_t n)
{
    ph->req = malloc(n * sizeof *ph->req);
    ph->peer = malloc(n * sizeof *ph->peer);
    if (!ph->req || !ph->peer)
        return -1;
    for (size_t k = 0; k < n; k++)
        ph->req[k] = MPI_REQUEST_NULL;
    return 0;
}

static void phase_free(phase_requests *ph)
{
    free(ph->req);
    free(ph->peer);
}

static void start_progress(grad_buckets *b);
static void post_params_window(grad_buckets *b);

/* Parameter buckets queued or posted that have not arrived yet. */
static int params_pending(const grad_buckets *b)
{
    return b->pqueued - b->pnext + b->pposted;
}

/* Whether anything is in flight: the progress thread runs while it is. */
static bool any_in_flight(const grad_buckets *b)
{
    return b->finished < b->started || params_pending(b) > 0;
}

/* Marks, at time now, the start or end of a period with some exchange in
 * flight: their sum is the whole communication time, hidden behind compute
 * or not.  The training thread's calls mark it with the same clock reading
 * they start and end their own timing with, so its busy time (the exposed
 * part) always lies inside. */
static void account_flight(grad_buckets *b, bool flying, double now)
{
    if (flying && b->flight_since < 0) {
        b->flight_since = now;
    } else if (!flying && b->flight_since >= 0) {
        b->flight_s += now - b->flight_since;
        b->flight_since = -1;
    }
}

/* Bucket starts from the end of the arena: each bucket takes up to
 * bucket_floats values and ends at the earliest cut it can (so it holds whole
 * tensors and is final as soon as its last tensor is); a run with no cut
 * inside its reach is cut at its reach.  Toward the start of the arena (the
 * end of backward) a bucket reaches at most half of what is left before it,
 * down to TAIL_FLOATS: nothing follows the last buckets' exchange to hide
 * it, so they stay small (one bucket_mb bucket there left a whole bucket's
 * exchange after backward).  Returns the count; starts NULL: only counts. */
enum { TAIL_FLOATS = 1 << 18 };

static int cut_buckets(size_t n, size_t bucket_floats, const size_t *cuts, int ncuts,
                       size_t *starts)
{
    int count = 0, c = ncuts - 1;   /* cuts ascending; c: the last one below pos */
    for (size_t pos = n; pos > 0; count++) {
        size_t half = pos / 2 > TAIL_FLOATS ? pos / 2 : TAIL_FLOATS;
        size_t reach = bucket_floats < half ? bucket_floats : half;
        size_t lo = pos > reach ? pos - reach : 0, start = lo;
        while (c >= 0 && cuts[c] >= pos)
            c--;
        for (int k = c; k >= 0 && cuts[k] >= lo; k--)
            start = cuts[k] > lo ? cuts[k] : lo;   /* the earliest cut still in reach */
        if (starts)
            starts[count] = start;
        pos = start;
    }
    return count;
}

int buckets_shard(zero_shard *z, size_t n, size_t bucket_floats, const size_t *cuts, int ncuts,
                  int rank, int size)
{
    /* MPI counts are ints: a bucket is a piece of the shard (zero.h) */
    if (bucket_floats == 0 || bucket_floats > ZERO_MAX_PIECE)
        bucket_floats = ZERO_MAX_PIECE;
    int count = cut_buckets(n, bucket_floats, cuts, ncuts, NULL);
    size_t *bounds = malloc(((size_t)count + 1) * sizeof *bounds);
    if (!bounds)
        return -1;
    cut_buckets(n, bucket_floats, cuts, ncuts, bounds);
    for (int i = 0; i < count / 2; i++) {   /* descending starts -> ascending bounds */
        size_t t = bounds[i];
        bounds[i] = bounds[count - 1 - i];
        bounds[count - 1 - i] = t;
    }
    bounds[count] = n;
    int rc = zero_init(z, bounds, count, rank, size);
    free(bounds);
    return rc;
}

void buckets_range(const zero_shard *z, int i, size_t *start, size_t *end)
{
    *start = z->bounds[z->npieces - 1 - i];
    *end = z->bounds[z->npieces - i];
}

void buckets_slice(const zero_shard *z, int i, int r, size_t *lo, size_t *hi)
{
    zero_slice(z, z->npieces - 1 - i, r, lo, hi);
}


/* Buckets over the shard's pieces, nothing else made yet (NULL: no memory). */
static grad_buckets *alloc_buckets(const zero_shard *shard)
{
    grad_buckets *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->wake, NULL);
    b->shard = shard;
    b->count = shard->npieces;
    return b;
}

grad_buckets *buckets_create(float *grads, const zero_shard *shard, buckets_mode mode,
                             buckets_wire wire)
{
    grad_buckets *b = alloc_buckets(shard);
    if (!b)
        return NULL;
    b->grads = grads;
    b->flight_since = -1;
    b->ready_from = SIZE_MAX;   /* nothing to start before a backward reports */
    b->mode = mode;
    b->bf16 = wire == BUCKETS_WIRE_BF16;
    b->elem = b->bf16 ? sizeof(uint16_t) : sizeof(float);
    for (int i = 0; i < b->count; i++) {
        size_t start, end, lo, hi;
        buckets_range(b->shard, i, &start, &end);
        buckets_slice(b->shard, i, 0, &lo, &hi);   /* rank 0's slice is the longest */
        b->bucket_max = end - start > b->bucket_max ? end - start : b->bucket_max;
        b->piece = hi - lo > b->piece ? hi - lo : b->piece;
    }
    /* fp32 chunks: the parameter allgather's, the most a part is cut into */
    size_t chunks = (b->piece * sizeof(float) + CHUNK_BYTES - 1) / CHUNK_BYTES;
    b->per = 2 * (shard->size - 1) * (int)(chunks ? chunks : 1);
    size_t nreq = (size_t)b->count * (size_t)b->per + 1;
    int phases_rc = phase_alloc(&b->scatter, nreq) | phase_alloc(&b->gather, nreq) |
                    phase_alloc(&b->pgather, nreq);
    b->stalled = malloc((size_t)shard->size * sizeof *b->stalled);
    b->pstate = calloc((size_t)b->count + 1, 1);
    b->porder = malloc(((size_t)b->count + 1) * sizeof *b->porder);
    size_t parts = SLOTS * (size_t)(shard->size - 1) * b->piece + 1;
    b->recv = malloc(parts * b->elem);
    if (b->bf16 && mode != BUCKETS_ALLREDUCE)
        b->psend = malloc((shard->len + 1) * sizeof(uint16_t));
    if (b->bf16) {
        b->scatter_out = malloc((SLOTS * b->bucket_max + 1) * sizeof(uint16_t));
        b->gather_out = malloc((SLOTS * b->piece + 1) * sizeof(uint16_t));
        b->gather_in = malloc(parts * sizeof(uint16_t));
    }
    if (phases_rc != 0 || !b->stalled || !b->pstate || !b->porder || !b->recv ||
        (b->bf16 && (!b->scatter_out || !b->gather_out || !b->gather_in)) ||
        (b->bf16 && mode != BUCKETS_ALLREDUCE && !b->psend)) {
        buckets_destroy(b);
        return NULL;
    }
    for (int i = 0; mode == BUCKETS_RELEASE && i < b->count; i++) {
        /* from the start: the model touched the whole arena */
        size_t start, end, lo, hi;
        buckets_range(b->shard, i, &start, &end);
        buckets_slice(b->shard, i, shard->rank, &lo, &hi);
        release_range(grads, start, lo);
        release_range(grads, hi, end);
    }
    start_progress(b);
    return b;
}

grad_buckets *buckets_create_shared(node_share *arenas, const zero_shard *shard,
                                    buckets_mode mode)
{
    grad_buckets *b = alloc_buckets(shard);
    if (!b)
        return NULL;
    b->local = local_create(arenas, shard, mode);
    if (!b->local) {
        buckets_destroy(b);
        return NULL;
    }
    return b;
}

void buckets_destroy(grad_buckets *b)
{
    if (b && b->threaded) {
        pthread_mutex_lock(&b->lock);
        b->quit = true;
        pthread_cond_signal(&b->wake);
        pthread_mutex_unlock(&b->lock);
        pthread_join(b->progress, NULL);
    }
    if (b) {
        pthread_mutex_destroy(&b->lock);
        pthread_cond_destroy(&b->wake);
        phase_free(&b->scatter);
        phase_free(&b->gather);
        phase_free(&b->pgather);
        free(b->stalled);
        free(b->pstate);
        free(b->porder);
        free(b->recv);
        free(b->scatter_out);
        free(b->gather_out);
        free(b->gather_in);
        free(b->psend);
        free(b->pstage);
        free(b->pstage_at);
        local_destroy(b->local);
    }
    free(b);
}

/* The part of the other rank q (skipping our own) for bucket i in a buffer
 * of [SLOTS][size-1][piece] values of elem bytes. */
static void *peer_slot(const grad_buckets *b, void *base, size_t elem, int i, int q)
{
    int peer = q < b->shard->rank ? q : q - 1;
    size_t slot = (size_t)(i % SLOTS) * (size_t)(b->shard->size - 1) + (size_t)peer;
    return (char *)base + slot * b->piece * elem;
}

/* out[0..n) += the bf16 values in[0..n), widened a cache-sized piece at a
 * time by kernels/convert (fp32 accumulation of what arrived in bf16).
 * round (the last part added to a sum that goes back out in bf16): each
 * piece of the sum is then rounded to bf16 while it is in cache, its bits
 * into round[0..n) and the rounded values back into out. */
enum { WIDEN = 4096 };

static void add_bf16(float *out, const uint16_t *in, size_t n, uint16_t *round, bool parallel)
{
#pragma omp parallel for if (parallel && n > (1 << 16)) schedule(static)
    for (size_t o = 0; o < n; o += WIDEN) {
        float wide[WIDEN];
        size_t len = n - o < WIDEN ? n - o : WIDEN;
        bf16_to_f32(wide, in + o, len);   /* below convert's threshold: this thread */
        for (size_t k = 0; k < len; k++)
            out[o + k] += wide[k];
        if (round) {
            f32_to_bf16(round + o, out + o, len);
            bf16_to_f32(out + o, round + o, len);
        }
    }
}

/* x[0..n) holds n bf16 values in its first 2n bytes (as received): widens
 * them to fp32 in place.  From the end, a piece at a time through a copy:
 * each value moves to a higher address, so no piece overwrites bytes not yet
 * read. */
static void widen_in_place(float *x, size_t n)
{
    const uint16_t *in = (const uint16_t *)(void *)x;
    for (size_t end = n; end > 0;) {
        uint16_t piece[WIDEN];
        size_t len = end < WIDEN ? end : WIDEN;
        memcpy(piece, in + (end - len), len * sizeof *piece);
        bf16_to_f32(x + (end - len), piece, len);
        end -= len;
    }
}

/* Posts n values of elem bytes at buf as sends to (or receives from) rank q,
 * CHUNK_BYTES at a time, into ph's requests from k on; returns the index
 * after the last one used. */
static size_t post_chunks(bool send, void *buf, size_t n, size_t elem, MPI_Datatype type, int q,
                          int tag, const phase_requests *ph, size_t k)
{
    const size_t chunk = CHUNK_BYTES / elem;
    for (size_t o = 0; o < n; o += chunk, k++) {
        int len = (int)(n - o < chunk ? n - o : chunk);
        void *p = (char *)buf + o * elem;
        ph->peer[k] = q;
        if (send)
            MPI_Isend(p, len, type, q, tag, MPI_COMM_WORLD, &ph->req[k]);
        else
            MPI_Irecv(p, len, type, q, tag, MPI_COMM_WORLD, &ph->req[k]);
    }
    return k;
}

/* One phase of bucket i's exchange with every other rank q, sends posted
 * before receives:
 *  - scatter: our part of q's shard goes to q, q's part of ours comes into a
 *    receive slot;
 *  - gather (allreduce): our summed part goes to q, q's summed part comes
 *    straight into the arena (our scatter sends from there are done).
 * On a bf16 wire the scatter sends a bf16 copy of each part, the gather
 * finish_scatter's bf16 copy of ours, and q's summed part waits in
 * gather_in until finish_gather widens it. */
static void start_exchange(grad_buckets *b, int i, bool gather)
{
    const zero_shard *z = b->shard;
    const phase_requests *ph = gather ? &b->gather : &b->scatter;
    size_t k = first_request(b, i);
    const int tag = gather ? TAG_GATHER : TAG_SCATTER;
    const MPI_Datatype type = b->bf16 ? MPI_UINT16_T : MPI_FLOAT;
    size_t start, end, lo, hi;
    buckets_range(b->shard, i, &start, &end);
    buckets_slice(b->shard, i, z->rank, &lo, &hi);
    uint16_t *out16 = b->bf16 ? (gather ? b->gather_out + (size_t)(i % SLOTS) * b->piece
                                        : b->scatter_out + (size_t)(i % SLOTS) * b->bucket_max)
                              : NULL;
    for (int q = 0; q < z->size; q++) {
        if (q == z->rank)
            continue;
        size_t qlo, qhi;
        buckets_slice(b->shard, i, q, &qlo, &qhi);
        size_t nsend = gather ? hi - lo : qhi - qlo, nrecv = gather ? qhi - qlo : hi - lo;
        const void *send = b->grads + (gather ? lo : qlo);
        void *recv = gather ? (void *)(b->grads + qlo) : peer_slot(b, b->recv, b->elem, i, q);
        if (b->bf16 && gather) {
            send = out16;
            recv = peer_slot(b, b->gather_in, sizeof(uint16_t), i, q);
        } else if (b->bf16) {
            send = out16 + (qlo - start);
            f32_to_bf16(out16 + (qlo - start), b->grads + qlo, nsend);
        }
        k = post_chunks(true, (void *)send, nsend, b->elem, type, q, tag, ph, k);
        k = post_chunks(false, recv, nrecv, b->elem, type, q, tag, ph, k);
    }
}

/* The oldest reduce-scatter's messages are complete: add the parts received
 * into our shard, then start the allgather or release the rest.  On a bf16
 * wire our summed part is rounded to bf16 in the arena too, so every rank
 * ends with the same values. */
static void finish_scatter(grad_buckets *b, bool parallel)
{
    const zero_shard *z = b->shard;
    int i = b->reduced++;
    size_t start, end, lo, hi;
    buckets_range(b->shard, i, &start, &end);
    buckets_slice(b->shard, i, z->rank, &lo, &hi);
    float *out = b->grads + lo;
    size_t len = hi - lo;
    /* allreduce on a bf16 wire: our summed part goes out as bf16, and every
     * rank must end with the same values, so the sum is rounded in place */
    uint16_t *mine = b->bf16 && b->mode == BUCKETS_ALLREDUCE
                         ? b->gather_out + (size_t)(i % SLOTS) * b->piece
                         : NULL;
    const int last = z->rank == z->size - 1 ? z->size - 2 : z->size - 1;   /* the last peer */
    for (int q = 0; q < z->size; q++) {
        if (q == z->rank || len == 0)
            continue;
        const void *in = peer_slot(b, b->recv, b->elem, i, q);
        if (b->bf16) {
            add_bf16(out, in, len, q == last ? mine : NULL, parallel);
            continue;
        }
        const float *in32 = in;
#pragma omp parallel for simd if (parallel && len > (1 << 16)) schedule(static)
        for (size_t k = 0; k < len; k++)
            out[k] += in32[k];
    }
    if (b->mode == BUCKETS_ALLREDUCE) {
        start_exchange(b, i, true);
        return;
    }
    if (b->mode == BUCKETS_RELEASE) {
        release_range(b->grads, start, lo);
        release_range(b->grads, hi, end);
    }
    b->finished = b->reduced;
}

/* The oldest allgather's messages are complete (bf16 wire: widen the others'
 * summed parts into the arena). */
static void finish_gather(grad_buckets *b)
{
    const zero_shard *z = b->shard;
    int i = b->finished++;
    size_t start, end;
    buckets_range(b->shard, i, &start, &end);
    for (int q = 0; b->bf16 && q < z->size; q++) {
        size_t qlo, qhi;
        buckets_slice(b->shard, i, q, &qlo, &qhi);
        if (q != z->rank)
            bf16_to_f32(b->grads + qlo, peer_slot(b, b->gather_in, sizeof(uint16_t), i, q),
                        qhi - qlo);
    }
}

/* Bucket i may finish its reduce-scatter: on a bf16 wire its allgather needs
 * the send and receive slots of bucket i - SLOTS, whose allgather must be done. */
static bool gather_slot_free(const grad_buckets *b, int i)
{
    return !b->bf16 || b->mode != BUCKETS_ALLREDUCE || i - b->finished < SLOTS;
}

/* Whether all of bucket i's requests of ph are complete. */
static bool test(grad_buckets *b, const phase_requests *ph, int i)
{
    int flag;
    MPI_Testall(b->per, ph->req + first_request(b, i), &flag, MPI_STATUSES_IGNORE);
    return flag;
}

/* Completes bucket i's requests of ph that are done, one by one (MPI_Testall
 * completes none unless all are), and tells the watchdog the peers of the
 * rest.  Requests are posted peer by peer in rank order, so each peer's are
 * adjacent and its rank is listed once. */
static void name_stalled_peers(grad_buckets *b, const phase_requests *ph, int i)
{
    int n = 0;
    for (size_t k = first_request(b, i); k < first_request(b, i + 1); k++) {
        int done;
        MPI_Test(&ph->req[k], &done, MPI_STATUS_IGNORE);   /* true for MPI_REQUEST_NULL */
        if (!done && (n == 0 || b->stalled[n - 1] != ph->peer[k]))
            b->stalled[n++] = ph->peer[k];
    }
    watchdog_waiting_for(b->stalled, n);
}

/* Waits for bucket i's requests of ph, spinning in MPI as MPI_Waitall does.
 * When the first test fails it says which peers it still waits for, and again
 * each STALL_S (the set only shrinks), so a watchdog that gives up on the wait
 * names them; the watchdog forgets them when the wait ends.  Named at once,
 * not after a delay: the watchdog's clock may have started before this wait
 * (wait_scatter first waits for a gather slot), and a wait that began just
 * before it gives up must name its peers too (one pass of MPI_Test over the
 * bucket's requests). */
static void wait_requests(grad_buckets *b, const phase_requests *ph, int i)
{
    double look_at = MPI_Wtime();
    bool stalled = false;
    while (!test(b, ph, i)) {
        if (MPI_Wtime() >= look_at) {
            name_stalled_peers(b, ph, i);
            stalled = true;
            look_at += STALL_S;
        }
    }
    if (stalled)
        watchdog_waiting_for(NULL, 0);
}

static void wait_gather(grad_buckets *b)
{
    wait_requests(b, &b->gather, b->finished);
    finish_gather(b);
}

static void wait_scatter(grad_buckets *b)
{
    while (!gather_slot_free(b, b->reduced))
        wait_gather(b);
    wait_requests(b, &b->scatter, b->reduced);
    finish_scatter(b, true);
}

static bool params_staged(const grad_buckets *b, int i)
{
    return b->pstage && b->pstage_at[i] != SIZE_MAX;
}

/* Where peer q's slice of bucket i arrives in bf16: in the staging buffer
 * for a bucket read early, else in the first half of its own place. */
static uint16_t *params_landing(const grad_buckets *b, int i, int q)
{
    size_t qlo, qhi;
    buckets_slice(b->shard, i, q, &qlo, &qhi);
    if (!params_staged(b, i))
        return (uint16_t *)(void *)(b->params + qlo);
    size_t at = b->pstage_at[i];
    for (int r = 0; r < q; r++) {
        size_t lo, hi;
        buckets_slice(b->shard, i, r, &lo, &hi);
        at += r == b->shard->rank ? 0 : hi - lo;
    }
    return b->pstage + at;
}

static void params_arrived(grad_buckets *b, int i)
{
    const zero_shard *z = b->shard;
    for (int q = 0; b->pbf16 && q < z->size; q++) {
        size_t qlo, qhi;
        buckets_slice(b->shard, i, q, &qlo, &qhi);
        if (q == z->rank)
            continue;
        if (params_staged(b, i))
            bf16_to_f32(b->params + qlo, params_landing(b, i, q), qhi - qlo);
        else
            widen_in_place(b->params + qlo, qhi - qlo);
    }
    b->pstate[i] = PARAMS_ARRIVED;
    b->pposted--;
    if (params_pending(b) == 0)
        b->pflight_s = MPI_Wtime() - b->pstart;
}

/* Bucket i (< count) can start: every gradient in it is final. */
static bool startable(const grad_buckets *b, int i, size_t from)
{
    size_t start, end;
    buckets_range(b->shard, i, &start, &end);
    return start >= from;
}

/* Starts, in order, the buckets whose gradients are final, as far as the
 * receive slots allow; returns whether it started any.  The rest wait for
 * advance() to free a slot: a burst of ready buckets (wte's, at the top of
 * backward) would otherwise hold the training thread until the link had
 * carried all but the last SLOTS of them. */
static bool start_ready(grad_buckets *b)
{
    bool any = false;
    while (b->started < b->count && b->started - b->reduced < SLOTS &&
           startable(b, b->started, b->ready_from)) {
        start_exchange(b, b->started, false);
        __atomic_store_n(&b->started, b->started + 1, __ATOMIC_RELAXED);
        any = true;
    }
    return any;
}

/* Drive the transfers along; complete, in order, the phases that are done
 * (parallel: the adds may use this thread's OpenMP team). */
static void advance(grad_buckets *b, bool parallel)
{
    for (bool moved = true; moved;) {
        moved = false;
        while (b->finished < b->reduced && test(b, &b->gather, b->finished)) {
            finish_gather(b);
            moved = true;
        }
        while (b->reduced < b->started && gather_slot_free(b, b->reduced) &&
               test(b, &b->scatter, b->reduced)) {
            finish_scatter(b, parallel);
            moved = true;
        }
        moved |= start_ready(b);
    }
    for (int i = 0; i < b->count && params_pending(b) > 0; i++)
        if (b->pstate[i] == PARAMS_POSTED && test(b, &b->pgather, i))
            params_arrived(b, i);
    post_params_window(b);
    account_flight(b, b->finished < b->started, MPI_Wtime());
    b->in_flight = any_in_flight(b);
}

/* While anything is in flight: advance() every PROGRESS_US, so the
 * transfers move, the received parts are added (on this thread alone) and
 * the next phases start while the training thread computes. */
static void *progress_main(void *arg)
{
    grad_buckets *b = arg;
    const struct timespec pause = {0, PROGRESS_US * 1000L};
    /* its conversions stay on this thread: a team would compete with training's */
    omp_set_num_threads(1);
    pthread_mutex_lock(&b->lock);
    while (!b->quit) {
        if (!b->in_flight) {
            pthread_cond_wait(&b->wake, &b->lock);
            continue;
        }
        advance(b, false);
        b->progress_cpu_s = clock_read_s(CLOCK_THREAD_CPUTIME_ID);
        pthread_mutex_unlock(&b->lock);
        nanosleep(&pause, NULL);
        pthread_mutex_lock(&b->lock);
    }
    pthread_mutex_unlock(&b->lock);
    return NULL;
}

/* The progress thread, where MPI allows it (comm_init asks for SERIALIZED). */
static void start_progress(grad_buckets *b)
{
    int level;
    MPI_Query_thread(&level);
    b->threaded = level >= MPI_THREAD_SERIALIZED &&
                  pthread_create(&b->progress, NULL, progress_main, b) == 0;
}

void buckets_begin(grad_buckets *b)
{
    if (b->local) {
        local_begin(b->local);
        return;
    }
    pthread_mutex_lock(&b->lock);
    __atomic_store_n(&b->started, 0, __ATOMIC_RELAXED);
    b->reduced = b->finished = 0;
    b->ready_from = SIZE_MAX;
    b->busy_s = b->flight_s = 0;
    b->flight_since = -1;
    pthread_mutex_unlock(&b->lock);
}

void buckets_ready(grad_buckets *b, size_t from)
{
    if (b->local) {
        local_ready(b->local, from);
        return;
    }
    /* With the progress thread, a report that starts nothing also moves the
     * exchange along, without ever waiting for the lock: the progress thread
     * may be waiting for a core (every core busy with this rank's OpenMP
     * threads, spinning between ops, and other processes), and the exchange
     * moves only inside MPI calls.  `started` is read once without the lock:
     * the progress thread may have started more since, and a bucket that
     * cannot start from `from` means no later one can. */
    int started = __atomic_load_n(&b->started, __ATOMIC_RELAXED);
    if (b->threaded && !(started < b->count && startable(b, started, from))) {
        if (pthread_mutex_trylock(&b->lock) != 0)
            return;
        double t0 = MPI_Wtime();
        if (b->in_flight)
            advance(b, true);
        b->busy_s += MPI_Wtime() - t0;
        pthread_mutex_unlock(&b->lock);
        return;
    }
    pthread_mutex_lock(&b->lock);
    double t0 = MPI_Wtime();
    if (from < b->ready_from)
        b->ready_from = from;
    if (b->started < b->count && startable(b, b->started, from))
        account_flight(b, true, t0);
    start_ready(b);
    if (b->threaded)
        b->in_flight = any_in_flight(b);
    else
        advance(b, true);
    if (b->in_flight)
        pthread_cond_signal(&b->wake);
    double t1 = MPI_Wtime();
    account_flight(b, b->finished < b->started, t1);
    b->busy_s += t1 - t0;
    pthread_mutex_unlock(&b->lock);
}

void buckets_poke(grad_buckets *b)
{
    if (pthread_mutex_trylock(&b->lock) != 0)
        return;
    int flag;
    MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE);
    pthread_mutex_unlock(&b->lock);
}

double buckets_finish(grad_buckets *b)
{
    if (b->local)
        return local_finish(b->local);
    buckets_ready(b, 0);
    pthread_mutex_lock(&b->lock);   /* the progress thread waits from here on */
    b->in_flight = params_pending(b) > 0;
    double t0 = MPI_Wtime();
    account_flight(b, b->finished < b->started, t0);
    /* the watchdog's timeout is for a stall, not for the whole exchange (a
     * slow link may carry it for longer): each bucket's phase gets it anew */
    const char *what = b->mode == BUCKETS_ALLREDUCE ? "the gradient allreduce"
                                                    : "the gradient reduce-scatter";
    while (b->reduced < b->started) {
        watchdog_arm(what);
        wait_scatter(b);
        start_ready(b);   /* a bucket that waited for this slot */
    }
    while (b->finished < b->reduced) {
        watchdog_arm(what);
        wait_gather(b);
    }
    watchdog_disarm();
    double t1 = MPI_Wtime();
    account_flight(b, false, t1);
    b->busy_s += t1 - t0;
    pthread_mutex_unlock(&b->lock);
    return b->busy_s;
}

double buckets_flight_seconds(grad_buckets *b)
{
    if (b->local)
        return local_flight_seconds(b->local);
    pthread_mutex_lock(&b->lock);
    double s = b->flight_s;
    pthread_mutex_unlock(&b->lock);
    return s;
}

/* Bucket i of the parameter allgather: our slice of it to every other rank,
 * theirs straight into params (bf16: to params_landing, widened when they
 * have arrived). */
static void post_params(grad_buckets *b, int i)
{
    const zero_shard *z = b->shard;
    size_t k = first_request(b, i);
    const size_t elem = b->pbf16 ? sizeof(uint16_t) : sizeof(float);
    const MPI_Datatype type = b->pbf16 ? MPI_UINT16_T : MPI_FLOAT;
    size_t lo, hi;
    buckets_slice(b->shard, i, z->rank, &lo, &hi);
    void *send = b->params + lo;
    if (b->pbf16) {
        send = b->psend + z->at[b->count - 1 - i];
        f32_to_bf16(send, b->params + lo, hi - lo);
    }
    for (int q = 0; q < z->size; q++) {
        size_t qlo, qhi;
        buckets_slice(b->shard, i, q, &qlo, &qhi);
        if (q == z->rank)
            continue;
        k = post_chunks(true, send, hi - lo, elem, type, q, TAG_PARAMS, &b->pgather, k);
        void *recv = b->pbf16 ? (void *)params_landing(b, i, q) : (void *)(b->params + qlo);
        k = post_chunks(false, recv, qhi - qlo, elem, type, q, TAG_PARAMS, &b->pgather, k);
    }
    b->pstate[i] = PARAMS_POSTED;
    b->pposted++;
}

/* Posts the next queued bucket, in forward's order. */
static void post_next_params(grad_buckets *b)
{
    post_params(b, b->porder[b->pnext++]);
}

static void post_params_window(grad_buckets *b)
{
    while (b->pnext < b->pqueued && b->pposted < PARAMS_WINDOW)
        post_next_params(b);
}

/* Bucket i and [lo, hi) share values. */
static bool overlaps(const grad_buckets *b, int i, size_t lo, size_t hi)
{
    size_t start, end;
    buckets_range(b->shard, i, &start, &end);
    return start < hi && lo < end;
}

int buckets_params_read_early(grad_buckets *b, size_t lo, size_t hi)
{
    if (!b->psend)   /* no bf16 allgather: what arrives is the owners' values */
        return 0;
    free(b->pstage_at);
    free(b->pstage);
    b->pstage = NULL;
    b->pstage_at = malloc((size_t)b->count * sizeof *b->pstage_at);
    if (!b->pstage_at)
        return -1;
    size_t total = 0;
    for (int i = 0; i < b->count; i++) {
        size_t start, end, mlo, mhi;
        buckets_range(b->shard, i, &start, &end);
        buckets_slice(b->shard, i, b->shard->rank, &mlo, &mhi);
        b->pstage_at[i] = overlaps(b, i, lo, hi) ? total : SIZE_MAX;
        total += overlaps(b, i, lo, hi) ? (end - start) - (mhi - mlo) : 0;
    }
    b->pstage = malloc((total + 1) * sizeof *b->pstage);
    return b->pstage ? 0 : -1;
}

void buckets_params_start(grad_buckets *b, float *params, const size_t *offsets,
                          const size_t *sizes, int n, buckets_wire wire)
{
    if (b->local) {
        local_params_start(b->local);
        return;
    }
    pthread_mutex_lock(&b->lock);
    b->params = params;
    b->pbf16 = wire == BUCKETS_WIRE_BF16 && b->psend;
    b->pstart = MPI_Wtime();
    b->pflight_s = 0;
    b->pnext = b->pqueued = b->pposted = 0;
    memset(b->pstate, PARAMS_IDLE, (size_t)b->count);
    /* the buckets of each range in turn, each in arena order; then any left */
    for (int k = 0; k <= n; k++)
        for (int i = b->count - 1; i >= 0; i--)
            if (b->pstate[i] == PARAMS_IDLE &&
                (k == n || overlaps(b, i, offsets[k], offsets[k] + sizes[k]))) {
                b->pstate[i] = PARAMS_QUEUED;
                b->porder[b->pqueued++] = i;
            }
    post_params_window(b);
    b->in_flight = true;
    pthread_cond_signal(&b->wake);
    pthread_mutex_unlock(&b->lock);
}

double buckets_params_wait(grad_buckets *b, size_t lo, size_t hi)
{
    if (b->local)
        return local_params_wait(b->local, lo, hi);
    pthread_mutex_lock(&b->lock);
    double t0 = MPI_Wtime();
    for (int i = b->count - 1; i >= 0 && params_pending(b) > 0; i--) {
        if (b->pstate[i] == PARAMS_IDLE || b->pstate[i] == PARAMS_ARRIVED || !overlaps(b, i, lo, hi))
            continue;
        while (b->pstate[i] == PARAMS_QUEUED)   /* in order, past the window if need be */
            post_next_params(b);
        watchdog_arm("the parameter allgather");
        wait_requests(b, &b->pgather, i);
        watchdog_disarm();
        params_arrived(b, i);
    }
    post_params_window(b);
    /* nothing left in flight: the progress thread must not call MPI while the
     * caller goes on to its own MPI calls */
    b->in_flight = any_in_flight(b);
    double waited = MPI_Wtime() - t0;
    pthread_mutex_unlock(&b->lock);
    return waited;
}

double buckets_progress_cpu_seconds(grad_buckets *b)
{
    pthread_mutex_lock(&b->lock);
    const double s = b->progress_cpu_s - b->cpu_reported;
    b->cpu_reported = b->progress_cpu_s;
    pthread_mutex_unlock(&b->lock);
    return s;
}

double buckets_params_flight_seconds(grad_buckets *b)
{
    if (b->local)
        return local_params_flight_seconds(b->local);
    pthread_mutex_lock(&b->lock);
    double s = params_pending(b) > 0 ? 0 : b->pflight_s;
    pthread_mutex_unlock(&b->lock);
    return s;
}
