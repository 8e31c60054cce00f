/* ExaBGP API process, in C: the same relay as bridge.py, for a seventh of its memory.
 *
 * ExaBGP runs it (`run egress-agent-bridge SOCKET GENERATION;`) for as long as the
 * sessions are up, so its resident size is part of what the agent costs the host: a
 * Python interpreter started with -I -S is 10.6 MB of RSS, this is 1.4 MB. The protocol,
 * the buffering and every exit are those of bridge.py, whose docstring is the reference;
 * collectors/bgp/exabgp.py falls back to bridge.py where this was not built.
 * Both are tested by tests/test_bgp_bridge.py.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_BUFFER_BYTES ((size_t)1 << 30)
#define READ_BYTES ((size_t)1 << 20)
#define RECV_BYTES ((size_t)65536)
#define PIPE_BYTES (1 << 20)
#define CONNECT_TIMEOUT_S 10.0

struct buffer {
    char *data;
    size_t start, len, cap;
};

static double monotonic_s(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static void sleep_s(double seconds) {
    struct timespec delay = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    while (nanosleep(&delay, &delay) != 0 && errno == EINTR) {
    }
}

/* Room for `more` bytes after the data; 0, or -1 when memory ran out. */
static int reserve(struct buffer *b, size_t more) {
    if (b->start + b->len + more <= b->cap)
        return 0;
    if (b->start > 0) {
        memmove(b->data, b->data + b->start, b->len);
        b->start = 0;
        if (b->len + more <= b->cap)
            return 0;
    }
    size_t cap = b->cap ? b->cap : 65536;
    while (cap < b->len + more)
        cap *= 2;
    char *data = realloc(b->data, cap);
    if (data == NULL)
        return -1;
    b->data = data;
    b->cap = cap;
    return 0;
}

static void consume(struct buffer *b, size_t n) {
    b->start += n;
    b->len -= n;
    if (b->len == 0)
        b->start = 0;
}

static int connect_agent(const char *path) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(addr.sun_path, path);
    double deadline = monotonic_s() + CONNECT_TIMEOUT_S;
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -1;
        if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0)
            return fd;
        int saved = errno;
        close(fd);
        if (monotonic_s() > deadline) {
            errno = saved;
            return -1;
        }
        sleep_s(0.1);
    }
}

static int send_all(int fd, const char *data, size_t len) {
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static int would_block(void) { return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR; }

/* Until stdin ends (ExaBGP stopped) or the agent goes away; see bridge.relay. */
static int relay(int in_fd, int out_fd, int sock) {
    fcntl(sock, F_SETFL, fcntl(sock, F_GETFL) | O_NONBLOCK);
    fcntl(out_fd, F_SETFL, fcntl(out_fd, F_GETFL) | O_NONBLOCK);
    double coalesce_s = 0.004;
    size_t small_read = (size_t)1 << 14;
    if (fcntl(in_fd, F_SETPIPE_SZ, PIPE_BYTES) >= 0) {
        coalesce_s = 0.02;
        small_read = (size_t)1 << 18;
    }
    struct buffer to_agent = {0}, to_exabgp = {0};
    int stdin_open = 1;
    while (stdin_open || to_agent.len) {
        struct pollfd fds[3];
        nfds_t nfds = 0;
        int in_at = -1, out_at = -1;
        if (stdin_open) {
            in_at = (int)nfds;
            fds[nfds++] = (struct pollfd){.fd = in_fd, .events = POLLIN};
        }
        int sock_at = (int)nfds;
        fds[nfds++] = (struct pollfd){.fd = sock, .events = POLLIN | (to_agent.len ? POLLOUT : 0)};
        if (to_exabgp.len) {
            out_at = (int)nfds;
            fds[nfds++] = (struct pollfd){.fd = out_fd, .events = POLLOUT};
        }
        if (poll(fds, nfds, -1) < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        if (in_at >= 0 && fds[in_at].revents) {
            if (reserve(&to_agent, READ_BYTES) < 0) {
                fputs("egress-agent bridge: out of memory\n", stderr);
                return 1;
            }
            ssize_t n = read(in_fd, to_agent.data + to_agent.start + to_agent.len, READ_BYTES);
            if (n == 0) {
                stdin_open = 0;
            } else if (n > 0) {
                to_agent.len += (size_t)n;
                if (to_agent.len > MAX_BUFFER_BYTES) {
                    fputs("egress-agent bridge: agent too slow, buffer full\n", stderr);
                    return 1;
                }
                if ((size_t)n < small_read)
                    sleep_s(coalesce_s);
            } else if (!would_block()) {
                return 1;
            }
        }
        short sock_events = fds[sock_at].revents;
        if (sock_events & POLLIN) {
            if (reserve(&to_exabgp, RECV_BYTES) < 0)
                return 1;
            ssize_t n = recv(sock, to_exabgp.data + to_exabgp.start + to_exabgp.len, RECV_BYTES, 0);
            if (n == 0)
                return 0; /* the agent closed: a new agent restarts ExaBGP */
            if (n > 0)
                to_exabgp.len += (size_t)n;
            else if (!would_block())
                return 1;
        } else if (sock_events & (POLLHUP | POLLERR)) {
            return 1;
        }
        if (out_at >= 0 && (fds[out_at].revents & (POLLHUP | POLLERR)))
            return 1;
        if (to_agent.len) {
            ssize_t n = send(sock, to_agent.data + to_agent.start, to_agent.len, MSG_NOSIGNAL);
            if (n > 0)
                consume(&to_agent, (size_t)n);
            else if (n < 0 && !would_block())
                return 1;
        }
        if (to_exabgp.len) {
            ssize_t n = write(out_fd, to_exabgp.data + to_exabgp.start, to_exabgp.len);
            if (n > 0)
                consume(&to_exabgp, (size_t)n);
            else if (n < 0 && !would_block())
                return 1;
        }
    }
    shutdown(sock, SHUT_WR);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fputs("usage: egress-agent-bridge SOCKET GENERATION\n", stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN); /* a closed pipe or socket is an error return, as in Python */
    const char *path = argv[1];
    char *end = NULL;
    errno = 0;
    long generation = strtol(argv[2], &end, 10);
    if (errno != 0 || end == argv[2] || *end != '\0') {
        fprintf(stderr, "egress-agent bridge: cannot reach the agent at %s: "
                        "generation %s is not a number\n", path, argv[2]);
        return 1;
    }
    int sock = connect_agent(path);
    char hello[96];
    int hello_len = snprintf(hello, sizeof(hello), "{\"bridge\": %ld, \"pid\": %ld}\n",
                             generation, (long)getpid());
    if (sock < 0 || send_all(sock, hello, (size_t)hello_len) < 0) {
        fprintf(stderr, "egress-agent bridge: cannot reach the agent at %s: %s\n", path,
                strerror(errno));
        return 1;
    }
    return relay(STDIN_FILENO, STDOUT_FILENO, sock);
}
