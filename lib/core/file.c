/* file.c — whole-file reads and atomic writes (temp file, fsync, rename). */
#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len > (1u << 30) ? (1u << 30) : len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int align__write_atomic(align__errbuf *eb, const char *path, const align__chunk *chunks, int n_chunks)
{
    if (!path || !*path)
        return align__error(eb, ALIGN_EINVAL, "no file path given");
    size_t plen = strlen(path);
    char *tmp = align__malloc(plen + 32);
    if (!tmp)
        return align__error(eb, ALIGN_ENOMEM, "out of memory");
    snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        align__free(tmp);
        return align__error(eb, e == ENOENT ? ALIGN_ENOENT : ALIGN_EIO, "%s: cannot create: %s", path,
                            strerror(e));
    }
    for (int i = 0; i < n_chunks; i++) {
        if (chunks[i].len && write_all(fd, chunks[i].data, chunks[i].len) != 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            align__free(tmp);
            return align__error(eb, ALIGN_EIO, "%s: write failed: %s", path, strerror(e));
        }
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        align__free(tmp);
        return align__error(eb, ALIGN_EIO, "%s: fsync/close failed: %s", path, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        align__free(tmp);
        return align__error(eb, ALIGN_EIO, "%s: rename failed: %s", path, strerror(e));
    }
    align__free(tmp);
    /* make the rename durable: fsync the directory */
    char *dir = align__strdup(path);
    if (dir) {
        char *slash = strrchr(dir, '/');
        const char *d = ".";
        if (slash) {
            if (slash == dir)
                slash[1] = '\0';
            else
                *slash = '\0';
            d = dir;
        }
        int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
        align__free(dir);
    }
    return ALIGN_OK;
}

int align__read_file(align__errbuf *eb, const char *path, char **data_out, size_t *len_out)
{
    *data_out = NULL;
    *len_out = 0;
    if (!path)
        return align__error(eb, ALIGN_EINVAL, "no file path given");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return align__error(eb, e == ENOENT ? ALIGN_ENOENT : ALIGN_EIO, "%s: cannot open: %s", path,
                            strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return align__error(eb, ALIGN_EIO, "%s: not a regular file", path);
    }
    size_t len = (size_t)st.st_size;
    char *buf = align__malloc(len + 1);
    if (!buf) {
        close(fd);
        return align__error(eb, ALIGN_ENOMEM, "%s: out of memory reading %zu bytes", path, len);
    }
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = errno;
            close(fd);
            align__free(buf);
            return align__error(eb, ALIGN_EIO, "%s: read failed: %s", path, r == 0 ? "short file" : strerror(e));
        }
        got += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    *data_out = buf;
    *len_out = len;
    return ALIGN_OK;
}
