/* serve_client: the test client of build/infer --serve (tests/e2e_serve.sh).
 *   serve_client ENDPOINT MSG...          one REQ request per MSG, each reply on a line
 *   serve_client ENDPOINT --parts MSG...  the MSGs as the parts of one request
 * A MSG "@FILE" sends FILE's bytes.  Exit 1 if a reply does not come within 120 s. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* MSG's bytes: the text, or a file's contents for "@FILE" (malloc'd). */
static char *message(const char *arg, size_t *len)
{
    if (arg[0] != '@') {
        *len = strlen(arg);
        return strdup(arg);
    }
    FILE *f = fopen(arg + 1, "rb");
    char *buf = malloc(1 << 21);
    *len = f && buf ? fread(buf, 1, 1 << 21, f) : 0;
    if (f)
        fclose(f);
    return buf;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: serve_client ENDPOINT [--parts] MSG...\n");
        return 2;
    }
    int parts = strcmp(argv[2], "--parts") == 0, first = 2 + parts, timeout = 120000, rc = 0;
    void *ctx = zmq_ctx_new(), *sock = zmq_socket(ctx, ZMQ_REQ);
    zmq_setsockopt(sock, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    if (zmq_connect(sock, argv[1]) != 0) {
        fprintf(stderr, "serve_client: %s: %s\n", argv[1], zmq_strerror(zmq_errno()));
        return 1;
    }
    for (int i = first; i < argc && rc == 0; i++) {
        size_t len;
        char *msg = message(argv[i], &len);
        int more = parts && i + 1 < argc;
        zmq_send(sock, msg, len, more ? ZMQ_SNDMORE : 0);
        free(msg);
        if (more)
            continue;
        zmq_msg_t reply;
        zmq_msg_init(&reply);
        if (zmq_msg_recv(&reply, sock, 0) < 0) {
            fprintf(stderr, "serve_client: no reply: %s\n", zmq_strerror(zmq_errno()));
            rc = 1;
        } else {
            fwrite(zmq_msg_data(&reply), 1, zmq_msg_size(&reply), stdout);
            putchar('\n');
        }
        zmq_msg_close(&reply);
    }
    int linger = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(sock);
    zmq_ctx_term(ctx);
    return rc;
}
