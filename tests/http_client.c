/* Conformance client for mio-http (tests/test_http.sh runs it against the real server on real
 * sockets). Usage: http_client IPV4:PORT HEADER_TIMEOUT_MS IDLE_TIMEOUT_MS (the server's own)
 * or http_client IPV4:PORT hold (a keep-alive request, then wait for the server to close).
 * Each check prints "ok: NAME" or "FAIL: NAME: why"; the last line is "N passed, N failed" and
 * the exit status 0 when none failed, 1 otherwise. Plain libc: blocking sockets with a receive
 * timeout, so a server that answers nothing fails a check instead of hanging the test. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strptime, timegm */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define RECV_TIMEOUT_MS 3000

static struct sockaddr_in server;
static long header_timeout_ms, idle_timeout_ms;
static int passed, failed;
static char why[512]; /* the first failure of the current check */

struct cli {
    int fd;
    size_t len;
    char buf[1 << 16];
};

struct resp {
    int status;
    long clen;
    bool conn_close, conn_keep_alive;
    char date[64], ctype[64], body[256];
};

/* Records the first failure of a check; returns false so callers can `return bad(...)`. */
static bool bad(const char *fmt, ...)
{
    va_list ap;

    if (why[0] == '\0') {
        va_start(ap, fmt);
        vsnprintf(why, sizeof(why), fmt, ap);
        va_end(ap);
    }
    return false;
}

static long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

static bool dial(struct cli *c)
{
    struct timeval tv = {RECV_TIMEOUT_MS / 1000, (RECV_TIMEOUT_MS % 1000) * 1000};
    int one = 1;

    c->len = 0;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd == -1)
        return bad("socket: %s", strerror(errno));
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *)&server, sizeof(server)) == -1) {
        close(c->fd);
        c->fd = -1;
        return bad("connect: %s", strerror(errno));
    }
    return true;
}

static void hangup(struct cli *c)
{
    if (c->fd != -1)
        close(c->fd);
    c->fd = -1;
}

static bool send_all(struct cli *c, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(c->fd, p, n, MSG_NOSIGNAL);

        if (k == -1 && errno == EINTR)
            continue;
        if (k == -1)
            return bad("send: %s", strerror(errno));
        p += k;
        n -= (size_t)k;
    }
    return true;
}

static bool send_str(struct cli *c, const char *s)
{
    return send_all(c, s, strlen(s));
}

/* Reads more into c->buf. Returns bytes read, 0 at EOF, -1 on error or timeout. */
static ssize_t fill(struct cli *c)
{
    ssize_t k;

    if (c->len == sizeof(c->buf))
        return -1;
    do
        k = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
    while (k == -1 && errno == EINTR);
    if (k > 0)
        c->len += (size_t)k;
    return k;
}

/* The value of header `name` in the header block [h, end), copied to out; false if absent. */
static bool header(const char *h, const char *end, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);

    for (const char *line = strstr(h, "\r\n") + 2; line < end; line = strstr(line, "\r\n") + 2) {
        const char *eol = strstr(line, "\r\n");

        if ((size_t)(eol - line) > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            size_t vl;

            while (*v == ' ')
                v++;
            vl = (size_t)(eol - v) < cap - 1 ? (size_t)(eol - v) : cap - 1;
            memcpy(out, v, vl);
            out[vl] = '\0';
            return true;
        }
    }
    return false;
}

/* Reads one response (head: to a HEAD request, so no body whatever Content-Length says). */
static bool read_resp(struct cli *c, bool head, struct resp *r)
{
    char *end, cl[32] = "", conn[64] = "";
    size_t hlen, blen;

    memset(r, 0, sizeof(*r));
    for (;;) {
        c->buf[c->len < sizeof(c->buf) ? c->len : sizeof(c->buf) - 1] = '\0';
        end = strstr(c->buf, "\r\n\r\n");
        if (end != NULL)
            break;
        ssize_t k = fill(c);
        if (k <= 0)
            return bad("no complete response (%s; %zu bytes: %.60s)",
                       k == 0 ? "EOF" : strerror(errno), c->len, c->buf);
    }
    hlen = (size_t)(end + 4 - c->buf);
    if (sscanf(c->buf, "HTTP/1.1 %d ", &r->status) != 1)
        return bad("bad status line: %.40s", c->buf);
    if (!header(c->buf, end + 2, "Content-Length", cl, sizeof(cl)))
        return bad("%d without Content-Length", r->status);
    r->clen = strtol(cl, NULL, 10);
    header(c->buf, end + 2, "Connection", conn, sizeof(conn));
    r->conn_close = strcasecmp(conn, "close") == 0;
    r->conn_keep_alive = strcasecmp(conn, "keep-alive") == 0;
    header(c->buf, end + 2, "Date", r->date, sizeof(r->date));
    header(c->buf, end + 2, "Content-Type", r->ctype, sizeof(r->ctype));
    blen = head ? 0 : (size_t)r->clen;
    if (blen >= sizeof(r->body))
        return bad("body of %zu bytes", blen);
    while (c->len < hlen + blen) {
        ssize_t k = fill(c);
        if (k <= 0)
            return bad("short body (%s)", k == 0 ? "EOF" : strerror(errno));
    }
    memcpy(r->body, c->buf + hlen, blen);
    r->body[blen] = '\0';
    memmove(c->buf, c->buf + hlen + blen, c->len - hlen - blen);
    c->len -= hlen + blen;
    return true;
}

/* The server must close (FIN, no more bytes) within ms. */
static bool expect_eof(struct cli *c, long ms)
{
    long t0 = now_ms();

    if (c->len > 0)
        return bad("%zu unexpected bytes: %.40s", c->len, c->buf);
    for (;;) {
        ssize_t k = fill(c);

        if (k == 0)
            return true;
        if (k > 0)
            return bad("bytes instead of EOF: %.40s", c->buf);
        if (now_ms() - t0 >= ms)
            return bad("no EOF within %ld ms (%s)", ms, strerror(errno));
    }
}

/* One expected response. */
struct want {
    int status;
    bool head, close;
};

static bool expect(struct cli *c, const struct want *w)
{
    struct resp r;

    if (!read_resp(c, w->head, &r))
        return false;
    if (r.status != w->status)
        return bad("status %d, want %d", r.status, w->status);
    if (w->status == 200 && (r.clen != 13 || strcmp(r.ctype, "text/plain") != 0 ||
                             (!w->head && strcmp(r.body, "Hello, World!") != 0)))
        return bad("200 with Content-Length %ld, Content-Type '%s', body '%s'", r.clen, r.ctype,
                   r.body);
    if (w->head && c->len > 0 && strncmp(c->buf, "HTTP/1.1 ", 9) != 0)
        return bad("HEAD answered with a body: %.20s", c->buf);
    if (r.conn_close != w->close)
        return bad("status %d: Connection: close %s", r.status, r.conn_close ? "sent" : "missing");
    if (strlen(r.date) != 29 || strcmp(r.date + 25, " GMT") != 0)
        return bad("bad Date '%s'", r.date);
    return true;
}

static bool expect_all(struct cli *c, const struct want *w, int n)
{
    for (int i = 0; i < n; i++)
        if (!expect(c, &w[i]))
            return bad("response %d", i);
    return true;
}

static void report(const char *name, bool ok)
{
    if (ok && why[0] == '\0') {
        printf("ok: %s\n", name);
        passed++;
    } else {
        printf("FAIL: %s: %s\n", name, why[0] ? why : "?");
        failed++;
    }
    fflush(stdout);
    why[0] = '\0';
}

/* ------------------------------------------------------------------ the request streams */

/* Every kind of request in one stream, answered in order; the last one closes. */
static const char stream[] = "GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n"
                             "HEAD /plaintext HTTP/1.1\r\nHost: a\r\n\r\n"
                             "GET /plaintext HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
                             "POST /plaintext HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
                             "GET /nope?x=1 HTTP/1.1\r\n\r\n"
                             "GET /?q HTTP/1.1\r\nConnection: close\r\n\r\n";
static const struct want stream_want[] = {
    {200, false, false}, {200, true, false},  {200, false, false},
    {405, false, false}, {404, false, false}, {200, false, true},
};
#define STREAM_N 6
#define STREAM_KEEP "GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n"

/* Sends stream[0, k), pauses, sends the rest; every answer must be right and the conn close. */
static bool split_at(size_t k, long pause_ms)
{
    struct cli c;
    bool ok = dial(&c) && send_all(&c, stream, k);

    if (ok)
        sleep_ms(pause_ms);
    ok = ok && send_all(&c, stream + k, sizeof(stream) - 1 - k) &&
         expect_all(&c, stream_want, STREAM_N) && expect_eof(&c, 1000);
    hangup(&c);
    return ok ? true : bad("split at %zu", k);
}

/* A request whose header section (request line to the empty line) is exactly n bytes. */
static char *sized_request(size_t n)
{
    static const char pre[] = "GET /plaintext HTTP/1.1\r\nX-Pad: ";
    char *s = malloc(n + 1);
    size_t fixed = sizeof(pre) - 1 + 4;

    memcpy(s, pre, sizeof(pre) - 1);
    memset(s + sizeof(pre) - 1, 'p', n - fixed);
    memcpy(s + n - 4, "\r\n\r\n", 5);
    return s;
}

/* A single request (sent whole, or split at `split` with a pause); one answer, then, with
 * want_eof, the close. */
static bool one(const char *req, size_t len, size_t split, const struct want *w, bool want_eof)
{
    struct cli c;
    bool ok = dial(&c);

    if (ok && split > 0 && split < len) {
        ok = send_all(&c, req, split);
        sleep_ms(20);
        ok = ok && send_all(&c, req + split, len - split);
    } else if (ok) {
        ok = send_all(&c, req, len);
    }
    ok = ok && expect(&c, w);
    if (ok && want_eof)
        ok = expect_eof(&c, 1000);
    else if (ok) /* the connection must still serve */
        ok = send_str(&c, STREAM_KEEP) && expect(&c, &(struct want){200, false, false});
    hangup(&c);
    return ok;
}

static void check_header_sizes(void)
{
    char *exact = sized_request(8192), *over = sized_request(8193), *huge = sized_request(20000);
    const struct want ok200 = {200, false, false}, r431 = {431, false, true};

    report("8 KiB header section, one send: 200", one(exact, 8192, 0, &ok200, false));
    report("8 KiB header section in two sends: 200", one(exact, 8192, 4000, &ok200, false));
    report("8 KiB header section, last byte alone: 200", one(exact, 8192, 8191, &ok200, false));
    report("8 KiB + 1 header section, one send: 431, close", one(over, 8193, 0, &r431, true));
    report("8 KiB + 1 header section, last byte alone: 431, close",
           one(over, 8193, 8192, &r431, true));
    report("20000-byte header section: 431, close", one(huge, 20000, 0, &r431, true));
    free(exact);
    free(over);
    free(huge);
}

/* Part of a header section, then nothing (or a trickle that never finishes it): 408 about
 * header_timeout_ms after its first byte, then the close. */
static bool slow_header(bool trickle)
{
    static const char part[] = "GET /plaintext HTTP/1.1\r\nHost: a\r\n";
    struct cli c;
    long t0, t;
    bool ok = dial(&c) && send_str(&c, part);

    t0 = now_ms();
    while (ok && trickle && now_ms() - t0 < header_timeout_ms * 3) {
        struct pollfd pfd = {c.fd, POLLIN, 0};

        if (poll(&pfd, 1, (int)(header_timeout_ms / 5)) != 0)
            break;                 /* the answer is here */
        ok = send_all(&c, "X", 1); /* a header name that never ends */
    }
    ok = ok && expect(&c, &(struct want){408, false, true});
    t = now_ms() - t0;
    ok = ok && (t >= header_timeout_ms - 50 && t <= header_timeout_ms + 1500
                    ? true
                    : bad("408 after %ld ms, want about %ld", t, header_timeout_ms));
    ok = ok && expect_eof(&c, 1000);
    hangup(&c);
    return ok;
}

/* A keep-alive connection that sends nothing more is closed after idle_timeout_ms. */
static bool idle_close(bool after_request)
{
    struct cli c;
    long t0, t;
    bool ok = dial(&c);

    if (ok && after_request)
        ok = send_str(&c, STREAM_KEEP) && expect(&c, &(struct want){200, false, false});
    t0 = now_ms();
    ok = ok && expect_eof(&c, idle_timeout_ms + 2000);
    t = now_ms() - t0;
    ok = ok && (t >= idle_timeout_ms - 50 ? true : bad("closed after %ld ms only", t));
    hangup(&c);
    return ok;
}

/* Sends s, expects n answers of want w (the last one may close), then EOF if it closed. */
static bool exchange(const char *s, const struct want *w, int n, bool eof)
{
    struct cli c;
    bool ok = dial(&c) && send_str(&c, s) && expect_all(&c, w, n);

    ok = ok && (eof ? expect_eof(&c, 1000) : true);
    hangup(&c);
    return ok;
}

static bool http10(void)
{
    struct cli c;
    struct resp r;
    bool ok = dial(&c);

    /* keep-alive asked: answered with Connection: keep-alive, the connection stays */
    for (int i = 0; ok && i < 2; i++) {
        ok = send_str(&c, "GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\n\r\n") &&
             read_resp(&c, false, &r);
        ok = ok && (r.status == 200 && r.conn_keep_alive && !r.conn_close &&
                            strcmp(r.body, "Hello, World!") == 0
                        ? true
                        : bad("HTTP/1.0 keep-alive answer %d keep-alive=%d", r.status,
                              r.conn_keep_alive));
    }
    /* a plain HTTP/1.0 request then closes */
    ok = ok && send_str(&c, "GET /plaintext HTTP/1.0\r\n\r\n") &&
         expect(&c, &(struct want){200, false, true}) && expect_eof(&c, 1000);
    hangup(&c);
    return ok;
}

/* conns connections, each sending rounds batches of batch pipelined requests. */
static bool load(int conns, int rounds, int batch)
{
    struct cli *c = calloc((size_t)conns, sizeof(*c));
    char *req = malloc((size_t)batch * sizeof(STREAM_KEEP));
    bool ok = c != NULL && req != NULL;

    for (int i = 0; i < batch && ok; i++)
        memcpy(req + (size_t)i * (sizeof(STREAM_KEEP) - 1), STREAM_KEEP, sizeof(STREAM_KEEP) - 1);
    for (int i = 0; i < conns && ok; i++)
        ok = dial(&c[i]);
    for (int r = 0; r < rounds && ok; r++) {
        for (int i = 0; i < conns && ok; i++)
            ok = send_all(&c[i], req, (size_t)batch * (sizeof(STREAM_KEEP) - 1));
        for (int i = 0; i < conns && ok; i++)
            for (int k = 0; k < batch && ok; k++)
                ok = expect(&c[i], &(struct want){200, false, false});
    }
    for (int i = 0; c != NULL && i < conns; i++)
        if (c[i].fd > 0)
            hangup(&c[i]);
    free(c);
    free(req);
    return ok;
}

/* The Date header is the current time (it is refreshed every second). */
static bool date_fresh(void)
{
    struct cli c;
    struct resp r;
    struct tm tm = {0};
    bool ok = dial(&c) && send_str(&c, STREAM_KEEP) && read_resp(&c, false, &r);
    time_t t;

    hangup(&c);
    if (!ok)
        return false;
    if (strptime(r.date, "%a, %d %b %Y %H:%M:%S GMT", &tm) == NULL)
        return bad("unparsable Date '%s'", r.date);
    t = timegm(&tm);
    if (labs((long)(t - time(NULL))) > 2)
        return bad("Date '%s' is %ld s off", r.date, (long)(t - time(NULL)));
    return true;
}

/* hold mode: one keep-alive request, "held" on stdout, then the server must close the
 * connection (a graceful stop) within 20 s. */
static int hold(void)
{
    struct cli c;
    bool ok =
        dial(&c) && send_str(&c, STREAM_KEEP) && expect(&c, &(struct want){200, false, false});

    if (ok) {
        printf("held\n");
        fflush(stdout);
        ok = expect_eof(&c, 20000);
    }
    hangup(&c);
    if (!ok)
        printf("FAIL: hold: %s\n", why);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    char *colon;
    long t0;

    if ((argc != 4 && !(argc == 3 && strcmp(argv[2], "hold") == 0)) ||
        (colon = strrchr(argv[1], ':')) == NULL) {
        fprintf(stderr,
                "usage: %s IPV4:PORT HEADER_TIMEOUT_MS IDLE_TIMEOUT_MS\n"
                "       %s IPV4:PORT hold\n",
                argv[0], argv[0]);
        return 2;
    }
    *colon = '\0';
    server.sin_family = AF_INET;
    server.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, argv[1], &server.sin_addr) != 1) {
        fprintf(stderr, "%s: bad address %s\n", argv[0], argv[1]);
        return 2;
    }
    if (argc == 3)
        return hold();
    header_timeout_ms = atol(argv[2]);
    idle_timeout_ms = atol(argv[3]);

    report("GET /plaintext", exchange(STREAM_KEEP, &(struct want){200, false, false}, 1, false));
    report("HEAD /plaintext: headers only, Content-Length 13",
           exchange("HEAD /plaintext HTTP/1.1\r\n\r\n" STREAM_KEEP,
                    (const struct want[]){{200, true, false}, {200, false, false}}, 2, false));
    report("Connection: close",
           exchange("GET /plaintext HTTP/1.1\r\nConnection: close\r\n\r\n" STREAM_KEEP,
                    &(struct want){200, false, true}, 1, true));
    report("HTTP/1.0 with and without keep-alive", http10());
    report("every kind of request pipelined in one send", split_at(0, 0));
    {
        char big[sizeof(stream) * 20];
        struct want w[STREAM_N * 20];
        size_t n = 0;
        struct cli c;
        bool ok;

        for (int i = 0; i < 20; i++) {
            size_t part = i < 19 ? sizeof(stream) - 1 -
                                       strlen("GET /?q HTTP/1.1\r\nConnection: "
                                              "close\r\n\r\n")
                                 : sizeof(stream) - 1;
            memcpy(big + n, stream, part);
            n += part;
            memcpy(&w[i * (STREAM_N - 1)], stream_want, sizeof(stream_want));
        }
        ok = dial(&c) && send_all(&c, big, n) &&
             expect_all(&c, w, 19 * (STREAM_N - 1) + STREAM_N) && expect_eof(&c, 1000);
        hangup(&c);
        report("101 requests pipelined in one send", ok);
    }
    {
        struct cli c;
        bool ok = dial(&c);

        for (size_t i = 0; ok && i < sizeof(stream) - 1; i++) {
            ok = send_all(&c, stream + i, 1);
            sleep_ms(1);
        }
        ok = ok && expect_all(&c, stream_want, STREAM_N) && expect_eof(&c, 1000);
        hangup(&c);
        report("one byte at a time", ok);
    }
    {
        bool ok = true;

        t0 = now_ms();
        for (size_t k = 1; ok && k < sizeof(stream) - 1; k++)
            ok = split_at(k, 2);
        report("the stream split at every byte boundary", ok);
        printf("    (%zu splits in %ld ms)\n", sizeof(stream) - 2, now_ms() - t0);
    }
    report("garbage: 400, close",
           exchange("\x01\x02 garbage\r\n\r\n", &(struct want){400, false, true}, 1, true));
    report("header line without a colon: 400, close",
           exchange("GET / HTTP/1.1\r\nNo colon here\r\n\r\n", &(struct want){400, false, true}, 1,
                    true));
    report("good request then garbage: 200, 400, close",
           exchange(STREAM_KEEP "BLAH\x7f\r\n\r\n",
                    (const struct want[]){{200, false, false}, {400, false, true}}, 2, true));
    report("chunked body: 411, close",
           exchange("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
                    &(struct want){411, false, true}, 1, true));
    {
        struct cli c;
        char head[128], chunk[4096];
        bool ok = dial(&c);

        memset(chunk, 'b', sizeof(chunk));
        snprintf(head, sizeof(head), "GET /plaintext HTTP/1.1\r\nContent-Length: %d\r\n\r\n",
                 100 * (int)sizeof(chunk));
        ok = ok && send_str(&c, head);
        for (int i = 0; ok && i < 100; i++)
            ok = send_all(&c, chunk, sizeof(chunk));
        ok = ok && send_str(&c, STREAM_KEEP) &&
             expect_all(&c, (const struct want[]){{200, false, false}, {200, false, false}}, 2);
        hangup(&c);
        report("400 KiB body discarded, next request answered", ok);
    }
    check_header_sizes();
    report("slow header: 408, close", slow_header(false));
    report("header trickling past the deadline: 408", slow_header(true));
    report("idle keep-alive connection closed", idle_close(true));
    report("silent connection closed", idle_close(false));
    report("Date header is current", date_fresh());
    report("16 connections x 20 batches of 50 pipelined requests", load(16, 20, 50));
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
