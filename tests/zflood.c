/* zflood: a hostile local client of the project's sockets (tests/e2e_sockets.sh), or
 * publisher to its subscriber (tests/e2e_status.sh).
 *   zflood subs ENDPOINT CLIENTS N SIZE   CLIENTS XSUB peers each send N distinct
 *                                         subscriptions of SIZE bytes (> 4096: messages)
 *   zflood msgs ENDPOINT CLIENTS N SIZE [BODY]
 *                                         CLIENTS DEALER peers each send N requests
 *                                         (an empty delimiter, then SIZE bytes: garbage,
 *                                         or BODY padded with spaces) and never read
 *                                         a reply
 *   zflood pub ENDPOINT SECONDS MSG...   a status publisher that says what a
 *                                         trainer never does: binds PUB and sends
 *                                         the MSGs in turn, one each 50 ms, for
 *                                         SECONDS (build/monitor's subscriber)
 * A DEALER whose send blocks for a second (the server's queue is full) stops;
 * what XSUB peers queue is sent for up to 5 s when they close.
 * Prints "zflood: sent S of T messages" and exits 0. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

static int publish(const char *endpoint, double seconds, char **msgs, int n)
{
    void *ctx = zmq_ctx_new(), *pub = zmq_socket(ctx, ZMQ_PUB);
    int linger = 0;
    zmq_setsockopt(pub, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(pub, endpoint) != 0) {
        fprintf(stderr, "zflood: cannot bind %s: %s\n", endpoint, zmq_strerror(zmq_errno()));
        return 1;
    }
    long sent = 0, total = (long)(seconds * 20);
    for (long i = 0; i < total; i++) {
        sent += zmq_send(pub, msgs[i % n], strlen(msgs[i % n]), 0) >= 0;
        usleep(50000);
    }
    printf("zflood: sent %ld of %ld messages\n", sent, total);
    zmq_close(pub);
    zmq_ctx_term(ctx);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 5 && strcmp(argv[1], "pub") == 0)
        return publish(argv[2], atof(argv[3]), argv + 4, argc - 4);
    if (argc < 6 || argc > 7 || (strcmp(argv[1], "subs") != 0 && strcmp(argv[1], "msgs") != 0)) {
        fprintf(stderr, "usage: zflood subs|msgs ENDPOINT CLIENTS N SIZE [BODY]\n"
                        "       zflood pub ENDPOINT SECONDS MSG...\n");
        return 2;
    }
    int subs = strcmp(argv[1], "subs") == 0, clients = atoi(argv[3]), n = atoi(argv[4]);
    size_t size = strtoul(argv[5], NULL, 10);
    const char *body = argc == 7 ? argv[6] : NULL;
    if (clients < 1 || clients > 64 || n < 1 || size < 16 || (body && strlen(body) > size)) {
        fprintf(stderr, "zflood: bad arguments\n");
        return 2;
    }
    void *ctx = zmq_ctx_new(), *peer[64];
    int alive[64], timeout = 1000, linger = 5000, hwm = 1000;   /* linger: deliver, then close */
    for (int c = 0; c < clients; c++) {
        peer[c] = zmq_socket(ctx, subs ? ZMQ_XSUB : ZMQ_DEALER);
        zmq_setsockopt(peer[c], ZMQ_SNDTIMEO, &timeout, sizeof timeout);
        zmq_setsockopt(peer[c], ZMQ_LINGER, &linger, sizeof linger);
        /* XSUB drops what exceeds its SNDHWM without a word: no bound there */
        int h = subs ? 0 : hwm;
        zmq_setsockopt(peer[c], ZMQ_SNDHWM, &h, sizeof h);
        alive[c] = zmq_connect(peer[c], argv[2]) == 0;
    }
    uint8_t *buf = malloc(size);
    memset(buf, body ? ' ' : 'x', size);
    long sent = 0;
    for (int i = 0; i < n; i++)
        for (int c = 0; c < clients; c++) {
            if (!alive[c])
                continue;
            if (body) {
                memcpy(buf, body, strlen(body));
            } else {   /* distinct content: the client and message number */
                snprintf((char *)buf + 1, size - 1, "%d-%d-", c, i);
                buf[size - 1] = (uint8_t)i;
            }
            if (subs) {
                /* a subscription; a huge one as a plain message, which the server's
                 * size bound refuses all the same (libzmq's own XSUB would otherwise
                 * store it in a trie, recursing once per byte) */
                buf[0] = size <= 4096 ? 1 : 2;
                alive[c] = zmq_send(peer[c], buf, size, 0) >= 0;
            } else {
                alive[c] = zmq_send(peer[c], "", 0, ZMQ_SNDMORE) >= 0 &&
                           zmq_send(peer[c], buf, size, 0) >= 0;
            }
            sent += alive[c];
        }
    printf("zflood: sent %ld of %ld messages\n", sent, (long)n * clients);
    for (int c = 0; c < clients; c++)
        zmq_close(peer[c]);
    zmq_ctx_term(ctx);
    free(buf);
    return 0;
}
