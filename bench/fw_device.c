/* A device answering at firmware speed, for bench_roundtrip.py: the far end of the pty when
 * the measurement is of the host's driver stack and not of a Python peer.
 *
 * It speaks the reference wire protocol (docs/wire-protocol.md) as far as a round trip needs:
 * frames between SOF 0x7E and EOF 0x7F, ESC 0x7D stuffing (escaped byte XOR 0x20), an 8-byte
 * header (version, type, flags, device, seq, payload length; big endian), CRC-16/CCITT-FALSE
 * over header and payload. Every valid REQUEST to its device id gets a REPLY with the same seq,
 * status OK and {"t_s": <CLOCK_MONOTONIC seconds>}; it sends a HEARTBEAT (state READY) every
 * 200 ms. Anything else (damaged frames, other types, other devices) is counted and dropped:
 * the host's timeout and retry cover a lost request. Exits on EOF/EIO (the host side closed).
 *
 * Usage: fw_device FD DEVICE_ID   (FD: an inherited, open pty master)
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { SOF = 0x7E, EOF_ = 0x7F, ESC = 0x7D, T_REQUEST = 1, T_REPLY = 2, T_HEARTBEAT = 6 };
enum { HEARTBEAT_MS = 200, MAX_FRAME = 4096 };

static uint16_t crc16(const uint8_t *p, size_t n) {
    uint16_t crc = 0xFFFF;
    while (n--) {
        crc ^= (uint16_t)(*p++) << 8;
        for (int i = 0; i < 8; i++) crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Header + payload + CRC, stuffed between SOF and EOF, appended to out; returns new length. */
static size_t frame(uint8_t *out, size_t at, int type, int device, unsigned seq,
                    const uint8_t *payload, size_t n) {
    uint8_t raw[MAX_FRAME];
    raw[0] = 1;
    raw[1] = (uint8_t)type;
    raw[2] = 0;
    raw[3] = (uint8_t)device;
    raw[4] = (uint8_t)(seq >> 8);
    raw[5] = (uint8_t)seq;
    raw[6] = (uint8_t)(n >> 8);
    raw[7] = (uint8_t)n;
    memcpy(raw + 8, payload, n);
    uint16_t crc = crc16(raw, 8 + n);
    raw[8 + n] = (uint8_t)(crc >> 8);
    raw[9 + n] = (uint8_t)crc;
    out[at++] = SOF;
    for (size_t i = 0; i < 10 + n; i++) {
        uint8_t b = raw[i];
        if (b == SOF || b == EOF_ || b == ESC) {
            out[at++] = ESC;
            out[at++] = b ^ 0x20;
        } else {
            out[at++] = b;
        }
    }
    out[at++] = EOF_;
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

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s FD DEVICE_ID\n", argv[0]);
        return 2;
    }
    int fd = atoi(argv[1]);
    int device = atoi(argv[2]);
    double t0 = now_s(), next_hb = t0;
    unsigned hb_seq = 0;
    uint8_t in[65536], body[MAX_FRAME], out[2 * MAX_FRAME + 64];
    size_t blen = 0;
    int in_frame = 0, escaped = 0;
    unsigned long dropped = 0;
    for (;;) {
        double now = now_s();
        size_t olen = 0;
        if (now >= next_hb) {
            uint32_t up = (uint32_t)((now - t0) * 1e3);
            uint8_t hb[7] = {1, 0, HEARTBEAT_MS, (uint8_t)(up >> 24), (uint8_t)(up >> 16),
                             (uint8_t)(up >> 8), (uint8_t)up};
            hb_seq = (hb_seq + 1) & 0xFFFF;
            olen = frame(out, olen, T_HEARTBEAT, device, hb_seq, hb, sizeof hb);
            write_all(fd, out, olen);
            olen = 0;
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
                unsigned len = blen >= 8 ? (unsigned)(body[6] << 8 | body[7]) : 0;
                if (escaped || blen < 10 || body[0] != 1 || len != blen - 10 || crc16(body, blen) != 0 ||
                    body[1] != T_REQUEST || body[3] != device) {
                    dropped++;
                    continue;
                }
                unsigned seq = (unsigned)(body[4] << 8 | body[5]);
                char json[64];
                int jn = snprintf(json + 1, sizeof json - 1, "{\"t_s\":%.9f}", now_s());
                json[0] = 0; /* status OK */
                if (olen > sizeof out - 256) {  /* a reply stuffs to well under 256 bytes */
                    write_all(fd, out, olen);
                    olen = 0;
                }
                olen = frame(out, olen, T_REPLY, device, seq, (const uint8_t *)json, (size_t)jn + 1);
            } else if (blen >= MAX_FRAME) {
                in_frame = 0, dropped++;
            } else if (b == ESC) {
                escaped = 1;
            } else {
                body[blen++] = escaped ? (uint8_t)(b ^ 0x20) : b;
                escaped = 0;
            }
        }
        if (olen) write_all(fd, out, olen);
    }
}
