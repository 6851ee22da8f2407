#include "io/procmem.h"

#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

double process_rss_mb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return (double)resident * (double)sysconf(_SC_PAGESIZE) / 1e6;
}

double process_peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    /* ru_maxrss (KiB) is updated lazily by the kernel and can trail the
     * resident size just read from statm: a peak is never below the present */
    const double peak = (double)ru.ru_maxrss * 1024.0 / 1e6, now = process_rss_mb();
    return peak > now ? peak : now;
}
