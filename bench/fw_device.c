/* A device answering at firmware speed, for bench_roundtrip.py: the far end of the pty when
 * the measurement is of the host's driver stack and not of a Python peer.
 *
 * It speaks the reference wire protocol, version 2 (docs/wire-protocol.md), as far as a round
 * trip needs: frames between SOF 0x7E and EOF 0x7F, ESC 0x7D stuffing (escaped byte XOR 0x20),
 * an 8-byte header (version 2, type, flags, device, seq, payload length; big endian),
 * CRC-16/CCITT-FALSE over everything before it, and the authenticated sessions of §7:
 *
 *  - A plain (unauthenticated) REQUEST `link.hello` {role, host, nonce} to its device id gets a
 *    plain REPLY OK {session, nonce, proof, t_s, state, uptime_ms}, computed exactly as
 *    drivers/wire/session.py's DeviceHandshakes does; `link.auth` {session, proof} with the
 *    host's valid proof opens the session (one at a time: a new one replaces the old) and gets
 *    REPLY OK {role, session, t_s, state, uptime_ms} sealed with it; a bad proof gets a plain
 *    BAD_ARG {fault: "auth"}. No other plain frame is answered.
 *  - Every later frame must carry the session's trailer sid|ctr|tag (HMAC-SHA256 with K_hd,
 *    truncated to 16 bytes; ctr passing the 64-frame anti-replay window); failures are counted
 *    and dropped unread. Every valid REQUEST to its device id gets a sealed REPLY with the same seq, status
 *    OK and {"t_s": <CLOCK_MONOTONIC seconds>} (`link.release` also ends the session).
 *  - While a session is open it sends it a sealed HEARTBEAT (state READY) every 200 ms.
 *
 * Damaged frames, other types and other devices are counted and dropped: the host's timeout
 * and retry cover a lost request. There are no NAKs, no reply cache and no SAFE state. Exits
 * on EOF/EIO (the host side closed).
 *
 * SHA-256 (FIPS 180-4) and HMAC (RFC 2104) are here in portable C; the HMAC's inner and outer
 * SHA-256 states are computed once per key (room key at start, K_hd/K_dh once per session), so
 * a command-sized frame costs two compressions to seal or verify.
 *
 * Usage: fw_device FD DEVICE_ID KEYHEX [nomac]
 *   FD: an inherited, open pty master; KEYHEX: the 32-byte room key as 64 hex digits.
 *   nomac (benchmark baseline only, never a device): frames are sealed with zero tags and
 *   received tags are not verified (sid and ctr still are); the handshake is unchanged.
 * Test entry points: fw_device --sha256 HEX, fw_device --hmac KEYHEX HEX (print the digest).
 */
#define _DEFAULT_SOURCE /* clock_gettime, getrandom under -std=c11 too */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

enum { SOF = 0x7E, EOF_ = 0x7F, ESC = 0x7D, T_REQUEST = 1, T_REPLY = 2, T_HEARTBEAT = 6 };
enum { VERSION = 2, FLAG_AUTH = 0x02, AUTH_SIZE = 24, TAG_BYTES = 16, NONCE_BYTES = 16 };
enum { HEARTBEAT_MS = 200, MAX_FRAME = 4096, MAX_OFFERS = 4, MAX_HOST = 64 };
enum { ST_OK = 0, ST_BAD_ARG = 2, NODE_READY = 1 };
#define CTR_LIMIT 0xFFFFFFF0u /* drivers/wire/session.py: a session ends before its ctr wraps */

/* --- SHA-256 (FIPS 180-4) ------------------------------------------------------------------ */

typedef struct {
    uint32_t h[8];
    uint64_t bytes; /* message length so far */
    uint8_t buf[64];
    size_t used;
} sha256_ctx;

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t h[8], const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
               (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = k + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += k;
}

static void sha256_init(sha256_ctx *c) {
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, iv, sizeof iv);
    c->bytes = 0;
    c->used = 0;
}

static void sha256_update(sha256_ctx *c, const uint8_t *p, size_t n) {
    c->bytes += n;
    if (c->used) {
        size_t take = 64 - c->used < n ? 64 - c->used : n;
        memcpy(c->buf + c->used, p, take);
        c->used += take, p += take, n -= take;
        if (c->used < 64) return;
        sha256_block(c->h, c->buf);
        c->used = 0;
    }
    for (; n >= 64; p += 64, n -= 64) sha256_block(c->h, p);
    memcpy(c->buf, p, n);
    c->used = n;
}

static void sha256_final(sha256_ctx *c, uint8_t out[32]) {
    uint64_t bits = c->bytes * 8;
    c->buf[c->used++] = 0x80;
    if (c->used > 56) {
        memset(c->buf + c->used, 0, 64 - c->used);
        sha256_block(c->h, c->buf);
        c->used = 0;
    }
    memset(c->buf + c->used, 0, 56 - c->used);
    for (int i = 0; i < 8; i++) c->buf[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
    sha256_block(c->h, c->buf);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(c->h[i] >> 24), out[4 * i + 1] = (uint8_t)(c->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(c->h[i] >> 8), out[4 * i + 3] = (uint8_t)c->h[i];
    }
}

/* --- HMAC-SHA256 (RFC 2104) with the keyed states precomputed ----------------------------- */

typedef struct {
    sha256_ctx inner, outer; /* after absorbing key^ipad, key^opad */
} hmac_key;

static void hmac_init(hmac_key *hk, const uint8_t *key, size_t n) {
    uint8_t k0[64] = {0}, pad[64];
    if (n > 64) {
        sha256_ctx c;
        sha256_init(&c);
        sha256_update(&c, key, n);
        sha256_final(&c, k0);
    } else {
        memcpy(k0, key, n);
    }
    for (int i = 0; i < 64; i++) pad[i] = k0[i] ^ 0x36;
    sha256_init(&hk->inner);
    sha256_update(&hk->inner, pad, 64);
    for (int i = 0; i < 64; i++) pad[i] = k0[i] ^ 0x5c;
    sha256_init(&hk->outer);
    sha256_update(&hk->outer, pad, 64);
}

/* HMAC over a | b (b may be empty). */
static void hmac2(const hmac_key *hk, const uint8_t *a, size_t na, const uint8_t *b, size_t nb,
                  uint8_t out[32]) {
    sha256_ctx c = hk->inner;
    uint8_t d[32];
    sha256_update(&c, a, na);
    if (nb) sha256_update(&c, b, nb);
    sha256_final(&c, d);
    c = hk->outer;
    sha256_update(&c, d, 32);
    sha256_final(&c, out);
}

/* Constant-time: how long a match took says nothing about where a forged tag went wrong. */
static int same(const uint8_t *a, const uint8_t *b, size_t n) {
    uint8_t diff = 0;
    for (size_t i = 0; i < n; i++) diff |= a[i] ^ b[i];
    return diff == 0;
}

/* --- small helpers --------------------------------------------------------------------------- */

static int unhex(const char *s, size_t n, uint8_t *out) { /* n hex digits -> n/2 bytes; 0 bad */
    if (n % 2) return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        int v = ch >= '0' && ch <= '9' ? ch - '0'
                : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                         : -1;
        if (v < 0) return 0;
        if (i % 2) out[i / 2] |= (uint8_t)v;
        else out[i / 2] = (uint8_t)(v << 4);
    }
    return 1;
}

static void tohex(const uint8_t *p, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) out[2 * i] = digits[p[i] >> 4], out[2 * i + 1] = digits[p[i] & 15];
    out[2 * n] = 0;
}

static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void random_bytes(uint8_t *p, size_t n) {
    while (n) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            int fd = open("/dev/urandom", O_RDONLY);
            if (fd < 0 || read(fd, p, n) != (ssize_t)n) {
                fprintf(stderr, "fw_device: no random source\n");
                exit(1);
            }
            close(fd);
            return;
        }
        p += got, n -= (size_t)got;
    }
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* --- a flat JSON object: the handshake fields --------------------------------------------- */

enum { J_NONE = 0, J_STR, J_INT, J_OTHER };

typedef struct {
    int type;
    char s[4 * MAX_HOST + 8]; /* UTF-8 */
    size_t len, chars;        /* bytes, code points */
    long long i;
} jval;

typedef struct {
    jval role, host, nonce, session, proof;
} hs_fields;

static void put_utf8(jval *v, uint32_t cp, size_t cap) {
    uint8_t u[4];
    size_t n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (n == 1) u[0] = (uint8_t)cp;
    else if (n == 2) u[0] = (uint8_t)(0xC0 | cp >> 6), u[1] = (uint8_t)(0x80 | (cp & 0x3F));
    else if (n == 3)
        u[0] = (uint8_t)(0xE0 | cp >> 12), u[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F)),
        u[2] = (uint8_t)(0x80 | (cp & 0x3F));
    else
        u[0] = (uint8_t)(0xF0 | cp >> 18), u[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F)),
        u[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F)), u[3] = (uint8_t)(0x80 | (cp & 0x3F));
    if (v && v->len + n < cap) memcpy(v->s + v->len, u, n), v->len += n, v->chars++;
    else if (v) v->type = J_OTHER; /* too long for any field we use: reject it */
}

static int hex4(const char *p, uint32_t *out) {
    uint8_t b[2];
    if (!unhex(p, 4, b)) return 0;
    *out = (uint32_t)b[0] << 8 | b[1];
    return 1;
}

/* Parse the string at *p (past the opening quote) into v (NULL: skip); 0 if malformed. */
static int jstring(const char **p, const char *end, jval *v) {
    const size_t cap = sizeof v->s - 1;
    if (v) v->type = J_STR, v->len = 0, v->chars = 0;
    const char *q = *p;
    while (q < end && *q != '"') {
        uint32_t cp = (uint8_t)*q++;
        if (cp < 0x20) return 0;
        if (cp == '\\') {
            if (q >= end) return 0;
            char e = *q++;
            switch (e) {
            case '"': case '\\': case '/': cp = (uint32_t)e; break;
            case 'b': cp = 8; break;
            case 'f': cp = 12; break;
            case 'n': cp = 10; break;
            case 'r': cp = 13; break;
            case 't': cp = 9; break;
            case 'u':
                if (end - q < 4 || !hex4(q, &cp)) return 0;
                q += 4;
                if (cp >= 0xD800 && cp < 0xDC00) { /* a surrogate pair */
                    uint32_t lo;
                    if (end - q < 6 || q[0] != '\\' || q[1] != 'u' || !hex4(q + 2, &lo) ||
                        lo < 0xDC00 || lo > 0xDFFF)
                        return 0;
                    q += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp < 0xE000) {
                    return 0;
                }
                break;
            default: return 0;
            }
            put_utf8(v, cp, cap);
        } else if (v) {
            /* raw UTF-8 passes through; a code point is a byte that is not a continuation */
            if (v->len + 1 < cap) v->s[v->len++] = (char)cp, v->chars += (cp & 0xC0) != 0x80;
            else v->type = J_OTHER;
        }
    }
    if (q >= end) return 0;
    if (v && v->type == J_STR) v->s[v->len] = 0;
    *p = q + 1;
    return 1;
}

static const char *skip_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

/* A flat object: string keys, scalar values. Fields we use are kept (the last of a repeated
 * key wins, as in Python's json); 0 if malformed. */
static int parse_fields(const char *p, const char *end, hs_fields *f) {
    memset(f, 0, sizeof *f);
    p = skip_ws(p, end);
    if (p >= end || *p++ != '{') return 0;
    p = skip_ws(p, end);
    if (p < end && *p == '}') return skip_ws(p + 1, end) == end;
    for (;;) {
        jval key;
        if (p >= end || *p++ != '"' || !jstring(&p, end, &key)) return 0;
        jval *v = key.type != J_STR             ? NULL
                  : !strcmp(key.s, "role")    ? &f->role
                  : !strcmp(key.s, "host")    ? &f->host
                  : !strcmp(key.s, "nonce")   ? &f->nonce
                  : !strcmp(key.s, "session") ? &f->session
                  : !strcmp(key.s, "proof")   ? &f->proof
                                              : NULL;
        p = skip_ws(p, end);
        if (p >= end || *p++ != ':') return 0;
        p = skip_ws(p, end);
        if (p >= end) return 0;
        if (*p == '"') {
            p++;
            if (!jstring(&p, end, v)) return 0;
        } else if (*p == '-' || (*p >= '0' && *p <= '9')) {
            /* An integer unless a fraction or exponent follows (Python keeps 50 and 50.0
             * apart); bounded by `end`, the payload is not NUL-terminated. */
            const char *q = p + (*p == '-');
            unsigned long long mag = 0;
            int is_int = 1, digits = 0;
            for (; q < end && *q >= '0' && *q <= '9'; q++, digits++) {
                if (mag > (unsigned long long)INT64_MAX / 10) is_int = 0;
                mag = mag * 10 + (unsigned long long)(*q - '0');
            }
            if (!digits) return 0;
            if (mag > (unsigned long long)INT64_MAX) is_int = 0;
            for (; q < end && (*q == '.' || *q == 'e' || *q == 'E' || *q == '+' || *q == '-' ||
                               (*q >= '0' && *q <= '9'));
                 q++)
                is_int = 0;
            if (v) v->type = is_int ? J_INT : J_OTHER, v->i = *p == '-' ? -(long long)mag : (long long)mag;
            p = q;
        } else {
            static const char *const lits[] = {"true", "false", "null"};
            size_t k = 0;
            for (; k < 3; k++) {
                size_t n = strlen(lits[k]);
                if ((size_t)(end - p) >= n && !memcmp(p, lits[k], n)) {
                    p += n;
                    break;
                }
            }
            if (k == 3) return 0;
            if (v) v->type = J_OTHER;
        }
        p = skip_ws(p, end);
        if (p >= end) return 0;
        if (*p == '}') return skip_ws(p + 1, end) == end;
        if (*p++ != ',') return 0;
        p = skip_ws(p, end);
    }
}

/* --- the device ----------------------------------------------------------------------------- */

typedef struct {
    uint32_t sid;  /* 0: free */
    char role[8];
    uint8_t t[17 + 7 + 1 + 4 * MAX_HOST + 1 + 8 + 1 + NONCE_BYTES + 1 + NONCE_BYTES]; /* T */
    size_t tlen;
} offer;

static struct {
    int fd, device, nomac;
    double t0;
    hmac_key room;
    offer offers[MAX_OFFERS];
    unsigned next_offer;
    /* the one open session (sid 0: none) */
    uint32_t sid, ctr_out, ctr_in;
    uint64_t seen; /* the replay window's bitmap below ctr_in */
    hmac_key k_in, k_out; /* K_hd, K_dh */
    char role[8];
    unsigned long dropped, unauthenticated, foreign, replays, bad_tags;
} dev;

static uint32_t uptime_ms(void) { return (uint32_t)(uint64_t)((now_s() - dev.t0) * 1e3); }

/* Header, payload, [trailer], CRC, stuffed between SOF and EOF, appended to out at `at`;
 * returns the new length. `sealed`: flag AUTH and the session's trailer. */
static size_t frame(uint8_t *out, size_t at, int type, unsigned seq, const uint8_t *payload,
                    size_t n, int sealed) {
    uint8_t raw[MAX_FRAME + AUTH_SIZE + 10];
    raw[0] = VERSION;
    raw[1] = (uint8_t)type;
    raw[2] = sealed ? FLAG_AUTH : 0;
    raw[3] = (uint8_t)dev.device;
    raw[4] = (uint8_t)(seq >> 8);
    raw[5] = (uint8_t)seq;
    raw[6] = (uint8_t)(n >> 8);
    raw[7] = (uint8_t)n;
    memcpy(raw + 8, payload, n);
    size_t len = 8 + n;
    if (sealed) {
        uint8_t *tr = raw + len;
        put32(tr, dev.sid);
        put32(tr + 4, ++dev.ctr_out);
        if (dev.nomac) {
            memset(tr + 8, 0, TAG_BYTES);
        } else {
            uint8_t mac[32];
            hmac2(&dev.k_out, raw, len + 8, NULL, 0, mac);
            memcpy(tr + 8, mac, TAG_BYTES);
        }
        len += AUTH_SIZE;
    }
    uint16_t crc = 0xFFFF;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)(raw[i] << 8);
        for (int b = 0; b < 8; b++) crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    raw[len++] = (uint8_t)(crc >> 8);
    raw[len++] = (uint8_t)crc;
    out[at++] = SOF;
    for (size_t i = 0; i < len; i++) {
        uint8_t b = raw[i];
        if (b == SOF || b == EOF_ || b == ESC) {
            out[at++] = ESC;
            out[at++] = b ^ 0x20;
        } else {
            out[at++] = b;
        }
    }
    out[at++] = EOF_;
    if (sealed && dev.ctr_out >= CTR_LIMIT) dev.sid = 0; /* the host opens a new session */
    return at;
}

static uint16_t crc16(const uint8_t *p, size_t n) {
    uint16_t crc = 0xFFFF;
    while (n--) {
        crc ^= (uint16_t)(*p++) << 8;
        for (int i = 0; i < 8; i++) crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

/* A REPLY: status byte, then the JSON object in `json`. */
static size_t reply(uint8_t *out, size_t at, unsigned seq, int status, const char *json, int sealed) {
    uint8_t payload[512];
    size_t n = strlen(json);
    payload[0] = (uint8_t)status;
    memcpy(payload + 1, json, n);
    return frame(out, at, T_REPLY, seq, payload, n + 1, sealed);
}

/* The replies to handshakes carry what DeviceEndpoint's do: t_s, state, uptime_ms. */
static void tail_fields(char *json, size_t cap) {
    size_t n = strlen(json);
    snprintf(json + n - 1, cap - (n - 1), ",\"t_s\":%.9f,\"state\":\"READY\",\"uptime_ms\":%u}", now_s(),
             uptime_ms());
}

static size_t refuse(uint8_t *out, size_t at, unsigned seq, const char *fault, const char *message) {
    char json[256];
    if (fault) snprintf(json, sizeof json, "{\"fault\":\"%s\",\"message\":\"%s\"}", fault, message);
    else snprintf(json, sizeof json, "{\"message\":\"%s\"}", message);
    tail_fields(json, sizeof json);
    return reply(out, at, seq, ST_BAD_ARG, json, 0);
}

/* T = "fluoroctl-wire-2" | role | host | device (u32) sid (u32) | Nh | Nd, as session.py's
 * _transcript builds it: device and sid are one 8-byte part, with no '|' between them. */
static size_t transcript(uint8_t *t, const hs_fields *f, uint32_t sid, const uint8_t *hn,
                         const uint8_t *dn) {
    size_t n = 0;
    memcpy(t + n, "fluoroctl-wire-2|", 17), n += 17;
    memcpy(t + n, f->role.s, f->role.len), n += f->role.len;
    t[n++] = '|';
    memcpy(t + n, f->host.s, f->host.len), n += f->host.len;
    t[n++] = '|';
    put32(t + n, (uint32_t)dev.device), put32(t + n + 4, sid), n += 8;
    t[n++] = '|';
    memcpy(t + n, hn, NONCE_BYTES), n += NONCE_BYTES;
    t[n++] = '|';
    memcpy(t + n, dn, NONCE_BYTES), n += NONCE_BYTES;
    return n;
}

static void labelled(const char *label, const uint8_t *t, size_t n, uint8_t out[32]) {
    hmac2(&dev.room, (const uint8_t *)label, strlen(label), t, n, out);
}

static size_t on_hello(uint8_t *out, size_t at, unsigned seq, const hs_fields *f) {
    uint8_t hn[NONCE_BYTES], dn[NONCE_BYTES], mac[32];
    if (f->role.type != J_STR || (strcmp(f->role.s, "control") && strcmp(f->role.s, "observe")))
        return refuse(out, at, seq, NULL, "link.hello: role must be 'control' or 'observe'");
    if (f->host.type != J_STR || f->host.chars < 1 || f->host.chars > MAX_HOST)
        return refuse(out, at, seq, NULL, "link.hello: host must be a string of 1-64 characters");
    if (f->nonce.type != J_STR || f->nonce.len != 2 * NONCE_BYTES || !unhex(f->nonce.s, f->nonce.len, hn))
        return refuse(out, at, seq, NULL, "link.hello: nonce must be 16 bytes of hex");
    uint32_t sid = 0;
    for (;;) { /* non-zero, not the open session's, not an offer's */
        random_bytes((uint8_t *)&sid, sizeof sid);
        int taken = sid == 0 || sid == dev.sid;
        for (int i = 0; i < MAX_OFFERS; i++) taken |= dev.offers[i].sid == sid;
        if (!taken) break;
    }
    random_bytes(dn, sizeof dn);
    offer *o = &dev.offers[dev.next_offer++ % MAX_OFFERS]; /* the oldest offer makes room */
    o->sid = sid;
    memcpy(o->role, f->role.s, f->role.len + 1); /* "control" or "observe" */
    o->tlen = transcript(o->t, f, sid, hn, dn);
    labelled("device-proof|", o->t, o->tlen, mac);
    char dn_hex[2 * NONCE_BYTES + 1], proof_hex[2 * TAG_BYTES + 1], json[256];
    tohex(dn, NONCE_BYTES, dn_hex);
    tohex(mac, TAG_BYTES, proof_hex);
    snprintf(json, sizeof json, "{\"session\":%u,\"nonce\":\"%s\",\"proof\":\"%s\"}", sid, dn_hex,
             proof_hex);
    tail_fields(json, sizeof json);
    return reply(out, at, seq, ST_OK, json, 0);
}

static size_t on_auth(uint8_t *out, size_t at, unsigned seq, const hs_fields *f) {
    offer *o = NULL;
    if (f->session.type == J_INT)
        for (int i = 0; i < MAX_OFFERS; i++)
            if (dev.offers[i].sid && dev.offers[i].sid == f->session.i) o = &dev.offers[i];
    if (o == NULL) return refuse(out, at, seq, "auth", "link.auth: no link.hello offer for this session");
    offer spent = *o;
    o->sid = 0; /* an offer is good for one try */
    uint8_t proof[TAG_BYTES], mac[32];
    if (f->proof.type != J_STR || f->proof.len != 2 * TAG_BYTES || !unhex(f->proof.s, f->proof.len, proof))
        return refuse(out, at, seq, "auth", "link.auth: the host's proof does not match the room key");
    labelled("host-proof|", spent.t, spent.tlen, mac);
    if (!same(mac, proof, TAG_BYTES))
        return refuse(out, at, seq, "auth", "link.auth: the host's proof does not match the room key");
    uint8_t k[32];
    labelled("h2d|", spent.t, spent.tlen, k);
    hmac_init(&dev.k_in, k, 32);
    labelled("d2h|", spent.t, spent.tlen, k);
    hmac_init(&dev.k_out, k, 32);
    memset(k, 0, sizeof k);
    dev.sid = spent.sid, dev.ctr_out = 0, dev.ctr_in = 0, dev.seen = 0; /* replaces any open session */
    memcpy(dev.role, spent.role, sizeof dev.role);
    char json[160];
    snprintf(json, sizeof json, "{\"role\":\"%s\",\"session\":%u}", dev.role, dev.sid);
    tail_fields(json, sizeof json);
    return reply(out, at, seq, ST_OK, json, 1);
}

/* One frame's unstuffed bytes (header .. CRC): act on it or drop it. */
static size_t on_frame(uint8_t *out, size_t at, const uint8_t *body, size_t blen) {
    if (blen < 10 || crc16(body, blen) != 0 || body[0] != VERSION) return dev.dropped++, at;
    int sealed = (body[2] & FLAG_AUTH) != 0;
    size_t n = (size_t)(body[6] << 8 | body[7]);
    if (n + 10 + (sealed ? AUTH_SIZE : 0) != blen) return dev.dropped++, at;
    unsigned seq = (unsigned)(body[4] << 8 | body[5]);
    const uint8_t *payload = body + 8;
    int request = body[1] == T_REQUEST && body[3] == dev.device;
    if (!sealed) {
        /* Only the handshake travels plain. */
        size_t name_len = n ? payload[0] : 0;
        if (!request || name_len + 1 > n) return dev.unauthenticated++, at;
        const char *name = (const char *)payload + 1;
        int hello = name_len == 10 && !memcmp(name, "link.hello", 10);
        int auth = name_len == 9 && !memcmp(name, "link.auth", 9);
        if (!hello && !auth) return dev.unauthenticated++, at;
        hs_fields f;
        const char *json = name + name_len, *end = (const char *)payload + n;
        if (!parse_fields(json, end, &f)) return refuse(out, at, seq, NULL, "bad JSON object");
        return hello ? on_hello(out, at, seq, &f) : on_auth(out, at, seq, &f);
    }
    const uint8_t *tr = payload + n;
    uint32_t sid = get32(tr), ctr = get32(tr + 4);
    if (dev.sid == 0 || sid != dev.sid) return dev.foreign++, at;
    /* §7.3's anti-replay window, as session.py's ReplayWindow: the highest counter accepted
     * (ctr_in) and a bitmap of the 64 below it (bit i: ctr_in - i). On one ordered link a strict
     * increase would do, but the host may seal two frames and write them in the other order;
     * the window costs a shift and a mask. A counter is marked seen only after its tag checks. */
    uint32_t behind = dev.ctr_in - ctr;
    if (ctr <= dev.ctr_in && (ctr == 0 || behind >= 64)) return dev.replays++, at; /* stale */
    if (ctr <= dev.ctr_in && (dev.seen >> behind & 1)) return dev.replays++, at;
    if (!dev.nomac) {
        uint8_t mac[32];
        hmac2(&dev.k_in, body, 8 + n + 8, NULL, 0, mac);
        if (!same(mac, tr + 8, TAG_BYTES)) return dev.bad_tags++, at;
    }
    if (ctr > dev.ctr_in) {
        uint32_t shift = ctr - dev.ctr_in;
        dev.seen = shift < 64 ? dev.seen << shift | 1 : 1;
        dev.ctr_in = ctr;
    } else {
        dev.seen |= (uint64_t)1 << behind;
    }
    if (!request) return at; /* host heartbeats, ACKs, NAKs: they only prove the host is there */
    char json[64];
    snprintf(json, sizeof json, "{\"t_s\":%.9f}", now_s());
    at = reply(out, at, seq, ST_OK, json, 1);
    if (n >= 13 && payload[0] == 12 && !memcmp(payload + 1, "link.release", 12)) dev.sid = 0;
    return at;
}

static void write_all(int fd, const uint8_t *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            exit(0);
        }
        p += w;
        n -= (size_t)w;
    }
}

/* --sha256 HEX, --hmac KEYHEX HEX: the primitives alone, for the tests' known-answer checks. */
static int digest_cli(int argc, char **argv) {
    int is_hmac = !strcmp(argv[1], "--hmac");
    if (argc != (is_hmac ? 4 : 3)) return 2;
    const char *key_hex = is_hmac ? argv[2] : "", *msg_hex = argv[argc - 1];
    size_t nk = strlen(key_hex) / 2, nm = strlen(msg_hex) / 2;
    uint8_t *key = malloc(nk + 1), *msg = malloc(nm + 1), out[32];
    if (!unhex(key_hex, 2 * nk + strlen(key_hex) % 2, key) || !unhex(msg_hex, strlen(msg_hex), msg)) {
        fprintf(stderr, "not hex\n");
        return 2;
    }
    if (is_hmac) {
        hmac_key hk;
        hmac_init(&hk, key, nk);
        hmac2(&hk, msg, nm, NULL, 0, out);
    } else {
        sha256_ctx c;
        sha256_init(&c);
        sha256_update(&c, msg, nm);
        sha256_final(&c, out);
    }
    char hex[65];
    tohex(out, 32, hex);
    puts(hex);
    free(key), free(msg);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "--sha256") || !strcmp(argv[1], "--hmac")))
        return digest_cli(argc, argv);
    uint8_t key[32];
    if ((argc != 4 && argc != 5) || strlen(argv[3]) != 64 || !unhex(argv[3], 64, key) ||
        (argc == 5 && strcmp(argv[4], "nomac"))) {
        fprintf(stderr, "usage: %s FD DEVICE_ID KEYHEX [nomac]  (KEYHEX: 64 hex digits)\n", argv[0]);
        return 2;
    }
    dev.fd = atoi(argv[1]);
    dev.device = atoi(argv[2]);
    dev.nomac = argc == 5;
    hmac_init(&dev.room, key, sizeof key);
    memset(key, 0, sizeof key);
    int fd = dev.fd;
    double next_hb = dev.t0 = now_s();
    unsigned hb_seq = 0;
    uint8_t in[65536], body[MAX_FRAME + AUTH_SIZE + 10], out[2 * (MAX_FRAME + AUTH_SIZE + 10) + 64];
    size_t blen = 0;
    int in_frame = 0, escaped = 0;
    for (;;) {
        double now = now_s();
        size_t olen = 0;
        if (now >= next_hb) {
            if (dev.sid) {
                uint32_t up = uptime_ms();
                uint8_t hb[7] = {NODE_READY, 0, HEARTBEAT_MS};
                put32(hb + 3, up);
                hb_seq = (hb_seq + 1) & 0xFFFF;
                olen = frame(out, 0, T_HEARTBEAT, hb_seq, hb, sizeof hb, 1);
                write_all(fd, out, olen);
                olen = 0;
            }
            next_hb = now + HEARTBEAT_MS * 1e-3;
        }
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, (int)((next_hb - now) * 1e3) + 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) continue;
        ssize_t n = read(fd, in, sizeof in);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n <= 0) return 0;
        for (ssize_t i = 0; i < n; i++) {
            uint8_t b = in[i];
            if (b == SOF) {
                in_frame = 1, escaped = 0, blen = 0;
            } else if (!in_frame) {
                continue;
            } else if (b == EOF_) {
                in_frame = 0;
                if (escaped) {
                    dev.dropped++;
                    continue;
                }
                if (olen > sizeof out - 1024) { /* a reply stuffs to well under 1 KiB */
                    write_all(fd, out, olen);
                    olen = 0;
                }
                olen = on_frame(out, olen, body, blen);
            } else if (blen >= sizeof body) {
                in_frame = 0, dev.dropped++;
            } else if (b == ESC) {
                if (escaped) in_frame = 0, dev.dropped++; /* ESC ESC: a stuffing error */
                escaped = 1;
            } else {
                if (escaped && b != 0x5D && b != 0x5E && b != 0x5F) in_frame = 0, dev.dropped++;
                body[blen++] = escaped ? (uint8_t)(b ^ 0x20) : b;
                escaped = 0;
            }
        }
        if (olen) write_all(fd, out, olen);
    }
}
