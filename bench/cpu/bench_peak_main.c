/* bench_peak: prints this CPU's arithmetic peaks (bench/common/bench_peak.h)
 * at 1..N threads, the ceiling the encoder's "% of this CPU's peak" column
 * (bench_encoder) is measured against.
 *
 * usage: bench_peak [--threads N] [--seconds S] [--reps R]
 */
#include "bench/common/bench_peak.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), reps = 5;
    double seconds = 0.05;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--threads N] [--seconds S] [--reps R]\n", argv[0]);
            return 2;
        }
    }
    if (threads > BENCH_PEAK_MAXT) threads = BENCH_PEAK_MAXT;
    char line[512], cpu[256] = "?";
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            char *c = strchr(line, ':');
            if (c) snprintf(cpu, sizeof cpu, "%s", c + 2);
            cpu[strcspn(cpu, "\n")] = 0;
            break;
        }
    if (f) fclose(f);
    double load[3] = {0};
    getloadavg(load, 3);
    bench_peak p;
    bench_peak_measure(&p, threads, seconds, reps);
    printf("# bench_peak  cpu: %s, %ld online cores, load average %.2f %.2f %.2f\n", cpu,
           sysconf(_SC_NPROCESSORS_ONLN), load[0], load[1], load[2]);
    printf("# instruction sets found: %s (best of %d runs of ~%.2f s)\n\n", p.flags, reps, seconds);
    printf("| kind |");
    for (int t = 1; t <= threads; t++) printf(" %d thr, per CPU-s |", t);
    for (int t = 1; t <= threads; t++) printf(" %d thr, wall |", t);
    printf("\n|---|");
    for (int t = 1; t <= 2 * threads; t++) printf("---|");
    printf("\n");
    for (int k = 0; k < BENCH_PEAK_KINDS; k++) {
        printf("| %s |", bench_peak_name(k));
        for (int t = 1; t <= threads; t++) {
            if (p.rate[k][t] > 0) printf(" %.1f |", p.rate[k][t]);
            else printf(" absent |");
        }
        for (int t = 1; t <= threads; t++) {
            if (p.wall[k][t] > 0) printf(" %.1f |", p.wall[k][t]);
            else printf(" absent |");
        }
        printf("\n");
    }
    printf("\nG(FL)OP/s; fp32 FMA = 2 FLOP per lane, vdpbf16ps = 4, vpdpbusd = 8 OP per 32-bit lane.\n"
           "\"per CPU-s\": each thread's operations over its own CPU time, summed over threads (robust\n"
           "to other load); \"wall\": all operations over wall time (meaningful only on free cores).\n");
    return 0;
}
