/* checkpointing: when the training loop saves a checkpoint, and resuming from
 * one (--resume auto|PATH).  The file format is io/checkpoint.h.
 *
 * Saves happen every checkpoint_every steps, at the end of the run, after the
 * step during which SIGINT/SIGTERM arrived (the run then stops) and after the
 * step during which SIGUSR1 arrived (the run goes on).  Each save appends a
 * "checkpoint" status record.  Saving is synchronous for now (blocked_s equals
 * write_s); a failed save stops the run with an error.
 *
 * With several ranks (no ZeRO yet) every rank holds the whole state: rank 0
 * writes the file and the others wait for it; on resume rank 0 reads the file
 * and broadcasts the state.  Every function here is collective over w.
 */
#ifndef TRAINER_CHECKPOINTING_H
#define TRAINER_CHECKPOINTING_H

#include <stdbool.h>
#include <stddef.h>

#include "comm/comm.h"
#include "trainer/config.h"
#include "trainer/model.h"
#include "trainer/optimizer.h"
#include "trainer/status.h"

/* --resume: "auto", a checkpoint path, or NULL for a fresh start (the default). */
void checkpoint_set_resume(const char *spec);

/* Ask for a checkpoint after the current step (SIGUSR1; signal-safe). */
void checkpoint_request(void);

/* Whether to save after step `done` (1-based); final: the run stops after it.
 * Consumes a pending checkpoint_request; all ranks agree (a signal may reach one). */
bool checkpoint_due(const run_config *c, const comm_world *w, int done, bool final);

/* Saves the state after `done` steps to OUT_DIR/ckpt_%06d.h5 and emits the
 * "checkpoint" record.  0, or -1 with a one-line reason in err. */
int checkpoint_save(const run_config *c, const comm_world *w, gpt2 *m, adamw_state *opt,
                    int done, double loss_scale, status_log *st, char *err, size_t errlen);

/* Applies the --resume request: loads the checkpoint into m and opt and sets
 * *start_step (0 for a fresh start) and *loss_scale (unchanged for a fresh start), with status events saying what happened.
 * 0, or -1 with a one-line reason in err. */
int checkpoint_resume(const run_config *c, const comm_world *w, gpt2 *m, adamw_state *opt,
                      status_log *st, int *start_step, double *loss_scale, char *err,
                      size_t errlen);

#endif
