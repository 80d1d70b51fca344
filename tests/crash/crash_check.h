/* crash_check: what the kill -9 tests check after each round. */
#ifndef PERCEPT_CRASH_CHECK_H
#define PERCEPT_CRASH_CHECK_H

#include <stdint.h>

/* Reopens the database in dbdir (vocab_path, save_every: eng_open_opts) and
 * checks: every acknowledged id ids[0..*n) is stored with its 32-float
 * vector and finds itself first with score 1; the "default" collection's
 * index holds exactly its stored items. With drop, deletes about a third of
 * the acknowledged items (rand()) and removes them from ids (*n shrinks) so
 * that the next round has work again and kills also land in runs that
 * follow deletes. Failures are reported through testlib, naming the round. */
void crash_check_db(const char *dbdir, const char *vocab_path, int save_every, uint64_t *ids,
                    int *n, int round, int drop);

/* The child's opening, the same in both tests: creates (or reopens) the
 * database in dbdir with the model, saving indexes every save_every writes
 * so that kills land before and after saves. A failure is printed as
 * "child: ..." on stderr; returns 0, or 2 (the child's exit status then). */
struct eng_db;
int crash_child_open(const char *dbdir, const char *model_path, const char *vocab_path, int save_every,
                     struct eng_db **db);

#endif
