/* Peak fp32 rate of one core: 12 independent chains of 16-lane fused multiply-adds (one AVX-512
   register, or two AVX2 ones), enough to hide FMA latency on two pipes; nothing touches memory.
   No kernel doing real work can beat it. Build with -O2 -march=native; prints GFLOP/s. */
#include <stdio.h>
#include <time.h>

typedef float vec __attribute__((vector_size(64)));
#define CHAINS 12

int main(void) {
    vec acc[CHAINS], mul, add;
    for (int l = 0; l < 16; l++) { mul[l] = 1.0000001f; add[l] = 1e-7f; }
    for (int i = 0; i < CHAINS; i++) acc[i] = add * (float)i;
    const long iters = 40000000;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long k = 0; k < iters; k++)
#pragma GCC unroll 12
        for (int i = 0; i < CHAINS; i++) acc[i] = acc[i] * mul + add;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
    float sink = 0;
    for (int i = 0; i < CHAINS; i++) sink += acc[i][0];
    printf("%.1f %g\n", 2.0 * 16 * CHAINS * iters / s / 1e9, sink);
    return 0;
}
