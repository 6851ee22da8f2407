/* config_doc: docs/config.md and the trainer's config key table agree, so the
 * document cannot drift from the code.
 *
 * The key table is read from the code itself, never from a copy: the keys and
 * their defaults are what config_defaults() and config_to_json() give, and a
 * documented key exists when config_set() accepts it.  A documented row is
 *     | `key` | `default` | meaning |
 * (`""` is the empty string).  Checked in both directions: every key of the
 * table is documented once, every documented key exists, and setting a key to
 * its documented default leaves the default config unchanged.
 *
 * Usage: test_config_doc [PATH] (default docs/config.md, from the repo root). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/config.h"

/* The one key config_to_json leaves out (a secret): looked up by name. */
#define SECRET_KEY "control_token"

static const char *doc_path = "docs/config.md";
static bool quiet;   /* the self-check's expected disagreements are not printed */

#define report(...) (quiet ? (void)0 : print_message(__VA_ARGS__))

typedef struct {
    char key[64];
    char value[256];
} doc_row;

/* Copies the backticked cell starting at p (after optional spaces) into out;
 * returns the position after the cell's closing '|', or NULL if it is not one. */
static const char *backticked_cell(const char *p, char *out, size_t cap)
{
    while (*p == ' ')
        p++;
    if (*p != '`')
        return NULL;
    const char *end = strchr(p + 1, '`');
    if (!end || (size_t)(end - p - 1) >= cap)
        return NULL;
    memcpy(out, p + 1, (size_t)(end - p - 1));
    out[end - p - 1] = '\0';
    for (p = end + 1; *p == ' '; p++)
        ;
    return *p == '|' ? p + 1 : NULL;
}

/* Every "| `key` | `default` |" row of text; returns the count (at most cap). */
static int parse_rows(const char *text, doc_row *rows, int cap)
{
    int n = 0;
    for (const char *line = text; line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        doc_row r;
        const char *p = line[0] == '|' ? backticked_cell(line + 1, r.key, sizeof r.key) : NULL;
        if (!p || !backticked_cell(p, r.value, sizeof r.value))
            continue;
        if (strcmp(r.value, "\"\"") == 0)
            r.value[0] = '\0';
        if (n < cap)
            rows[n] = r;
        n++;
    }
    return n;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    char *text = len < 0 ? NULL : malloc((size_t)len + 1);
    if (text && fread(text, 1, (size_t)len, f) != (size_t)len) {
        free(text);
        text = NULL;
    }
    if (text)
        text[len] = '\0';
    fclose(f);
    return text;
}

static bool same_config(const run_config *a, const run_config *b)
{
    char *ja = config_to_json(a), *jb = config_to_json(b);
    bool same = ja && jb && strcmp(ja, jb) == 0 && strcmp(a->control_token, b->control_token) == 0;
    free(ja);
    free(jb);
    return same;
}

/* Number of disagreements between the document text and the code; each one is
 * printed on a line of its own. */
static int check_doc(const char *text)
{
    enum { MAX_ROWS = 512 };
    static doc_row rows[MAX_ROWS];
    int n = parse_rows(text, rows, MAX_ROWS), problems = 0;
    if (n > MAX_ROWS) {
        report("more than %d documented keys\n", MAX_ROWS);
        return 1;
    }
    run_config def;
    config_defaults(&def);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < i; j++)
            if (strcmp(rows[i].key, rows[j].key) == 0) {
                report("%s is documented twice\n", rows[i].key);
                problems++;
            }
        run_config c;
        config_defaults(&c);
        char assignment[sizeof(doc_row) + 2], err[256];
        snprintf(assignment, sizeof assignment, "%.63s=%.255s", rows[i].key, rows[i].value);
        if (config_set(&c, assignment, err, sizeof err) != 0) {
            report("documented key %s: %s\n", rows[i].key, err);
            problems++;
        } else if (!same_config(&c, &def)) {
            report("%s: documented default \"%s\" is not the code's default\n",
                          rows[i].key, rows[i].value);
            problems++;
        }
    }
    char *json = config_to_json(&def);
    cJSON *o = json ? cJSON_Parse(json) : NULL;
    free(json);
    if (!o) {
        report("config_to_json gave no JSON object\n");
        return problems + 1;
    }
    int code_keys = 0;
    for (const cJSON *it = o->child; it; it = it->next, code_keys++) {
        bool found = false;
        for (int i = 0; i < n && !found; i++)
            found = strcmp(rows[i].key, it->string) == 0;
        if (!found) {
            report("config key %s is not documented\n", it->string);
            problems++;
        }
    }
    cJSON_Delete(o);
    bool secret_found = false;
    for (int i = 0; i < n && !secret_found; i++)
        secret_found = strcmp(rows[i].key, SECRET_KEY) == 0;
    if (!secret_found) {
        report("config key " SECRET_KEY " is not documented\n");
        problems++;
    }
    if (code_keys < 10) {   /* the table cannot be this small: the enumeration broke */
        report("only %d keys in the config dump\n", code_keys);
        problems++;
    }
    return problems;
}

static void test_doc_matches_code(void **state)
{
    (void)state;
    char *text = read_text(doc_path);
    if (!text)
        print_message("cannot read %s (run from the repository root, or pass the path)\n", doc_path);
    assert_non_null(text);
    assert_int_equal(check_doc(text), 0);
    free(text);
}

/* The check is able to fail: a wrong default, a missing key and an unknown key
 * are each caught in an otherwise correct document. */
static void test_drift_is_caught(void **state)
{
    (void)state;
    char *text = read_text(doc_path);
    assert_non_null(text);
    size_t len = strlen(text);
    char *doc = malloc(len + 256);
    assert_non_null(doc);
    quiet = true;

    /* an unknown key appended */
    snprintf(doc, len + 256, "%s\n| `no_such_key` | `1` | invented |\n", text);
    assert_true(check_doc(doc) > 0);

    /* a wrong default: the first row's value replaced */
    const char *row = strstr(text, "\n| `");   /* the first row of a key table */
    assert_non_null(row);
    row++;
    const char *cell = strchr(row + 3, '`');   /* closing backtick of the key */
    cell = strchr(cell + 1, '`');              /* opening backtick of the default */
    assert_non_null(cell);
    const char *cell_end = strchr(cell + 1, '`');
    size_t head = (size_t)(cell - text) + 1;
    snprintf(doc, len + 256, "%.*s%s%s", (int)head, text, "12345", cell_end);
    assert_true(check_doc(doc) > 0);

    /* a key left out: the first row removed */
    const char *next = strchr(row, '\n');
    assert_non_null(next);
    snprintf(doc, len + 256, "%.*s%s", (int)(row - text), text, next + 1);
    assert_true(check_doc(doc) > 0);

    quiet = false;
    free(doc);
    free(text);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        doc_path = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_doc_matches_code),
        cmocka_unit_test(test_drift_is_caught),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
