/* libFuzzer target: pe_weights_open_buffer on arbitrary bytes (the
 * safetensors reader and the zip reader, chosen by content as in real use),
 * then the configuration code on whatever opened. Built as two targets with
 * different seed corpora (safetensors, zip); see CMakeLists.txt. */
#include "common/perr.h"
#include "encoder/pe_config.h"
#include "encoder/pe_weights.h"

#include <stdint.h>
#include <stdlib.h>

/* Reads every tensor of an opened checkpoint, so that ASan checks each
 * data pointer and size the reader produced. */
void fuzz_touch(const pe_weights *w) {
    static float buf[1 << 16];
    for (int i = 0; i < pe_weights_count(w); i++) {
        const pe_tensor *t = pe_weights_at(w, i);
        if (t->numel <= (int64_t)(sizeof buf / sizeof *buf)) pe_tensor_to_f32(t, buf);
        else {
            /* first and last byte of large tensors */
            volatile uint8_t a = ((const uint8_t *)t->data)[0], b = ((const uint8_t *)t->data)[t->nbytes - 1];
            (void)a;
            (void)b;
        }
    }
    pe_config c;
    if (pe_config_from_shapes(w, &c) == PERR_OK) pe_config_check(w, &c, NULL);
    pe_config_resolve(w, NULL, NULL, &c);
}

#ifndef FUZZ_NO_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pe_weights *w = NULL;
    if (pe_weights_open_buffer(data, size, "fuzz", &w) == PERR_OK) fuzz_touch(w);
    pe_weights_close(w);
    return 0;
}
#endif
