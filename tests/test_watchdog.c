/* watchdog: a wait on other ranks longer than the timeout ends the process
 * with status 3; watchdog_arm_for allows a wait its known work beyond the
 * timeout (a large checkpoint written by rank 0).  Each case runs in a child
 * process, as the watchdog exits the process it guards. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <sys/wait.h>
#include <unistd.h>

#include "comm/watchdog.h"

/* A child whose watchdog has a 1 s timeout arms it (work_s beyond that) and
 * waits wait_s before disarming: its exit status. */
static int wait_in_child(double work_s, double wait_s)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (watchdog_start(0, 1.0) != 0)
            _exit(9);
        watchdog_arm_for("a test wait", work_s);
        usleep((useconds_t)(wait_s * 1e6));
        watchdog_disarm();
        watchdog_stop();
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_timeout_ends_the_process(void **state)
{
    (void)state;
    assert_int_equal(wait_in_child(0, 3.5), 3);
}

static void test_known_work_is_allowed(void **state)
{
    (void)state;
    assert_int_equal(wait_in_child(3.0, 2.0), 0);
}

static void test_io_seconds_grow_with_bytes(void **state)
{
    (void)state;
    assert_true(watchdog_io_seconds(0) == 0);
    /* a 1.5B-parameter model's checkpoint (18 GB) gets minutes, not the 60 s timeout */
    assert_true(watchdog_io_seconds(18e9) > 600);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timeout_ends_the_process),
        cmocka_unit_test(test_known_work_is_allowed),
        cmocka_unit_test(test_io_seconds_grow_with_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
