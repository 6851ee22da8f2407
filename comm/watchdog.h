/* watchdog: a rank never waits forever for its peers.
 *
 * The training thread arms the watchdog around every wait on other ranks
 * (gradient reduction, agreement on flags and losses).  If a wait lasts longer
 * than the timeout, a peer is stuck or unreachable (a rank that dies outright
 * is caught sooner by mpirun itself): the watchdog prints one line naming this
 * rank and what it was waiting for, and exits the process with status 3 so
 * mpirun takes the whole job down.  Checkpoints already on disk stay valid.
 * A wait that knows which peers it still waits for (the gradient exchange,
 * comm's roll call in a stalled agreement) tells the watchdog, and the line
 * names them and their hosts, so the user knows which node hung.
 */
#ifndef COMM_WATCHDOG_H
#define COMM_WATCHDOG_H

/* Starts the watchdog thread; timeout_s <= 0 disables it.  hosts[r] names
 * rank r's host in the message (hosts NULL: none named); they must stay valid
 * until watchdog_stop.  0 on success. */
int watchdog_start(int rank, double timeout_s, const char *const *hosts);
void watchdog_stop(void);

/* what must be a string literal (it is read by the watchdog thread). */
void watchdog_arm(const char *what);
/* The same for a wait that includes work of known length on a peer (rank 0
 * writing a checkpoint, a transfer of known size): it may last work_s beyond
 * the timeout, so a large model's save is not taken for a lost peer. */
void watchdog_arm_for(const char *what, double work_s);
void watchdog_disarm(void);
/* The armed wait still waits for messages from ranks[0..n) (distinct): the
 * message names the first few and counts the rest.  Replaces what was said
 * before; n = 0, arming and disarming forget them. */
void watchdog_waiting_for(const int *ranks, int n);

/* Seconds to allow for moving `bytes` through a slow disk or link (25 MB/s:
 * a busy network file system, a 1 Gbit/s link shared by several ranks). */
double watchdog_io_seconds(double bytes);

#endif
