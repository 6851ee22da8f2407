/* TCP endpoints for the tests of servers that bind one (control, publisher):
 * a port that is free now, and telling a port someone else took from a bind
 * the code under test got wrong.  The servers' APIs take an endpoint and do
 * not report the port ZeroMQ picked for tcp://HOST:*, so the port is chosen
 * here: the kernel's pick for a socket bound to port 0, released again. */
#ifndef TESTS_TEST_NET_H
#define TESTS_TEST_NET_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/test_util.h"

/* Binds a plain TCP socket to 127.0.0.1:port (0: any free port) and returns
 * the port it got, closing it again; 0 if the bind failed. */
static inline int test_tcp_bind_port(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    socklen_t len = sizeof a;
    int got = 0;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        got = ntohs(a.sin_port);
    close(fd);
    return got;
}

/* Opens a server on endpoint (tcp://127.0.0.1:PORT): NULL with a reason in err. */
typedef void *(*test_open_fn)(const char *endpoint, void *arg, char *err, size_t errlen);

/* Opens a server on a free loopback port, its endpoint in ep.  Returns it;
 * or NULL with a SKIP line for what when this machine has no free port to
 * give (after a few tries: another process may take the port between its
 * choice and the open).  open_fn failing on a port that a plain socket can
 * still bind is the code under test's failure: the test fails, saying why. */
static inline void *test_open_on_free_port(test_open_fn open_fn, void *arg, const char *what,
                                           char *ep, size_t eplen)
{
    char err[256] = "";
    for (int attempt = 0; attempt < 5; attempt++) {
        const int port = test_tcp_bind_port(0);
        if (port == 0)
            break;
        snprintf(ep, eplen, "tcp://127.0.0.1:%d", port);
        void *s = open_fn(ep, arg, err, sizeof err);
        if (s)
            return s;
        if (test_tcp_bind_port(port) == port)
            fail_msg("%s on the free port %s: %s", what, ep, err);
    }
    test_skip(what, "no free TCP port on 127.0.0.1 here");
    return NULL;
}

/* ZeroMQ leaves an ipc:// endpoint's socket file behind when the socket
 * bound to it closes: removed by the test once it is done with it. */
static inline void test_ipc_remove(const char *endpoint)
{
    unlink(endpoint + strlen("ipc://"));
}

#endif
