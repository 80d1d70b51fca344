# Generates http/openapi.json (served at /openapi.json; test_http_openapi walks
# it against the server): python3 http/openapi.py > http/openapi.json
import json
R = lambda n: {"$ref": "#/components/schemas/" + n}
err = {"description": "an error (docs/http.md, Errors)", "content": {"application/json": {"schema": R("Error")}}}
def ok(schema, desc="OK"):
    return {"description": desc, "content": {"application/json": {"schema": schema}}}
def body(schema, example, extra=None):
    c = {"application/json": {"schema": schema, "example": example}}
    if extra: c.update(extra)
    return {"required": True, "content": c}
media_upload = {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}, "description": "the media bytes (any image or video type; decided by content)"},
    "multipart/form-data": {"schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}, "additionalProperties": {"type": "string"}}}}
def q(name, typ, desc, example=None, repeated=False):
    s = {"type": "array", "items": {"type": typ}} if repeated else {"type": typ}
    p = {"name": name, "in": "query", "required": False, "schema": s, "description": desc}
    if repeated: p["style"] = "form"; p["explode"] = True
    if example is not None: p["example"] = example
    return p
idp = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}, "example": 1}
search_q = [q("k", "integer", "1..4096 (default 10); 0 with min_score: no cap"), q("min_score", "number", "keep hits with cosine >= it"),
            q("collections", "string", "default [\"default\"]", repeated=True), q("labels", "string", "all of them", repeated=True),
            q("include_self", "boolean", "with an id query: keep the item itself"), q("segments", "boolean", "search video segments")]
search_body = {"type": "object", "description": "exactly one of text, image, vector, id, path (protocol.md SEARCH)",
   "properties": {"text": {"type": "string"}, "image": {"type": "string", "format": "byte"}, "vector": {"type": "array", "items": {"type": "number"}},
                  "id": {"type": "integer"}, "path": {"type": "string"}, "k": {"type": "integer"}, "min_score": {"type": "number"},
                  "collections": {"type": "array", "items": {"type": "string"}}, "labels": {"type": "array", "items": {"type": "string"}},
                  "where": {"type": "object", "additionalProperties": {"type": "string"}}, "include_self": {"type": "boolean"}, "segments": {"type": "boolean"}}}
vec = {"type": "array", "items": {"type": "number"}}
B01 = {"type": "integer", "enum": [0, 1], "description": "1: matched (0/1 as in the binary protocol)"}
hits = {"type": "object", "required": ["hits"], "properties": {"hits": {"type": "array", "items": R("Hit")}}}
colls = {"type": "object", "required": ["collections"], "properties": {"collections": {"type": "array", "items": R("Collection")}}}
empty = {"type": "object"}
paths = {
 "/search": {"post": {"operationId": "search", "summary": "SEARCH by text, image, vector, id or server path",
    "description": "JSON body, or an image/video as the raw body or a multipart file with options as query/form fields",
    "parameters": search_q, "requestBody": body(search_body, {"text": "a photo of a cat", "k": 3}, media_upload),
    "responses": {"200": ok(hits), "default": err}}},
 "/items/{id}/similar": {"get": {"operationId": "similar", "summary": "SEARCH by id: items like this one",
    "parameters": [idp] + search_q, "responses": {"200": ok(hits), "default": err}}},
 "/ingest": {"post": {"operationId": "ingest", "summary": "INGEST one media item (raw body, multipart, or JSON with base64 data or a server path)",
    "parameters": [q("collection", "string", "default \"default\""), q("uri", "string", "recorded source name"),
                   q("labels", "string", "labels", repeated=True), q("frames", "integer", "video vector frames"),
                   q("segment_seconds", "number", "video segment window"), q("segment_frames", "integer", "frames per segment"),
                   {"name": "meta", "in": "query", "required": False, "style": "deepObject", "explode": True,
                    "schema": {"type": "object", "additionalProperties": {"type": "string"}}, "description": "meta.KEY=VALUE"}],
    "requestBody": body({"type": "object", "properties": {"data": {"type": "string", "format": "byte"}, "path": {"type": "string"},
        "uri": {"type": "string"}, "collection": {"type": "string"}, "labels": {"type": "array", "items": {"type": "string"}},
        "meta": {"type": "object", "additionalProperties": {"type": "string"}}}},
        {"data": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC", "uri": "pixel.png", "collection": "openapi", "labels": ["walk"]},
        media_upload),
    "responses": {"200": ok({"type": "object", "required": ["id", "outcome"], "properties": {"id": {"type": "integer"}, "outcome": {"type": "string", "enum": ["added", "present"]}}}), "default": err}}},
 "/items/{id}": {
   "get": {"operationId": "get", "summary": "GET an item", "parameters": [idp, q("vector", "boolean", "include the vector", True)],
           "responses": {"200": ok(R("Item")), "default": err}},
   "delete": {"operationId": "deleteItem", "summary": "DELETE one item", "parameters": [idp],
           "responses": {"200": ok({"type": "object", "required": ["removed"], "properties": {"removed": {"type": "integer"}}}), "default": err}}},
 "/delete": {"post": {"operationId": "delete", "summary": "DELETE items", "requestBody": body({"type": "object", "required": ["ids"], "properties": {"ids": {"type": "array", "items": {"type": "integer"}}}}, {"ids": [999999]}),
    "responses": {"200": ok({"type": "object", "required": ["removed"], "properties": {"removed": {"type": "integer"}}}), "default": err}}},
 "/label": {"post": {"operationId": "label", "summary": "LABEL: add (or remove) a label on items",
    "requestBody": body({"type": "object", "required": ["label", "ids"], "properties": {"label": {"type": "string"}, "ids": {"type": "array", "items": {"type": "integer"}}, "remove": {"type": "boolean"}}}, {"label": "walked", "ids": [1]}),
    "responses": {"200": ok(empty), "default": err}}},
 "/embedding": {"post": {"operationId": "embedding", "summary": "EMBED a text, image or server path (nothing stored)",
    "requestBody": body({"type": "object", "properties": {"text": {"type": "string"}, "image": {"type": "string", "format": "byte"}, "path": {"type": "string"}}}, {"text": "a red car"}, media_upload),
    "responses": {"200": ok({"type": "object", "required": ["dim", "vector"], "properties": {"dim": {"type": "integer"}, "vector": vec}}), "default": err}}},
 "/classify": {"post": {"operationId": "classify", "summary": "CLASSIFY an image zero-shot",
    "parameters": [q("labels", "string", "class names", repeated=True), q("prompt", "string", "default \"a photo of a {label}.\"")],
    "requestBody": body({"type": "object", "required": ["labels"], "properties": {"image": {"type": "string", "format": "byte"}, "path": {"type": "string"},
        "labels": {"type": "array", "items": {"type": "string"}}, "prompt": {"type": "string"}}},
        {"image": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC", "labels": ["cat", "dog"]}, media_upload),
    "responses": {"200": ok({"type": "object", "required": ["labels", "probs"], "properties": {"labels": {"type": "array", "items": {"type": "string"}}, "probs": vec}}), "default": err}}},
 "/moderate": {"post": {"operationId": "moderate", "summary": "MODERATE an image or vector against labeled sets",
    "parameters": [q("sets", "string", "\"collection\" or \"collection:label\"", repeated=True), q("threshold", "number", "absent: each set's stored threshold"), q("k", "integer", "nearest kept per set")],
    "requestBody": body({"type": "object", "required": ["sets"], "properties": {"image": {"type": "string", "format": "byte"}, "path": {"type": "string"}, "vector": vec,
        "sets": {"type": "array", "items": {"type": "string"}}, "threshold": {"type": "number"}, "k": {"type": "integer"}}},
        {"image": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC", "sets": ["default"], "threshold": 0.9}, media_upload),
    "responses": {"200": ok({"type": "object", "required": ["matched", "sets", "nearest"], "properties": {"matched": B01,
        "sets": {"type": "array", "items": {"type": "object", "required": ["set", "threshold", "matched"], "properties": {"set": {"type": "string"}, "threshold": {"type": "number"}, "matched": B01}}},
        "nearest": {"type": "array", "items": R("Hit")}}}), "default": err}}},
 "/collections": {
   "get": {"operationId": "collections", "summary": "COLLECTIONS list", "responses": {"200": ok(colls), "default": err}},
   "post": {"operationId": "collectionsAction", "summary": "COLLECTIONS create, drop or threshold",
      "requestBody": body({"type": "object", "required": ["action"], "properties": {"action": {"type": "string", "enum": ["list", "create", "drop", "threshold"]},
          "name": {"type": "string"}, "factory": {"type": "string"}, "threshold": {"type": "number"}}}, {"action": "create", "name": "walked", "factory": "Flat"}),
      "responses": {"200": ok(colls), "default": err}}},
 "/stats": {"get": {"operationId": "stats", "summary": "STATS", "responses": {"200": ok({"type": "object", "required": ["db", "model", "server"],
    "properties": {"db": {"type": "object", "required": ["n_items", "n_collections"]}, "model": {"type": "object", "required": ["name", "dim"]}, "server": {"type": "object", "nullable": True}}}), "default": err}}},
 "/dups": {"get": {"operationId": "dups", "summary": "DUPS: duplicate groups",
    "parameters": [q("collection", "string", "default \"default\""), q("tier", "string", "exact, near (default), similar", "near"), q("threshold", "number", "0..1")],
    "responses": {"200": ok({"type": "object", "required": ["tier", "groups"], "properties": {"tier": {"type": "string"},
        "groups": {"type": "array", "items": {"type": "object", "required": ["ids", "min_score"], "properties": {"ids": {"type": "array", "items": {"type": "integer"}}, "min_score": {"type": "number"}}}}}}), "default": err}}},
 "/export": {"get": {"operationId": "export", "summary": "EXPORT one page of items",
    "parameters": [q("collection", "string", "only this one"), q("limit", "integer", "1..4096, default 256", 2), q("vector", "boolean", "default true", False),
                   q("after_collection", "string", "from next"), q("after", "integer", "from next")],
    "responses": {"200": ok({"type": "object", "required": ["items", "next"], "properties": {"items": {"type": "array", "items": R("Item")},
        "next": {"type": "object", "nullable": True, "required": ["after_collection", "after"], "properties": {"after_collection": {"type": "string"}, "after": {"type": "integer"}}}}}), "default": err}}},
 "/snapshot": {"post": {"operationId": "snapshot", "summary": "SNAPSHOT: save changed indexes now", "responses": {"200": ok(empty), "default": err}}},
 "/healthz": {"get": {"operationId": "healthz", "summary": "alive (no token)", "security": [], "responses": {"200": ok({"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}})}}},
 "/readyz": {"get": {"operationId": "readyz", "summary": "ready: the model is loaded and the server is not draining (no token)", "security": [],
    "responses": {"200": ok({"type": "object", "required": ["status", "dim"], "properties": {"status": {"type": "string"}, "dim": {"type": "integer"}}}), "503": err}}},
 "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics", "responses": {"200": {"description": "text exposition format 0.0.4", "content": {"text/plain": {"schema": {"type": "string"}}}}, "default": err}}},
 "/": {"get": {"operationId": "page", "summary": "the search page (compiled in; no token: it asks for one)", "security": [],
    "responses": {"200": {"description": "HTML, with a Content-Security-Policy header", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
 "/app.js": {"get": {"operationId": "pageScript", "summary": "the search page's script", "security": [],
    "responses": {"200": {"description": "JavaScript", "content": {"text/javascript": {"schema": {"type": "string"}}}}}}},
 "/app.css": {"get": {"operationId": "pageStyle", "summary": "the search page's style sheet", "security": [],
    "responses": {"200": {"description": "CSS", "content": {"text/css": {"schema": {"type": "string"}}}}}}},
 "/items/{id}/thumbnail": {"get": {"operationId": "thumbnail", "summary": "the item's thumbnail (stored at ingest, else made from its file)",
    "parameters": [idp, q("segment", "integer", "a video segment's thumbnail (0-based)")],
    "responses": {"200": {"description": "a 256 px WebP", "content": {"image/webp": {"schema": {"type": "string", "format": "binary"}}}}, "default": err}}},
 "/openapi.json": {"get": {"operationId": "openapi", "summary": "this document (no token)", "security": [], "responses": {"200": ok({"type": "object", "required": ["openapi", "paths"]})}}},
 "/embed": {"post": {"operationId": "teiEmbed", "summary": "Hugging Face text-embeddings-inference: embed texts",
    "description": "TEI's POST /embed (https://huggingface.github.io/text-embeddings-inference/). normalize/truncate are accepted; vectors are always L2-normalized and texts cut to the model's context.",
    "requestBody": body({"type": "object", "required": ["inputs"], "properties": {"inputs": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "normalize": {"type": "boolean"}, "truncate": {"type": "boolean"}, "truncation_direction": {"type": "string"}, "prompt_name": {"type": "string", "nullable": True}}},
        {"inputs": ["test input", "test input 2"]}),
    "responses": {"200": ok({"type": "array", "items": vec}),
                  "413": {"description": "TEI error", "content": {"application/json": {"schema": R("TeiError")}}},
                  "422": {"description": "TEI error", "content": {"application/json": {"schema": R("TeiError")}}},
                  "424": {"description": "TEI error", "content": {"application/json": {"schema": R("TeiError")}}},
                  "default": err}}},
 "/vectorize": {"post": {"operationId": "weaviateVectorize", "summary": "Weaviate multi2vec-clip inference: vectorize texts and images",
    "description": "The contract of weaviate/multi2vec-clip-inference (app.py): POST /vectorize.",
    "requestBody": body({"type": "object", "properties": {"texts": {"type": "array", "items": {"type": "string"}}, "images": {"type": "array", "items": {"type": "string", "format": "byte"}}}},
        {"texts": ["This is plane"], "images": ["iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"]}),
    "responses": {"200": ok({"type": "object", "required": ["textVectors", "imageVectors"], "properties": {"textVectors": {"type": "array", "items": vec}, "imageVectors": {"type": "array", "items": vec}}}), "default": err}}},
 "/meta": {"get": {"operationId": "weaviateMeta", "summary": "Weaviate multi2vec-clip: model information", "responses": {"200": ok({"type": "object", "required": ["model"]}), "default": err}}},
 "/.well-known/live": {"get": {"operationId": "weaviateLive", "summary": "Weaviate: alive (no token)", "security": [], "responses": {"204": {"description": "alive"}}}},
 "/.well-known/ready": {"get": {"operationId": "weaviateReady", "summary": "Weaviate: ready (no token)", "security": [], "responses": {"204": {"description": "ready"}, "503": {"description": "not ready"}}}},
}
hit = {"type": "object", "required": ["id", "score", "collection", "uri", "media", "labels"], "properties": {
  "id": {"type": "integer"}, "score": {"type": "number"}, "collection": {"type": "string"}, "uri": {"type": "string"}, "media": {"type": "string"},
  "labels": {"type": "array", "items": {"type": "string"}}, "start_s": {"type": "number"}, "end_s": {"type": "number"}, "width": {"type": "integer"},
  "height": {"type": "integer"}, "duration_s": {"type": "number"}, "fps": {"type": "number"}, "codec": {"type": "string"}}}
item = {"type": "object", "required": ["id", "collection", "uri", "media", "sha256", "size", "width", "height", "created_ms", "duration_s", "labels", "meta"], "properties": {
  "id": {"type": "integer"}, "collection": {"type": "string"}, "uri": {"type": "string"}, "media": {"type": "string"}, "sha256": {"type": "string", "description": "64 hex digits"},
  "size": {"type": "integer"}, "width": {"type": "integer"}, "height": {"type": "integer"}, "created_ms": {"type": "integer"}, "duration_s": {"type": "number"},
  "fps": {"type": "number"}, "codec": {"type": "string"}, "n_segments": {"type": "integer"}, "labels": {"type": "array", "items": {"type": "string"}},
  "meta": {"type": "object", "additionalProperties": {"type": "string"}}, "vector": vec}}
coll = {"type": "object", "required": ["name", "factory", "n_items", "n_index", "seq", "index_seq", "threshold", "trained"], "properties": {
  "name": {"type": "string"}, "factory": {"type": "string"}, "n_items": {"type": "integer"}, "n_index": {"type": "integer"}, "seq": {"type": "integer"},
  "index_seq": {"type": "integer"}, "threshold": {"type": "number", "nullable": True}, "trained": {"type": "integer"}}}
error = {"type": "object", "required": ["error", "code", "message"], "properties": {"error": {"type": "string", "description": "the perr name, e.g. NOT_FOUND"},
  "code": {"type": "integer"}, "message": {"type": "string"}}}
tei = {"type": "object", "required": ["error", "error_type"], "properties": {"error": {"type": "string"}, "error_type": {"type": "string"}}}
doc = {"openapi": "3.0.3",
  "info": {"title": "percept HTTP/JSON API", "version": "0.1.0",
           "description": "The HTTP door of percept serve --http (docs/http.md). Each operation's fields are those of the binary protocol (docs/protocol.md)."},
  "servers": [{"url": "http://127.0.0.1:7701"}],
  "security": [{"bearer": []}],
  "paths": paths,
  "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "the server's --token-file token; not needed when the server has none"}},
                 "schemas": {"Hit": hit, "Item": item, "Collection": coll, "Error": error, "TeiError": tei}}}
print(json.dumps(doc, indent=1))
