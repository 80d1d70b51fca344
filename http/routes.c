/* http_routes: the HTTP door's route table, one line per route
 * (docs/http.md lists them; /openapi.json describes them). First match
 * wins; a path that matches with another method answers 405. */
#include "http/route.h"
#include "http/ops.h"
#include "net/proto.h"

#define OP(m, p, op, media) {m, p, http_h_op, 0, NET_OP_##op, media}

const http_route http_routes[] = {
    /* the binary protocol's operations */
    OP("POST", "/search", SEARCH, "image"),
    OP("POST", "/ingest", INGEST, "data"),
    OP("GET", "/items/{id}", GET, NULL),
    OP("DELETE", "/items/{id}", DELETE, NULL),
    OP("GET", "/items/{id}/similar", SEARCH, NULL),
    OP("POST", "/delete", DELETE, NULL),
    OP("POST", "/label", LABEL, NULL),
    OP("POST", "/embedding", EMBED, "image"),
    OP("POST", "/classify", CLASSIFY, "image"),
    OP("POST", "/moderate", MODERATE, "image"),
    OP("GET", "/collections", COLLECTIONS, NULL),
    OP("POST", "/collections", COLLECTIONS, NULL),
    OP("GET", "/stats", STATS, NULL),
    OP("GET", "/dups", DUPS, NULL),
    OP("GET", "/export", EXPORT, NULL),
    OP("POST", "/snapshot", SNAPSHOT, NULL),
    /* operations */
    {"GET", "/healthz", http_h_healthz, HTTP_R_LOOP | HTTP_R_PUBLIC, 0, NULL},
    {"GET", "/readyz", http_h_readyz, HTTP_R_PUBLIC, 0, NULL},
    {"GET", "/metrics", http_h_metrics, HTTP_R_LOOP, 0, NULL},
    {"GET", "/openapi.json", http_h_openapi, HTTP_R_LOOP | HTTP_R_PUBLIC, 0, NULL},
    /* the search page (web/, compiled in) and the thumbnails it shows */
    {"GET", "/", http_h_page, HTTP_R_LOOP | HTTP_R_PUBLIC, 0, NULL},
    {"GET", "/app.js", http_h_page, HTTP_R_LOOP | HTTP_R_PUBLIC, 0, NULL},
    {"GET", "/app.css", http_h_page, HTTP_R_LOOP | HTTP_R_PUBLIC, 0, NULL},
    {"GET", "/items/{id}/thumbnail", http_h_thumbnail, 0, NET_OP_GET, NULL},
    /* percept as another engine's encoder */
    {"POST", "/embed", http_h_tei_embed, 0, NET_OP_EMBED, NULL},
    {"POST", "/vectorize", http_h_wv_vectorize, 0, NET_OP_EMBED, NULL},
    {"GET", "/meta", http_h_wv_meta, 0, 0, NULL},
    {"GET", "/.well-known/live", http_h_wv_live, HTTP_R_LOOP | HTTP_R_PUBLIC, 0, NULL},
    {"GET", "/.well-known/ready", http_h_wv_ready, HTTP_R_PUBLIC, 0, NULL},
};

const int http_n_routes = (int)(sizeof http_routes / sizeof http_routes[0]);
