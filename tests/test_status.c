/* status: log.jsonl is appended to on resume; a log cut off inside a record
 * (a full disk, a crash mid-write) keeps the records appended after it whole;
 * a record quoting bytes that are not UTF-8 is still valid UTF-8. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "io/utf8.h"
#include "trainer/status.h"

/* Writes text as dir/log.jsonl (NULL: no file), opens the log there, appends
 * one event record with message and closes it; returns the file's lines in lines[]. */
static int append_message(const char *text, const char *message, char lines[][512], int max)
{
    char dir[] = "/tmp/test_status.XXXXXX", path[600], err[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/log.jsonl", dir);
    if (text) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
    }
    status_log s = {0};
    assert_int_equal(status_open(&s, dir, 1, err, sizeof err), 0);
    status_event(&s, "event", 7, message);
    status_close(&s);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    int n = 0;
    while (n < max && fgets(lines[n], 512, f))
        n++;
    fclose(f);
    unlink(path);
    rmdir(dir);
    return n;
}

static int append_event(const char *text, char lines[][512], int max)
{
    return append_message(text, "resumed", lines, max);
}

/* line is one whole record: an object whose message is "resumed" */
static void assert_event(const char *line)
{
    cJSON *r = cJSON_Parse(line);
    assert_true(cJSON_IsObject(r));
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(r, "message")), "resumed");
    cJSON_Delete(r);
}

static void test_new_log(void **state)
{
    (void)state;
    char lines[4][512];
    assert_int_equal(append_event(NULL, lines, 4), 1);
    assert_event(lines[0]);
}

static void test_whole_log_gets_no_blank_line(void **state)
{
    (void)state;
    char lines[4][512];
    assert_int_equal(append_event("{\"type\":\"step\",\"step\":6}\n", lines, 4), 2);
    assert_string_equal(lines[0], "{\"type\":\"step\",\"step\":6}\n");
    assert_event(lines[1]);
}

static void test_cut_record_stays_apart(void **state)
{
    (void)state;
    char lines[4][512];
    assert_int_equal(append_event("{\"type\":\"step\",\"step\":6}\n{\"type\":\"st", lines, 4), 3);
    assert_string_equal(lines[1], "{\"type\":\"st\n");
    assert_event(lines[2]);
}

/* A file name's stray bytes become U+FFFD: Python's json reader (strict
 * UTF-8) refused the whole line. */
static void test_record_is_utf8(void **state)
{
    (void)state;
    char lines[2][512];
    assert_int_equal(append_message(NULL, "from ck\xff\xe2\x82.h5 in caf\xc3\xa9", lines, 2), 1);
    const uint8_t *u = (const uint8_t *)lines[0];
    for (size_t i = 0, n = strlen(lines[0]); i < n; i += (size_t)utf8_step(u + i, n - i))
        assert_true(utf8_step(u + i, n - i) > 0);
    cJSON *r = cJSON_Parse(lines[0]);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(r, "message")),
                        "from ck\xef\xbf\xbd\xef\xbf\xbd.h5 in caf\xc3\xa9");
    cJSON_Delete(r);
}

/* A log that cannot be written (here /dev/full) is noticed, not ignored; a
 * record written again later starts on its own line. */
static void test_failed_write_is_noticed(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_status.XXXXXX", path[600], err[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/log.jsonl", dir);
    assert_int_equal(symlink("/dev/full", path), 0);
    status_log s = {0};
    assert_int_equal(status_open(&s, dir, 1, err, sizeof err), 0);
    status_event(&s, "event", 7, "resumed");
    assert_true(s.log_failing);
    status_close(&s);
    unlink(path);
    rmdir(dir);
}

static void test_peak_rss_not_below_rss(void **state)
{
    (void)state;
    char *block = malloc(64 << 20);
    assert_non_null(block);
    memset(block, 1, 64 << 20);
    const double now = process_rss_mb();   /* first: the process only grows after it */
    const double peak = process_peak_rss_mb();
    free(block);
    assert_true(peak >= now);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_log),
        cmocka_unit_test(test_whole_log_gets_no_blank_line),
        cmocka_unit_test(test_cut_record_stays_apart),
        cmocka_unit_test(test_record_is_utf8),
        cmocka_unit_test(test_failed_write_is_noticed),
        cmocka_unit_test(test_peak_rss_not_below_rss),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
