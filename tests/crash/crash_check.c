/* crash_check: the checks of the kill -9 tests (crash_check.h). */
#define _GNU_SOURCE
#include "crash_check.h"
#include "engine/eng.h"
#include "common/perr.h"
#include "tests/common/testlib.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int crash_child_open(const char *dbdir, const char *model_path, const char *vocab_path, int save_every,
                     eng_db **db) {
    eng_open_opts o;
    eng_open_opts_default(&o);
    o.model_path = model_path;
    o.vocab_path = vocab_path;
    o.create = 1;
    o.save_every = save_every;
    *db = NULL;
    if (eng_open(dbdir, &o, db)) { fprintf(stderr, "child: %s\n", perr_msg()); return 2; }
    return 0;
}

void crash_check_db(const char *dbdir, const char *vocab_path, int save_every, uint64_t *ids,
                    int *n, int round, int drop) {
    eng_open_opts o;
    eng_open_opts_default(&o);
    o.vocab_path = vocab_path;
    if (save_every > 0) o.save_every = save_every;
    eng_db *db = NULL;
    int orc = eng_open(dbdir, &o, &db);
    /* Killed before or while it created the database (no data.mdb yet, or
     * LMDB there without the model recorded; the next run creates it):
     * nothing was acknowledged, nothing to check. Seen under load 20, where
     * a child took longer to start than the first kill moments. */
    if (*n == 0 && ((orc == PERR_INVALID && strstr(perr_msg(), "creation was interrupted")) ||
                    (orc == PERR_NOT_FOUND && strstr(perr_msg(), "no percept database")))) {
        perr_clear();
        return;
    }
    REQUIRE_OK(orc);
    eng_collection_info ci;
    memset(&ci, 0, sizeof ci);
    int have = eng_collection_get(db, "default", &ci) == PERR_OK;
    if (!have) { perr_clear(); CHECK_EQ_INT(*n, 0); }
    if (have) {
        if (ci.n_index != ci.n_items)
            t_fail(__FILE__, __LINE__, "round %d: index holds %llu, database %llu", round,
                   (unsigned long long)ci.n_index, (unsigned long long)ci.n_items);
        CHECK((int)ci.n_items >= *n);
    }
    eng_query q;
    eng_query_default(&q);
    q.k = 1;
    q.include_self = 1;
    int bad = 0;
    for (int i = 0; i < *n && bad < 5; i++) {
        eng_item *it = NULL;
        int rc = eng_get(db, ids[i], 1, &it);
        if (rc) { t_fail(__FILE__, __LINE__, "round %d: acknowledged item %llu lost: %s", round, (unsigned long long)ids[i], perr_msg()); bad++; continue; }
        CHECK(it->vector && it->dim == 32);
        eng_item_free(it);
        eng_results *r = NULL;
        rc = eng_search_id(db, ids[i], &q, &r);
        if (rc || !r || r->n < 1 || r->hits[0].id != ids[i] || fabsf(r->hits[0].score - 1) > 1e-5f) {
            t_fail(__FILE__, __LINE__, "round %d: item %llu does not find itself first", round, (unsigned long long)ids[i]);
            bad++;
        }
        eng_results_free(r);
    }
    /* Delete about a third of the items so that the next round has work
     * again (and kills also land in runs that follow deletes). */
    if (drop && *n) {
        uint64_t *del = malloc(sizeof *del * (size_t)*n);
        int nd = 0, keep = 0;
        for (int i = 0; i < *n; i++) {
            if (rand() % 3 == 0) del[nd++] = ids[i];
            else ids[keep++] = ids[i];
        }
        *n = keep;
        int removed = 0;
        if (nd) CHECK_OK(eng_remove(db, del, nd, &removed));
        CHECK_EQ_INT(removed, nd);
        free(del);
    }
    CHECK_OK(eng_close(db));
}
