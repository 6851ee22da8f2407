/* procmem: this process's resident memory in MB of 10^6 bytes, the unit of
 * every size in the trainer's status records and in infer --bench, read the
 * same way for both. */
#ifndef IO_PROCMEM_H
#define IO_PROCMEM_H

/* The resident set size now (0 if unknown), and the largest it has been. */
double process_rss_mb(void);
double process_peak_rss_mb(void);

#endif
