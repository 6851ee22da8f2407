/* buckets: gradient averaging overlapped with backward.
 *
 * The gradient arena is cut into buckets of bucket_mb from its end (backward
 * finishes the last layers first).  As backward reports that every gradient
 * from some offset on is final, the buckets wholly past it start an in-place
 * non-blocking allreduce; Open MPI only moves data inside MPI calls, so each
 * report also tests the reductions in flight.  buckets_finish starts what is
 * left and waits for everything.
 */
#ifndef COMM_BUCKETS_H
#define COMM_BUCKETS_H

#include <stddef.h>

typedef struct grad_buckets grad_buckets;

grad_buckets *buckets_create(float *grads, size_t n, size_t bucket_floats);
void buckets_destroy(grad_buckets *b);

/* Start of a backward whose gradients are to be reduced. */
void buckets_begin(grad_buckets *b);
/* grads[from..n) are final: start their buckets, progress the others. */
void buckets_ready(grad_buckets *b, size_t from);
/* Start the rest, wait for all; returns the seconds spent waiting here. */
double buckets_finish(grad_buckets *b);

#endif
