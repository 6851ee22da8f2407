#include "comm/zero.h"

#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "comm/watchdog.h"

/* The values of piece k each rank's slice takes (the last ranks' may be
 * shorter or empty). */
static size_t slice_base(const zero_shard *z, int k)
{
    size_t len = z->bounds[k + 1] - z->bounds[k];
    size_t per = (len + (size_t)z->size - 1) / (size_t)z->size;
    return (per + ZERO_ALIGN - 1) / ZERO_ALIGN * ZERO_ALIGN;
}

void zero_slice(const zero_shard *z, int k, int r, size_t *lo, size_t *hi)
{
    size_t b = z->bounds[k], e = z->bounds[k + 1], base = slice_base(z, k);
    size_t s = base * (size_t)r;
    *lo = s < e - b ? b + s : e;
    *hi = s + base < e - b ? b + s + base : e;
}

int zero_init(zero_shard *z, const size_t *bounds, int npieces, int rank, int size)
{
    memset(z, 0, sizeof *z);
    z->rank = rank;
    z->size = size;
    z->npieces = npieces;
    z->bounds = malloc(((size_t)npieces + 1) * sizeof *z->bounds);
    z->at = malloc(((size_t)npieces + 1) * sizeof *z->at);
    if (!z->bounds || !z->at || npieces < 1 || bounds[0] != 0) {
        zero_free(z);
        return -1;
    }
    memcpy(z->bounds, bounds, ((size_t)npieces + 1) * sizeof *bounds);
    z->n = bounds[npieces];
    for (int k = 0; k < npieces; k++) {
        if (bounds[k + 1] <= bounds[k] || bounds[k + 1] - bounds[k] > ZERO_MAX_PIECE) {
            zero_free(z);
            return -1;
        }
        size_t lo, hi;
        zero_slice(z, k, rank, &lo, &hi);
        z->at[k] = z->len;
        z->len += hi - lo;
    }
    return 0;
}

void zero_free(zero_shard *z)
{
    free(z->bounds);
    free(z->at);
    z->bounds = z->at = NULL;
}

/* The piece holding value i (< n). */
static int piece_of(const zero_shard *z, size_t i)
{
    int lo = 0, hi = z->npieces - 1;   /* bounds[lo] <= i < bounds[hi + 1] */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (z->bounds[mid] <= i)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

size_t zero_next_held(const zero_shard *z, int r, size_t *lo, size_t hi)
{
    if (!z)
        return *lo < hi ? hi - *lo : 0;
    for (int k = *lo < z->n ? piece_of(z, *lo) : z->npieces; k < z->npieces && z->bounds[k] < hi;
         k++) {
        size_t s, e;
        zero_slice(z, k, r, &s, &e);
        s = s > *lo ? s : *lo;
        e = e < hi ? e : hi;
        if (e > s) {
            *lo = s;
            return e - s;
        }
    }
    return 0;
}

size_t zero_index(const zero_shard *z, size_t i)
{
    if (!z)
        return i;
    int k = piece_of(z, i);
    size_t lo, hi;
    zero_slice(z, k, z->rank, &lo, &hi);
    return z->at[k] + (i - lo);
}

int zero_owner(const zero_shard *z, size_t i)
{
    if (!z)
        return 0;
    int k = piece_of(z, i);
    return (int)((i - z->bounds[k]) / slice_base(z, k));
}

/* Point to point, a message per slice, in rank order: rank 0 takes each
 * slice straight into its place, with no staging buffer.  Rank 0 tells the
 * watchdog the rank it moves slices with; the others wait for rank 0, which
 * may be waiting for a rank before them: they name nobody. */
enum { RANGE_TAG = 0x5a31 };

void zero_gather_range(const zero_shard *z, const float *x, size_t off, size_t n, float *out)
{
    /* the last rank's one send waits for all of the others' */
    watchdog_arm_for("a gather of optimizer shards", watchdog_io_seconds(n * sizeof(float)));
    for (int r = 0; r < z->size; r++) {
        if (z->rank != 0 && z->rank != r)
            continue;
        if (z->rank == 0 && r != 0)
            watchdog_waiting_for(&r, 1);
        for (size_t b = off, len; (len = zero_next_held(z, r, &b, off + n)) > 0; b += len) {
            if (z->rank == 0 && r == 0)
                memcpy(out + (b - off), x + zero_index(z, b), len * sizeof(float));
            else if (z->rank == 0)
                MPI_Recv(out + (b - off), (int)len, MPI_FLOAT, r, RANGE_TAG, MPI_COMM_WORLD,
                         MPI_STATUS_IGNORE);
            else
                MPI_Send(x + zero_index(z, b), (int)len, MPI_FLOAT, 0, RANGE_TAG, MPI_COMM_WORLD);
        }
    }
    watchdog_disarm();
}

void zero_scatter_range(const zero_shard *z, const float *in, size_t off, size_t n, float *x)
{
    watchdog_arm_for("a scatter of an optimizer tensor", watchdog_io_seconds(n * sizeof(float)));
    for (int r = 0; r < z->size; r++) {
        if (z->rank != 0 && z->rank != r)
            continue;
        if (z->rank == 0 && r != 0)
            watchdog_waiting_for(&r, 1);
        for (size_t b = off, len; (len = zero_next_held(z, r, &b, off + n)) > 0; b += len) {
            if (z->rank == 0 && r == 0)
                memcpy(x + zero_index(z, b), in + (b - off), len * sizeof(float));
            else if (z->rank == 0)
                MPI_Send(in + (b - off), (int)len, MPI_FLOAT, r, RANGE_TAG, MPI_COMM_WORLD);
            else
                MPI_Recv(x + zero_index(z, b), (int)len, MPI_FLOAT, 0, RANGE_TAG, MPI_COMM_WORLD,
                         MPI_STATUS_IGNORE);
        }
    }
    watchdog_disarm();
}
