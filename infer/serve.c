/* serve: the --serve request loop; the protocol is in serve.h. */
#include "infer/serve.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "io/utf8.h"
#include "io/zsock.h"

/* The CLI's defaults (infer_main.c), so a request and the CLI agree. */
enum { DEFAULT_MAX_TOKENS = 256, DEFAULT_TOP_K = 40 };
#define DEFAULT_TEMPERATURE 0.8
#define DEFAULT_TOP_P 0.95

int infer_server_init(infer_server *sv, const infer_model *m, const tokenizer *tok, infer_kv kv,
                      char *err, size_t errlen)
{
    memset(sv, 0, sizeof *sv);
    sv->m = m;
    sv->tok = tok;
    if (infer_state_create(&sv->s, m, 0, kv, err, errlen) != 0)
        return -1;
    if (infer_sampler_init(&sv->sp, tokenizer_vocab_size(tok), 0, 0, 1, 0, err, errlen) != 0) {
        infer_state_free(&sv->s);
        return -1;
    }
    sv->toks = malloc((size_t)m->d.n_positions * sizeof *sv->toks);
    sv->ids = malloc((size_t)INFER_SERVE_MAX_BYTES * sizeof *sv->ids);
    sv->text_cap = 4096;
    sv->text = malloc(sv->text_cap);
    if (!sv->toks || !sv->ids || !sv->text) {
        snprintf(err, errlen, "out of memory for the server");
        infer_server_free(sv);
        return -1;
    }
    return 0;
}

void infer_server_free(infer_server *sv)
{
    if (sv->m) {
        infer_state_free(&sv->s);
        infer_sampler_free(&sv->sp);
    }
    free(sv->toks);
    free(sv->ids);
    free(sv->text);
    if (sv->sock)
        zmq_close(sv->sock);
    if (sv->ctx)
        zmq_ctx_term(sv->ctx);
    memset(sv, 0, sizeof *sv);
}

/* ---- a request ------------------------------------------------------------- */

typedef struct {
    const char *prompt;
    int max_tokens, top_k;
    float temperature, top_p;
    uint64_t seed;
} request;

/* An integral JSON number in [lo, hi] (hi <= 2^53, where doubles are exact). */
static int get_int(const cJSON *v, double lo, double hi, double *out)
{
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo ||
        v->valuedouble > hi)
        return -1;
    *out = v->valuedouble;
    return 0;
}

static int get_float(const cJSON *v, double lo, double hi, float *out)
{
    double x = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!(x >= lo && x <= hi))
        return -1;
    *out = (float)x;
    return 0;
}

/* Fills r from the object's fields; -1 with a reason for the first bad one. */
static int parse_request(const cJSON *o, request *r, char *err, size_t errlen)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    *r = (request){.prompt = "", .max_tokens = DEFAULT_MAX_TOKENS, .top_k = DEFAULT_TOP_K,
                   .temperature = DEFAULT_TEMPERATURE, .top_p = DEFAULT_TOP_P,
                   .seed = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec};
    const cJSON *f;
    cJSON_ArrayForEach(f, o) {
        const char *k = f->string;
        double v = 0;
        int rc = 0;
        const char *range = "";
        if (strcmp(k, "prompt") == 0) {
            rc = cJSON_IsString(f) ? 0 : -1;
            range = "a string";
            if (rc == 0)
                r->prompt = f->valuestring;
        } else if (strcmp(k, "max_tokens") == 0) {
            rc = get_int(f, 0, 1 << 30, &v);
            range = "an integer in 0..2^30";
            r->max_tokens = (int)v;
        } else if (strcmp(k, "top_k") == 0) {
            rc = get_int(f, 0, 1 << 30, &v);
            range = "an integer in 0..2^30";
            r->top_k = (int)v;
        } else if (strcmp(k, "seed") == 0) {
            rc = get_int(f, 0, 9007199254740992.0, &v);
            range = "an integer in 0..2^53";
            r->seed = (uint64_t)v;
        } else if (strcmp(k, "temperature") == 0) {
            rc = get_float(f, 0, 100, &r->temperature);
            range = "a number in 0..100";
        } else if (strcmp(k, "top_p") == 0) {
            rc = get_float(f, 0, 1, &r->top_p);
            range = "a number in 0..1";
        } else if (strcmp(k, "token") == 0) {
            rc = cJSON_IsString(f) ? 0 : -1;   /* checked by check_token */
            range = "a string";
        } else {
            snprintf(err, errlen, "unknown field '%.64s' (fields: prompt, max_tokens, "
                     "temperature, top_k, top_p, seed, token)", k);
            return -1;
        }
        if (rc != 0) {
            snprintf(err, errlen, "%s must be %s", k, range);
            return -1;
        }
    }
    return 0;
}

/* Appends token's bytes to the text buffer (growing it). */
static int collect(void *ctx, int token)
{
    infer_server *sv = ctx;
    uint32_t id = (uint32_t)token;
    if (token == tokenizer_eos(sv->tok))   /* ends the text; not part of it */
        return 1;
    size_t n = tokenizer_decode(sv->tok, &id, 1, NULL, 0);
    if (sv->text_len + n + 1 > sv->text_cap) {
        size_t cap = 2 * (sv->text_len + n + 1);
        uint8_t *p = realloc(sv->text, cap);
        if (!p) {
            sv->oom = 1;
            return 0;
        }
        sv->text = p;
        sv->text_cap = cap;
    }
    sv->text_len += tokenizer_decode(sv->tok, &id, 1, sv->text + sv->text_len, n);
    return 0;
}

/* Whether JSON text that cJSON parsed holds the escape \u0000.  cJSON
 * decodes it to a NUL byte, which ends the C string it returns: a prompt,
 * field name or token would be cut short there without a word.  In valid
 * JSON a backslash is always inside a string and starts an escape. */
static bool escaped_nul(const char *s)
{
    for (; *s; s++)
        if (*s == '\\') {
            if (strncmp(s + 1, "u0000", 5) == 0)
                return true;
            s++;   /* the escaped character: "\\u0000" is text, not a NUL */
        }
    return false;
}

/* 0 if the request carries the server's token (or the server has none). */
static int check_token(const infer_server *sv, const cJSON *o, char *err, size_t errlen)
{
    if (!sv->token)
        return 0;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "token");
    if (cJSON_IsString(t) && zsock_token_equal(t->valuestring, strlen(t->valuestring), sv->token))
        return 0;
    snprintf(err, errlen, "%s token", cJSON_IsString(t) ? "wrong" : "missing");
    return -1;
}

/* Runs a parsed request; adds the reply's fields to out, or -1 with a reason. */
static int run_request(infer_server *sv, const request *r, cJSON *out, char *err, size_t errlen)
{
    const char *text = *r->prompt ? r->prompt : "\n";   /* as the CLI: a newline */
    size_t len = strlen(text);
    int T = sv->m->d.n_positions;
    size_t n = len <= INFER_SERVE_MAX_BYTES ? tokenizer_encode(sv->tok, (const uint8_t *)text,
                                                               len, sv->ids) : len;
    if (n == SIZE_MAX) {
        snprintf(err, errlen, "out of memory encoding the prompt");
        return -1;
    }
    if (n > (size_t)T) {
        snprintf(err, errlen, "the prompt is %zu tokens but the context holds %d", n, T);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        sv->toks[i] = (int)sv->ids[i];
    sv->sp.temperature = r->temperature;
    sv->sp.top_k = r->top_k;
    sv->sp.top_p = r->top_p;
    sv->sp.rng = r->seed;
    sv->text_len = 0;
    sv->oom = 0;
    infer_gen_stats st = {0};
    if (r->max_tokens > 0)
        st = infer_generate(sv->m, &sv->s, &sv->sp, sv->toks, (int)n, r->max_tokens, collect, sv);
    char *utf8 = sv->oom ? NULL : utf8_valid_copy(sv->text, sv->text_len);
    if (!utf8) {
        snprintf(err, errlen, "out of memory for the reply");
        return -1;
    }
    cJSON_AddStringToObject(out, "text", utf8);
    free(utf8);
    cJSON_AddNumberToObject(out, "tokens", st.n_generated);
    cJSON_AddNumberToObject(out, "prompt_tokens", (double)n);
    cJSON_AddNumberToObject(out, "tokens_per_s",
                            st.decode_s > 0 ? st.n_generated / st.decode_s : 0.0);
    cJSON_AddBoolToObject(out, "context_full", st.context_full);
    return 0;
}

char *infer_server_handle(infer_server *sv, const void *req, size_t len)
{
    char err[256] = "";
    cJSON *out = cJSON_CreateObject();
    if (!out)
        return NULL;
    /* cJSON wants NUL-terminated text and stops at an embedded NUL: copy, and
     * refuse a NUL so that trailing bytes are never silently ignored */
    cJSON_AddBoolToObject(out, "ok", 1);   /* first, for people reading replies */
    char *text = len < INFER_SERVE_MAX_BYTES + 1 ? malloc(len + 1) : NULL;
    cJSON *o = NULL;
    request r;
    int rc = -1;
    if (!text)
        snprintf(err, sizeof err, "request too large or out of memory");
    else if (memcpy(text, req, len), text[len] = '\0', strlen(text) != len)
        snprintf(err, sizeof err, "request is not JSON (it holds a NUL byte)");
    else if (!(o = cJSON_ParseWithOpts(text, NULL, 1)))
        snprintf(err, sizeof err, "request is not valid JSON");
    else if (!cJSON_IsObject(o))
        snprintf(err, sizeof err, "request must be a JSON object");
    else if (escaped_nul(text))
        snprintf(err, sizeof err, "request holds \\u0000: a NUL byte is not allowed in a string");
    else if (check_token(sv, o, err, sizeof err) == 0 && parse_request(o, &r, err, sizeof err) == 0)
        rc = run_request(sv, &r, out, err, sizeof err);
    if (rc != 0) {   /* run_request adds its fields only once nothing can fail */
        cJSON_ReplaceItemInObject(out, "ok", cJSON_CreateFalse());
        cJSON_AddStringToObject(out, "error", err);
    }
    char *reply = cJSON_PrintUnformatted(out);
    cJSON_Delete(out);
    cJSON_Delete(o);
    free(text);
    return reply;
}

/* ---- the socket ------------------------------------------------------------ */

/* The socket is a ROUTER speaking the REP protocol: a peer that sends a
 * malformed message cannot wedge a REP state machine (zsock_recv_request
 * drops what REP would), and every reply goes back on the envelope of its
 * request.  A body of several parts gets an error reply. */
static void serve_one(infer_server *sv)
{
    zsock_request q;
    if (!zsock_recv_request(sv->sock, ZSOCK_SERVE, &q))
        return;
    size_t len;
    const void *body = zsock_request_body(&q, &len);
    char *reply = q.multipart ? strdup("{\"ok\":false,\"error\":\"a request is one message part\"}")
                              : infer_server_handle(sv, body, len);
    zsock_reply(sv->sock, &q, reply ? reply : "", reply ? strlen(reply) : 0);
    free(reply);
    zsock_request_close(&q);
}

int infer_serve_check(const char *endpoint, char *err, size_t errlen)
{
    if (zsock_endpoint_none(endpoint)) {   /* "none" is a valid endpoint elsewhere, not here */
        snprintf(err, errlen, "--serve needs an endpoint to listen on, not \"%s\"", endpoint);
        return -1;
    }
    return zsock_endpoint_policy("--serve", endpoint, zsock_env_token(INFER_SERVE_TOKEN_ENV),
                                 "a token ($" INFER_SERVE_TOKEN_ENV ")", err, errlen);
}

int infer_serve_bind(infer_server *sv, const char *endpoint, char *err, size_t errlen)
{
    sv->token = zsock_env_token(INFER_SERVE_TOKEN_ENV);
    zsock_opts zo = {.token = sv->token};
    sv->endpoint = endpoint;
    sv->ctx = zmq_ctx_new();
    sv->sock = sv->ctx ? zsock_open(sv->ctx, ZSOCK_SERVE, endpoint, &zo, err, errlen) : NULL;
    if (!sv->ctx)
        snprintf(err, errlen, "--serve: cannot create a ZeroMQ context");
    return sv->sock ? 0 : -1;
}

int infer_serve(infer_server *sv, const atomic_int *stop, char *err, size_t errlen)
{
    while (!atomic_load(stop)) {
        zmq_pollitem_t item = {sv->sock, 0, ZMQ_POLLIN, 0};
        int ready = zmq_poll(&item, 1, 500);
        if (ready < 0 && zmq_errno() != EINTR) {
            snprintf(err, errlen, "--serve %s: %s", sv->endpoint, zmq_strerror(zmq_errno()));
            return -1;
        }
        if (ready > 0)
            serve_one(sv);
    }
    return 0;
}
