/* Placeholder bodies while storage is implemented (first hour only). */
#include "storage/st.h"
#include "common/perr.h"
#include <string.h>

void st_opts_default(st_opts *o) { memset(o, 0, sizeof *o); o->map_size = UINT64_C(64) << 30; o->create = 1; o->max_readers = 126; }
int st_open(const char *dir, const st_opts *opts, st_db **out) { return perr_set(PERR_UNSUPPORTED, "storage: not implemented yet"); }
void st_close(st_db *db) { (void)0; }
const char *st_dir(const st_db *db) { return ""; }
const char *st_index_dir(const st_db *db) { return ""; }
int st_txn_begin(st_db *db, int write, st_txn **out) { return perr_set(PERR_UNSUPPORTED, "storage: not implemented yet"); }
int st_txn_commit(st_txn *txn) { return perr_set(PERR_UNSUPPORTED, "storage: not implemented yet"); }
void st_txn_abort(st_txn *txn) { (void)0; }
int st_txn_is_write(const st_txn *txn) { return perr_set(PERR_UNSUPPORTED, "storage: not implemented yet"); }
int st_info_get(st_txn *txn, st_info *out) { return perr_set(PERR_UNSUPPORTED, "storage: not implemented yet"); }
int st_model_set(st_txn *txn, uint64_t fingerprint, const char *name, int dim) { return perr_set(PERR_UNSUPPORTED, "storage: not implemented yet"); }
int st_coll_create(st_txn *txn, const char *name, const char *factory, uint32_t *id_out) { return perr_set(PERR_UNSUPPORTED, "storage: not implemented yet"); }
int st_coll_get(st_txn *txn, const char *name, st_collection *out) { return perr_set(PERR_UNSUPPORTED, "storage: not implemented yet"); }
int st_coll_get_id(st_txn *txn, uint32_t id, st_collection *out) { return perr_set(PERR_UNSUPPORTED, "storage: not implemented yet"); }
int st_coll_list(st_txn *txn, st_collection **out, size_t *n) { return perr_set(PERR_UNSUPPORTED, "storage: not implemented yet"); }
int st_coll_drop(st_txn *txn, uint32_t id) { return perr_set(PERR_UNSUPPORTED, "storage: not implemented yet"); }
int st_item_add(st_txn *txn, uint32_t coll, const st_item *item, const float *vec, const st_segment *segs, size_t n_segs, uint64_t *id_out, uint64_t *seq_out) { return perr_set(PERR_UNSUPPORTED, "storage: not implemented yet"); }
int st_item_get(st_txn *txn, uint64_t id, st_item **out) { return perr_set(PERR_UNSUPPORTED, "storage: not implemented yet"); }
void st_item_free(st_item *it) { (void)0; }
int st_item_delete(st_txn *txn, uint64_t id, uint64_t *seq_out) { return perr_set(PERR_UNSUPPORTED, "storage: not implemented yet"); }
int st_item_vector(st_txn *txn, uint64_t id, const float **vec, int *dim) { return perr_set(PERR_UNSUPPORTED, "storage: not implemented yet"); }
int st_item_segments(st_txn *txn, uint64_t id, st_segment **segs, size_t *n) { return perr_set(PERR_UNSUPPORTED, "storage: not implemented yet"); }
int st_hash_lookup(st_txn *txn, uint32_t coll, const uint8_t hash[ST_HASH_LEN], uint64_t *id_out) { return perr_set(PERR_UNSUPPORTED, "storage: not implemented yet"); }
int st_label_add(st_txn *txn, uint64_t id, const char *label) { return perr_set(PERR_UNSUPPORTED, "storage: not implemented yet"); }
int st_label_remove(st_txn *txn, uint64_t id, const char *label) { return perr_set(PERR_UNSUPPORTED, "storage: not implemented yet"); }
int st_label_ids(st_txn *txn, uint32_t coll, const char *label, uint64_t **ids, size_t *n) { return perr_set(PERR_UNSUPPORTED, "storage: not implemented yet"); }
int st_meta_set(st_txn *txn, uint64_t id, const char *key, const char *value) { return perr_set(PERR_UNSUPPORTED, "storage: not implemented yet"); }
int st_meta_ids(st_txn *txn, uint32_t coll, const char *key, const char *value, uint64_t **ids, size_t *n) { return perr_set(PERR_UNSUPPORTED, "storage: not implemented yet"); }
int st_changes(st_txn *txn, uint32_t coll, uint64_t after_seq, st_change_fn fn, void *ud) { return perr_set(PERR_UNSUPPORTED, "storage: not implemented yet"); }
int st_changes_trim(st_txn *txn, uint32_t coll, uint64_t upto) { return perr_set(PERR_UNSUPPORTED, "storage: not implemented yet"); }
int st_scan_vectors(st_txn *txn, uint32_t coll, uint64_t after_id, st_vec_fn fn, void *ud) { return perr_set(PERR_UNSUPPORTED, "storage: not implemented yet"); }
int st_scan_segments(st_txn *txn, uint32_t coll, uint64_t after_id, st_seg_fn fn, void *ud) { return perr_set(PERR_UNSUPPORTED, "storage: not implemented yet"); }
int st_scan_items(st_txn *txn, uint32_t coll, uint64_t after_id, st_item_fn fn, void *ud) { return perr_set(PERR_UNSUPPORTED, "storage: not implemented yet"); }
int st_stats_get(st_txn *txn, st_stats *out) { return perr_set(PERR_UNSUPPORTED, "storage: not implemented yet"); }
