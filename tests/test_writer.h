/* A writer stopped in the middle of a write, for tests of what a second
 * writer, or the one after a kill, finds there.  Include after cmocka.h. */
#ifndef TESTS_TEST_WRITER_H
#define TESTS_TEST_WRITER_H

#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/fsutil.h"

/* Called by begin once the child is where the test wants it: hands the
 * NUL-terminated text to test_writer_start.  0, or -1 when it cannot. */
static inline int test_writer_ready(int ready, const char *text)
{
    const ssize_t n = (ssize_t)strlen(text) + 1;
    return write(ready, text, (size_t)n) == n ? 0 : -1;
}

/* A child process (killed when this one dies) that runs begin(arg, ready),
 * which calls test_writer_ready, then either waits there or returns 0; the
 * child then waits too, holding what it opened, to be killed.  Returns the
 * child's pid once it is ready, with its text in out. */
static inline pid_t test_writer_start(int (*begin)(void *arg, int ready), void *arg, char *out,
                                      size_t cap)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(fds[0]);
        if (begin(arg, fds[1]) != 0)
            _exit(1);
        pause();
        _exit(0);
    }
    close(fds[1]);
    assert_true(read(fds[0], out, cap) > 0);
    close(fds[0]);
    return pid;
}

/* A begin for test_writer_start: path (arg) being written, "first" in its
 * PATH.tmp, the write left open. */
static inline int test_writer_begin_file(void *path, int ready)
{
    char err[512];
    fs_atomic a;   /* left open: the process waits inside the write */
    if (fs_atomic_begin(&a, path, err, sizeof err) != 0 ||
        fs_atomic_write(&a, "first", 5, err, sizeof err) != 0)
        return -1;
    return test_writer_ready(ready, "begun");
}

/* SIGKILLs such a child mid-write and reaps it. */
static inline void test_writer_kill(pid_t pid)
{
    int status;
    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

#endif
