#include "comm/zero.h"

#include <limits.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "comm/watchdog.h"

int zero_init(zero_shard *z, size_t n, int rank, int size)
{
    size_t base = (n + (size_t)size - 1) / (size_t)size;
    if (base > INT_MAX)
        return -1;
    z->rank = rank;
    z->size = size;
    z->counts = malloc((size_t)size * sizeof(int));
    z->displs = malloc((size_t)size * sizeof(int));
    if (!z->counts || !z->displs) {
        zero_free(z);
        return -1;
    }
    for (int r = 0; r < size; r++) {
        size_t b = base * (size_t)r < n ? base * (size_t)r : n;
        size_t e = b + base < n ? b + base : n;
        z->counts[r] = (int)(e - b);
        z->displs[r] = (int)b;   /* offsets up to n: checked against INT_MAX below */
        if (b > INT_MAX) {
            zero_free(z);
            return -1;
        }
    }
    z->begin = (size_t)z->displs[rank];
    z->len = (size_t)z->counts[rank];
    return 0;
}

void zero_free(zero_shard *z)
{
    free(z->counts);
    free(z->displs);
    z->counts = z->displs = NULL;
}

void zero_allgather(const zero_shard *z, float *params)
{
    watchdog_arm("the parameter allgather");
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, params, z->counts, z->displs, MPI_FLOAT,
                   MPI_COMM_WORLD);
    watchdog_disarm();
}

void zero_gather_to_root(const zero_shard *z, const float *x, float *full)
{
    watchdog_arm("a gather of optimizer shards");
    MPI_Gatherv(x, (int)z->len, MPI_FLOAT, full, z->counts, z->displs, MPI_FLOAT, 0,
                MPI_COMM_WORLD);
    watchdog_disarm();
}

void zero_scatter_from_root(const zero_shard *z, const float *full, float *x)
{
    watchdog_arm("a scatter of optimizer shards");
    MPI_Scatterv(full, z->counts, z->displs, MPI_FLOAT, x, (int)z->len, MPI_FLOAT, 0,
                 MPI_COMM_WORLD);
    watchdog_disarm();
}

/* The part of [off, off + n) that rank r's shard holds: its first index in *b
 * and its length (0: none). */
static size_t shard_overlap(const zero_shard *z, int r, size_t off, size_t n, size_t *b)
{
    size_t lo = (size_t)z->displs[r], hi = lo + (size_t)z->counts[r];
    *b = lo > off ? lo : off;
    size_t e = hi < off + n ? hi : off + n;
    return e > *b ? e - *b : 0;
}

/* Point to point in rank order rather than Gatherv/Scatterv: no per-call
 * count arrays, and rank 0 takes the pieces straight into the tensor. */
enum { RANGE_TAG = 0x5a31 };

void zero_gather_range(const zero_shard *z, const float *x, size_t off, size_t n, float *out)
{
    watchdog_arm("a gather of an optimizer tensor");
    for (int r = 0; r < z->size; r++) {
        size_t b, len = shard_overlap(z, r, off, n, &b);
        if (len == 0 || (z->rank != 0 && z->rank != r))
            continue;
        if (z->rank == 0 && r == 0)
            memcpy(out + (b - off), x + (b - z->begin), len * sizeof(float));
        else if (z->rank == 0)
            MPI_Recv(out + (b - off), (int)len, MPI_FLOAT, r, RANGE_TAG, MPI_COMM_WORLD,
                     MPI_STATUS_IGNORE);
        else
            MPI_Send(x + (b - z->begin), (int)len, MPI_FLOAT, 0, RANGE_TAG, MPI_COMM_WORLD);
    }
    watchdog_disarm();
}

void zero_scatter_range(const zero_shard *z, const float *in, size_t off, size_t n, float *x)
{
    watchdog_arm("a scatter of an optimizer tensor");
    for (int r = 0; r < z->size; r++) {
        size_t b, len = shard_overlap(z, r, off, n, &b);
        if (len == 0 || (z->rank != 0 && z->rank != r))
            continue;
        if (z->rank == 0 && r == 0)
            memcpy(x + (b - z->begin), in + (b - off), len * sizeof(float));
        else if (z->rank == 0)
            MPI_Send(in + (b - off), (int)len, MPI_FLOAT, r, RANGE_TAG, MPI_COMM_WORLD);
        else
            MPI_Recv(x + (b - z->begin), (int)len, MPI_FLOAT, 0, RANGE_TAG, MPI_COMM_WORLD,
                     MPI_STATUS_IGNORE);
    }
    watchdog_disarm();
}

int zero_broadcast_int(int x)
{
    watchdog_arm("rank 0 reading or writing a checkpoint");
    MPI_Bcast(&x, 1, MPI_INT, 0, MPI_COMM_WORLD);
    watchdog_disarm();
    return x;
}
