/* node_share: memory that the ranks on one node map together, with a ready
 * flag per item in it.
 *
 * The trainer keeps one packed 16-bit copy of the weights per node in it
 * (trainer/model.h, gpt2_pack_share): each rank packs some of the matrices
 * and publishes them; the others wait for the flag before reading.  The
 * memory is an MPI shared window (Open MPI backs it with a file in /dev/shm).
 * Writers and readers are ordered by the flags alone; a writer may reuse an
 * item only once every reader is done with it, which the caller guarantees
 * (the trainer: every step ends in collectives that all ranks reach after
 * their last read).
 */
#ifndef COMM_NODE_SHARE_H
#define COMM_NODE_SHARE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct node_share node_share;

/* Collective over all ranks.  Maps `bytes` of memory shared by this node's
 * ranks, with `items` flags (all 0).  NULL with err empty where there is
 * nothing to share (one rank on this node); NULL with a reason in err where
 * the memory could not be had on some rank of the node (all of its ranks
 * then get NULL, so they agree to go without). */
node_share *node_share_open(size_t bytes, int items, char *err, size_t errlen);
/* Collective over the same ranks as the open; NULL is allowed. */
void node_share_close(node_share *s);

void *node_share_memory(const node_share *s);   /* 4096-byte aligned */
int node_share_rank(const node_share *s);       /* among the ranks on this node */
int node_share_size(const node_share *s);

/* Item i now holds generation gen (the writes before it are visible to any
 * rank that sees the flag). */
void node_share_publish(node_share *s, int item, unsigned gen);
/* Whether item i holds generation gen or later (generations compare as a
 * running count that may wrap: gen must be within 2^31 of what it holds). */
bool node_share_reached(const node_share *s, int item, unsigned gen);
/* The generation item i holds now. */
unsigned node_share_generation(const node_share *s, int item);
/* Returns once item i holds generation gen or later.  publisher is the node
 * rank that publishes it: under the watchdog (armed with `what`), one that
 * never does stops the job and is named.  While it waits it calls idle(arg)
 * now and then (unless NULL): the rank it waits for may itself be waiting
 * for this one's MPI to move (buckets_poke). */
void node_share_await(node_share *s, int item, unsigned gen, int publisher, const char *what,
                      void (*idle)(void *), void *arg);

#endif
