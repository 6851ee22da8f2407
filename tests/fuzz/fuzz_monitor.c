/* fuzz_monitor: status records as build/monitor reads them, from the status
 * socket (the progress view) and from a run's log.jsonl (--plot, which also
 * draws them).  Input: records one per line, as the feed or the log holds
 * them; the first byte also picks a terminal or not, and a log-scale plot. */
#include <sys/mman.h>
#include <unistd.h>

#include "io/fsutil.h"
#include "launch/monitor_view.h"
#include "launch/plot.h"
#include "tests/fuzz/fuzz.h"

static char svg[64];
static int out_fd;   /* stdout: what the view printed for one input */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    /* the view prints into a memory file, read back after each input */
    out_fd = memfd_create("view", MFD_CLOEXEC);
    FUZZ_CHECK(out_fd >= 0 && dup2(out_fd, STDOUT_FILENO) == STDOUT_FILENO);
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";   /* cheap fsync */
    snprintf(svg, sizeof svg, "%s/fuzz_monitor.%d.svg", dir, (int)getpid());
    return 0;
}

/* The view printed text only: no control character (C0, DEL, C1 as UTF-8)
 * but its newlines and, on a terminal, the "\r\033[K" that redraws the
 * progress line (a record's strings come from a socket: an escape sequence
 * there would reach the terminal as a command). */
static void check_printed(bool tty)
{
    static char buf[1 << 16];
    FUZZ_CHECK(fflush(stdout) == 0);
    ssize_t n = pread(out_fd, buf, sizeof buf, 0);
    FUZZ_CHECK(n >= 0);
    for (ssize_t i = 0; i < n; i++) {
        if (tty && i + 3 < n && !memcmp(buf + i, "\r\033[K", 4))
            i += 3;
        else
            FUZZ_CHECK(buf[i] == '\n' || ((unsigned char)buf[i] >= 0x20 && buf[i] != 0x7f &&
                                          !((unsigned char)buf[i] == 0xc2 && i + 1 < n &&
                                            (unsigned char)buf[i + 1] >= 0x80 &&
                                            (unsigned char)buf[i + 1] <= 0x9f)));
    }
    FUZZ_CHECK(ftruncate(out_fd, 0) == 0 && lseek(STDOUT_FILENO, 0, SEEK_SET) == 0);
}

static void show_lines(char *text, bool tty)
{
    monitor_view v = {.tty = tty};
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *r = cJSON_Parse(line);
        if (cJSON_IsObject(r))
            monitor_show_record(&v, r, 1.7e9);
        cJSON_Delete(r);
    }
    check_printed(tty);
}

/* The log as a file (plot_read_log reads a path), collected and drawn. */
static void plot_log(const uint8_t *data, size_t size, bool log_y)
{
    int fd = memfd_create("log.jsonl", MFD_CLOEXEC);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(write(fd, data, size) == (ssize_t)size);
    char path[64], err[512];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    plot_data d = {0};
    int malformed;
    FUZZ_CHECK(plot_read_log(&d, path, &malformed, err, sizeof err) == 0);
    close(fd);
    if ((d.loss.n > 0 || d.val.n > 0) && plot_write_svg(&d, svg, log_y, err, sizeof err) != 0) {
        FUZZ_CHECK(strstr(err, "nothing to plot"));   /* log scale, no positive loss */
    } else if (d.loss.n > 0 || d.val.n > 0) {   /* every coordinate and label a number */
        uint8_t *text;
        size_t len;
        FUZZ_CHECK(fs_read_file(svg, &text, &len, err, sizeof err) == 0);
        FUZZ_CHECK(!strstr((char *)text, "nan") && !strstr((char *)text, "inf"));
        free(text);
    }
    unlink(svg);
    plot_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_cstr(data, size);
    if (!text)
        return 0;
    bool flag = size > 0 && (data[0] & 1);
    show_lines(text, flag);
    plot_log(data, size, flag);
    free(text);
    return 0;
}
