/* Small helpers of the public encoder API that belong to no tower. */
#include "encoder/pe.h"

#include <math.h>

void pe_l2_normalize(float *v, int d) {
    double ss = 0;
    for (int i = 0; i < d; i++) ss += (double)v[i] * v[i];
    double n = sqrt(ss);
    float inv = (float)(1.0 / (n > 1e-12 ? n : 1e-12));
    for (int i = 0; i < d; i++) v[i] *= inv;
}
