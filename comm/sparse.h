/* sparse: the sum over ranks of a row-sparse gradient, and the current
 * values of a few rows of a sharded table.
 *
 * The input side of the token embedding's gradient touches only the rows of
 * the tokens in a micro-batch (at most B*T of V).  Instead of reducing all V
 * rows, the ranks gather each other's row ids, take their union, and sum only
 * those rows: one allgather of counts, one of ids, one in-place allreduce of
 * |union| rows.  Every call is collective: a rank with nothing passes n = 0.
 */
#ifndef COMM_SPARSE_H
#define COMM_SPARSE_H

#include <stddef.h>

#include "comm/zero.h"

typedef struct {
    int ncols, size;             /* row length; ranks */
    int *counts, *displs;        /* [size] */
    int *ids;                    /* gathered ids, then their sorted union */
    float *sum;                  /* [union, ncols] */
} sparse_rows;

/* For up to max_rows rows per rank, of ncols floats, with ids < max_id.
 * 0, or -1 when memory runs out. */
int sparse_rows_init(sparse_rows *s, int max_rows, int ncols, int max_id);
/* The bytes sparse_rows_init takes on each of size ranks, for memory checks. */
double sparse_rows_bytes(int size, int max_rows, int ncols, int max_id);
void sparse_rows_free(sparse_rows *s);

/* ids [n] distinct and increasing, rows [n, ncols].  Returns u, the size of
 * the union over ranks: s->ids[0..u) are its ids in increasing order, and
 * s->sum row i is the sum over ranks of their row s->ids[i] (0 where a rank
 * has none). */
int sparse_rows_sum(sparse_rows *s, const int *ids, const float *rows, int n);

/* ZeRO: a table of rows [*, ncols] at arena offset `table`, sharded as z
 * (each rank holds only its shard of the arena current).  Every rank passes
 * the ids it is about to read (any order, repeats allowed; n <= max_rows);
 * after the call the rows of the union of them hold their owners' values on
 * every rank (one allgather of counts, one of ids, one allreduce of |union|
 * rows in which each value is nonzero on its owner alone).  Returns |union|. */
int sparse_rows_fetch(sparse_rows *s, const zero_shard *z, float *arena, size_t table,
                      const int *ids, int n);

#endif
