/* watchdog: a wait on other ranks longer than the timeout ends the process
 * with status 3; watchdog_arm_for allows a wait its known work beyond the
 * timeout (a large checkpoint written by rank 0); the message names the
 * peers a wait said it still waits for, with their hosts.  Each case runs in
 * a child process, as the watchdog exits the process it guards. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "comm/watchdog.h"

/* A child whose watchdog has a 1 s timeout arms it (work_s beyond that) and
 * waits wait_s before disarming: its exit status. */
static int wait_in_child(double work_s, double wait_s)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (watchdog_start(0, 1.0, NULL) != 0)
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

static const char *const hosts[] = {"nodeA", "nodeB", "nodeC", "nodeD", "nodeE", "nodeF"};

/* A child (rank 0, a 1 s timeout, hosts or none) arms a wait, reports
 * waiting_for[0..n) and then, when rearm, arms the wait again: the
 * watchdog's line on its stderr into out. */
static void message_of(bool with_hosts, const int *waiting_for, int n, bool rearm, char *out,
                       size_t cap)
{
    int fd[2];
    assert_int_equal(pipe(fd), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], STDERR_FILENO);
        if (watchdog_start(0, 1.0, with_hosts ? hosts : NULL) != 0)
            _exit(9);
        watchdog_arm("a test wait");
        watchdog_waiting_for(waiting_for, n);
        if (rearm)
            watchdog_arm("a collective");
        sleep(10);
        _exit(0);
    }
    close(fd[1]);
    size_t len = 0;
    for (ssize_t got; len + 1 < cap && (got = read(fd[0], out + len, cap - 1 - len)) > 0;)
        len += (size_t)got;
    out[len] = '\0';
    close(fd[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 3);
}

static void test_message_names_peers_and_hosts(void **state)
{
    (void)state;
    char line[512];
    const int ranks[] = {1, 2, 3, 5, 4};
    message_of(true, ranks, 5, false, line, sizeof line);
    assert_string_equal(line, "trainer: rank 0: waited 1 s for the other ranks in a test wait, "
                              "still waiting for ranks 1 (host nodeB), 2 (host nodeC), 3 (host "
                              "nodeD), 5 (host nodeF) and 1 more; a peer rank is stuck or "
                              "unreachable, aborting the job\n");
}

static void test_message_without_hosts(void **state)
{
    (void)state;
    char line[512];
    const int ranks[] = {1, 2};
    message_of(false, ranks, 2, false, line, sizeof line);
    assert_string_equal(line, "trainer: rank 0: waited 1 s for the other ranks in a test wait, "
                              "still waiting for ranks 1 and 2; a peer rank is stuck or "
                              "unreachable, aborting the job\n");
}

/* a new wait (a collective, which names no peers) forgets the last one's */
static void test_arming_forgets_the_peers(void **state)
{
    (void)state;
    char line[512];
    const int ranks[] = {1};
    message_of(true, ranks, 1, true, line, sizeof line);
    assert_string_equal(line, "trainer: rank 0: waited 1 s for the other ranks in a collective; "
                              "a peer rank is stuck or unreachable, aborting the job\n");
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
        cmocka_unit_test(test_message_names_peers_and_hosts),
        cmocka_unit_test(test_message_without_hosts),
        cmocka_unit_test(test_arming_forgets_the_peers),
        cmocka_unit_test(test_io_seconds_grow_with_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
