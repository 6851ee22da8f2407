#include "kernels/pages.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

enum { HUGE_PAGE = 2 << 20 };

void *pages_alloc(size_t bytes)
{
    const int huge = bytes >= HUGE_PAGE;
    void *p = NULL;
    if (posix_memalign(&p, huge ? HUGE_PAGE : 64, bytes ? bytes : 64) != 0)
        return NULL;
    if (huge)
        madvise(p, bytes, MADV_HUGEPAGE);
    return p;
}

void *pages_alloc_zeroed(size_t bytes)
{
    void *p = pages_alloc(bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}
