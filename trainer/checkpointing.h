/* checkpointing: when the training loop saves a checkpoint, and resuming from
 * one (--resume auto|PATH).  The file format is io/checkpoint.h.
 *
 * Saves happen every checkpoint_every steps (one that falls on a step whose
 * update was skipped waits for the next that updates: train.c), at the end
 * of the run, after the step during which SIGINT/SIGTERM arrived (the run
 * then stops) and after the step during which SIGUSR1 arrived (the run goes
 * on).  Each save appends a "checkpoint" status record (write_s, blocked_s).
 * A failed save stops the run with an error.
 *
 * checkpoint_async = 1 (the default): rank 0 copies the state (params, Adam m
 * and v, step, loss scale) into a snapshot owned by the checkpointer (allocated and
 * touched once, by checkpoint_prepare) and a writer thread writes the file from it, so the
 * loop is blocked only for the copy (blocked_s; write_s is the thread's time).
 * At most one write is in flight: a save first waits for the previous one.  The
 * "checkpoint" record is emitted by the training thread when the write is known
 * to be done: at the first checkpoint_due after it finished, at the next save,
 * or at checkpoint_finish; a failed write is reported there as the error.
 * Handoff: the training thread writes the snapshot only while no writer runs;
 * the writer reads it (and writes its result fields) only until it is joined.
 * checkpoint_async = 0: the file is written in the loop (blocked_s = write_s).
 *
 * With several ranks rank 0 writes the file and, on resume, reads it; every
 * rank holds the whole parameters.  Without ZeRO (z NULL) every rank holds the
 * whole Adam state too: the others wait for the write, and on resume rank 0
 * broadcasts the state.  Under ZeRO (z: each rank's shard of m and v) no rank
 * ever holds the whole moments except in the snapshot:
 *  - async save: the shards are gathered straight into rank 0's snapshot (the
 *    one copy the background write needs anyway); rank 0's extra memory is the
 *    snapshot, 12 bytes per parameter, as without ZeRO; the others' is none;
 *  - synchronous save (checkpoint_async = 0, or no memory for the snapshot):
 *    rank 0 gathers one tensor at a time into a buffer of the largest tensor
 *    and writes it; the others send the slice of it their shard holds;
 *  - resume: rank 0 reads one tensor at a time into such a buffer and sends
 *    each rank the slice of it that rank's shard holds.
 * The state between calls (the resume request, the requests handled, the
 * snapshot and its writer) belongs to a checkpointer, one per run.
 * Every function here taking w is collective over w.
 */
#ifndef TRAINER_CHECKPOINTING_H
#define TRAINER_CHECKPOINTING_H

#include <stdbool.h>
#include <stddef.h>

#include "comm/comm.h"
#include "comm/zero.h"
#include "trainer/config.h"
#include "trainer/model.h"
#include "trainer/optimizer.h"
#include "trainer/scaler.h"
#include "trainer/status.h"

typedef struct checkpointer checkpointer;

/* A run's checkpointing; resume is --resume's "auto", a checkpoint path, or
 * NULL for a fresh start (kept by pointer).  NULL when out of memory. */
checkpointer *checkpointer_new(const char *resume);

/* Before training: with checkpoint_async, rank 0 allocates and touches the
 * snapshot now rather than at the first save (not collective). */
void checkpoint_prepare(checkpointer *ck, const run_config *c, const comm_world *w, const gpt2 *m);

/* Whether requests (as for checkpoint_due) holds one not yet acted on, on
 * this rank. */
bool checkpoint_requested(const checkpointer *ck, int requests);

/* Whether to save after this step: wanted (the loop's own reason, the same
 * on every rank: the end of the run, a periodic save) or a request.
 * requests counts the checkpoint requests so far (SIGUSR1, the control
 * socket): one more than at the last call asks for a save, and all ranks
 * agree (a signal may reach one).  Also collects a finished background write
 * (its "checkpoint" record).  1: save, 0: not now, -1: a background write
 * failed (one-line reason in err). */
int checkpoint_due(checkpointer *ck, const comm_world *w, bool wanted, int requests,
                   status_log *st, char *err, size_t errlen);

/* Saves the state after `done` steps to OUT_DIR/ckpt_%06d.h5 (async: waits for
 * the previous write, snapshots the state and starts the writer; its record
 * comes later).  opt holds this rank's shard of the moments when z is set
 * (ZeRO), all of them when z is NULL.  0, or -1 with a one-line reason in err
 * (also when the previous background write failed). */
int checkpoint_save(checkpointer *ck, const run_config *c, const comm_world *w, gpt2 *m,
                    adamw_state *opt, const zero_shard *z, int done,
                    const loss_scaler *scaler, status_log *st, char *err, size_t errlen);

/* The end of the run (also after an error or a stop request): waits for the
 * write in flight and emits its record.  0, or -1 when it failed.  Collective. */
int checkpoint_finish(checkpointer *ck, const comm_world *w, status_log *st, char *err,
                      size_t errlen);

/* trainer_close: joins a write still in flight (its failure becomes an "error"
 * record), then frees ck (NULL: nothing).  Not collective. */
void checkpoint_close(checkpointer *ck, status_log *st);

/* Before anything is written to out_dir: a fresh start (no --resume) is
 * refused when out_dir already holds checkpoints, since its saves and log
 * would be mixed with (and could replace) the other run's.  0, or -1 with a
 * one-line reason.  Collective. */
int checkpoint_check_fresh(const checkpointer *ck, const run_config *c, const comm_world *w,
                           char *err, size_t errlen);

/* Applies the --resume request: loads the checkpoint into m and opt (under
 * ZeRO, z: this rank's shard of the moments) and sets *start_step (0 for a
 * fresh start) and the fp16 loss scaler's scale and count (scaler NULL for
 * other precisions; unchanged for a fresh start or a checkpoint without
 * them), with status events saying what happened.  Rank 0 then reads the
 * chat template of the model the run starts from (the checkpoint, else
 * init_from), which saves keep when the data's tokenizer has none.  0, or -1
 * with a one-line reason in err.  Called for every run, --resume or not. */
int checkpoint_resume(checkpointer *ck, const run_config *c, const comm_world *w, gpt2 *m,
                      adamw_state *opt, const zero_shard *z, status_log *st, int *start_step,
                      loss_scaler *scaler, char *err, size_t errlen);

/* Whether checkpoint_resume loaded a checkpoint (the same on every rank). */
bool checkpoint_resumed(const checkpointer *ck);

#endif
