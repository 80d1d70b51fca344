/* eng_thumb: stored thumbnails: the per-collection switch, storing the
 * thumbnails ingest made, and reading them back (or making one from the
 * item's file when none is stored).
 *
 * DESIGN. The encoder makes the bytes (it owns libvips: pe_image_* /
 * pe_thumb), storage keeps them opaque in its "thumbs" table keyed like
 * segments (slot 0 the item, 1 + i segment i), the engine decides when.
 * Ingest makes them from pixels it decodes anyway (eng_ingest.c for images,
 * eng_video.c for frames), so a thumbnail costs a second small resize and a
 * WebP encode, not a second decode. A missing thumbnail (older database,
 * collection with thumbnails off) is made on demand from the stored path
 * and not written back: reads never write.
 */
#define _GNU_SOURCE
#include "engine/eng_internal.h"
#include "common/perr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void eng_thumb_clear(eng_thumb *t) {
    if (!t) return;
    free(t->data);
    memset(t, 0, sizeof *t);
}

int eng_coll_thumbs(eng_db *db, uint32_t coll, int *on) {
    *on = 0;
    st_txn *txn;
    int rc = st_txn_begin(db->st, 0, &txn);
    if (rc) return rc;
    st_collection sc;
    rc = st_coll_get_id(txn, coll, &sc);
    st_txn_abort(txn);
    if (rc == PERR_OK) *on = !(sc.flags & ST_COLL_NO_THUMBS);
    return rc;
}

int eng_thumb_store(st_txn *w, uint64_t id, uint32_t slot, const pe_thumb *t) {
    if (!t || !t->data || !t->len) return PERR_OK;
    st_thumb st = {t->format, t->width, t->height, t->data, t->len};
    int rc = st_thumb_put(w, id, slot, &st);
    if (rc == PERR_INVALID) { /* this thumbnail only (e.g. over the size cap); txn alive */
        perr_clear();
        return PERR_OK;
    }
    return rc;
}

int eng_collection_set_thumbnails(eng_db *db, const char *name, int on) {
    if (!db->st) return perr_set(PERR_INVALID, "no database open (model-only handle)");
    if (db->read_only) return perr_set(PERR_INVALID, "database %s is open read-only", db->dir);
    pthread_mutex_lock(&db->write_mu);
    pthread_rwlock_rdlock(&db->coll_lock);
    eng_coll *c = eng_coll_find(db, name);
    uint32_t id = c ? c->id : 0;
    pthread_rwlock_unlock(&db->coll_lock);
    int rc = PERR_OK;
    st_txn *w = NULL;
    st_collection sc;
    if (!id) rc = perr_set(PERR_NOT_FOUND, "no collection %s in %s", name, db->dir);
    if (!rc) rc = st_txn_begin(db->st, 1, &w);
    if (!rc) rc = st_coll_get_id(w, id, &sc);
    if (!rc) rc = st_coll_set_flags(w, id, on ? sc.flags & ~ST_COLL_NO_THUMBS
                                              : sc.flags | ST_COLL_NO_THUMBS);
    if (!rc) rc = st_txn_commit(w);
    else st_txn_abort(w);
    pthread_mutex_unlock(&db->write_mu);
    return rc;
}

/* ------------------------------------------------------------- on demand */

typedef struct frame_thumb { pe_thumb *t; } frame_thumb;

static int on_frame(void *user, int index, double t, const uint8_t *rgb, int w, int h,
                    size_t stride) {
    (void)index; (void)t;
    frame_thumb *f = user;
    pe_thumb_opts to;
    pe_thumb_opts_default(&to);
    to.max_side = ENG_THUMB_SIDE;
    return pe_image_thumbnail_rgb(rgb, w, h, stride, &to, f->t);
}

/* A frame of the video at path, at time at (< 0: the middle). */
static int video_thumb(const char *path, double at, pe_thumb *out) {
    pe_video_limits lim;
    pe_video_limits_default(&lim);
    lim.threads = 1;
    pe_video *v = NULL;
    int rc = pe_video_open(path, &lim, &v);
    if (rc) return rc;
    double t = at >= 0 ? at : pe_video_info_get(v)->duration / 2;
    frame_thumb f = {out};
    rc = pe_video_sample(v, &t, 1, 0, on_frame, &f);
    pe_video_close(v);
    if (rc == PERR_OK && !out->data)
        rc = perr_set(PERR_DECODE, "%s: no frame at %.3f s", path, t);
    return rc;
}

/* Makes the thumbnail from the item's source file. */
static int make_thumb(eng_db *db, const st_item *si, int segment, const st_segment *segs,
                      size_t n_segs, pe_thumb *out) {
    (void)db;
    memset(out, 0, sizeof *out);
    unsigned long long id = (unsigned long long)si->id;
    if (!si->uri || !*si->uri)
        return perr_set(PERR_NOT_FOUND, "item %llu: no thumbnail stored and no source path", id);
    if (si->media == ST_MEDIA_VIDEO) {
        double at = -1;
        if (segment >= 0 && (size_t)segment < n_segs)
            at = (segs[segment].start_s + segs[segment].end_s) / 2;
        return video_thumb(si->uri, at, out);
    }
    pe_thumb_opts to;
    pe_thumb_opts_default(&to);
    to.max_side = ENG_THUMB_SIDE;
    return pe_image_thumbnail(si->uri, NULL, 0, si->uri, &to, out);
}

int eng_get_thumbnail(eng_db *db, uint64_t id, int segment, eng_thumb *out) {
    memset(out, 0, sizeof *out);
    if (!db->st) return perr_set(PERR_INVALID, "no database open (model-only handle)");
    st_txn *txn;
    int rc = st_txn_begin(db->st, 0, &txn);
    if (rc) return rc;
    st_item *si = NULL;
    rc = st_item_get(txn, id, &si);
    if (rc == PERR_NOT_FOUND) perr_set(rc, "no item %llu in %s", (unsigned long long)id, db->dir);
    if (rc == PERR_OK && segment >= 0 && (uint32_t)segment >= si->n_segments)
        rc = perr_set(PERR_NOT_FOUND, "item %llu has %u segments, no segment %d",
                      (unsigned long long)id, si->n_segments, segment);
    st_thumb st;
    if (rc == PERR_OK) {
        rc = st_thumb_get(txn, id, segment < 0 ? ST_THUMB_ITEM : ST_THUMB_SEG(segment), &st);
        if (rc == PERR_OK) {
            out->data = malloc(st.len);
            if (!out->data) rc = perr_set(PERR_NOMEM, "item %llu: thumbnail", (unsigned long long)id);
            else {
                memcpy(out->data, st.data, st.len);
                out->len = st.len;
                out->width = st.width;
                out->height = st.height;
                snprintf(out->mime, sizeof out->mime, "%s", pe_thumb_mime(st.format));
                out->stored = 1;
            }
            st_item_free(si);
            st_txn_abort(txn);
            return rc;
        }
    }
    /* Not stored: from the source file, outside the transaction. */
    st_segment *segs = NULL;
    size_t n_segs = 0;
    int make = 0;
    if (rc == PERR_NOT_FOUND && si && (segment < 0 || (uint32_t)segment < si->n_segments)) {
        perr_clear();
        make = 1;
        rc = segment >= 0 ? st_item_segments(txn, id, &segs, &n_segs) : PERR_OK;
    }
    st_txn_abort(txn); /* segs[].vec die here; only the times are used */
    if (rc == PERR_OK && make) {
        pe_thumb t;
        rc = make_thumb(db, si, segment, segs, n_segs, &t);
        if (rc == PERR_OK) {
            out->data = t.data;
            out->len = t.len;
            out->width = t.width;
            out->height = t.height;
            snprintf(out->mime, sizeof out->mime, "%s", pe_thumb_mime(t.format));
        } else if (rc != PERR_NOMEM && rc != PERR_NOT_FOUND) {
            /* A file moved, changed or no longer decodable: no thumbnail. */
            char why[768];
            snprintf(why, sizeof why, "%s", perr_msg());
            rc = perr_set(PERR_NOT_FOUND, "item %llu: no thumbnail stored, none made: %s",
                          (unsigned long long)id, why);
        }
    }
    free(segs);
    st_item_free(si);
    return rc;
}
