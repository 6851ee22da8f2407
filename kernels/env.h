/* env: strict readers of the environment variables that configure a program.
 *
 * Unset and empty mean the default.  A value that cannot be honoured is an
 * error whose one-line reason names the variable, the value and what is
 * accepted, for the program to print at start and exit on: a setting someone
 * asked for is never dropped without a word.  Each reader returns 0, or -1
 * with the reason in err, and leaves the default in its output either way, so
 * a module that reads a variable where it cannot fail (a kernel's first call)
 * passes err NULL and errlen 0 and runs on the default: the programs have
 * refused a bad value by then.  A header of kernels/ since kernels read such
 * variables too, and every other folder may include kernels/.
 */
#ifndef KERNELS_ENV_H
#define KERNELS_ENV_H

#include <stdbool.h>
#include <stddef.h>

/* name=0 or name=1; *on = dflt when unset or empty. */
int env_flag(const char *name, bool dflt, bool *on, char *err, size_t errlen);

/* name=a finite number > 0; *value = 0 when unset or empty. */
int env_positive(const char *name, double *value, char *err, size_t errlen);

/* name=a whole number >= 0 (at most INT_MAX); *value = dflt when unset or empty. */
int env_count(const char *name, int dflt, int *value, char *err, size_t errlen);

/* name=a comma-separated list of thread counts >= 1, spaces allowed around
 * them, as OpenMP reads OMP_NUM_THREADS (one count per nesting level); OpenMP
 * itself warns about another value and runs on every CPU. */
int env_thread_counts(const char *name, char *err, size_t errlen);

#endif
