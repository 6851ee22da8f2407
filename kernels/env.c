#include "kernels/env.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* The variable's value, NULL when it is unset or empty. */
static const char *value_of(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static int refuse(const char *name, const char *v, const char *accepted, char *err, size_t errlen)
{
    snprintf(err, errlen, "%s=%s is not %s", name, v, accepted);
    return -1;
}

int env_flag(const char *name, bool dflt, bool *on, char *err, size_t errlen)
{
    const char *v = value_of(name);
    *on = dflt;
    if (!v)
        return 0;
    if ((v[0] != '0' && v[0] != '1') || v[1] != '\0')
        return refuse(name, v, "0 or 1", err, errlen);
    *on = v[0] == '1';
    return 0;
}

int env_positive(const char *name, double *value, char *err, size_t errlen)
{
    const char *v = value_of(name);
    *value = 0;
    if (!v)
        return 0;
    char *end;
    const double x = strtod(v, &end);   /* strtod alone would take " 5" and "+5" */
    if ((!isdigit((unsigned char)v[0]) && v[0] != '.') || *end != '\0' || !isfinite(x) || !(x > 0))
        return refuse(name, v, "a number > 0", err, errlen);
    *value = x;
    return 0;
}

int env_count(const char *name, int dflt, int *value, char *err, size_t errlen)
{
    const char *v = value_of(name);
    *value = dflt;
    if (!v)
        return 0;
    char *end;
    errno = 0;
    const long x = strtol(v, &end, 10);
    if (!isdigit((unsigned char)v[0]) || *end != '\0' || errno == ERANGE || x > INT_MAX)
        return refuse(name, v, "a whole number >= 0", err, errlen);
    *value = (int)x;
    return 0;
}

int env_thread_counts(const char *name, char *err, size_t errlen)
{
    const char *v = value_of(name);
    for (const char *p = v; p;) {
        while (isspace((unsigned char)*p))
            p++;
        char *end;
        errno = 0;
        const long n = isdigit((unsigned char)*p) ? strtol(p, &end, 10) : 0;
        if (n < 1 || n > INT_MAX || errno == ERANGE)
            break;
        for (p = end; isspace((unsigned char)*p); p++)
            ;
        if (*p == '\0')
            return 0;
        p = *p == ',' ? p + 1 : NULL;
    }
    return v ? refuse(name, v, "a list of thread counts >= 1 (such as 4 or 4,1)", err, errlen) : 0;
}
