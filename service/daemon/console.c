/*
 * console.c — the web console's static files under /console/ (docs/console.md).
 * Only the names of the embedded list are served, compared whole against the
 * raw request path: no file system is read, so no path can reach outside it
 * ("..", encodings and the like match no name and are 404). Every answer
 * carries a strict Content-Security-Policy (scripts and styles from the
 * console's own files only: no inline script can run, even one an API
 * value smuggled into the page), no framing, no sniffing, no referrer.
 */
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "console.h"
#include "daemon.h"

#define PREFIX "/console/"

static const char *content_type(const char *name)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".svg", "image/svg+xml"},
    };
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot != NULL && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}

static void security_headers(struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Security-Policy",
                      "default-src 'self'; img-src 'self'; object-src 'none'; base-uri 'none'; "
                      "form-action 'self'; frame-ancestors 'none'");
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "X-Frame-Options", "DENY");
    evhttp_add_header(h, "Referrer-Policy", "no-referrer");
    /* Revalidated each time: a new latchkeyd's files are used at once. */
    evhttp_add_header(h, "Cache-Control", "no-cache");
}

static void redirect(struct evhttp_request *req, const char *to)
{
    security_headers(req);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Location", to);
    evhttp_send_reply(req, 302, "Found", NULL);
}

int lkd_console_serve(struct evhttp_request *req, const char *path)
{
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    int get = m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD;
    if (strcmp(path, "/") == 0 || strcmp(path, "/console") == 0) {
        if (!get)
            lkd_send_error(req, LKD_NOT_FOUND, "no such path (the console is GET /console/)");
        else
            redirect(req, PREFIX);
        return 1;
    }
    if (strncmp(path, PREFIX, strlen(PREFIX)) != 0 || strncmp(path, PREFIX "api/", strlen(PREFIX "api/")) == 0)
        return 0;
    const char *name = path + strlen(PREFIX);
    if (*name == '\0')
        name = "index.html";
    const struct lkd_console_file *f = lkd_console_files;
    while (f->name != NULL && strcmp(f->name, name) != 0)
        f++;
    if (f->name == NULL) {
        lkd_send_error(req, LKD_NOT_FOUND, "no such console file");
        return 1;
    }
    if (!get) {
        lkd_send_error(req, LKD_NOT_FOUND, "the console's files take GET");
        return 1;
    }
    struct evbuffer *b = evbuffer_new();
    if (b == NULL || evbuffer_add_reference(b, f->data, f->len, NULL, NULL) != 0) {
        if (b != NULL)
            evbuffer_free(b);
        lkd_send_error(req, LKD_UNAVAILABLE, "out of memory");
        return 1;
    }
    security_headers(req);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", content_type(f->name));
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
    return 1;
}
