/* cli: what the command-line programs of launch/ share.  A program defines
 * CLI_NAME, its name as its messages begin with it, before including this. */
#ifndef LAUNCH_CLI_H
#define LAUNCH_CLI_H

#include <stdarg.h>
#include <stdio.h>

#ifndef CLI_NAME
#error "define CLI_NAME, the program's name, before including launch/cli.h"
#endif

/* Prints "CLI_NAME: message" as one line on stderr and returns code, so that
 * an error path reads `return die(EXIT_USAGE, "...", ...);`. */
__attribute__((format(printf, 2, 3))) static inline int die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs(CLI_NAME ": ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

#endif
