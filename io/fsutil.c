#include "io/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <ctype.h>
#include <dirent.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/utf8.h"

int fs_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

void fs_printable(char *s)
{
    for (unsigned char *p = (unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            *p = '?';
        } else if (utf8_is_c1(p)) {
            p[0] = p[1] = '?';
            p++;
        }
    }
}

static int fail(char *err, size_t errlen, const char *path, const char *what)
{
    snprintf(err, errlen, "%s: %s: %s", path, what, strerror(errno));
    return -1;
}

/* For a create of tmp (PATH.tmp or a folder beside PATH) that failed: the
 * user gave PATH, so a missing directory is named as PATH's, not by the
 * temporary name they never typed. */
static int fail_create(char *err, size_t errlen, const char *path, size_t n, const char *tmp,
                       const char *what)
{
    int saved = errno;
    const char *slash = NULL;
    for (size_t i = 0; i < n; i++)
        if (path[i] == '/')
            slash = path + i;
    struct stat st;
    char dir[4096];
    if (saved == ENOENT && slash && slash > path && (size_t)(slash - path) < sizeof dir) {
        memcpy(dir, path, (size_t)(slash - path));
        dir[slash - path] = '\0';
        if (stat(dir, &st) != 0) {
            snprintf(err, errlen, "%.*s: %s: the directory %s does not exist", (int)n, path, what,
                     dir);
            return -1;
        }
    }
    errno = saved;
    return fail(err, errlen, tmp, what);
}

/* The PATH.tmp being written, for the handler fs_atomic_remove_on_signals
 * installs: its name is in place before the flag is set, and the flag is
 * cleared before the file is renamed or deleted. */
static bool remove_on_signals;
static char signal_tmp[4096];
static volatile sig_atomic_t signal_tmp_set;

static void remove_tmp(int sig)
{
    if (signal_tmp_set)
        unlink(signal_tmp);
    raise(sig);   /* delivered once this returns, with the default action (SA_RESETHAND) */
}

void fs_atomic_remove_on_signals(void)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    struct sigaction sa = {.sa_handler = remove_tmp, .sa_flags = SA_RESETHAND}, old;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN)   /* nohup, & */
            sigaction(sigs[i], &sa, NULL);
    remove_on_signals = true;
}

static void track(const fs_atomic *a)
{
    if (remove_on_signals && !signal_tmp_set && strlen(a->tmp) < sizeof signal_tmp) {
        strcpy(signal_tmp, a->tmp);
        signal_tmp_set = 1;
    }
}

static void untrack(const fs_atomic *a)
{
    if (signal_tmp_set && strcmp(signal_tmp, a->tmp) == 0)
        signal_tmp_set = 0;
}

/* Whether fd is still the file path names (follow: through a final symlink,
 * as open did): a lock taken on fd guards that name only then, since another
 * process may have renamed or removed the file between the open and the lock. */
static bool still_named(int fd, const char *path, bool follow)
{
    struct stat held, named;
    return fstat(fd, &held) == 0 && (follow ? stat(path, &named) : lstat(path, &named)) == 0 &&
           held.st_dev == named.st_dev && held.st_ino == named.st_ino;
}

int fs_atomic_begin(fs_atomic *a, const char *path, char *err, size_t errlen)
{
    size_t n = strlen(path);
    a->path = strdup(path);
    a->tmp = malloc(n + 5);
    if (!a->path || !a->tmp) {
        free(a->path);
        free(a->tmp);
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    memcpy(a->tmp, path, n);
    memcpy(a->tmp + n, ".tmp", 5);
    /* PATH.tmp is locked (flock) until it is renamed or deleted: a second
     * writer of PATH is refused instead of truncating the first one's file
     * under it, and one that a killed writer left is taken over.  Opened
     * without O_TRUNC: emptied only once locked, and only if it is still the
     * file of that name (not one its writer has just renamed to PATH). */
    for (;;) {
        a->fd = open(a->tmp, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (a->fd < 0) {
            fail_create(err, errlen, path, n, a->tmp, "cannot create");
            break;
        }
        if (flock(a->fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
            snprintf(err, errlen, "%s: another process is writing it (%s is locked)", path,
                     a->tmp);
        } else if (!still_named(a->fd, a->tmp, true)) {
            close(a->fd);
            continue;
        } else if (ftruncate(a->fd, 0) != 0) {
            fail(err, errlen, a->tmp, "cannot truncate");
        } else {
            track(a);
            return 0;
        }
        close(a->fd);
        break;
    }
    free(a->path);
    free(a->tmp);
    return -1;
}

int fs_atomic_write(fs_atomic *a, const void *buf, size_t n, char *err, size_t errlen)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(a->fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return fail(err, errlen, a->tmp, "write failed");
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void release(fs_atomic *a)
{
    free(a->path);
    free(a->tmp);
    a->path = a->tmp = NULL;
    a->fd = -1;
}

void fs_atomic_abort(fs_atomic *a)
{
    if (a->tmp && a->fd >= 0) {   /* before the lock goes with the descriptor */
        untrack(a);
        unlink(a->tmp);
    }
    if (a->fd >= 0)
        close(a->fd);
    release(a);
}

int fs_fsync_file(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int rc = fd >= 0 && fsync(fd) == 0 ? 0 : -1;
    if (rc != 0)
        rc = fail(err, errlen, path, "cannot sync to disk");
    if (fd >= 0)
        close(fd);
    return rc;
}

int fs_fsync_parent(const char *path, char *err, size_t errlen)
{
    char *dir = strdup(path);
    if (!dir) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    char *slash = strrchr(dir, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    int rc = 0;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || (fsync(fd) != 0 && errno != EINVAL))   /* EINVAL: this file system cannot */
        rc = fail(err, errlen, dir, "cannot sync directory");
    if (fd >= 0)
        close(fd);
    free(dir);
    return rc;
}

int fs_atomic_commit(fs_atomic *a, char *err, size_t errlen)
{
    if (fsync(a->fd) != 0) {
        fail(err, errlen, a->tmp, "fsync failed");
        fs_atomic_abort(a);
        return -1;
    }
    untrack(a);   /* the name is about to be PATH's */
    if (rename(a->tmp, a->path) != 0) {   /* locked until it has its final name */
        fail(err, errlen, a->path, "cannot rename temporary file into place");
        fs_atomic_abort(a);
        return -1;
    }
    int rc = close(a->fd);
    a->fd = -1;
    if (rc != 0)
        rc = fail(err, errlen, a->path, "close failed");
    if (rc == 0)
        rc = fs_fsync_parent(a->path, err, errlen);
    release(a);
    return rc;
}

int fs_write_file_atomic(const char *path, const void *buf, size_t n, char *err, size_t errlen)
{
    fs_atomic a;
    if (fs_atomic_begin(&a, path, err, errlen) != 0)
        return -1;
    if (fs_atomic_write(&a, buf, n, err, errlen) != 0) {
        fs_atomic_abort(&a);
        return -1;
    }
    return fs_atomic_commit(&a, err, errlen);
}

/* Reads until EOF rather than trusting st_size, so pipes and growing files
 * work too; reads at most max + 1 bytes, enough to tell a file too long. */
int fs_read_file_max(const char *path, size_t max, uint8_t **data, size_t *len, char *err,
                     size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(err, errlen, path, "cannot open");
    struct stat st;
    size_t cap = (fstat(fd, &st) == 0 && st.st_size > 0) ? (size_t)st.st_size + 4096 : 4096;
    if (max < SIZE_MAX - 1 && cap > max + 2)
        cap = max + 2;
    size_t n = 0;
    uint8_t *buf = malloc(cap);
    while (buf && n <= max) {
        if (n + 1 >= cap) {
            uint8_t *bigger = realloc(buf, cap * 2);
            if (!bigger) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r == 0)
            break;
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fail(err, errlen, path, "read failed");
            free(buf);
            close(fd);
            return -1;
        }
        n += (size_t)r;
    }
    close(fd);
    if (!buf) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    if (n > max) {
        snprintf(err, errlen, "%s: longer than %zu bytes, not the small file expected here", path,
                 max);
        free(buf);
        return -1;
    }
    buf[n] = 0;
    *data = buf;
    *len = n;
    return 0;
}

int fs_read_file(const char *path, uint8_t **data, size_t *len, char *err, size_t errlen)
{
    return fs_read_file_max(path, SIZE_MAX, data, len, err, errlen);
}

int fs_map_file(const char *path, const void **data, size_t *len, char *err, size_t errlen)
{
    int fd;
    if (fs_map_file_fd(path, data, len, &fd, err, errlen) != 0)
        return -1;
    close(fd);
    return 0;
}

int fs_map_file_fd(const char *path, const void **data, size_t *len, int *fd_out, char *err,
                   size_t errlen)
{
    *data = NULL;
    *len = 0;
    *fd_out = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(err, errlen, path, "cannot open");
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0) {
        rc = fail(err, errlen, path, "cannot stat");
    } else if (!S_ISREG(st.st_mode)) {
        rc = fs_fail(err, errlen, "%s: not a regular file", path);
    } else if (st.st_size > 0) {
        void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED)
            rc = fail(err, errlen, path, "cannot map");
        else
            *data = map, *len = (size_t)st.st_size;
    }
    if (rc == 0)
        *fd_out = fd;
    else
        close(fd);
    return rc;
}

void fs_unmap_file(const void *data, size_t len)
{
    if (data)
        munmap((void *)data, len);
}

bool fs_dir_has(const char *dir, const char *name, char *path, size_t cap)
{
    char own[PATH_MAX + 256];
    if (!path) {
        path = own;
        cap = sizeof own;
    }
    if ((size_t)snprintf(path, cap, "%s/%s", dir, name) >= cap)
        return false;
    return access(path, F_OK) == 0;
}

int fs_require_new(const char *path, const char *what, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) == 0)
        return fs_fail(err, errlen, "%s already exists (choose a new %s)", path, what);
    return 0;
}

int fs_mkdir_p(const char *dir, char *err, size_t errlen)
{
    if (dir[0] == '\0') {
        snprintf(err, errlen, "empty directory name");
        return -1;
    }
    char *p = strdup(dir);
    if (!p) {
        snprintf(err, errlen, "%s: out of memory", dir);
        return -1;
    }
    int rc = 0;
    for (char *s = p + 1; ; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char saved = *s;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            rc = fail(err, errlen, p, "cannot create directory");
            break;
        }
        *s = saved;
        if (saved == '\0')
            break;
    }
    struct stat st;
    if (rc == 0 && (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))) {
        errno = ENOTDIR;
        rc = fail(err, errlen, dir, "cannot create directory");
    }
    free(p);
    return rc;
}

/* fs_checksum's state: four lanes, word i (8 bytes) into lane i % 4. */
static void checksum_words(uint64_t h[4], const uint8_t *x, size_t words)
{
    const uint64_t k = 0x9E3779B97F4A7C15ull;
    uint64_t w;
    for (size_t g = 0; g < words / 4; g++, x += 32)   /* four independent lanes: a few GB/s */
        for (int l = 0; l < 4; l++) {
            memcpy(&w, x + 8 * l, 8);
            h[l] = ((h[l] ^ w) << 31 | (h[l] ^ w) >> 33) * k;
        }
    for (size_t l = 0; l < words % 4; l++) {
        memcpy(&w, x + 8 * l, 8);
        h[l] = ((h[l] ^ w) << 31 | (h[l] ^ w) >> 33) * k;
    }
}

/* The sum of bytes bytes whose whole words went into h; rest holds the last
 * bytes % 8 of them. */
static uint64_t checksum_end(const uint64_t h[4], uint64_t bytes, const uint8_t *rest)
{
    const uint64_t k = 0x9E3779B97F4A7C15ull;
    uint64_t n = bytes / 4, r = n;
    if (n % 2) {
        uint32_t last;
        memcpy(&last, rest, 4);
        r ^= (uint64_t)last << 32;
    }
    const unsigned extra = (unsigned)(bytes % 4);
    if (extra) {   /* 1-3 bytes past the last whole word, with their count */
        uint64_t tail = extra;
        for (unsigned b = 0; b < extra; b++)
            tail |= (uint64_t)rest[4 * (n % 2) + b] << (8 * (b + 1));
        r = (r ^ tail << 32) * k;
    }
    for (int l = 0; l < 4; l++)
        r = ((r ^ h[l]) << 27 | (r ^ h[l]) >> 37) * k;
    return r;
}

uint64_t fs_checksum(const void *data, size_t bytes)
{
    const uint8_t *x = data;
    uint64_t h[4] = {1, 2, 3, 4};
    checksum_words(h, x, bytes / 8);
    return checksum_end(h, bytes, bytes % 8 ? x + bytes / 8 * 8 : x);
}

int fs_checksum_file(const char *path, uint64_t *bytes, uint64_t *sum, char *err, size_t errlen)
{
    enum { BLOCK = 1 << 20 };   /* a multiple of 32: each block starts at lane 0 */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(err, errlen, path, "cannot open");
    uint8_t *buf = malloc(BLOCK);
    uint64_t h[4] = {1, 2, 3, 4}, total = 0;
    size_t have = 0;   /* bytes in buf */
    int rc = buf ? 0 : fs_fail(err, errlen, "%s: out of memory", path);
    while (rc == 0) {
        ssize_t got = read(fd, buf + have, BLOCK - have);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            rc = fail(err, errlen, path, "read failed");
        else if (got == 0)
            break;
        have += (size_t)got;
        total += (uint64_t)got;
        if (have == BLOCK) {
            checksum_words(h, buf, BLOCK / 8);
            have = 0;
        }
    }
    if (rc == 0) {
        checksum_words(h, buf, have / 8);
        *bytes = total;
        *sum = checksum_end(h, total, buf + have / 8 * 8);
    }
    free(buf);
    close(fd);
    return rc;
}

/* name is base.tmp-XXXXXX (mkdtemp's six letters or digits), or that with
 * ".old" after it (fs_replace_dir's old directory, moved aside). */
static int temp_dir_of(const char *name, const char *base, size_t baselen)
{
    if (strncmp(name, base, baselen) != 0 || strncmp(name + baselen, ".tmp-", 5) != 0)
        return 0;
    const char *x = name + baselen + 5;
    for (int i = 0; i < 6; i++)
        if (!isalnum((unsigned char)x[i]))
            return 0;
    return x[6] == '\0' || strcmp(x + 6, ".old") == 0;
}

/* Removes the temporary directories beside dir[0..n) whose writer is dead: one
 * whose lock nobody holds.  One that cannot be locked at all (a file system
 * without flock) is left alone.  Names those removed in note ("" if none). */
static void remove_dead_temp_dirs(const char *dir, size_t n, char *note, size_t notelen)
{
    const char *slash = memrchr(dir, '/', n);
    const int prefix = slash ? (int)(slash + 1 - dir) : 0;   /* "a/b/" of "a/b/data" */
    char parent[4200], path[4200];
    snprintf(parent, sizeof parent, "%.*s", prefix ? prefix : 1, prefix ? dir : ".");
    DIR *d = opendir(parent);
    size_t used = 0;
    note[0] = '\0';
    for (struct dirent *e; d && (e = readdir(d));) {
        if (!temp_dir_of(e->d_name, dir + prefix, n - (size_t)prefix) ||
            snprintf(path, sizeof path, "%.*s%s", prefix, dir, e->d_name) >= (int)sizeof path)
            continue;
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            continue;
        if (flock(fd, LOCK_EX | LOCK_NB) == 0 && still_named(fd, path, false) &&
            fs_remove_dir(path) == 0 && used + 1 < notelen)
            used += (size_t)snprintf(note + used, notelen - used, "%s%s", used ? ", " : "", path);
        close(fd);
    }
    if (d)
        closedir(d);
    if (used > 0 && used + 1 < notelen)
        snprintf(note + used, notelen - used, ": left by an interrupted write of %.*s", (int)n, dir);
}

int fs_temp_dir_beside(const char *dir, char *tmp, size_t cap, int *lock, char *note,
                       size_t notelen, char *err, size_t errlen)
{
    *lock = -1;
    note[0] = '\0';
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')   /* "data/" names "data" */
        n--;
    if (snprintf(tmp, cap, "%.*s.tmp-XXXXXX", (int)n, dir) >= (int)cap || n >= 4000) {
        snprintf(err, errlen, "%s: path too long", dir);
        return -1;
    }
    remove_dead_temp_dirs(dir, n, note, notelen);
    for (;;) {
        snprintf(tmp, cap, "%.*s.tmp-XXXXXX", (int)n, dir);
        if (!mkdtemp(tmp))
            return fail_create(err, errlen, dir, n, tmp, "cannot create directory");
        if (chmod(tmp, 0755) != 0) {   /* mkdtemp's 0700 would hide the data from other users */
            fail(err, errlen, tmp, "cannot set permissions");
            rmdir(tmp);
            return -1;
        }
        /* Held until the directory is in place: another writer beside dir
         * takes it for a dead one's only when the lock is free.  One may have
         * caught it before it was taken here and removed it: then a new one is
         * made.  On a file system without flock it goes unlocked. */
        int fd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
            fail(err, errlen, tmp, "cannot open");
            rmdir(tmp);
            return -1;
        }
        int rc;
        while ((rc = flock(fd, LOCK_EX)) != 0 && errno == EINTR)
            ;
        if (rc != 0 || still_named(fd, tmp, true)) {
            *lock = fd;
            return 0;
        }
        close(fd);
    }
}

int fs_remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    char path[4200];
    for (struct dirent *e; d && (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name) < (int)sizeof path)
            unlink(path);
    if (d)
        closedir(d);
    return rmdir(dir);
}

/* Puts tmp in the place of the existing directory dir and deletes the old one. */
static int swap_dirs(const char *tmp, const char *dir, char *err, size_t errlen)
{
    /* tmp takes the old directory, which is then deleted */
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_EXCHANGE) != 0) {
        if (errno != EINVAL && errno != ENOSYS)
            return fail(err, errlen, dir, "cannot exchange directories");
        char aside[4200];
        if (snprintf(aside, sizeof aside, "%s.old", tmp) >= (int)sizeof aside ||
            rename(dir, aside) != 0)
            return fail(err, errlen, dir, "cannot move the old directory aside");
        if (rename(tmp, dir) != 0) {
            fail(err, errlen, dir, "cannot rename a directory into place");
            rename(aside, dir);   /* put the old one back */
            return -1;
        }
        fs_remove_dir(aside);
        return fs_fsync_parent(dir, err, errlen);
    }
    fs_remove_dir(tmp);
    return fs_fsync_parent(dir, err, errlen);
}

int fs_replace_dir(const char *tmp, const char *dir, char *err, size_t errlen)
{
    char why[600];
    if (fs_fsync_file(tmp, why, sizeof why) != 0) {   /* its entries, before it is published */
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    if (rename(tmp, dir) == 0)   /* no dir yet (or an empty one) */
        return fs_fsync_parent(dir, err, errlen);
    if (errno != EEXIST && errno != ENOTEMPTY)
        return fail(err, errlen, dir, "cannot rename a directory into place");
    /* The old directory waits for its deletion under a temporary name: locked,
     * a writer beside it does not take it for a dead one's (a killed process
     * leaves it unlocked, for the next one to remove). */
    int old = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (old >= 0)
        flock(old, LOCK_EX | LOCK_NB);
    int rc = swap_dirs(tmp, dir, err, errlen);
    if (old >= 0)
        close(old);
    return rc;
}

int fs_lock_dir(const char *dir, char *err, size_t errlen)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/lock", dir) >= (int)sizeof path)
        return fs_fail(err, errlen, "%s: path too long", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return fs_fail(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        const int why = errno;
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(fd);
        if (why == EWOULDBLOCK)
            return fs_fail(err, errlen, "%s is in use by process %s (another run writes there)",
                           dir, pid[0] ? pid : "?");
        return fs_fail(err, errlen, "%s: cannot lock: %s", path, strerror(why));
    }
    char pid[32];
    const int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        close(fd);
        return fs_fail(err, errlen, "%s: cannot write: %s", path, strerror(errno));
    }
    return fd;
}

void fs_unlock_dir(int fd)
{
    if (fd >= 0)
        close(fd);
}
