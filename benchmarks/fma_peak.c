/* Peak fp32 FMA rate of one core, per x86 vector width the CPU runs natively.

   Each kernel keeps CHAINS independent accumulator chains in registers, plus one multiplier and
   one addend: 12 + 2 = 14 registers, under the 16 of SSE and AVX2 and the 32 of AVX-512, so
   nothing spills (a 16-lane type on an AVX2 core is two registers per chain, 26 in all, and reads
   ~6 GFLOP/s). Twelve chains hide a 4-cycle FMA latency on two pipes. Each width is timed in many
   short bursts and the best counts, so a busy neighbour costs bursts, not the figure.

   Build with -O2 -march=native. Prints one line per width: "<bits> <GFLOP/s>". */
#include <stdio.h>
#include <time.h>

#define CHAINS 12
#define BURST 200000L /* iterations per burst: about 1 ms */
#define BURSTS 300

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static volatile float sink;

#define KERNEL(NAME, LANES)                                                                   \
    typedef float NAME##_vec __attribute__((vector_size(4 * LANES)));                        \
    __attribute__((noinline)) static double NAME(void) {                                      \
        NAME##_vec acc[CHAINS], mul, add;                                                     \
        for (int l = 0; l < LANES; l++) { mul[l] = 1.0000001f; add[l] = 1e-7f; }              \
        for (int i = 0; i < CHAINS; i++) acc[i] = add * (float)i;                             \
        double best = 0;                                                                      \
        for (int b = 0; b < BURSTS; b++) {                                                    \
            double t0 = now();                                                                \
            for (long k = 0; k < BURST; k++) {                                                \
                _Pragma("GCC unroll 12") for (int i = 0; i < CHAINS; i++)                     \
                    acc[i] = acc[i] * mul + add;                                              \
            }                                                                                 \
            double r = 2.0 * LANES * CHAINS * BURST / (now() - t0) / 1e9;                     \
            if (r > best) best = r;                                                           \
        }                                                                                     \
        float s = 0;                                                                          \
        for (int i = 0; i < CHAINS; i++) s += acc[i][0];                                      \
        sink = s;                                                                             \
        return best;                                                                          \
    }

KERNEL(sse, 4)
#ifdef __AVX2__
KERNEL(avx2, 8)
#endif
#ifdef __AVX512F__
KERNEL(avx512, 16)
#endif

int main(void) {
    int bits[3], n = 0;
    double rate[3];
    bits[n] = 128, rate[n++] = sse();
#ifdef __AVX2__
    bits[n] = 256, rate[n++] = avx2();
#endif
#ifdef __AVX512F__
    bits[n] = 512, rate[n++] = avx512();
#endif
    for (int i = 0; i < n; i++) printf("%d %.1f\n", bits[i], rate[i]);
    return 0;
}
