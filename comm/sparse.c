#include "comm/sparse.h"

#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"

/* the union has at most size * max_rows ids, and never more than max_id */
static size_t union_most(int size, int max_rows, int max_id)
{
    const size_t most = (size_t)size * max_rows;
    return most < (size_t)max_id ? most : (size_t)max_id;
}

double sparse_rows_bytes(int size, int max_rows, int ncols, int max_id)
{
    return (double)size * max_rows * sizeof(int) +
           (double)union_most(size, max_rows, max_id) * ncols * sizeof(float);
}

int sparse_rows_init(sparse_rows *s, int max_rows, int ncols, int max_id)
{
    memset(s, 0, sizeof *s);
    MPI_Comm_size(MPI_COMM_WORLD, &s->size);
    s->ncols = ncols;
    size_t most = (size_t)s->size * max_rows;
    s->counts = malloc((size_t)s->size * sizeof *s->counts);
    s->displs = malloc((size_t)s->size * sizeof *s->displs);
    s->ids = malloc(most * sizeof *s->ids);
    s->sum = malloc(union_most(s->size, max_rows, max_id) * ncols * sizeof *s->sum);
    if (!s->counts || !s->displs || !s->ids || !s->sum) {
        sparse_rows_free(s);
        return -1;
    }
    return 0;
}

void sparse_rows_free(sparse_rows *s)
{
    free(s->counts);
    free(s->displs);
    free(s->ids);
    free(s->sum);
    memset(s, 0, sizeof *s);
}

static int cmp_int(const void *a, const void *b)
{
    const int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* index of id in the sorted ids[0..n) (it is there) */
static int find(const int *ids, int n, int id)
{
    const int *p = bsearch(&id, ids, (size_t)n, sizeof *ids, cmp_int);
    return (int)(p - ids);
}

/* Gathers every rank's ids into s->ids as their sorted union; returns its size. */
static int gather_union(sparse_rows *s, const int *ids, int n, const char *what)
{
    comm_gather_ints(n, s->counts, what);
    int total = 0;
    for (int r = 0; r < s->size; r++) {
        s->displs[r] = total;
        total += s->counts[r];
    }
    comm_gather_int_lists(ids, n, s->ids, s->counts, s->displs, what);
    qsort(s->ids, (size_t)total, sizeof *s->ids, cmp_int);
    int u = 0;
    for (int i = 0; i < total; i++)
        if (u == 0 || s->ids[i] != s->ids[u - 1])
            s->ids[u++] = s->ids[i];
    return u;
}

int sparse_rows_sum(sparse_rows *s, const int *ids, const float *rows, int n)
{
    const int u = gather_union(s, ids, n, "the embedding gradient's row ids");
    const size_t C = (size_t)s->ncols;
    memset(s->sum, 0, (size_t)u * C * sizeof *s->sum);
    for (int i = 0; i < n; i++)
        memcpy(s->sum + (size_t)find(s->ids, u, ids[i]) * C, rows + (size_t)i * C, C * sizeof *s->sum);
    comm_sum_floats(s->sum, (size_t)u * C, "the embedding gradient's rows");
    return u;
}

int sparse_rows_fetch(sparse_rows *s, const zero_shard *z, float *arena, size_t table,
                      const int *ids, int n)
{
    const int u = gather_union(s, ids, n, "the embedding's row ids");
    const size_t C = (size_t)s->ncols;
    /* each value is nonzero on its owner alone, so the sum is its value */
    memset(s->sum, 0, (size_t)u * C * sizeof *s->sum);
    for (int i = 0; i < u; i++) {
        const size_t row = table + (size_t)s->ids[i] * C;
        for (size_t b = row, len; (len = zero_next_held(z, z->rank, &b, row + C)) > 0; b += len)
            memcpy(s->sum + (size_t)i * C + (b - row), arena + b, len * sizeof *arena);
    }
    comm_sum_floats(s->sum, (size_t)u * C, "the embedding's rows");
    for (int i = 0; i < u; i++)
        memcpy(arena + table + (size_t)s->ids[i] * C, s->sum + (size_t)i * C, C * sizeof *arena);
    return u;
}
