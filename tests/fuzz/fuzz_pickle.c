/* libFuzzer target: the restricted pickle machine. The input is data.pkl of
 * a torch.save archive that also holds storages "0" (16 floats), "1" (6
 * floats) and "2" (1 float), so that mutated pickles can reach tensor
 * rebuilding, not only the zip checks. */
#define FUZZ_NO_ENTRY
#include "fuzz_weights.c"
#include "tests/encoder_weights/ckpt_writer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const float st[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    ck_member m[] = {
        {"archive/data.pkl", data, size, 0},
        {"archive/data/0", st, 64, 0},
        {"archive/data/1", st, 24, 0},
        {"archive/data/2", st, 4, 0},
    };
    ckbuf z = {0};
    ck_zip(&z, m, 4, NULL);
    pe_weights *w = NULL;
    if (pe_weights_open_buffer(z.p, z.n, "fuzz", &w) == PERR_OK) fuzz_touch(w);
    pe_weights_close(w);
    ck_free(&z);
    return 0;
}
