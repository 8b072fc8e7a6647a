/* mio-http: an HTTP/1.1 server on mio_pool + mio_conn, written the plain way (one mio_conn_write
 * per response; the library gathers a callback's writes into one send). GET or HEAD of /plaintext
 * or / answers "Hello, World!", other paths 404, other methods 405. Parser: libhttp-parser (nodejs
 * http-parser 2.9.4), archived upstream but stable, small, dependency-free: Debian 12 has
 * picohttpparser only inside libh2o, which exports phr_parse_request but installs no header.
 * An incomplete header section stays unconsumed and is parsed again from its start with the next
 * bytes (8 KiB at most, then 431). Content-Length bodies are discarded as they arrive (the answer
 * goes out once the header section is in); chunked ones get 411, malformed requests 400, a header
 * section unfinished --header-timeout ms after it began 408. A last answer ends in a lingering
 * close (FIN, input discarded until the peer's FIN, LINGER_MS at most), for close() with unread
 * input sends a reset that can destroy the answer. Silent for --idle-timeout ms: closed. */
#include <http_parser.h>
#include <time.h>

#include "pool_main.h"

#define HEADER_MAX 8192 /* bytes in a header section (request line to empty line), at most */
#define LINGER_MS 2000

static unsigned long long header_timeout_ms = 10000, idle_timeout_ms = 60000;

struct worker {    /* one per worker thread, hung off its reactor */
    char date[48]; /* "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n", renewed every second */
};

static struct worker no_worker; /* no Date header: a worker that could not set up its own */

struct http_conn {
    mio_conn *conn;
    uint64_t body_left;        /* bytes of a request body still to discard */
    mio_timer_id header_timer; /* runs while an incomplete header section is kept */
    bool closing;              /* the last answer is written: discard input until EOF */
};

struct request { /* what one parse learned */
    const char *url;
    size_t url_len;
    bool headers_done;
};

static void date_tick(mio_reactor *r, mio_timer_id id, void *arg)
{
    struct worker *w = arg;
    time_t now = time(NULL);
    struct tm tm;

    strftime(w->date, sizeof(w->date), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", gmtime_r(&now, &tm));
}

static void worker_start(mio_reactor *r, unsigned index, void *arg)
{
    struct worker *w = calloc(1, sizeof(*w));

    if (w == NULL || mio_reactor_timer_start(r, 1000, 1000, date_tick, w, NULL) < 0) {
        fprintf(stderr, "mio-http: out of memory starting worker %u\n", index);
        free(w);
        mio_reactor_set_data(r, &no_worker);
        kill(getpid(), SIGTERM); /* the main thread stops the server */
        return;
    }
    date_tick(r, 0, w);
    mio_reactor_set_data(r, w);
}

static void worker_stop(mio_reactor *r, unsigned index, void *arg)
{
    if (mio_reactor_data(r) != &no_worker)
        free(mio_reactor_data(r)); /* its timer never fires again: it goes with the reactor */
}

static void stop_header_timer(struct http_conn *hc)
{
    if (hc->header_timer != 0)
        (void)mio_reactor_timer_cancel(mio_conn_reactor(hc->conn), hc->header_timer);
    hc->header_timer = 0;
}

/* One response, one write; p is NULL for an error, which closes. */
static void answer(struct http_conn *hc, const http_parser *p, const char *status,
                   const char *extra, const char *body, bool head)
{
    const struct worker *w = mio_reactor_data(mio_conn_reactor(hc->conn));
    /* draining for a restart: the last answer here, so the next request meets the new process */
    bool keep = p != NULL && http_should_keep_alive(p) && !mio_pool_draining(pool_main_pool);
    char buf[512], *e = buf; /* the longest answer (405 with all its headers) fits with room */

    /* copies, not snprintf: formatting was a third of the server's own instructions per request */
    e = example_put(example_put(example_put(e, "HTTP/1.1 "), status), "\r\nServer: mio\r\n");
    e = example_put(example_put(example_put(e, w->date), extra), "Content-Type: text/plain\r\n");
    e = example_put_uint(example_put(e, "Content-Length: "), strlen(body));
    e = example_put(e, !keep                ? "\r\nConnection: close\r\n\r\n"
                       : p->http_minor == 0 ? "\r\nConnection: keep-alive\r\n\r\n"
                                            : "\r\n\r\n");
    e = head ? e : example_put(e, body);
    (void)mio_conn_write(hc->conn, buf, (size_t)(e - buf)); /* a failed write closes the conn */
    if (!keep) {
        hc->closing = true;
        stop_header_timer(hc);
        (void)mio_conn_set_deadline(hc->conn, LINGER_MS);
        (void)mio_conn_shutdown(hc->conn); /* FIN once the answer is out; reading goes on */
    }
}

static void fail(struct http_conn *hc, const char *status)
{
    answer(hc, NULL, status, "", strchr(status, ' ') + 1, false);
}

static bool path_is(const struct request *rq, const char *path)
{
    const char *q = memchr(rq->url, '?', rq->url_len);
    size_t len = q != NULL ? (size_t)(q - rq->url) : rq->url_len;

    return len == strlen(path) && memcmp(rq->url, path, len) == 0;
}

static void respond(struct http_conn *hc, const http_parser *p, const struct request *rq)
{
    if (p->method != HTTP_GET && p->method != HTTP_HEAD)
        answer(hc, p, "405 Method Not Allowed", "Allow: GET, HEAD\r\n", "Method Not Allowed", 0);
    else if (path_is(rq, "/plaintext") || path_is(rq, "/"))
        answer(hc, p, "200 OK", "", "Hello, World!", p->method == HTTP_HEAD);
    else
        answer(hc, p, "404 Not Found", "", "Not Found", p->method == HTTP_HEAD);
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    /* Called once, first: a request is parsed from its start, in one span. */
    *(struct request *)p->data = (struct request){.url = at, .url_len = len};
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    ((struct request *)p->data)->headers_done = true;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    http_parser_pause(p, 1); /* one request per http_parser_execute */
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_url = on_url,
    .on_headers_complete = on_headers_complete,
    .on_message_complete = on_message_complete,
};

static void header_timeout(mio_reactor *r, mio_timer_id id, void *arg)
{
    struct http_conn *hc = arg;

    hc->header_timer = 0;
    fail(hc, "408 Request Timeout");
}

static void http_read(mio_conn *c, const void *data, size_t len, void *arg)
{
    struct http_conn *hc = arg;
    const char *buf = data;
    size_t off = 0;

    if (len == 0 || hc->closing) { /* EOF; or lingering, where everything counts as consumed */
        if (len == 0)
            mio_conn_close(c);
        return;
    }
    if (hc->body_left > 0) {
        off = len < hc->body_left ? len : (size_t)hc->body_left;
        hc->body_left -= off;
    }
    while (off < len && !hc->closing) {
        struct request rq = {0};
        http_parser p;
        size_t n;

        http_parser_init(&p, HTTP_REQUEST);
        p.data = &rq;
        n = http_parser_execute(&p, &parser_settings, buf + off, len - off);
        if (rq.headers_done && (p.flags & F_CHUNKED))
            fail(hc, "411 Length Required");
        else if (HTTP_PARSER_ERRNO(&p) == HPE_HEADER_OVERFLOW)
            fail(hc, "431 Request Header Fields Too Large");
        else if (HTTP_PARSER_ERRNO(&p) != HPE_OK && HTTP_PARSER_ERRNO(&p) != HPE_PAUSED)
            fail(hc, "400 Bad Request");
        else if (!rq.headers_done)
            break; /* an incomplete header section: keep it */
        else {
            respond(hc, &p, &rq);
            off += n;
            if (HTTP_PARSER_ERRNO(&p) != HPE_PAUSED)
                hc->body_left = p.content_length; /* the rest of the body is still to come */
        }
    }
    if (off > 0 || hc->closing)
        stop_header_timer(hc); /* the request it timed is answered */
    if (!hc->closing && off < len) {
        /* At most HEADER_MAX bytes, below the input limit: no -EMSGSIZE. */
        (void)mio_conn_consume(c, off);
        if (hc->header_timer == 0 && header_timeout_ms > 0 &&
            mio_reactor_timer_start(mio_conn_reactor(c), header_timeout_ms, 0, header_timeout, hc,
                                    &hc->header_timer) < 0)
            mio_conn_close(c);
    }
}

static void http_close(mio_conn *c, int reason, void *arg)
{
    stop_header_timer(arg);
    free(arg);
}

static const mio_conn_ops http_ops = {http_read, http_close, NULL};

static void on_accept(mio_reactor *worker, int fd, const mio_addr *peer, void *arg)
{
    struct http_conn *hc = calloc(1, sizeof(*hc));

    if (hc == NULL || mio_conn_open(worker, fd, &http_ops, hc, &hc->conn) < 0) {
        free(hc);
        close(fd);
        return;
    }
    if (mio_conn_set_input_limit(hc->conn, HEADER_MAX + 1) < 0 ||
        mio_conn_set_idle_timeout(hc->conn, idle_timeout_ms) < 0)
        mio_conn_close(hc->conn);
}

int main(int argc, char **argv)
{
    static const struct pool_main_num nums[] = {
        {"header-timeout", "MS", "408 once a header section takes longer (10000; 0: never)", 0,
         86400000, &header_timeout_ms},
        {"idle-timeout", "MS", "close a connection silent that long (60000; 0: never)", 0, 86400000,
         &idle_timeout_ms},
        {NULL, NULL, NULL, 0, 0, NULL},
    };
    const struct pool_main_prog prog = {
        .what = "HTTP/1.1 server: GET /plaintext answers Hello, World! (keep-alive, pipelining).",
        .accept = on_accept,
        .nums = nums,
        .opts = {.nodelay = true, .on_worker_start = worker_start, .on_worker_stop = worker_stop},
    };

    http_parser_set_max_header_size(HEADER_MAX);
    return pool_main_prog(argc, argv, &prog);
}
