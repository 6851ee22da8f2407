#include "comm/zero.h"

#include <limits.h>
#include <mpi.h>
#include <stdlib.h>

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
