/* stunload: a STUN Binding load generator that checks every reply, and a minimal reflector to measure its ceiling.
 *
 *   stunload load --port P [--host 127.0.0.1] [--seconds 5] [--sockets 4] [--window 32] [--fingerprint]
 *                 [--timeout-ms 500] [--register COUNT [--first N]]
 *   stunload reflect --port P [--host 127.0.0.1]
 *
 * load: SOCKETS connected UDP sockets each keep WINDOW Binding requests (RFC 8489 section 5: random 96-bit
 * transaction IDs; FINGERPRINT if asked) in flight for SECONDS. Every reply is checked: type 0x0101 (Binding
 * success), magic cookie, length field, a transaction ID this socket has in flight, XOR-MAPPED-ADDRESS equal to
 * the socket's own address (section 14.2), FINGERPRINT right if present and last (section 14.7). A request with
 * no reply after TIMEOUT is counted lost and replaced. Prints one JSON line; its "waiting" is the share of the
 * time the generator sat in poll() with every window full and no reply to read: waiting for the server.
 *
 * --register COUNT: punch's Register (0x0281) instead of Binding, each with a PEER-ID of its own ("storm-" and a
 * counter: COUNT distinct peers registering), LEASE 60 and FINGERPRINT; a reply must be a Register success (0x0381)
 * with XOR-MAPPED-ADDRESS as above. A lost request's ID is asked for again. The run ends when COUNT are registered
 * (or SECONDS pass); "seconds" is then the time it took. --first N numbers the peers from N (0), so that several
 * generators, or runs, register different peers.
 *
 * reflect: answers every datagram that looks like a Binding request with header + XOR-MAPPED-ADDRESS +
 * FINGERPRINT, with recvmmsg/sendmmsg, busy-polling its socket: the least work a valid answer takes and no
 * waiting for wakeups, so the generator's ceiling.
 *
 * Built by bench/server_throughput.py with the system cc; nothing here is installed or committed as a binary.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define COOKIE 0x2112A442u
#define FINGERPRINT_XOR 0x5354554Eu
#define BATCH 64
#define BUFSIZE 2048
#define MAX_WINDOW 1024
#define MAX_SOCKETS 64

static uint32_t crc_table[256];

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc32(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    while (n--) c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v; }

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static uint64_t rng_state[2];

static uint64_t rng(void) { /* xorshift128+, seeded from getrandom() */
    uint64_t s1 = rng_state[0];
    const uint64_t s0 = rng_state[1];
    rng_state[0] = s0;
    s1 ^= s1 << 23;
    rng_state[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return rng_state[1] + s0;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void big_buffers(int fd) { /* 4 MiB each way; SO_*BUFFORCE (root) passes net.core.[rw]mem_max */
    int size = 4 << 20;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) < 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
}

static struct sockaddr_in address_of(const char *host, int port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
        fprintf(stderr, "stunload: --host %s is not an IPv4 address\n", host);
        exit(2);
    }
    return a;
}

/* -- load ---------------------------------------------------------------------------------------------- */

struct slot {
    uint8_t txid[12];
    double sent;
    int used;
    long long id; /* --register: the peer this request registers (-1: none yet) */
};

struct load_socket {
    int fd;
    struct sockaddr_in local;
    struct slot slots[MAX_WINDOW];
    int in_flight;
};

struct counts {
    long long sent, replies, valid, lost, with_fingerprint;
    long long bad_type, bad_cookie, bad_length, bad_txid, bad_address, bad_fingerprint;
};

static int window, fingerprint;
static double timeout_s;
static struct counts total;
static long long register_count; /* --register: distinct peers to register (0: Binding load) */
static long long next_id, registered, first_id;
static long long *retry_ids; /* --register: IDs whose request was lost, asked for again first */
static long long retry_count;

#define PEER_ID 0x4C01
#define LEASE 0x4C06

/* A request in m for slot: Binding, or Register of the slot's peer. Returns its length. */
static size_t build(uint8_t *m, struct slot *slot) {
    size_t n = 20;
    if (register_count) {
        char text[32];
        int size = snprintf(text, sizeof text, "storm-%010lld", first_id + slot->id);
        size_t padded = ((size_t)size + 3) & ~(size_t)3;
        put16(m + n, PEER_ID);
        put16(m + n + 2, (uint16_t)size);
        memset(m + n + 4, 0, padded);
        memcpy(m + n + 4, text, (size_t)size);
        n += 4 + padded;
        put16(m + n, LEASE);
        put16(m + n + 2, 4);
        put32(m + n + 4, 60);
        n += 8;
    }
    put16(m, register_count ? 0x0281 : 0x0001);
    put16(m + 2, (uint16_t)(n - 20 + (fingerprint ? 8 : 0)));
    put32(m + 4, COOKIE);
    memcpy(m + 8, slot->txid, 12);
    if (fingerprint) {
        put16(m + n, 0x8028);
        put16(m + n + 2, 4);
        put32(m + n + 4, crc32(m, n) ^ FINGERPRINT_XOR);
        n += 8;
    }
    return n;
}

/* Fill every free slot with a new request and send them all in one sendmmsg. */
static void refill(struct load_socket *s, double now) {
    static uint8_t bufs[MAX_WINDOW][96];
    static struct mmsghdr msgs[MAX_WINDOW];
    static struct iovec iov[MAX_WINDOW];
    int n = 0;
    for (int i = 0; i < window; i++) {
        struct slot *slot = &s->slots[i];
        if (slot->used) continue;
        if (register_count) {
            if (retry_count) slot->id = retry_ids[--retry_count];
            else if (next_id < register_count) slot->id = next_id++;
            else continue; /* every peer asked for: wait for the answers */
        }
        uint64_t a = rng(), b = rng();
        memcpy(slot->txid, &a, 8);
        memcpy(slot->txid + 8, &b, 4);
        slot->sent = now;
        slot->used = 1;
        uint8_t *m = bufs[n];
        iov[n] = (struct iovec){.iov_base = m, .iov_len = build(m, slot)};
        msgs[n] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[n], .msg_iovlen = 1}};
        n++;
    }
    int done = 0;
    while (done < n) {
        int r = sendmmsg(s->fd, msgs + done, (unsigned)(n - done), 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == ECONNREFUSED) break; /* those slots time out and count as lost */
            die("sendmmsg");
        }
        done += r;
    }
    s->in_flight += n;
    total.sent += done;
}

/* Check one reply; on success free its slot. Returns 1 if valid. */
static int check(struct load_socket *s, const uint8_t *m, size_t n) {
    if (n < 20 || get16(m) != (register_count ? 0x0381 : 0x0101)) return total.bad_type++, 0;
    if (get32(m + 4) != COOKIE) return total.bad_cookie++, 0;
    if (get16(m + 2) != n - 20 || n % 4) return total.bad_length++, 0;
    struct slot *slot = NULL;
    for (int i = 0; i < window; i++)
        if (s->slots[i].used && memcmp(s->slots[i].txid, m + 8, 12) == 0) {
            slot = &s->slots[i];
            break;
        }
    if (slot == NULL) return total.bad_txid++, 0;
    int address_ok = 0, fingerprint_seen = 0;
    size_t offset = 20;
    while (offset + 4 <= n) {
        uint16_t type = get16(m + offset), length = get16(m + offset + 2);
        size_t padded = (size_t)(length + 3) & ~(size_t)3;
        if (offset + 4 + padded > n) return total.bad_length++, 0;
        const uint8_t *v = m + offset + 4;
        if (type == 0x0020 && !address_ok) {
            address_ok = length == 8 && v[1] == 1 && (get16(v + 2) ^ (COOKIE >> 16)) == ntohs(s->local.sin_port) &&
                         (get32(v + 4) ^ COOKIE) == ntohl(s->local.sin_addr.s_addr);
            if (!address_ok) return total.bad_address++, 0;
        } else if (type == 0x8028) {
            if (length != 4 || offset + 8 != n || get32(v) != (crc32(m, offset) ^ FINGERPRINT_XOR))
                return total.bad_fingerprint++, 0;
            fingerprint_seen = 1;
        }
        offset += 4 + padded;
    }
    if (offset != n) return total.bad_length++, 0;
    if (!address_ok) return total.bad_address++, 0;
    total.with_fingerprint += fingerprint_seen;
    registered += register_count != 0;
    slot->used = 0;
    s->in_flight--;
    return 1;
}

static int run_load(const char *host, int port, double seconds, int sockets) {
    static struct load_socket socks[MAX_SOCKETS];
    struct sockaddr_in server = address_of(host, port);
    for (int i = 0; i < sockets; i++) {
        struct load_socket *s = &socks[i];
        s->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        if (s->fd < 0) die("socket");
        big_buffers(s->fd);
        struct sockaddr_in local = address_of(host, 0);
        if (bind(s->fd, (struct sockaddr *)&local, sizeof local) < 0) die("bind");
        if (connect(s->fd, (struct sockaddr *)&server, sizeof server) < 0) die("connect");
        socklen_t len = sizeof s->local;
        getsockname(s->fd, (struct sockaddr *)&s->local, &len);
    }
    static uint8_t bufs[BATCH][BUFSIZE];
    static struct mmsghdr msgs[BATCH];
    static struct iovec iov[BATCH];
    struct pollfd pfd[MAX_SOCKETS];
    double start = now_s(), end = start + seconds, last_sweep = start, now = start, waiting = 0;
    for (int i = 0; i < sockets; i++) refill(&socks[i], start);
    while ((now = now_s()) < end && !(register_count && registered >= register_count)) {
        int idle = 1;
        for (int i = 0; i < sockets; i++) {
            struct load_socket *s = &socks[i];
            for (int k = 0; k < BATCH; k++) {
                iov[k] = (struct iovec){.iov_base = bufs[k], .iov_len = BUFSIZE};
                msgs[k] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[k], .msg_iovlen = 1}};
            }
            int r = recvmmsg(s->fd, msgs, BATCH, MSG_DONTWAIT, NULL);
            if (r < 0) {
                if (errno == EAGAIN || errno == EINTR || errno == ECONNREFUSED) continue;
                die("recvmmsg");
            }
            idle = 0;
            for (int k = 0; k < r; k++) {
                total.replies++;
                total.valid += check(s, bufs[k], msgs[k].msg_len);
            }
            refill(s, now);
        }
        if (now - last_sweep > timeout_s / 4) { /* requests unanswered for TIMEOUT are lost; replace them */
            last_sweep = now;
            for (int i = 0; i < sockets; i++) {
                struct load_socket *s = &socks[i];
                for (int k = 0; k < window; k++)
                    if (s->slots[k].used && now - s->slots[k].sent > timeout_s) {
                        if (register_count) retry_ids[retry_count++] = s->slots[k].id;
                        s->slots[k].used = 0;
                        s->in_flight--;
                        total.lost++;
                    }
                refill(s, now);
            }
        }
        if (idle) { /* nothing came back: wait for the server, and count the time as the generator's headroom */
            for (int i = 0; i < sockets; i++) pfd[i] = (struct pollfd){.fd = socks[i].fd, .events = POLLIN};
            double before = now_s();
            poll(pfd, (nfds_t)sockets, 1);
            waiting += now_s() - before;
        }
    }
    double elapsed = now - start;
    long long invalid = total.replies - total.valid;
    printf("{\"registered\": %lld, \"rate\": %.1f, \"replies\": %lld, \"valid\": %lld, \"invalid\": %lld, \"lost\": %lld, \"sent\": %lld, "
           "\"seconds\": %.3f, \"waiting\": %.3f, \"sockets\": %d, \"window\": %d, \"fingerprint_in_requests\": %s, "
           "\"replies_with_fingerprint\": %lld, \"invalid_by_reason\": {\"type\": %lld, \"cookie\": %lld, "
           "\"length\": %lld, \"transaction_id\": %lld, \"xor_mapped_address\": %lld, \"fingerprint\": %lld}}\n",
           registered, (double)total.valid / elapsed, total.replies, total.valid, invalid, total.lost, total.sent, elapsed,
           waiting / elapsed, sockets, window, fingerprint ? "true" : "false", total.with_fingerprint, total.bad_type, total.bad_cookie,
           total.bad_length, total.bad_txid, total.bad_address, total.bad_fingerprint);
    return 0;
}

/* -- reflect ------------------------------------------------------------------------------------------- */

static int run_reflect(const char *host, int port) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) die("socket");
    big_buffers(fd);
    struct sockaddr_in local = address_of(host, port);
    if (bind(fd, (struct sockaddr *)&local, sizeof local) < 0) die("bind");
    static uint8_t in[BATCH][BUFSIZE], out[BATCH][40];
    static struct sockaddr_in peers[BATCH];
    static struct mmsghdr msgs[BATCH], replies[BATCH];
    static struct iovec iov[BATCH], reply_iov[BATCH];
    for (;;) {
        for (int k = 0; k < BATCH; k++) {
            iov[k] = (struct iovec){.iov_base = in[k], .iov_len = BUFSIZE};
            msgs[k] = (struct mmsghdr){
                .msg_hdr = {.msg_name = &peers[k], .msg_namelen = sizeof peers[k], .msg_iov = &iov[k], .msg_iovlen = 1}};
        }
        int r = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL); /* busy-polls: no wakeup ever waits */
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            die("recvmmsg");
        }
        int n = 0;
        for (int k = 0; k < r; k++) {
            const uint8_t *m = in[k];
            if (msgs[k].msg_len < 20 || get16(m) != 0x0001 || get32(m + 4) != COOKIE) continue;
            uint8_t *o = out[n];
            put16(o, 0x0101);
            put16(o + 2, 20);
            put32(o + 4, COOKIE);
            memcpy(o + 8, m + 8, 12);
            put16(o + 20, 0x0020);
            put16(o + 22, 8);
            o[24] = 0;
            o[25] = 1;
            put16(o + 26, ntohs(peers[k].sin_port) ^ (COOKIE >> 16));
            put32(o + 28, ntohl(peers[k].sin_addr.s_addr) ^ COOKIE);
            put16(o + 32, 0x8028);
            put16(o + 34, 4);
            put32(o + 36, crc32(o, 32) ^ FINGERPRINT_XOR);
            reply_iov[n] = (struct iovec){.iov_base = o, .iov_len = 40};
            replies[n] = (struct mmsghdr){.msg_hdr = {.msg_name = &peers[k], .msg_namelen = sizeof peers[k],
                                                      .msg_iov = &reply_iov[n], .msg_iovlen = 1}};
            n++;
        }
        for (int done = 0; done < n;) {
            int s = sendmmsg(fd, replies + done, (unsigned)(n - done), 0);
            if (s < 0) {
                if (errno == EINTR) continue;
                break; /* a full buffer: the generator counts those as lost */
            }
            done += s;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    int port = 0, sockets = 4;
    double seconds = 5.0;
    window = 32;
    timeout_s = 0.5;
    if (argc < 2 || (strcmp(argv[1], "load") && strcmp(argv[1], "reflect"))) {
        fprintf(stderr, "usage: stunload load|reflect --port P [--host H] [--seconds S] [--sockets N] [--window W] "
                        "[--fingerprint] [--timeout-ms MS] [--register COUNT [--first N]]\n");
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        const char *flag = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(flag, "--fingerprint")) {
            fingerprint = 1;
            continue;
        }
        if (value == NULL) {
            fprintf(stderr, "stunload: %s needs a value\n", flag);
            return 2;
        }
        i++;
        if (!strcmp(flag, "--host")) host = value;
        else if (!strcmp(flag, "--port")) port = atoi(value);
        else if (!strcmp(flag, "--seconds")) seconds = atof(value);
        else if (!strcmp(flag, "--sockets")) sockets = atoi(value);
        else if (!strcmp(flag, "--window")) window = atoi(value);
        else if (!strcmp(flag, "--timeout-ms")) timeout_s = atof(value) / 1000.0;
        else if (!strcmp(flag, "--register")) register_count = atoll(value);
        else if (!strcmp(flag, "--first")) first_id = atoll(value);
        else {
            fprintf(stderr, "stunload: unknown flag %s\n", flag);
            return 2;
        }
    }
    if (port <= 0 || port > 65535 || sockets < 1 || sockets > MAX_SOCKETS || window < 1 || window > MAX_WINDOW ||
        seconds <= 0 || timeout_s <= 0) {
        fprintf(stderr, "stunload: --port 1-65535, --sockets 1-%d, --window 1-%d, --seconds and --timeout-ms > 0\n",
                MAX_SOCKETS, MAX_WINDOW);
        return 2;
    }
    if (register_count < 0 || first_id < 0) {
        fprintf(stderr, "stunload: --register takes a count of peers, 1 or more; --first 0 or more\n");
        return 2;
    }
    if (register_count) {
        retry_ids = calloc((size_t)(MAX_SOCKETS * MAX_WINDOW), sizeof *retry_ids);
        if (retry_ids == NULL) die("calloc");
    }
    crc_init();
    if (getrandom(rng_state, sizeof rng_state, 0) != sizeof rng_state) die("getrandom");
    signal(SIGPIPE, SIG_IGN);
    return strcmp(argv[1], "load") == 0 ? run_load(host, port, seconds, sockets) : run_reflect(host, port);
}
