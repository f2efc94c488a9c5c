/* HMAC-SHA-256 (RFC 2104, FIPS 180-4) for punch/_fastpath.c: MESSAGE-INTEGRITY-SHA256 (RFC 8489 section 14.6)
 * checked without a library. Portable C, and the x86 SHA extensions where the CPU has them (chosen at import by
 * sha256_select); one translation unit with _fastpath.c (static functions). The tests hold both to Python's hmac
 * module (tests/unit/test_refresh_fastpath.py). Needs <stdint.h>, <string.h> and get32/put32. */
#ifndef PUNCH_FASTPATH_SHA256_H
#define PUNCH_FASTPATH_SHA256_H

typedef struct {
    uint32_t state[8];
    uint8_t block[64];
    size_t used;     /* bytes waiting in block */
    uint64_t length; /* bytes hashed in all */
} sha256_context;

static const uint32_t sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t rotr(uint32_t x, int n) { return x >> n | x << (32 - n); }

static void sha256_compress_portable(uint32_t state[8], const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++) w[i] = get32(p + 4 * i);
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3], e = state[4], f = state[5], g = state[6],
             h = state[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + sha256_k[i] + w[i];
        uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
}

/* The same block with the x86 SHA extensions (SHA-NI), where the CPU has them: about four times faster. */
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define SHA256_NI 1

__attribute__((target("sha,ssse3,sse4.1"))) static void sha256_compress_ni(uint32_t state[8], const uint8_t *p) {
    const __m128i swap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL); /* big-endian words */
    __m128i tmp = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[0]), 0xB1); /* CDAB */
    __m128i state1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[4]), 0x1B); /* EFGH */
    __m128i state0 = _mm_alignr_epi8(tmp, state1, 8);                                       /* ABEF */
    state1 = _mm_blend_epi16(state1, tmp, 0xF0);                                            /* CDGH */
    __m128i abef = state0, cdgh = state1, w[16];
    for (int g = 0; g < 16; g++) { /* four rounds each: W[4g..4g+3] (FIPS 180-4 section 6.2.2 step 1) */
        if (g < 4)
            w[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * g)), swap);
        else
            w[g] = _mm_sha256msg2_epu32(
                _mm_add_epi32(_mm_sha256msg1_epu32(w[g - 4], w[g - 3]), _mm_alignr_epi8(w[g - 1], w[g - 2], 4)),
                w[g - 1]);
        __m128i words = _mm_add_epi32(w[g], _mm_loadu_si128((const __m128i *)&sha256_k[4 * g]));
        state1 = _mm_sha256rnds2_epu32(state1, state0, words);
        state0 = _mm_sha256rnds2_epu32(state0, state1, _mm_shuffle_epi32(words, 0x0E));
    }
    state0 = _mm_add_epi32(state0, abef);
    state1 = _mm_add_epi32(state1, cdgh);
    tmp = _mm_shuffle_epi32(state0, 0x1B);       /* FEBA */
    state1 = _mm_shuffle_epi32(state1, 0xB1);    /* DCHG */
    state0 = _mm_blend_epi16(tmp, state1, 0xF0); /* DCBA */
    state1 = _mm_alignr_epi8(state1, tmp, 8);    /* HGFE */
    _mm_storeu_si128((__m128i *)&state[0], state0);
    _mm_storeu_si128((__m128i *)&state[4], state1);
}

static int sha256_ni_supported(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSSE3) || !(c & bit_SSE4_1)) return 0;
    return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & bit_SHA);
}
#endif

/* The block function in use: the SHA extensions where the CPU has them (sha256_select), else portable C. */
static void (*sha256_compress)(uint32_t state[8], const uint8_t *p) = sha256_compress_portable;

/* Use the SHA extensions if `fast` and the CPU has them, else portable C; returns which ("sha-ni", "portable"). */
static const char *sha256_select(int fast) {
#ifdef SHA256_NI
    if (fast && sha256_ni_supported()) {
        sha256_compress = sha256_compress_ni;
        return "sha-ni";
    }
#endif
    (void)fast;
    sha256_compress = sha256_compress_portable;
    return "portable";
}

static void sha256_init(sha256_context *c) {
    static const uint32_t initial[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                        0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->state, initial, sizeof initial);
    c->used = 0;
    c->length = 0;
}

static void sha256_update(sha256_context *c, const uint8_t *p, size_t n) {
    c->length += n;
    while (n > 0) {
        size_t take = 64 - c->used < n ? 64 - c->used : n;
        memcpy(c->block + c->used, p, take);
        c->used += take;
        p += take;
        n -= take;
        if (c->used == 64) {
            sha256_compress(c->state, c->block);
            c->used = 0;
        }
    }
}

static void sha256_final(sha256_context *c, uint8_t out[32]) {
    uint64_t bits = c->length * 8;
    uint8_t pad[72] = {0x80};
    size_t pad_length = (c->used < 56 ? 56 : 120) - c->used;
    for (int i = 0; i < 8; i++) pad[pad_length + (size_t)i] = (uint8_t)(bits >> (56 - 8 * i));
    sha256_update(c, pad, pad_length + 8);
    for (int i = 0; i < 8; i++) put32(out + 4 * i, c->state[i]);
}

/* HMAC-SHA-256 (RFC 2104) of the concatenation of `parts` under `key`. */
static void hmac_sha256(const uint8_t *key, size_t key_length, const uint8_t *const parts[], const size_t lengths[],
                        int count, uint8_t out[32]) {
    uint8_t block[64] = {0}, inner[32];
    sha256_context c;
    if (key_length > 64) {
        sha256_init(&c);
        sha256_update(&c, key, key_length);
        sha256_final(&c, block);
    } else {
        memcpy(block, key, key_length);
    }
    for (int i = 0; i < 64; i++) block[i] ^= 0x36;
    sha256_init(&c);
    sha256_update(&c, block, 64);
    for (int i = 0; i < count; i++) sha256_update(&c, parts[i], lengths[i]);
    sha256_final(&c, inner);
    for (int i = 0; i < 64; i++) block[i] ^= 0x36 ^ 0x5c;
    sha256_init(&c);
    sha256_update(&c, block, 64);
    sha256_update(&c, inner, 32);
    sha256_final(&c, out);
}

#endif
