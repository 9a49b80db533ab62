"""A native int4 matmul for batch-1 decode on x86 CPUs, with torch's kernel as the fallback.

Decoding one token reads every weight once, so its speed is bandwidth over weight bytes; torch's
`_weight_int4pack_mm_for_cpu` runs at ~2.5x that floor at batch 1. This kernel does what
llama.cpp's Q4 x Q8 path does: activations are quantized to int8 per group, and 4-bit weights are
multiplied against them with integer dot products (AVX512-VNNI `vpdpbusd`, or AVX2
`vpmaddubsw`), one fp32 scale product per group of 64 (per chunk of 16 groups in the AVX512-VNNI
"lanes" layout). The C source below is compiled once per machine with the system's C compiler
(`cc -O3 -march=native`, a few seconds; SANTA_LSP_KERNEL_FLAGS adds flags) into a cache directory
and called through ctypes; where there is no compiler, no x86 SIMD or the build fails,
`Int4Linear` keeps torch's kernel (slower, same packing of values, `pip install` still works).
It also holds: the prefill path (from 24 tokens: each 64-row block unpacked to int8 once, 4x4
tiles in inline assembly), the fused decode step of fused.py (`santa_decode_blocks`: one
parallel region per step, attention split by rows), the int8 lm_head of int4 models
(`santa_int8_mm`) and the MLP's GELU.

Numerics: w = q * scale + min per group of 64 inputs (q in 0..15, asymmetric, scale and min in
fp16), x quantized symmetric per group of 64 to int8; the min term uses the exact fp32 group sum.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

log = logging.getLogger(__name__)

GROUP = 64  # inputs per (scale, min) pair; the C code assumes 64 and pairs groups per 64-byte load

_C_SOURCE = r"""
#include <stdint.h>
#include <string.h>
#include <math.h>
#include <stdlib.h>
#include <omp.h>
#include <sched.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__AVX2__)
#include <immintrin.h>
#endif
#define G 64

static inline float h2f(uint16_t h) {
#if defined(__F16C__)
    return _cvtsh_ss(h);
#else
    uint32_t s = (h & 0x8000u) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ffu, f;
    if (e == 0) { float v = ldexpf((float)m, -24); return s ? -v : v; }
    if (e == 31) f = s | 0x7f800000u | (m << 13); else f = s | ((e + 112) << 23) | (m << 13);
    float v; memcpy(&v, &f, 4); return v;
#endif
}

/* x [K] fp32 -> xq [K] int8, xs[g] = scale, xsum[g] = exact group sum. */
static void quantize_row(const float *x, int64_t K, int8_t *xq, float *xs, float *xsum) {
#if defined(__AVX512F__)
    /* 16 lanes at a time (vcvtps2dq rounds half to even, as nearbyintf; the group sum in another order) */
    const __m512 sign = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    for (int64_t g = 0; g < K / G; g++) {
        const float *xg = x + g * G;
        __m512 v[4], am = _mm512_setzero_ps();
        for (int i = 0; i < 4; i++) { v[i] = _mm512_loadu_ps(xg + 16 * i); am = _mm512_max_ps(am, _mm512_and_ps(v[i], sign)); }
        const float amax = _mm512_reduce_max_ps(am);
        const float sum = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(v[0], v[1]), _mm512_add_ps(v[2], v[3])));
        const float d = amax / 127.f, id = d > 0.f ? 1.f / d : 0.f;
        const __m512 vid = _mm512_set1_ps(id);
        for (int i = 0; i < 4; i++)
            _mm_storeu_si128((__m128i *)(xq + g * G + 16 * i), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v[i], vid))));
        xs[g] = d; xsum[g] = sum;
    }
    return;
#endif
    for (int64_t g = 0; g < K / G; g++) {
        const float *xg = x + g * G; float amax = 0.f, sum = 0.f;
        for (int j = 0; j < G; j++) { float a = fabsf(xg[j]); amax = a > amax ? a : amax; sum += xg[j]; }
        float d = amax / 127.f, id = d > 0.f ? 1.f / d : 0.f;
        for (int j = 0; j < G; j++) xq[g * G + j] = (int8_t)nearbyintf(xg[j] * id);
        xs[g] = d; xsum[g] = sum;
    }
}

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
typedef __m512 acc_t;
typedef struct { __m512i lo, hi; } blk_t;
static inline acc_t acc_zero(void) { return _mm512_setzero_ps(); }
static inline blk_t unpack(const uint8_t *w) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512i v = _mm512_loadu_si512((const void *)w);
    blk_t b = {_mm512_and_si512(v, m4), _mm512_and_si512(_mm512_srli_epi16(v, 4), m4)};
    return b;
}
static inline acc_t dot(acc_t acc, blk_t b, const int8_t *a, const float *rs) {
    __m512i i0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), b.lo, _mm512_loadu_si512((const void *)a));
    __m512i i1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), b.hi, _mm512_loadu_si512((const void *)(a + G)));
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i0), _mm512_set1_ps(rs[0]), acc);
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(i1), _mm512_set1_ps(rs[1]), acc);
}
static inline float acc_sum(acc_t a) { return _mm512_reduce_add_ps(a); }
#elif defined(__AVX2__) && defined(__FMA__)
typedef __m256 acc_t;
typedef struct { __m256i lo[2], hi[2]; } blk_t;
static inline acc_t acc_zero(void) { return _mm256_setzero_ps(); }
static inline blk_t unpack(const uint8_t *w) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    blk_t b;
    for (int h = 0; h < 2; h++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(w + 32 * h));
        b.lo[h] = _mm256_and_si256(v, m4); b.hi[h] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    }
    return b;
}
static inline __m256i dot_u8s8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));  /* no saturation: 2*15*127 */
}
static inline acc_t dot(acc_t acc, blk_t b, const int8_t *a, const float *rs) {
    for (int h = 0; h < 2; h++) {
        __m256i i0 = dot_u8s8(b.lo[h], _mm256_loadu_si256((const __m256i *)(a + 32 * h)));
        __m256i i1 = dot_u8s8(b.hi[h], _mm256_loadu_si256((const __m256i *)(a + G + 32 * h)));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i0), _mm256_set1_ps(rs[0]), acc);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i1), _mm256_set1_ps(rs[1]), acc);
    }
    return acc;
}
static inline float acc_sum(acc_t a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_hadd_ps(s, s); s = _mm_hadd_ps(s, s); return _mm_cvtss_f32(s);
}
#else
typedef float acc_t;
typedef struct { const uint8_t *w; } blk_t;
static inline acc_t acc_zero(void) { return 0.f; }
static inline blk_t unpack(const uint8_t *w) { blk_t b = {w}; return b; }
static inline acc_t dot(acc_t acc, blk_t b, const int8_t *a, const float *rs) {
    int32_t i0 = 0, i1 = 0;
    for (int j = 0; j < G; j++) { i0 += (b.w[j] & 15) * a[j]; i1 += (b.w[j] >> 4) * a[G + j]; }
    return acc + i0 * rs[0] + i1 * rs[1];
}
static inline float acc_sum(acc_t a) { return a; }
#endif
/* Integer dot of one 64-byte packed block (two groups: low nibbles = group 2p, high = 2p+1)
   with the int8 activations of those two groups, scaled by rs[0], rs[1]. */
static inline acc_t block(acc_t acc, const uint8_t *w, const int8_t *a, const float *rs) {
    return dot(acc, unpack(w), a, rs);
}

/* rs[g] = scale[g] * xs[g] for one weight row; returns sum_g min[g] * xsum[g] (the min term). */
static inline float row_scales(const uint16_t *s, const uint16_t *m, const float *xs, const float *xsum,
                               int64_t ng, float *rs) {
    int64_t g = 0;
    float t = 0.f;
#if defined(__AVX512F__)
    __m512 mt = _mm512_setzero_ps();
    for (; g + 16 <= ng; g += 16) {
        __m512 sv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(s + g)));
        _mm512_storeu_ps(rs + g, _mm512_mul_ps(sv, _mm512_loadu_ps(xs + g)));
        mt = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(m + g))), _mm512_loadu_ps(xsum + g), mt);
    }
    t = _mm512_reduce_add_ps(mt);
#elif defined(__AVX2__) && defined(__F16C__) && defined(__FMA__)
    __m256 mt = _mm256_setzero_ps();
    for (; g + 8 <= ng; g += 8) {
        __m256 sv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + g)));
        _mm256_storeu_ps(rs + g, _mm256_mul_ps(sv, _mm256_loadu_ps(xs + g)));
        mt = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(m + g))), _mm256_loadu_ps(xsum + g), mt);
    }
    float tmp[8]; _mm256_storeu_ps(tmp, mt);
    for (int i = 0; i < 8; i++) t += tmp[i];
#endif
    for (; g < ng; g++) { rs[g] = h2f(s[g]) * xs[g]; t += h2f(m[g]) * xsum[g]; }
    return t;
}

/* Rows [n0, n1) of y[m, :] for one quantized activation row, four rows at a time: their
   accumulator chains are independent, the activation block is loaded once, and the packing
   interleaves the four rows' blocks so the weights are read strictly in order. */
static void rows(const uint8_t *qw, const uint16_t *sc, const uint16_t *mn, int64_t K,
                 const int8_t *xq, const float *xs, const float *xsum, const float *bias,
                 float *y, int64_t n0, int64_t n1) {
    const int64_t ng = K / G;
    float rs[4][ng];
    for (int64_t n = n0; n < n1; n += 4) {
        float mterm[4];
        acc_t acc[4];
        for (int r = 0; r < 4; r++) {
            mterm[r] = row_scales(sc + (n + r) * ng, mn + (n + r) * ng, xs, xsum, ng, rs[r]);
            acc[r] = acc_zero();
        }
        const uint8_t *w = qw + n * (K / 2);
        for (int64_t p = 0; p < ng / 2; p++, w += 4 * G) {
            const int8_t *a = xq + p * 2 * G;
#if defined(__AVX2__)
            _mm_prefetch((const char *)(w + 16 * G), _MM_HINT_T0);
            _mm_prefetch((const char *)(w + 17 * G), _MM_HINT_T0);
            _mm_prefetch((const char *)(w + 18 * G), _MM_HINT_T0);
            _mm_prefetch((const char *)(w + 19 * G), _MM_HINT_T0);
#endif
            for (int r = 0; r < 4; r++) acc[r] = block(acc[r], w + r * G, a, &rs[r][2 * p]);
        }
        for (int r = 0; r < 4; r++) y[n + r] = acc_sum(acc[r]) + mterm[r] + (bias ? bias[n + r] : 0.f);
    }
}

/* Rows [n0, n1) for a tile of mt <= MT activation rows: each weight block is unpacked once and
   multiplied against every row of the tile (speculative verification, prefill). Always inlined
   with a constant mt, so that the accumulators stay in registers. */
#define MT 4

/* The work split of both layouts: rows of W in blocks of 64 across `threads` (a variable of that
   name in scope), one parallel region per call. With more than one activation row, each block
   runs every tile of up to MT rows while its weights (64 rows, 64-256 KB) are in L2, so the
   weights stream from memory once per call rather than once per tile (a 1,024-token prefill of
   the 1.1B: 6.55 against 6.82 s, A/B in one process). The tile height is a literal in each case
   so that TILE's loops specialise. ONE(n0, n1) computes rows [n0, n1) for the single activation
   row; TILE(t0, n0, n1, mt) for activation rows [t0, t0 + mt). BLOCK_WORK is one block's work
   (also the fused step's mm_share, which splits the blocks itself). */
#define BLOCK_WORK(n0, n1, M, ONE, TILE)                                                    \
    do {                                                                                    \
        if ((M) == 1) { ONE(n0, n1); break; }                                               \
        for (int64_t t0 = 0; t0 < (M); t0 += MT) {                                          \
            switch ((M) - t0 < MT ? (int)((M) - t0) : MT) {                                 \
            case 1: TILE(t0, n0, n1, 1); break;                                             \
            case 2: TILE(t0, n0, n1, 2); break;                                             \
            case 3: TILE(t0, n0, n1, 3); break;                                             \
            default: TILE(t0, n0, n1, 4); break;                                            \
            }                                                                               \
        }                                                                                   \
    } while (0)
#define SPLIT_WORK(N, M, ONE, TILE)                                                         \
    do {                                                                                    \
        const int64_t nrb_ = ((N) + 63) / 64;                                               \
        _Pragma("omp parallel for num_threads(threads) schedule(static)")                   \
        for (int64_t b_ = 0; b_ < nrb_; b_++) {                                             \
            const int64_t n0_ = b_ * 64, n1_ = n0_ + 64 < (N) ? n0_ + 64 : (N);             \
            BLOCK_WORK(n0_, n1_, M, ONE, TILE);                                             \
        }                                                                                   \
    } while (0)
static inline __attribute__((always_inline)) void rows_tile(const uint8_t *qw, const uint16_t *sc, const uint16_t *mn, int64_t K, int64_t N,
                      const int8_t *xq, const float *xs, const float *xsum, const float *bias,
                      float *y, int64_t n0, int64_t n1, int64_t mt) {
    const int64_t ng = K / G;
    float rs[MT][ng];
    for (int64_t n = n0; n < n1; n += 4) {
        for (int r = 0; r < 4; r++) {
            float mterm[MT];
            acc_t acc[MT];
            for (int64_t m = 0; m < mt; m++) {
                mterm[m] = row_scales(sc + (n + r) * ng, mn + (n + r) * ng, xs + m * ng, xsum + m * ng, ng, rs[m]);
                acc[m] = acc_zero();
            }
            const uint8_t *w = qw + n * (K / 2) + r * G;
            for (int64_t p = 0; p < ng / 2; p++, w += 4 * G) {
                blk_t b = unpack(w);
                for (int64_t m = 0; m < mt; m++) acc[m] = dot(acc[m], b, xq + m * K + p * 2 * G, &rs[m][2 * p]);
            }
            for (int64_t m = 0; m < mt; m++)
                y[m * N + n + r] = acc_sum(acc[m]) + mterm[m] + (bias ? bias[n + r] : 0.f);
        }
    }
}

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
/* The "lanes" layout (AVX512-VNNI, K a multiple of 1024): a chunk of 16 groups lies across the 16
   32-bit lanes of a vector, 4 inputs per lane per step, so the int32 dot products of all 64
   inputs of a group add up in their lane and the fp32 scaling runs once per chunk, not once per
   group. Weights per 4 rows: [chunk][t = 0..7][row][64 bytes], byte 4j+b of step t holds group
   16c+j's inputs 8t+b (low nibble) and 8t+4+b (high nibble); activations per token:
   [chunk][s = 0..15][64 bytes], byte 4j+b = group 16c+j's input 4s+b. */
#define LANES 16
static void to_lanes(const int8_t *xq, int64_t K, int8_t *out) {
    for (int64_t c = 0; c < K / (G * LANES); c++)
        for (int s = 0; s < 16; s++)
            for (int j = 0; j < LANES; j++)
                memcpy(out + (c * 16 + s) * 64 + j * 4, xq + (c * LANES + j) * G + 4 * s, 4);
}

static inline __m512 chunk_scale(const uint16_t *s, const float *xs) {
    return _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)s)), _mm512_loadu_ps(xs));
}
static inline __m512 chunk_min(__m512 acc, const uint16_t *m, const float *xsum) {
    return _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)m)), _mm512_loadu_ps(xsum), acc);
}

/* One token, rows [n0, n1) four at a time. */
static void lanes_rows(const uint8_t *qw, const uint16_t *sc, const uint16_t *mn, int64_t K,
                       const int8_t *a, const float *xs, const float *xsum, const float *bias,
                       float *y, int64_t n0, int64_t n1) {
    const int64_t ng = K / G, nc = ng / LANES;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    for (int64_t n = n0; n < n1; n += 4) {
        const uint8_t *w = qw + n * (K / 2);
        __m512 acc[4];
        for (int r = 0; r < 4; r++) acc[r] = _mm512_setzero_ps();
        for (int64_t c = 0; c < nc; c++) {
            __m512i lo[4], hi[4];
            for (int r = 0; r < 4; r++) { lo[r] = _mm512_setzero_si512(); hi[r] = _mm512_setzero_si512(); }
            const int8_t *ac = a + c * 16 * 64;
            for (int t = 0; t < 8; t++) {
                __m512i a0 = _mm512_loadu_si512((const void *)(ac + 2 * t * 64));
                __m512i a1 = _mm512_loadu_si512((const void *)(ac + (2 * t + 1) * 64));
                _mm_prefetch((const char *)(w + 1024), _MM_HINT_T0);
                _mm_prefetch((const char *)(w + 1088), _MM_HINT_T0);
                _mm_prefetch((const char *)(w + 1152), _MM_HINT_T0);
                _mm_prefetch((const char *)(w + 1216), _MM_HINT_T0);
                for (int r = 0; r < 4; r++, w += 64) {
                    __m512i v = _mm512_loadu_si512((const void *)w);
                    lo[r] = _mm512_dpbusd_epi32(lo[r], _mm512_and_si512(v, m4), a0);
                    hi[r] = _mm512_dpbusd_epi32(hi[r], _mm512_and_si512(_mm512_srli_epi16(v, 4), m4), a1);
                }
            }
            for (int r = 0; r < 4; r++) {
                const int64_t row = n + r;
                __m512 isum = _mm512_cvtepi32_ps(_mm512_add_epi32(lo[r], hi[r]));
                acc[r] = _mm512_fmadd_ps(isum, chunk_scale(sc + row * ng + c * LANES, xs + c * LANES), acc[r]);
                acc[r] = chunk_min(acc[r], mn + row * ng + c * LANES, xsum + c * LANES);
            }
        }
        for (int r = 0; r < 4; r++) y[n + r] = _mm512_reduce_add_ps(acc[r]) + (bias ? bias[n + r] : 0.f);
    }
}

/* A tile of mt <= 4 tokens: each weight vector is unpacked once for all of them, and the four
   rows are read together, in memory order (the weights stream from memory once per tile). */
static inline __attribute__((always_inline)) void lanes_tile(
        const uint8_t *qw, const uint16_t *sc, const uint16_t *mn, int64_t K, int64_t N,
        const int8_t *a, const float *xs, const float *xsum, const float *bias,
        float *y, int64_t n0, int64_t n1, const int mt) {
    const int64_t ng = K / G, nc = ng / LANES;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    for (int64_t n = n0; n < n1; n += 4) {
        const uint8_t *w = qw + n * (K / 2);
        __m512 acc[4][4];
        for (int r = 0; r < 4; r++)
            for (int m = 0; m < mt; m++) acc[r][m] = _mm512_setzero_ps();
        for (int64_t c = 0; c < nc; c++) {
            __m512i ai[4][4];
            for (int r = 0; r < 4; r++)
                for (int m = 0; m < mt; m++) ai[r][m] = _mm512_setzero_si512();
            for (int t = 0; t < 8; t++) {
                __m512i a0[4], a1[4];
                for (int m = 0; m < mt; m++) {
                    const int8_t *ac = a + m * K + c * 16 * 64;
                    a0[m] = _mm512_loadu_si512((const void *)(ac + 2 * t * 64));
                    a1[m] = _mm512_loadu_si512((const void *)(ac + (2 * t + 1) * 64));
                }
                _mm_prefetch((const char *)(w + 1024), _MM_HINT_T0);
                _mm_prefetch((const char *)(w + 1088), _MM_HINT_T0);
                _mm_prefetch((const char *)(w + 1152), _MM_HINT_T0);
                _mm_prefetch((const char *)(w + 1216), _MM_HINT_T0);
                for (int r = 0; r < 4; r++, w += 64) {
                    __m512i v = _mm512_loadu_si512((const void *)w);
                    __m512i vl = _mm512_and_si512(v, m4), vh = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
                    for (int m = 0; m < mt; m++)
                        ai[r][m] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(ai[r][m], vl, a0[m]), vh, a1[m]);
                }
            }
            for (int r = 0; r < 4; r++) {
                const int64_t row = n + r;
                for (int m = 0; m < mt; m++) {
                    acc[r][m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ai[r][m]),
                                                chunk_scale(sc + row * ng + c * LANES, xs + m * ng + c * LANES), acc[r][m]);
                    acc[r][m] = chunk_min(acc[r][m], mn + row * ng + c * LANES, xsum + m * ng + c * LANES);
                }
            }
        }
        for (int r = 0; r < 4; r++)
            for (int m = 0; m < mt; m++)
                y[m * N + n + r] = _mm512_reduce_add_ps(acc[r][m]) + (bias ? bias[n + r] : 0.f);
    }
}

/* Prefill (from PREFILL_MIN tokens: fewer run faster through lanes_tile): each thread unpacks a
   64-row block of weights to int8 once, with its scales and mins in fp32, into a buffer that
   stays in L2, and runs every token against it in tiles of 4 tokens x 4 rows. With no unpacking
   left in the inner loop, it is int8 dot products and, once per chunk of 16 groups, the fp32
   scaling. The last tokens, fewer than 4, go through lanes_tile on the packed weights: the same
   integers and the same fp32 order, so every row comes out bit for bit as the decode path's. */
#define PREFILL_MIN 24

/* One chunk (16 groups, 8 steps) of a full 4-row x 4-token tile in inline assembly: gcc 12 kept
   the 16 int32 sums of the intrinsics version in registers only by copying them around and
   reloading weights (~100 instructions per step for 32 vpdpbusd). Here, per step: the 4 rows'
   8 weight vectors into zmm0-7, each token's 2 activation vectors into zmm8-9, 32 vpdpbusd into
   the sums in zmm10-25 (row r, token m: zmm(10 + 4r + m)), stored to out[16] at the end. */
#define PF_W(T) \
    "vmovdqa64 " #T "*512(%[u]), %%zmm0\n\t"     "vmovdqa64 " #T "*512+64(%[u]), %%zmm1\n\t" \
    "vmovdqa64 " #T "*512+128(%[u]), %%zmm2\n\t" "vmovdqa64 " #T "*512+192(%[u]), %%zmm3\n\t" \
    "vmovdqa64 " #T "*512+256(%[u]), %%zmm4\n\t" "vmovdqa64 " #T "*512+320(%[u]), %%zmm5\n\t" \
    "vmovdqa64 " #T "*512+384(%[u]), %%zmm6\n\t" "vmovdqa64 " #T "*512+448(%[u]), %%zmm7\n\t"
#define PF_A(T, ADDR, C0, C1, C2, C3) \
    "vmovdqu64 " #T "*128" ADDR ", %%zmm8\n\t" "vmovdqu64 " #T "*128+64" ADDR ", %%zmm9\n\t" \
    "vpdpbusd %%zmm8, %%zmm0, %%zmm" #C0 "\n\t" "vpdpbusd %%zmm9, %%zmm1, %%zmm" #C0 "\n\t" \
    "vpdpbusd %%zmm8, %%zmm2, %%zmm" #C1 "\n\t" "vpdpbusd %%zmm9, %%zmm3, %%zmm" #C1 "\n\t" \
    "vpdpbusd %%zmm8, %%zmm4, %%zmm" #C2 "\n\t" "vpdpbusd %%zmm9, %%zmm5, %%zmm" #C2 "\n\t" \
    "vpdpbusd %%zmm8, %%zmm6, %%zmm" #C3 "\n\t" "vpdpbusd %%zmm9, %%zmm7, %%zmm" #C3 "\n\t"
#define PF_STEP(T) PF_W(T) PF_A(T, "(%[a])", 10, 14, 18, 22) PF_A(T, "(%[a],%[k],1)", 11, 15, 19, 23) \
    PF_A(T, "(%[a2])", 12, 16, 20, 24) PF_A(T, "(%[a2],%[k],1)", 13, 17, 21, 25)
#define PF_ZERO(R) "vpxord %%zmm" #R ", %%zmm" #R ", %%zmm" #R "\n\t"
#define PF_OUT(R) "vmovdqu64 %%zmm" #R ", (" #R "-10)*64(%[out])\n\t"

static inline __attribute__((always_inline)) void prefill_chunk4(const int8_t *u, const int8_t *a, int64_t K, __m512i out[16]) {
    __asm__ volatile(
        PF_ZERO(10) PF_ZERO(11) PF_ZERO(12) PF_ZERO(13) PF_ZERO(14) PF_ZERO(15) PF_ZERO(16) PF_ZERO(17)
        PF_ZERO(18) PF_ZERO(19) PF_ZERO(20) PF_ZERO(21) PF_ZERO(22) PF_ZERO(23) PF_ZERO(24) PF_ZERO(25)
        PF_STEP(0) PF_STEP(1) PF_STEP(2) PF_STEP(3) PF_STEP(4) PF_STEP(5) PF_STEP(6) PF_STEP(7)
        PF_OUT(10) PF_OUT(11) PF_OUT(12) PF_OUT(13) PF_OUT(14) PF_OUT(15) PF_OUT(16) PF_OUT(17)
        PF_OUT(18) PF_OUT(19) PF_OUT(20) PF_OUT(21) PF_OUT(22) PF_OUT(23) PF_OUT(24) PF_OUT(25)
        :
        : [u] "r"(u), [a] "r"(a), [a2] "r"(a + 2 * K), [k] "r"(K), [out] "r"(out)
        : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
          "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24",
          "xmm25", "memory");
}

static void prefill_tile(const int8_t *U, const float *wsf, const float *wmf, int64_t K, int64_t N,
                         const int8_t *a, const float *xs, const float *xsum, const float *bias, float *y, int64_t n) {
    const int64_t ng = K / G, nc = ng / LANES;
    float accm[4][4][LANES];  /* fp32 sums [row][token], touched once per chunk: L1 */
    memset(accm, 0, sizeof(accm));
    for (int64_t c = 0; c < nc; c++) {
        __m512i ai[4][4];
        prefill_chunk4(U + c * 8 * 4 * 128, a + c * 16 * 64, K, (__m512i *)ai);
        for (int r = 0; r < 4; r++) {
            const __m512 ws = _mm512_loadu_ps(wsf + r * ng + c * LANES), wm = _mm512_loadu_ps(wmf + r * ng + c * LANES);
            for (int m = 0; m < 4; m++) {
                __m512 acc = _mm512_loadu_ps(accm[r][m]);
                acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ai[r][m]), _mm512_mul_ps(ws, _mm512_loadu_ps(xs + m * ng + c * LANES)), acc);
                _mm512_storeu_ps(accm[r][m], _mm512_fmadd_ps(wm, _mm512_loadu_ps(xsum + m * ng + c * LANES), acc));
            }
        }
    }
    for (int r = 0; r < 4; r++)
        for (int m = 0; m < 4; m++)
            y[m * N + n + r] = _mm512_reduce_add_ps(_mm512_loadu_ps(accm[r][m])) + (bias ? bias[n + r] : 0.f);
}

static int lanes_prefill(const int8_t *a, const float *xs, const float *xsum, int64_t M, int64_t K,
                         const uint8_t *qw, const uint16_t *sc, const uint16_t *mn, int64_t N,
                         const float *bias, float *y, int threads) {
    const int64_t ng = K / G, nrb = (N + 63) / 64;
    int err = 0;
#pragma omp parallel num_threads(threads)
    {
        int8_t *U = (int8_t *)aligned_alloc(64, (size_t)(64 * K));
        float *wsf = (float *)malloc(sizeof(float) * (size_t)(64 * ng)), *wmf = (float *)malloc(sizeof(float) * (size_t)(64 * ng));
        if (!U || !wsf || !wmf) {
#pragma omp atomic write
            err = -2;
        }
        const __m512i m4 = _mm512_set1_epi8(0x0f);
#pragma omp for schedule(static)
        for (int64_t b = 0; b < nrb; b++) {
            if (!U || !wsf || !wmf) continue;
            const int64_t n0 = b * 64, n1 = n0 + 64 < N ? n0 + 64 : N;
            /* per 4 rows: [chunk][t][row][lo 64 | hi 64], the packed order with each byte split */
            const uint8_t *w = qw + n0 * (K / 2);
            for (int64_t i = 0; i < (n1 - n0) * K / 128; i++) {
                const __m512i v = _mm512_loadu_si512((const void *)(w + 64 * i));
                _mm512_store_si512((void *)(U + 128 * i), _mm512_and_si512(v, m4));
                _mm512_store_si512((void *)(U + 128 * i + 64), _mm512_and_si512(_mm512_srli_epi16(v, 4), m4));
            }
            for (int64_t i = 0; i < (n1 - n0) * ng; i++) { wsf[i] = h2f(sc[n0 * ng + i]); wmf[i] = h2f(mn[n0 * ng + i]); }
            /* tokens outer: a tile's activations stay in L1 while the block's weights stream from L2 */
            for (int64_t m0 = 0; m0 < M; m0 += 4) {
                const int64_t mt = M - m0 < 4 ? M - m0 : 4;
                const int8_t *am = a + m0 * K;
                const float *xsm = xs + m0 * ng, *xsumm = xsum + m0 * ng;
                for (int64_t n = n0; n < n1; n += 4) {
                    if (mt == 4) prefill_tile(U + (n - n0) * K, wsf + (n - n0) * ng, wmf + (n - n0) * ng, K, N, am, xsm, xsumm,
                                              bias, y + m0 * N, n);
                    else if (mt == 3) lanes_tile(qw, sc, mn, K, N, am, xsm, xsumm, bias, y + m0 * N, n, n + 4, 3);
                    else if (mt == 2) lanes_tile(qw, sc, mn, K, N, am, xsm, xsumm, bias, y + m0 * N, n, n + 4, 2);
                    else lanes_tile(qw, sc, mn, K, N, am, xsm, xsumm, bias, y + m0 * N, n, n + 4, 1);
                }
            }
        }
        free(U); free(wsf); free(wmf);
    }
    return err;
}

static int lanes_mm(const int8_t *xq, const float *xs, const float *xsum, int64_t M, int64_t K,
                    const uint8_t *qw, const uint16_t *sc, const uint16_t *mn, int64_t N,
                    const float *bias, float *y, int threads) {
    const int64_t ng = K / G;
    int8_t *a = (int8_t *)malloc((size_t)(M * K));
    if (!a) return -2;
#pragma omp parallel for num_threads(threads) schedule(static) if (M * K >= 65536)
    for (int64_t m = 0; m < M; m++) to_lanes(xq + m * K, K, a + m * K);
    if (M >= PREFILL_MIN) {
        int rc = lanes_prefill(a, xs, xsum, M, K, qw, sc, mn, N, bias, y, threads);
        free(a);
        return rc;
    }
#define LANES_ONE(n0, n1) lanes_rows(qw, sc, mn, K, a, xs, xsum, bias, y, n0, n1)
#define LANES_TILE(t0, n0, n1, mt) \
    lanes_tile(qw, sc, mn, K, N, a + (t0) * K, xs + (t0) * ng, xsum + (t0) * ng, bias, y + (t0) * N, n0, n1, mt)
    SPLIT_WORK(N, M, LANES_ONE, LANES_TILE);
    free(a);
    return 0;
}
#define HAVE_LANES 1
#endif

int santa_int4_lanes(int64_t K) {
#ifdef HAVE_LANES
    return K % (G * LANES) == 0;
#else
    (void)K; return 0;
#endif
}

/* y[M, N] = x[M, K] @ W[N, K]^T (+ bias). Work is split by rows of W (in blocks of 64) across
   `threads`; more than one activation row goes in tiles of MT, so the weights stream once per tile. */
int santa_int4_mm(const float *x, int64_t M, int64_t K, const uint8_t *qw, const uint16_t *sc,
                  const uint16_t *mn, int64_t N, const float *bias, float *y, int threads) {
    if (K % (2 * G) || N % 4) return -1;
    const int64_t ng = K / G;
    int8_t *xq = (int8_t *)malloc((size_t)(M * K));
    float *xs = (float *)malloc(sizeof(float) * (size_t)(M * ng)), *xsum = (float *)malloc(sizeof(float) * (size_t)(M * ng));
    if (!xq || !xs || !xsum) { free(xq); free(xs); free(xsum); return -2; }
#pragma omp parallel for num_threads(threads) schedule(static) if (M * K >= 65536)
    for (int64_t m = 0; m < M; m++) quantize_row(x + m * K, K, xq + m * K, xs + m * ng, xsum + m * ng);
    int rc = 0;
#ifdef HAVE_LANES
    if (santa_int4_lanes(K)) {
        rc = lanes_mm(xq, xs, xsum, M, K, qw, sc, mn, N, bias, y, threads);
        free(xq); free(xs); free(xsum);
        return rc;
    }
#endif
#define ROWS_ONE(n0, n1) rows(qw, sc, mn, K, xq, xs, xsum, bias, y, n0, n1)
#define ROWS_TILE(t0, n0, n1, mt) \
    rows_tile(qw, sc, mn, K, N, xq + (t0) * K, xs + (t0) * ng, xsum + (t0) * ng, bias, y + (t0) * N, n0, n1, mt)
    SPLIT_WORK(N, M, ROWS_ONE, ROWS_TILE);
    free(xq); free(xs); free(xsum);
    return rc;
}

/* ---- The transformer blocks of a decode step of a few tokens in one call (fused.py) ----
   Per layer: x += c_proj(attention(c_attn(ln_1(x)))); x += mlp.c_proj(gelu(c_fc(ln_2(x)))), the
   four matmuls through santa_int4_mm, so that a step costs one call from Python instead of ~20
   torch operations per layer (their dispatch was a third of a 1.1B decode step on 2 cores). The
   arithmetic is model.py's in fp32; exp is a polynomial (relative error ~1e-7) that vectorises. */
typedef struct {
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    const uint8_t *qw[4];
    const uint16_t *sc[4], *mn[4];
    const float *bias[4];
} santa_layer_t;  /* matmuls: 0 attn.c_attn, 1 attn.c_proj, 2 mlp.c_fc, 3 mlp.c_proj */

static inline float fexp(float x) {  /* e^x for x in [-87, 87] */
    x = x < -87.f ? -87.f : (x > 87.f ? 87.f : x);
    const float t = x * 1.44269504088896341f;
    const float r = (t + 12582912.f) - 12582912.f;  /* round to nearest */
    const float f = (t - r) * 0.69314718055994531f;  /* e^x = 2^r * e^f, |f| <= ln2/2 */
    float p = 1.f + f * (1.f + f * (0.5f + f * (0.166666672f + f * (0.0416666679f + f * (0.00833333377f + f * 0.00138888892f)))));
    union { float f; int32_t i; } u = {p};
    u.i += (int32_t)r << 23;
    return u.f;
}

static void layer_norm(const float *x, int64_t n, const float *w, const float *b, float eps, float *y) {
    float mean = 0.f, var = 0.f;
#pragma omp simd reduction(+:mean)
    for (int64_t i = 0; i < n; i++) mean += x[i];
    mean /= (float)n;
#pragma omp simd reduction(+:var)
    for (int64_t i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
    const float inv = 1.f / sqrtf(var / (float)n + eps);
#pragma omp simd
    for (int64_t i = 0; i < n; i++) y[i] = (x[i] - mean) * inv * w[i] + b[i];
}

static void gelu_tanh(float *x, int64_t n) {  /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i], u = 0.7978845608028654f * (v + 0.044715f * v * v * v);
        x[i] = v - v / (1.f + fexp(2.f * u));  /* = 0.5 v (1 + tanh u) */
    }
}

/* x [n] (in/out) through gelu_tanh on `threads` threads: MLP.gelu for int4 models (fused.attach). */
void santa_gelu(float *x, int64_t n, int threads) {
    const int64_t step = 16384, nb = (n + step - 1) / step;
#pragma omp parallel for num_threads(threads) schedule(static) if (nb > 1)
    for (int64_t b = 0; b < nb; b++) gelu_tanh(x + b * step, (b + 1) * step < n ? step : n - b * step);
}

#if defined(__AVX512F__)
static inline __m512 vexp(__m512 x) {  /* fexp on 16 lanes */
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.f)), _mm512_set1_ps(87.f));
    const __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f));
    const __m512 r = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_mul_ps(_mm512_sub_ps(t, r), _mm512_set1_ps(0.69314718055994531f));
    __m512 p = _mm512_fmadd_ps(f, _mm512_set1_ps(0.00138888892f), _mm512_set1_ps(0.00833333377f));
    p = _mm512_fmadd_ps(f, p, _mm512_set1_ps(0.0416666679f));
    p = _mm512_fmadd_ps(f, p, _mm512_set1_ps(0.166666672f));
    p = _mm512_fmadd_ps(f, p, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(f, p, _mm512_set1_ps(1.f));
    p = _mm512_fmadd_ps(f, p, _mm512_set1_ps(1.f));
    return _mm512_scalef_ps(p, r);
}

/* The 8 sums of 8 vectors, in order. */
static inline __m256 hsum8(const __m512 v[8]) {
    __m256 r[8];
    for (int i = 0; i < 8; i++)
        r[i] = _mm256_add_ps(_mm512_castps512_ps256(v[i]), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v[i]), 1)));
    const __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(r[0], r[1]), _mm256_hadd_ps(r[2], r[3]));
    const __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(r[4], r[5]), _mm256_hadd_ps(r[6], r[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

static inline __m512 dup8(__m256 x) {  /* [x | x] */
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(x)), _mm256_castps_pd(x), 1));
}

#endif

/* Attention of one token over rows [s0, s1) of keys/values [*, D], for the nh heads of q
   [nh * D], as a part that attend_combine merges with the parts of the other rows (the threads
   of a step split the rows: each reads its share of K and V once, for all heads): per head the
   largest score mx[h], the sum sm[h] of exp(score - mx[h]) and out[h] = the exp-weighted sum of
   the value rows. An empty range gives mx = -inf, sm = 0, out = 0. `p` is scratch of
   max(nh, 8) * (s1 - s0) + 16 floats. */
static inline void empty_part(int64_t nh, int64_t D, float *out, float *mx, float *sm) {
    for (int64_t h = 0; h < nh; h++) { mx[h] = -INFINITY; sm[h] = 0.f; }
    for (int64_t i = 0; i < nh * D; i++) out[i] = 0.f;
}

#if defined(__AVX512F__)
/* The part for D = 16 * nd (nd <= 16), 8 heads at a time (a missing head repeats the last one;
   its results are dropped), inlined with a constant nd where it is 8 (D 128, SantaCoder's) so
   that a row's vectors stay in registers. Scores p[s][8]: each K row loaded once per 8 heads,
   their 8 dot products reduced together. Softmax terms: two rows (16 scores) per vector.
   Values: 32 dimensions at a time, 16 sums in registers while the rows stream once per pair of
   vectors rather than once per head. */
static inline __attribute__((always_inline)) void attend_part16(
        const float *q, const float *K, const float *V, int64_t S, int64_t nh, float *p,
        float *out, float *mxo, float *smo, const int64_t nd) {
    const int64_t D = 16 * nd;
    const float scale = 1.f / sqrtf((float)D);
    for (int64_t hg = 0; hg < nh; hg += 8) {
        const int64_t hn = nh - hg < 8 ? nh - hg : 8;
        const float *qh[8];
        for (int h = 0; h < 8; h++) qh[h] = q + (hg + (h < hn ? h : hn - 1)) * D;
        const __m256 vscale = _mm256_set1_ps(scale);
        for (int64_t s = 0; s < S; s++) {
            __m512 k[16], acc[8];
            for (int64_t c = 0; c < nd; c++) k[c] = _mm512_loadu_ps(K + s * D + 16 * c);
            for (int h = 0; h < 8; h++) {
                acc[h] = _mm512_mul_ps(k[0], _mm512_loadu_ps(qh[h]));
                for (int64_t c = 1; c < nd; c++) acc[h] = _mm512_fmadd_ps(k[c], _mm512_loadu_ps(qh[h] + 16 * c), acc[h]);
            }
            _mm256_storeu_ps(p + 8 * s, _mm256_mul_ps(hsum8(acc), vscale));
        }
        /* exp(score - max) for each head, two rows per vector (the last, odd one masked) */
        const int64_t S2 = S & ~(int64_t)1;
        const __mmask16 tail = 0x00ff;
        __m512 vm = _mm512_set1_ps(-INFINITY);
        for (int64_t s = 0; s < S2; s += 2) vm = _mm512_max_ps(vm, _mm512_loadu_ps(p + 8 * s));
        if (S & 1) vm = _mm512_mask_max_ps(vm, tail, vm, _mm512_maskz_loadu_ps(tail, p + 8 * S2));
        const __m256 m8 = _mm256_max_ps(_mm512_castps512_ps256(vm), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(vm), 1)));
        const __m512 mx = dup8(m8);
        __m512 vs = _mm512_setzero_ps();
        for (int64_t s = 0; s < S2; s += 2) {
            const __m512 e = vexp(_mm512_sub_ps(_mm512_loadu_ps(p + 8 * s), mx));
            _mm512_storeu_ps(p + 8 * s, e);
            vs = _mm512_add_ps(vs, e);
        }
        if (S & 1) {
            const __m512 e = vexp(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, p + 8 * S2), mx));
            _mm512_mask_storeu_ps(p + 8 * S2, tail, e);
            vs = _mm512_mask_add_ps(vs, tail, vs, e);
        }
        const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(vs), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(vs), 1)));
        float m8a[8], s8a[8];
        _mm256_storeu_ps(m8a, m8);
        _mm256_storeu_ps(s8a, s8);
        for (int64_t h = 0; h < hn; h++) { mxo[hg + h] = m8a[h]; smo[hg + h] = s8a[h]; }
        /* values */
        for (int64_t c = 0; c < nd; c += 2) {
            const int two = c + 1 < nd;
            __m512 a[8][2];
            for (int h = 0; h < 8; h++) { a[h][0] = _mm512_setzero_ps(); a[h][1] = _mm512_setzero_ps(); }
            const float *vc = V + 16 * c;
            for (int64_t s = 0; s < S; s++, vc += D) {
                const __m512 v0 = _mm512_loadu_ps(vc), v1 = two ? _mm512_loadu_ps(vc + 16) : v0;
                for (int h = 0; h < 8; h++) {
                    const __m512 w = _mm512_set1_ps(p[8 * s + h]);
                    a[h][0] = _mm512_fmadd_ps(w, v0, a[h][0]);
                    a[h][1] = _mm512_fmadd_ps(w, v1, a[h][1]);
                }
            }
            for (int64_t h = 0; h < hn; h++) {
                float *o = out + (hg + h) * D + 16 * c;
                _mm512_storeu_ps(o, a[h][0]);
                if (two) _mm512_storeu_ps(o + 16, a[h][1]);
            }
        }
    }
}
#endif

static void attend_part(const float *q, const float *K, const float *V, int64_t s0, int64_t s1, int64_t D,
                        int64_t nh, float *p, float *out, float *mx, float *sm) {
    const int64_t S = s1 - s0;
    if (S <= 0) { empty_part(nh, D, out, mx, sm); return; }
    K += s0 * D; V += s0 * D;
#if defined(__AVX512F__)
    if (D == 128) { attend_part16(q, K, V, S, nh, p, out, mx, sm, 8); return; }
    if (D % 16 == 0 && D <= 256) { attend_part16(q, K, V, S, nh, p, out, mx, sm, D / 16); return; }
#endif
    const float scale = 1.f / sqrtf((float)D);
    for (int64_t s = 0; s < S; s++)
        for (int64_t h = 0; h < nh; h++) {
            const float *qh = q + h * D;
            float d = 0.f;
#pragma omp simd reduction(+:d)
            for (int64_t j = 0; j < D; j++) d += qh[j] * K[s * D + j];
            p[h * S + s] = d * scale;
        }
    for (int64_t h = 0; h < nh; h++) {
        float *ph = p + h * S, m = -INFINITY, sum = 0.f;
        for (int64_t s = 0; s < S; s++) m = ph[s] > m ? ph[s] : m;
#pragma omp simd reduction(+:sum)
        for (int64_t s = 0; s < S; s++) { ph[s] = fexp(ph[s] - m); sum += ph[s]; }
        mx[h] = m; sm[h] = sum;
    }
    for (int64_t i = 0; i < nh * D; i++) out[i] = 0.f;
    for (int64_t s = 0; s < S; s++) {
        const float *v = V + s * D;
        for (int64_t h = 0; h < nh; h++) {
            const float w = p[h * S + s];
            float *oh = out + h * D;
#pragma omp simd
            for (int64_t j = 0; j < D; j++) oh[j] += w * v[j];
        }
    }
}

/* Head h's attention output [D] from the parts of `n` row ranges (part t at index t * stride
   of out/mx/sm): the softmax over all rows, rescaled from each part's own maximum. */
static void attend_combine(int n, const float *out, const float *mx, const float *sm, int64_t stride,
                           int64_t D, float *y) {
    float m = -INFINITY, den = 0.f, w[64];
    for (int t = 0; t < n; t++) m = mx[t * stride] > m ? mx[t * stride] : m;
    for (int t = 0; t < n; t++) { w[t] = mx[t * stride] == -INFINITY ? 0.f : fexp(mx[t * stride] - m); den += w[t] * sm[t * stride]; }
    const float inv = 1.f / den;
    for (int64_t j = 0; j < D; j++) {
        float acc = 0.f;
        for (int t = 0; t < n; t++) acc += w[t] * out[t * stride + j];
        y[j] = acc * inv;
    }
}

/* A barrier for the threads of one step: waiters spin briefly (the phases of a step are
   microseconds apart), then sleep on a futex, so that a thread whose peer was preempted by
   another process does not hold a core spinning. libgomp's passive waits (santa_lsp/__init__)
   cost a futex wake-up per parallel region instead: ~120 regions per 1.1B step, 25 against 37 ms
   per step on a 2-core Xeon VM. */
typedef struct { int count, gen, sleeping; } santa_bar_t;
#define BAR_SPIN 4000
static void bar_wait(santa_bar_t *b, int n) {
    if (n == 1) return;
    const int gen = __atomic_load_n(&b->gen, __ATOMIC_ACQUIRE);
    if (__atomic_add_fetch(&b->count, 1, __ATOMIC_ACQ_REL) == n) {
        __atomic_store_n(&b->count, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->gen, gen + 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&b->sleeping, __ATOMIC_SEQ_CST)) {
            __atomic_store_n(&b->sleeping, 0, __ATOMIC_RELAXED);
#ifdef __linux__
            syscall(SYS_futex, &b->gen, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
#endif
        }
        return;
    }
    for (int i = 0; i < BAR_SPIN; i++) {
        if (__atomic_load_n(&b->gen, __ATOMIC_ACQUIRE) != gen) return;
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
    while (__atomic_load_n(&b->gen, __ATOMIC_ACQUIRE) == gen) {
        __atomic_store_n(&b->sleeping, 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&b->gen, __ATOMIC_SEQ_CST) != gen) break;
#ifdef __linux__
        syscall(SYS_futex, &b->gen, FUTEX_WAIT_PRIVATE, gen, NULL, NULL, 0);
#else
        sched_yield();
#endif
    }
}

/* Activations of one matmul, quantized once per step phase and shared by the threads. */
typedef struct { int8_t *xq, *a; float *xs, *xsum; } santa_act_t;

/* Rows m = tid, tid + nt, ... of x [M, K] quantized (and put in the lanes layout where K has it). */
static void act_share(int tid, int nt, const float *x, int64_t M, int64_t K, const santa_act_t *A) {
    const int64_t ng = K / G;
    for (int64_t m = tid; m < M; m += nt) {
        quantize_row(x + m * K, K, A->xq + m * K, A->xs + m * ng, A->xsum + m * ng);
#ifdef HAVE_LANES
        if (santa_int4_lanes(K)) to_lanes(A->xq + m * K, K, A->a + m * K);
#endif
    }
}

/* This thread's share (the blocks of 64 rows an OpenMP static schedule gives it) of
   y [M, N] = x @ W^T + bias, for M <= 16 (no prefill path), x quantized by act_share. */
static void mm_share(int tid, int nt, const santa_act_t *A, int64_t M, int64_t K, const uint8_t *qw,
                     const uint16_t *sc, const uint16_t *mn, int64_t N, const float *bias, float *y) {
    const int64_t ng = K / G, nrb = (N + 63) / 64;
    const int64_t q0 = nrb / nt, r0 = nrb % nt;
    const int64_t b0 = tid * q0 + (tid < r0 ? tid : r0), b1 = b0 + q0 + (tid < r0);
    const float *xs = A->xs, *xsum = A->xsum;
    for (int64_t b_ = b0; b_ < b1; b_++) {
        const int64_t n0 = b_ * 64, n1 = n0 + 64 < N ? n0 + 64 : N;
#ifdef HAVE_LANES
        if (santa_int4_lanes(K)) {
            const int8_t *a = A->a;
            BLOCK_WORK(n0, n1, M, LANES_ONE, LANES_TILE);
            continue;
        }
#endif
        const int8_t *xq = A->xq;
        BLOCK_WORK(n0, n1, M, ROWS_ONE, ROWS_TILE);
    }
}

/* One matmul of the step: this thread's share of x [M, K] quantized, then (all of x being
   quantized) its share of y = x @ W_i^T + bias, then y complete for every thread. */
static void mm_step(int tid, int n, santa_bar_t *bar, const float *x, int64_t M, int64_t K, const santa_act_t *A,
                    const santa_layer_t *L, int i, int64_t N, float *y) {
    act_share(tid, n, x, M, K, A);
    bar_wait(bar, n);
    mm_share(tid, n, A, M, K, L->qw[i], L->sc[i], L->mn[i], N, L->bias[i], y);
    bar_wait(bar, n);
}

/* x [M, C] (in/out): M <= 16 tokens at positions pos..pos+M-1 through n_layer blocks, each
   seeing itself and what precedes it; K/V caches [n_layer, max_len, D] get rows pos..pos+M-1
   written. One parallel region for the whole step: the threads split each matmul's rows and
   the attention's heads, and meet at bar_wait between phases; the small row-wise work (norms,
   residuals, the cache write) runs on thread 0. Returns 0, -1 for shapes the kernel does not
   take, or -2 when out of memory. */
int santa_decode_blocks(float *x, int64_t M, int64_t C, int64_t H, int64_t D, int64_t F, float eps,
                        const santa_layer_t *layers, int64_t n_layer,
                        float *kc, float *vc, int64_t max_len, int64_t pos, int threads) {
    const int64_t Q = C + 2 * D, KM = C > F ? C : F;
    if (M > 16 || C % (2 * G) || F % (2 * G) || Q % 4 || C % 4 || F % 4 || C != H * D) return -1;
    const int nt = threads < 1 ? 1 : (threads > 64 ? 64 : threads);
    /* per thread: its attention part for every token (out, max, sum) and its score scratch */
    const int64_t part = M * (C + 2 * H), scratch = (H > 8 ? H : 8) * (pos + M) + 16;
    float *buf = (float *)malloc(sizeof(float) * (size_t)(M * (C + Q + C + C + F) + 2 * M * (KM / G) + nt * (part + scratch)));
    int8_t *q8 = (int8_t *)malloc((size_t)(2 * M * KM));
    if (!buf || !q8) { free(buf); free(q8); return -2; }
    float *h = buf, *qkv = h + M * C, *q = qkv + M * Q, *att = q + M * C, *ff = att + M * C, *parts = ff + M * F;
    float *scr = parts + nt * part, *xs = scr + nt * scratch;
    santa_act_t A = {q8, q8 + M * KM, xs, xs + M * (KM / G)};
    float *proj = h;  /* h is free again once its matmul ran */
    santa_bar_t bar = {0, 0, 0};
#pragma omp parallel num_threads(nt)
    {
        const int tid = omp_get_thread_num(), n = omp_get_num_threads();
        for (int64_t l = 0; l < n_layer; l++) {
            const santa_layer_t *L = layers + l;
            float *K = kc + l * max_len * D, *V = vc + l * max_len * D;
            if (tid == 0)
                for (int64_t m = 0; m < M; m++) layer_norm(x + m * C, C, L->ln1_w, L->ln1_b, eps, h + m * C);
            bar_wait(&bar, n);
            mm_step(tid, n, &bar, h, M, C, &A, L, 0, Q, qkv);
            if (tid == 0)
                for (int64_t m = 0; m < M; m++) {
                    memcpy(q + m * C, qkv + m * Q, sizeof(float) * (size_t)C);
                    memcpy(K + (pos + m) * D, qkv + m * Q + C, sizeof(float) * (size_t)D);
                    memcpy(V + (pos + m) * D, qkv + m * Q + C + D, sizeof(float) * (size_t)D);
                }
            bar_wait(&bar, n);
            /* each thread its share of the rows, for every token and head; then (token, head) pairs merged */
            float *mine = parts + tid * part;
            for (int64_t m = 0; m < M; m++) {
                const int64_t S = pos + m + 1;
                attend_part(q + m * C, K, V, S * tid / n, S * (tid + 1) / n, D, H, scr + tid * scratch,
                            mine + m * C, mine + M * C + m * H, mine + M * C + M * H + m * H);
            }
            bar_wait(&bar, n);
            for (int64_t i = tid; i < M * H; i += n) {
                const int64_t m = i / H, hh = i % H;
                attend_combine(n, parts + m * C + hh * D, parts + M * C + m * H + hh, parts + M * C + M * H + m * H + hh,
                               part, D, att + m * C + hh * D);
            }
            bar_wait(&bar, n);
            mm_step(tid, n, &bar, att, M, C, &A, L, 1, C, proj);
            if (tid == 0) {
                for (int64_t i = 0; i < M * C; i++) x[i] += proj[i];
                for (int64_t m = 0; m < M; m++) layer_norm(x + m * C, C, L->ln2_w, L->ln2_b, eps, h + m * C);
            }
            bar_wait(&bar, n);
            mm_step(tid, n, &bar, h, M, C, &A, L, 2, F, ff);
            for (int64_t m = tid; m < M; m += n) gelu_tanh(ff + m * F, F);  /* the rows act_share quantizes next */
            mm_step(tid, n, &bar, ff, M, F, &A, L, 3, C, proj);
            if (tid == 0)
                for (int64_t i = 0; i < M * C; i++) x[i] += proj[i];
        }
    }
    free(buf); free(q8);
    return 0;
}

/* ---- int8 weights for the lm_head of an int4 model (AVX512-VNNI only) ----
   y[M, N] = x[M, K] @ (W[N, K] * ws[N])^T + bias: W int8 row-major as stored (nothing to
   prepack: fbgemm's prepacking of the 49,280 x 2,048 lm_head took 1.5 s of every start-up),
   activations quantized symmetric per token to int8 and offset by 128 to the unsigned operand
   of vpdpbusd; rsum[n] (the row sums of W) takes the offset back out. Four rows at a time share
   each activation load; the rows of W are split across threads in blocks of 64. */
/* out[n] = sum of row n of q [N, K] (int8_mm's offset correction), without a wider copy of q. */
void santa_int8_rowsum(const int8_t *q, int64_t N, int64_t K, int32_t *out) {
    for (int64_t n = 0; n < N; n++) {
        int32_t sum = 0;
        for (int64_t k = 0; k < K; k++) sum += q[n * K + k];
        out[n] = sum;
    }
}

#ifdef HAVE_LANES
int santa_int8_mm(const float *x, int64_t M, int64_t K, const int8_t *qw, const float *ws, const int32_t *rsum,
                  int64_t N, const float *bias, float *y, int threads) {
    if (K % 64 || N % 4) return -1;
    uint8_t *xu = (uint8_t *)malloc((size_t)(M * K));
    float *xs = (float *)malloc(sizeof(float) * (size_t)M);
    if (!xu || !xs) { free(xu); free(xs); return -2; }
    for (int64_t m = 0; m < M; m++) {
        const float *xm = x + m * K; float amax = 0.f;
        for (int64_t k = 0; k < K; k++) { float a = fabsf(xm[k]); amax = a > amax ? a : amax; }
        const float d = amax / 127.f, id = d > 0.f ? 1.f / d : 0.f;
        for (int64_t k = 0; k < K; k++) xu[m * K + k] = (uint8_t)((int)nearbyintf(xm[k] * id) + 128);
        xs[m] = d;
    }
    const int64_t nrb = (N + 63) / 64;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < nrb; b++) {
        const int64_t n1 = (b + 1) * 64 < N ? (b + 1) * 64 : N;
        for (int64_t n = b * 64; n < n1; n += 4) {
            const int8_t *w = qw + n * K;
            for (int64_t m = 0; m < M; m++) {
                const uint8_t *a = xu + m * K;
                __m512i acc[4];
                for (int r = 0; r < 4; r++) acc[r] = _mm512_setzero_si512();
                for (int64_t k = 0; k < K; k += 64) {
                    const __m512i av = _mm512_loadu_si512((const void *)(a + k));
                    for (int r = 0; r < 4; r++)
                        acc[r] = _mm512_dpbusd_epi32(acc[r], av, _mm512_loadu_si512((const void *)(w + r * K + k)));
                }
                for (int r = 0; r < 4; r++) {
                    const int32_t dot = _mm512_reduce_add_epi32(acc[r]) - 128 * rsum[n + r];
                    y[m * N + n + r] = xs[m] * ws[n + r] * (float)dot + (bias ? bias[n + r] : 0.f);
                }
            }
        }
    }
    free(xu); free(xs);
    return 0;
}
#else
int santa_int8_mm(const float *x, int64_t M, int64_t K, const int8_t *qw, const float *ws, const int32_t *rsum,
                  int64_t N, const float *bias, float *y, int threads) {
    (void)x; (void)M; (void)K; (void)qw; (void)ws; (void)rsum; (void)N; (void)bias; (void)y; (void)threads;
    return -3;  /* no VNNI: callers keep fbgemm (native_int8() is False) */
}
#endif

int santa_int4_isa(void) {
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
    return 512;
#elif defined(__AVX2__) && defined(__FMA__)
    return 256;
#else
    return 0;
#endif
}
"""

_lib: ctypes.CDLL | None = None
_tried = False
_lock = threading.Lock()


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "santa-lsp" / "kernels"


def _build() -> ctypes.CDLL | None:
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        log.info("no C compiler found: int4 uses torch's kernel")
        return None
    flags = ["-O3", "-march=native", "-fno-math-errno", "-fPIC", "-shared", "-fopenmp"]
    # Extra compiler flags, e.g. -mno-avx512f to build (and test) the AVX2 code on an AVX-512 machine.
    flags += os.environ.get("SANTA_LSP_KERNEL_FLAGS", "").split()
    # -march=native makes the binary machine-specific: the cache key includes the CPU model.
    cpu = ""
    try:
        cpu = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
    except OSError:
        pass
    key = hashlib.sha256("\0".join([_C_SOURCE, cc, *flags, cpu]).encode()).hexdigest()[:16]
    path = _cache_dir() / f"int4_{key}.so"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            src, out = Path(tmp) / "int4.c", Path(tmp) / "int4.so"
            src.write_text(_C_SOURCE)
            try:
                subprocess.run([cc, *flags, str(src), "-o", str(out), "-lm"], check=True, capture_output=True,
                               timeout=120)
            except (OSError, subprocess.SubprocessError) as exc:
                err = getattr(exc, "stderr", b"") or b""
                log.warning("native int4 kernel did not build (%s): using torch's kernel. %s", exc,
                            err.decode(errors="replace")[-500:])
                return None
            os.replace(out, path)  # atomic: a concurrent process sees the whole file or none
    lib = ctypes.CDLL(str(path))
    lib.santa_int4_mm.restype = ctypes.c_int
    lib.santa_int4_mm.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
                                  ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    lib.santa_int4_isa.restype = ctypes.c_int
    lib.santa_decode_blocks.restype = ctypes.c_int
    lib.santa_decode_blocks.argtypes = [ctypes.c_void_p, *[ctypes.c_int64] * 5, ctypes.c_float, ctypes.c_void_p,
                                        ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int]
    lib.santa_int8_mm.restype = ctypes.c_int
    lib.santa_int8_mm.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
                                  ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    lib.santa_int8_rowsum.restype = None
    lib.santa_int8_rowsum.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    lib.santa_gelu.restype = None
    lib.santa_gelu.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int]
    lib.santa_int4_lanes.restype = ctypes.c_int
    lib.santa_int4_lanes.argtypes = [ctypes.c_int64]
    if lib.santa_int4_isa() == 0:
        log.info("native int4 kernel has no SIMD path on this CPU: using torch's kernel")
        return None
    return lib


def native_lib() -> ctypes.CDLL | None:
    """The compiled kernel, or None where it cannot be had (then callers use torch's kernel)."""
    global _lib, _tried
    with _lock:
        if not _tried:
            _tried = True
            try:
                _lib = _build()
            except Exception as exc:  # never let an optional speed-up break loading a model
                log.warning("native int4 kernel unavailable (%s): using torch's kernel", exc)
                _lib = None
        return _lib


def native_fits(out_features: int, in_features: int) -> bool:
    """The shapes the native kernel takes: whole pairs of groups per row, rows in fours."""
    return in_features % (2 * GROUP) == 0 and out_features % 4 == 0


def native_enabled() -> bool:
    """Whether new int4 layers use the native kernel: it built here, and the environment does not
    turn it off (SANTA_LSP_NATIVE_KERNELS=0, for comparisons and as an escape hatch)."""
    return os.environ.get("SANTA_LSP_NATIVE_KERNELS", "1") != "0" and native_lib() is not None


def quantize_int4(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[N, K] float -> (q int32 [N, K] in 0..15, scale fp16 [N, K/64], min fp16 [N, K/64]), so that
    w ~= q * scale + min per group. Scale and min are rounded to fp16 first, so both kernels see
    the same values."""
    w = weight.detach().float()
    n, k = w.shape
    groups = w.reshape(n, k // GROUP, GROUP)
    lo, hi = groups.amin(-1), groups.amax(-1)
    scale = ((hi - lo).clamp(min=1e-8) / 15).half()
    lo = lo.half()
    q = ((groups - lo.float().unsqueeze(-1)) / scale.float().unsqueeze(-1)).round_().clamp_(0, 15)
    return q.to(torch.int32).reshape(n, k), scale, lo


def pack_native(q: torch.Tensor) -> torch.Tensor:
    """q int [N, K] (N a multiple of 4) -> uint8 [N, K/2] in the kernel's order for this machine
    and K (see the C source): the "lanes" layout where AVX512-VNNI runs and K is a multiple of
    1024, else per 4 rows and pair of groups p, the 4 rows' 64-byte blocks, where byte j of a
    row's block is q[2p*64 + j] | q[(2p+1)*64 + j] << 4."""
    n, k = q.shape
    q8 = q.to(torch.uint8)
    lib = native_lib()
    if lib is not None and lib.santa_int4_lanes(k):
        # [N, chunk, lane j, t, nibble h, b] -> byte = h0 | h1 << 4 -> [N/4, chunk, t, row, j, b]
        v = q8.reshape(n, k // (GROUP * 16), 16, 8, 2, 4)
        v = v[:, :, :, :, 0] | (v[:, :, :, :, 1] << 4)  # [N, c, j, t, b]
        v = v.permute(0, 1, 3, 2, 4).reshape(n // 4, 4, k // (GROUP * 16), 8, 64)  # [N/4, r, c, t, 64]
        return v.permute(0, 2, 3, 1, 4).contiguous().reshape(n, k // 2)
    pairs = q8.reshape(n, k // (2 * GROUP), 2, GROUP)
    blocks = pairs[:, :, 0] | (pairs[:, :, 1] << 4)  # [N, K/128, 64]
    return blocks.reshape(n // 4, 4, k // (2 * GROUP), GROUP).transpose(1, 2).contiguous().reshape(n, k // 2)


def native_mm(x: torch.Tensor, packed: torch.Tensor, scale: torch.Tensor, mins: torch.Tensor,
              bias: torch.Tensor | None, threads: int | None = None) -> torch.Tensor:
    """x [..., K] fp32 @ dequant(W)^T -> [..., N] fp32 through the native kernel (native_lib() must not be None)."""
    lib = native_lib()
    assert lib is not None
    k = x.shape[-1]
    n = packed.shape[0]
    x2 = x.reshape(-1, k).float().contiguous()
    y = torch.empty(x2.shape[0], n, dtype=torch.float32)
    rc = lib.santa_int4_mm(x2.data_ptr(), x2.shape[0], k, packed.data_ptr(), scale.data_ptr(), mins.data_ptr(), n,
                           0 if bias is None else bias.data_ptr(), y.data_ptr(),
                           threads or torch.get_num_threads())
    if rc != 0:
        raise RuntimeError(f"santa_int4_mm failed ({rc})")
    return y.reshape(*x.shape[:-1], n)


def native_int8() -> bool:
    """Whether the native int8 kernel (`int8_mm`) runs here: the int4 kernel is enabled and the
    CPU has AVX512-VNNI (the AVX2 byte products would saturate on unsigned x signed int8)."""
    lib = native_lib() if native_enabled() else None
    return lib is not None and lib.santa_int4_isa() == 512


def int8_rowsum(q: torch.Tensor) -> torch.Tensor:
    """int32 row sums of a contiguous int8 [N, K] (torch's sum with dtype=int32 first makes an
    int32 copy of its input: 400 MB for SantaCoder's lm_head). native_lib() must not be None."""
    q = q.contiguous()
    out = torch.empty(q.shape[0], dtype=torch.int32)
    native_lib().santa_int8_rowsum(q.data_ptr(), q.shape[0], q.shape[1], out.data_ptr())
    return out


def int8_mm(x: torch.Tensor, qweight: torch.Tensor, scale: torch.Tensor, rowsum: torch.Tensor,
            bias: torch.Tensor | None, threads: int | None = None) -> torch.Tensor:
    """x [..., K] fp32 @ (qweight int8 [N, K] * scale [N])^T (+ bias) -> [..., N] fp32 through
    the native kernel; `rowsum` int32 [N] = qweight.sum(1). Only where native_int8()."""
    lib = native_lib()
    assert lib is not None
    k, n = x.shape[-1], qweight.shape[0]
    x2 = x.reshape(-1, k).float().contiguous()
    y = torch.empty(x2.shape[0], n, dtype=torch.float32)
    rc = lib.santa_int8_mm(x2.data_ptr(), x2.shape[0], k, qweight.data_ptr(), scale.data_ptr(), rowsum.data_ptr(), n,
                           0 if bias is None else bias.data_ptr(), y.data_ptr(), threads or torch.get_num_threads())
    if rc != 0:
        raise RuntimeError(f"santa_int8_mm failed ({rc})")
    return y.reshape(*x.shape[:-1], n)


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GELU (tanh approximation) of x, in place where x is a contiguous fp32 tensor (then x is
    returned), through the native kernel; anything else goes to torch. native_lib() must not be None."""
    if x.dtype != torch.float32 or not x.is_contiguous() or x.requires_grad:
        return torch.nn.functional.gelu(x, approximate="tanh")
    native_lib().santa_gelu(x.data_ptr(), x.numel(), torch.get_num_threads())
    return x
