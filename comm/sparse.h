/* sparse: the sum over ranks of a row-sparse gradient.
 *
 * The input side of the token embedding's gradient touches only the rows of
 * the tokens in a micro-batch (at most B*T of V).  Instead of reducing all V
 * rows, the ranks gather each other's row ids, take their union, and sum only
 * those rows: one allgather of counts, one of ids, one in-place allreduce of
 * |union| rows.  Every call is collective: a rank with nothing passes n = 0.
 */
#ifndef COMM_SPARSE_H
#define COMM_SPARSE_H

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

#endif
