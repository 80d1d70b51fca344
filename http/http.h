/* http_server: percept's HTTP/JSON door (docs/http.md), beside the binary
 * protocol on the same libuv loop, the same worker pool, the same database,
 * token and limits (net/server.h). HTTP/1.1 and HTTP/2 (cleartext) through
 * H2O's libuv build (Debian's libh2o-dev).
 *
 * Thread safety: everything on the thread that runs net_server_run.
 */
#ifndef PERCEPT_HTTP_H
#define PERCEPT_HTTP_H

#include "engine/eng.h"
#include "net/server.h"

typedef struct http_server http_server;

/* Listens on listen ("HOST:PORT", "[V6]:PORT"; port 0: any free port) on ns's
 * loop. A non-loopback address needs the server's token (or its insecure
 * flag), as for the binary listener. Serves until ns drains. */
int http_server_new(net_server *ns, eng_db *db, const char *listen, http_server **out);
/* The TCP port bound. */
int http_server_port(http_server *h);
/* After net_server_run returned (or when it never ran). NULL: no-op. */
void http_server_free(http_server *h);

#endif
