/* A slow disk for one process, preloaded (LD_PRELOAD): pread and pwrite, the
 * calls HDF5's default driver reads and writes files with, take as long as
 * SLOW_DISK_MBPS MB/s would (default 25).  tests/e2e_mpi.sh gives it to rank
 * 0 alone, so the others wait while rank 0 reads or writes a checkpoint at
 * about the rate their watchdog allows for (watchdog_io_seconds). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

static void pace(size_t n)
{
    const char *e = getenv("SLOW_DISK_MBPS");
    double mbps = e && atof(e) > 0 ? atof(e) : 25, s = (double)n / (mbps * 1e6);
    struct timespec t = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&t, NULL);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    static ssize_t (*real)(int, const void *, size_t, off_t);
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "pwrite");
    pace(n);
    return real(fd, buf, n, off);
}

ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
    static ssize_t (*real)(int, void *, size_t, off_t);
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "pread");
    pace(n);
    return real(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    return pwrite(fd, buf, n, off);
}

ssize_t pread64(int fd, void *buf, size_t n, off_t off)
{
    return pread(fd, buf, n, off);
}
