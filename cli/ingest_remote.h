/* ingest_remote: `percept ingest --server`, the files' bytes uploaded
 * through INGEST (docs/protocol.md), walked as eng_ingest_paths walks. */
#ifndef PERCEPT_CLI_INGEST_REMOTE_H
#define PERCEPT_CLI_INGEST_REMOTE_H

#include "engine/eng.h"
#include "net/client.h"

/* Walks paths ("-": paths from stdin; directories recursively, names in
 * order) and uploads each file with o's collection, labels, meta and
 * video sampling (o->video: frames, segment_s, segment_frames);
 * on_result / on_progress / cancel of o are honoured, the rest of o is the
 * server's business. Per-file failures are counted in *out; a failure of
 * the connection or the database stops the run and is returned. */
int ingest_remote(pc_client *pc, const char *const *paths, int n, const eng_ingest_opts *o,
                  eng_progress *out);

#endif
