#include "common/perr.h"
#include "tests/common/testlib.h"

#include <errno.h>
#include <string.h>

static void test_codes_have_names(void) {
    CHECK_STR(perr_name(PERR_OK), "OK");
    CHECK_STR(perr_name(PERR_FORMAT), "FORMAT");
    CHECK_STR(perr_str(PERR_NOMEM), "out of memory");
    CHECK_STR(perr_name(12345), "UNKNOWN");
}

static void test_message_and_prefix(void) {
    CHECK_EQ_INT(perr_set(PERR_FORMAT, "bad magic at byte %d", 4), PERR_FORMAT);
    CHECK_STR(perr_msg(), "bad magic at byte 4");
    CHECK_EQ_INT(perr_prefix(PERR_FORMAT, "%s", "x.pt"), PERR_FORMAT);
    CHECK_STR(perr_msg(), "x.pt: bad magic at byte 4");
    perr_clear();
    perr_prefix(PERR_IO, "y");
    CHECK_STR(perr_msg(), "y: input/output error");
}

static void test_errno_mapping(void) {
    CHECK_EQ_INT(perr_errno(ENOENT, "open %s", "a"), PERR_NOT_FOUND);
    CHECK(strstr(perr_msg(), "open a: ") == perr_msg());
    CHECK_EQ_INT(perr_errno(ENOSPC, "w"), PERR_FULL);
    CHECK_EQ_INT(perr_errno(EACCES, "w"), PERR_IO);
}

int main(void) {
    T_RUN(test_codes_have_names);
    T_RUN(test_message_and_prefix);
    T_RUN(test_errno_mapping);
    return t_done();
}
