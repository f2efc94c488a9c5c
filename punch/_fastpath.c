/* punch._fastpath: the server's optional C accelerator for Binding requests (RFC 8489 section 12.1) and keepalives.
 *
 * drain(fd, tail, budget) reads the socket with recvmmsg, answers every well-formed Binding request with a
 * success built from a template (header, XOR-MAPPED-ADDRESS of the source, the constant attributes in
 * `tail` such as SOFTWARE, FINGERPRINT) sent back with sendmmsg, and hands every other datagram to Python
 * untouched, so that Python's handler, drop counters and integrity checks see exactly what they saw before.
 *
 * Well-formed, strictly: a 20-byte header with type 0x0001, the magic cookie, a length field equal to the rest
 * of the datagram and a multiple of 4; attributes that tile the body exactly; each one either FINGERPRINT (last,
 * 4 bytes, CRC right, section 14.7) or a comprehension-optional type (0x8000-0xFFFF) that the codec's table does
 * not know (those are ignored by every receiver, section 14). Anything else - a comprehension-required attribute,
 * a known attribute whose value Python would check, a bad FINGERPRINT - goes to Python.
 *
 * answer(request, host, port, tail) is the same decision and reply for one datagram, for tests.
 *
 * For the rendezvous server's keepalives (punch/rendezvous/refresh.py, whose pure-Python functions stay the
 * reference and the fallback): parse_refresh(data) reads a keepalive Register as strictly as the Python version
 * and returns the same values; signed_with(data, key) checks its MESSAGE-INTEGRITY-SHA256 (HMAC-SHA-256 written
 * out in _fastpath_sha256.h, so that the module needs no library); refresh_answer(...) builds the same answer
 * bytes; send_batch(fd, items) sends the answers a drain produced with sendmmsg instead of one sendto each.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#define COOKIE 0x2112A442u
#define FINGERPRINT_XOR 0x5354554Eu
#define FINGERPRINT_TYPE 0x8028
#define MI_SHA256_TYPE 0x001C
#define XOR_MAPPED_ADDRESS_TYPE 0x0020
#define PEER_ID_TYPE 0x4C01
#define CANDIDATE_TYPE 0x4C03
#define LEASE_TYPE 0x4C06
#define REGISTRATION_TOKEN_TYPE 0x4C0A
#define NAT_MAPPING_TYPE 0xCC03
#define PUBLIC_KEY_TYPE 0x4C0B
#define PUBLIC_KEY_BYTES 32
#define REGISTER_REQUEST 0x0281
#define REGISTER_SUCCESS 0x0381
#define TRAILER_SIZE 44 /* MESSAGE-INTEGRITY-SHA256 (4 + 32) and FINGERPRINT (4 + 4) */
#define MAX_CANDIDATES 8 /* the general path keeps the first 8 */
#define TOKEN_BYTES 16
#define BATCH 64
#define BUFSIZE 65536 /* a whole UDP datagram: Python must see what it would have read itself */
#define MAX_TAIL 1024
#define MAX_REPLY (20 + 24 + MAX_TAIL + 8)

static uint32_t crc_table[256];
static uint8_t known_optional[0x8000]; /* 1 for each type 0x8000 + i in the codec's table */
static int configured;                 /* answer nothing until set_known() has been called */

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
static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static void put16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

#include "_fastpath_sha256.h" /* hmac_sha256(), with the helpers above */

/* Whether `m` is a Binding request the fast path may answer (see the top of this file). */
static int eligible(const uint8_t *m, size_t n) {
    if (!configured || n < 20 || n % 4 || get16(m) != 0x0001 || get32(m + 4) != COOKIE || get16(m + 2) != n - 20) return 0;
    size_t offset = 20;
    while (offset < n) {
        if (n - offset < 4) return 0;
        uint16_t type = get16(m + offset), length = get16(m + offset + 2);
        size_t padded = ((size_t)length + 3) & ~(size_t)3;
        if (offset + 4 + padded > n) return 0;
        if (type == FINGERPRINT_TYPE) {
            if (length != 4 || offset + 8 != n) return 0;
            if (get32(m + offset + 4) != (crc32(m, offset) ^ FINGERPRINT_XOR)) return 0;
        } else if (type < 0x8000 || known_optional[type - 0x8000]) {
            return 0;
        }
        offset += 4 + padded;
    }
    return 1;
}

/* The success response to the eligible request `m` from `source`; returns its length. */
static size_t build(uint8_t *out, const uint8_t *m, const struct sockaddr_storage *source, const uint8_t *tail,
                    size_t tail_length) {
    size_t offset = 20;
    put16(out, 0x0101);
    put32(out + 4, COOKIE);
    memcpy(out + 8, m + 8, 12);
    const struct sockaddr_in6 *six = (const struct sockaddr_in6 *)source;
    if (source->ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&six->sin6_addr)) {
        /* IPv4 on a dual-stack socket (::ffff:a.b.c.d): the client is told its IPv4 address, family 0x01 */
        put16(out + 20, 0x0020);
        put16(out + 22, 8);
        out[24] = 0;
        out[25] = 1;
        put16(out + 26, ntohs(six->sin6_port) ^ (COOKIE >> 16));
        for (int i = 0; i < 4; i++) out[28 + i] = six->sin6_addr.s6_addr[12 + i] ^ out[4 + i];
        offset += 12;
    } else if (source->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)source;
        put16(out + 20, 0x0020);
        put16(out + 22, 8);
        out[24] = 0;
        out[25] = 1;
        put16(out + 26, ntohs(a->sin_port) ^ (COOKIE >> 16));
        put32(out + 28, ntohl(a->sin_addr.s_addr) ^ COOKIE);
        offset += 12;
    } else {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)source;
        put16(out + 20, 0x0020);
        put16(out + 22, 20);
        out[24] = 0;
        out[25] = 2;
        put16(out + 26, ntohs(a->sin6_port) ^ (COOKIE >> 16));
        for (int i = 0; i < 16; i++) out[28 + i] = a->sin6_addr.s6_addr[i] ^ out[4 + i]; /* cookie, then txid */
        offset += 24;
    }
    memcpy(out + offset, tail, tail_length);
    offset += tail_length;
    put16(out + 2, (uint32_t)(offset - 20 + 8));
    put16(out + offset, FINGERPRINT_TYPE);
    put16(out + offset + 2, 4);
    put32(out + offset + 4, crc32(out, offset) ^ FINGERPRINT_XOR);
    return offset + 8;
}

/* The source's IP as Python's socket module writes it (getnameinfo, numeric: with a %scope where it has one);
   inet_ntop, which writes the same without the scope, where it has none (the common case, and much cheaper).
   An IPv4-mapped source (a dual-stack socket's IPv4 peer) is written as its IPv4 address, as punch.stun.families
   writes it for Python: the rate limit keys a source one way whichever path answers it. */
static void numeric_host(const struct sockaddr_storage *source, socklen_t length, char host[NI_MAXHOST]) {
    const void *ip = NULL;
    const struct in6_addr *six = &((const struct sockaddr_in6 *)source)->sin6_addr;
    if (source->ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(six)) {
        if (inet_ntop(AF_INET, &six->s6_addr[12], host, NI_MAXHOST) != NULL) return;
    }
    if (source->ss_family == AF_INET)
        ip = &((const struct sockaddr_in *)source)->sin_addr;
    else if (source->ss_family == AF_INET6 && ((const struct sockaddr_in6 *)source)->sin6_scope_id == 0)
        ip = &((const struct sockaddr_in6 *)source)->sin6_addr;
    if (ip != NULL && inet_ntop(source->ss_family, ip, host, NI_MAXHOST) != NULL) return;
    if (getnameinfo((const struct sockaddr *)source, length, host, NI_MAXHOST, NULL, 0, NI_NUMERICHOST) != 0)
        host[0] = 0;
}

/* (host, port) for IPv4, (host, port, flowinfo, scope_id) for IPv6: what Python's socket module returns. */
static PyObject *address_tuple(const struct sockaddr_storage *source, socklen_t length) {
    char host[NI_MAXHOST];
    numeric_host(source, length, host);
    if (source->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)source;
        return Py_BuildValue("(siII)", host, ntohs(a->sin6_port), ntohl(a->sin6_flowinfo), a->sin6_scope_id);
    }
    return Py_BuildValue("(si)", host, ntohs(((const struct sockaddr_in *)source)->sin_port));
}

static int tail_ok(Py_ssize_t tail_length) {
    if (tail_length > MAX_TAIL || tail_length % 4) {
        PyErr_Format(PyExc_ValueError, "tail is %zd bytes, expected a multiple of 4 up to %d", tail_length, MAX_TAIL);
        return 0;
    }
    return 1;
}

PyDoc_STRVAR(drain_doc,
             "drain(fd, tail, budget, take=None) -> (answered, others, send_errors, receive_errno, limited)\n\n"
             "Read up to about `budget` datagrams from the non-blocking UDP socket `fd`; answer the well-formed\n"
             "Binding requests; return how many were answered, the other datagrams as (bytes, address) in\n"
             "arrival order, how many replies the kernel refused, the errno that stopped reading (0 if none) and\n"
             "how many Binding requests the rate limit dropped. With `take`, a batch's Binding requests from one\n"
             "source IP are answered only as far as take(ip, count) -> allowed says, first come first served.");

/* The source's IP as Python's socket module writes it (the rate limiter's key). */
static PyObject *host_string(const struct sockaddr_storage *source, socklen_t length) {
    char host[NI_MAXHOST];
    numeric_host(source, length, host);
    return PyUnicode_FromString(host);
}

static int same_ip(const struct sockaddr_storage *a, const struct sockaddr_storage *b) {
    if (a->ss_family != b->ss_family) return 0;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr == ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a, *y = (const struct sockaddr_in6 *)b;
    return memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0 && x->sin6_scope_id == y->sin6_scope_id;
}

static PyObject *drain(PyObject *self, PyObject *args) {
    int fd, budget;
    const uint8_t *tail;
    Py_ssize_t tail_length;
    PyObject *take = Py_None;
    if (!PyArg_ParseTuple(args, "iy#i|O", &fd, &tail, &tail_length, &budget, &take) || !tail_ok(tail_length))
        return NULL;
    static uint8_t in[BATCH][BUFSIZE], out[BATCH][MAX_REPLY];
    static struct sockaddr_storage sources[BATCH];
    static struct mmsghdr msgs[BATCH], replies[BATCH];
    static struct iovec iov[BATCH], reply_iov[BATCH];
    int answerable[BATCH], group[BATCH], first_of_group[BATCH];
    long allowance[BATCH];
    PyObject *others = PyList_New(0);
    if (others == NULL) return NULL;
    long answered = 0, send_errors = 0, limited = 0;
    int receive_errno = 0, seen = 0;
    while (seen < budget) {
        for (int k = 0; k < BATCH; k++) {
            iov[k] = (struct iovec){.iov_base = in[k], .iov_len = BUFSIZE};
            msgs[k] = (struct mmsghdr){.msg_hdr = {.msg_name = &sources[k], .msg_namelen = sizeof sources[k],
                                                   .msg_iov = &iov[k], .msg_iovlen = 1}};
        }
        int r = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) receive_errno = errno;
            break;
        }
        seen += r;
        int groups = 0;
        for (int k = 0; k < r; k++) {
            int family = sources[k].ss_family;
            answerable[k] = (family == AF_INET || family == AF_INET6) && eligible(in[k], msgs[k].msg_len);
            if (!answerable[k] || take == Py_None) continue;
            int g = 0;
            while (g < groups && !same_ip(&sources[first_of_group[g]], &sources[k])) g++;
            if (g == groups) {
                first_of_group[groups] = k;
                allowance[groups++] = 0;
            }
            group[k] = g;
            allowance[g]++; /* the count asked for; replaced by what the limiter allows */
        }
        for (int g = 0; g < groups; g++) {
            int k = first_of_group[g];
            PyObject *host = host_string(&sources[k], msgs[k].msg_hdr.msg_namelen);
            PyObject *allowed = host ? PyObject_CallFunction(take, "Nl", host, allowance[g]) : NULL;
            long value = allowed ? PyLong_AsLong(allowed) : -1;
            Py_XDECREF(allowed);
            if (value == -1 && PyErr_Occurred()) {
                Py_DECREF(others);
                return NULL;
            }
            allowance[g] = value;
        }
        int n = 0;
        for (int k = 0; k < r; k++) {
            size_t length = msgs[k].msg_len;
            if (answerable[k] && take != Py_None && allowance[group[k]]-- <= 0) {
                limited++;
                continue;
            }
            if (answerable[k]) {
                size_t size = build(out[n], in[k], &sources[k], tail, (size_t)tail_length);
                reply_iov[n] = (struct iovec){.iov_base = out[n], .iov_len = size};
                replies[n] = (struct mmsghdr){.msg_hdr = {.msg_name = &sources[k],
                                                          .msg_namelen = msgs[k].msg_hdr.msg_namelen,
                                                          .msg_iov = &reply_iov[n], .msg_iovlen = 1}};
                n++;
                continue;
            }
            PyObject *address = address_tuple(&sources[k], msgs[k].msg_hdr.msg_namelen);
            PyObject *item = address ? Py_BuildValue("(y#N)", (const char *)in[k], (Py_ssize_t)length, address) : NULL;
            if (item == NULL || PyList_Append(others, item) < 0) {
                Py_XDECREF(item);
                Py_DECREF(others);
                return NULL;
            }
            Py_DECREF(item);
        }
        for (int done = 0; done < n;) {
            int s = sendmmsg(fd, replies + done, (unsigned)(n - done), 0);
            if (s < 0) {
                if (errno == EINTR) continue;
                send_errors++; /* this reply is lost (a full buffer, an unreachable source): count it, go on */
                done++;
                continue;
            }
            done += s;
        }
        answered += n;
        if (r < BATCH) break; /* the queue is empty */
    }
    return Py_BuildValue("(lNlil)", answered, others, send_errors, receive_errno, limited);
}

PyDoc_STRVAR(answer_doc,
             "answer(request, host, port, tail) -> bytes | None\n\n"
             "The fast path's success response to one datagram from (host, port), or None where it would hand\n"
             "the datagram to Python.");

static PyObject *answer(PyObject *self, PyObject *args) {
    const uint8_t *m, *tail;
    Py_ssize_t n, tail_length;
    const char *host;
    int port;
    if (!PyArg_ParseTuple(args, "y#siy#", &m, &n, &host, &port, &tail, &tail_length) || !tail_ok(tail_length))
        return NULL;
    struct sockaddr_storage source = {0};
    struct sockaddr_in *v4 = (struct sockaddr_in *)&source;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&source;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
    } else {
        PyErr_Format(PyExc_ValueError, "%s is not an IP address", host);
        return NULL;
    }
    if (!eligible(m, (size_t)n)) Py_RETURN_NONE;
    uint8_t out[MAX_REPLY];
    size_t size = build(out, m, &source, tail, (size_t)tail_length);
    return PyBytes_FromStringAndSize((const char *)out, (Py_ssize_t)size);
}

PyDoc_STRVAR(set_known_doc,
             "set_known(types)\n\nThe attribute types the codec's table knows; the comprehension-optional ones\n"
             "among them send a request to Python (their values are checked there).");

static PyObject *set_known(PyObject *self, PyObject *args) {
    PyObject *types;
    if (!PyArg_ParseTuple(args, "O", &types)) return NULL;
    PyObject *iterator = PyObject_GetIter(types);
    if (iterator == NULL) return NULL;
    memset(known_optional, 0, sizeof known_optional);
    PyObject *item;
    while ((item = PyIter_Next(iterator)) != NULL) {
        long type = PyLong_AsLong(item);
        Py_DECREF(item);
        if (type == -1 && PyErr_Occurred()) break;
        if (type >= 0x8000 && type <= 0xFFFF && type != FINGERPRINT_TYPE) known_optional[type - 0x8000] = 1;
    }
    Py_DECREF(iterator);
    if (PyErr_Occurred()) return NULL;
    configured = 1;
    Py_RETURN_NONE;
}

/* -- keepalives (punch/rendezvous/refresh.py holds the reference versions in Python) --------------------------- */

#define MAX_PACKED (MAX_CANDIDATES * 19) /* a tag, a port and an IPv6 address per CANDIDATE */
#define MAX_ANSWER (20 + 24 + 8 + 20 + MAX_TAIL + 8)

PyDoc_STRVAR(parse_refresh_doc,
             "parse_refresh(data) -> (peer_id, hosts, lease, mapping, public_key) | None\n\n"
             "What punch.rendezvous.refresh.read_refresh reads from `data`, exactly: a Register request with a right\n"
             "header, attributes tiling the body and MESSAGE-INTEGRITY-SHA256 then a right FINGERPRINT last, carrying\n"
             "one PEER-ID (1-128 bytes of UTF-8), a nonzero LEASE, at most one NAT-MAPPING, at most one PUBLIC-KEY\n"
             "(32 bytes) and at most 8 CANDIDATEs and nothing else. hosts: the CANDIDATE addresses packed as\n"
             "pack_addresses packs them; mapping: the first byte of NAT-MAPPING, None without one; public_key: its\n"
             "bytes, None without one. None for anything else.");

static PyObject *parse_refresh(PyObject *self, PyObject *data) {
    if (!PyBytes_Check(data)) {
        PyErr_Format(PyExc_TypeError, "parse_refresh() takes bytes, not %.100s", Py_TYPE(data)->tp_name);
        return NULL;
    }
    const uint8_t *m = (const uint8_t *)PyBytes_AS_STRING(data);
    size_t n = (size_t)PyBytes_GET_SIZE(data);
    if (n < 20 + TRAILER_SIZE || n % 4 || get16(m) != REGISTER_REQUEST || get16(m + 2) != n - 20 ||
        get32(m + 4) != COOKIE)
        Py_RETURN_NONE;
    const uint8_t *trailer = m + n - TRAILER_SIZE;
    if (get16(trailer) != MI_SHA256_TYPE || get16(trailer + 2) != 32 || get16(trailer + 36) != FINGERPRINT_TYPE ||
        get16(trailer + 38) != 4 || get32(trailer + 40) != (crc32(m, n - 8) ^ FINGERPRINT_XOR))
        Py_RETURN_NONE;
    const uint8_t *peer = NULL, *key = NULL;
    size_t peer_length = 0, packed_length = 0, end = n - TRAILER_SIZE, offset = 20;
    long long lease = -1;
    int mapping = -1, candidates = 0;
    uint8_t packed[MAX_PACKED];
    while (offset < end) { /* offset < end leaves at least the trailer's 44 bytes: the TLV header is there */
        uint16_t type = get16(m + offset), length = get16(m + offset + 2);
        const uint8_t *value = m + offset + 4;
        offset += 4 + (((size_t)length + 3) & ~(size_t)3);
        if (offset > end) Py_RETURN_NONE; /* the attributes do not tile the body */
        if (type == PEER_ID_TYPE && peer == NULL && length >= 1 && length <= 128) {
            peer = value;
            peer_length = length;
        } else if (type == LEASE_TYPE && lease < 0 && length == 4) {
            lease = get32(value);
        } else if (type == NAT_MAPPING_TYPE && mapping < 0 && length == 4) {
            mapping = value[0];
        } else if (type == PUBLIC_KEY_TYPE && key == NULL && length == PUBLIC_KEY_BYTES) {
            key = value;
        } else if (type == CANDIDATE_TYPE && candidates < MAX_CANDIDATES) {
            /* XOR-MAPPED-ADDRESS layout (RFC 8489 section 14.2): the port XORed with the cookie's top half, the
               address with the cookie (IPv4) or the cookie and the transaction ID (IPv6): bytes 4.. of the header */
            uint8_t *out = packed + packed_length;
            size_t size;
            if (length == 8 && value[1] == 0x01)
                size = 4;
            else if (length == 20 && value[1] == 0x02)
                size = 16;
            else
                Py_RETURN_NONE;
            out[0] = (uint8_t)size;
            out[1] = value[2] ^ m[4];
            out[2] = value[3] ^ m[5];
            for (size_t i = 0; i < size; i++) out[3 + i] = value[4 + i] ^ m[4 + i];
            packed_length += 3 + size;
            candidates++;
        } else {
            Py_RETURN_NONE;
        }
    }
    if (peer == NULL || lease <= 0) Py_RETURN_NONE;
    PyObject *text = PyUnicode_DecodeUTF8((const char *)peer, (Py_ssize_t)peer_length, "strict");
    if (text == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) return NULL;
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    PyObject *kind = mapping < 0 ? Py_NewRef(Py_None) : PyLong_FromLong(mapping);
    if (kind == NULL) {
        Py_DECREF(text);
        return NULL;
    }
    PyObject *public_key =
        key == NULL ? Py_NewRef(Py_None) : PyBytes_FromStringAndSize((const char *)key, PUBLIC_KEY_BYTES);
    if (public_key == NULL) {
        Py_DECREF(text);
        Py_DECREF(kind);
        return NULL;
    }
    return Py_BuildValue("(Ny#kNN)", text, (const char *)packed, (Py_ssize_t)packed_length, (unsigned long)lease,
                         kind, public_key);
}

PyDoc_STRVAR(refresh_answer_doc,
             "refresh_answer(data, observed, lease, token, software) -> bytes\n\n"
             "punch.rendezvous.refresh.refresh_answer, byte for byte: the Register success to the request in `data`\n"
             "with XOR-MAPPED-ADDRESS (`observed`, one address packed as pack_addresses packs it), LEASE, the 16-byte\n"
             "REGISTRATION-TOKEN, `software` (whole attributes) and FINGERPRINT.");

static PyObject *refresh_answer(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 || !PyBytes_Check(args[0]) || !PyBytes_Check(args[1]) || !PyLong_Check(args[2]) ||
        !PyBytes_Check(args[3]) || !PyBytes_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError,
                        "refresh_answer() takes (data: bytes, observed: bytes, lease: int, token: bytes, "
                        "software: bytes)");
        return NULL;
    }
    const uint8_t *m = (const uint8_t *)PyBytes_AS_STRING(args[0]);
    const uint8_t *observed = (const uint8_t *)PyBytes_AS_STRING(args[1]);
    const uint8_t *token = (const uint8_t *)PyBytes_AS_STRING(args[3]);
    const uint8_t *software = (const uint8_t *)PyBytes_AS_STRING(args[4]);
    Py_ssize_t observed_length = PyBytes_GET_SIZE(args[1]), software_length = PyBytes_GET_SIZE(args[4]);
    int overflow;
    long long lease = PyLong_AsLongLongAndOverflow(args[2], &overflow);
    if (lease == -1 && PyErr_Occurred()) return NULL;
    if (overflow || lease < 0 || lease > 0xFFFFFFFFll) {
        PyErr_SetString(PyExc_OverflowError, "lease does not fit in LEASE (0 to 4294967295)");
        return NULL;
    }
    if (PyBytes_GET_SIZE(args[0]) < 20) {
        PyErr_Format(PyExc_ValueError, "data is %zd bytes, shorter than a STUN header", PyBytes_GET_SIZE(args[0]));
        return NULL;
    }
    size_t size = observed_length == 7 && observed[0] == 4 ? 4 : observed_length == 19 && observed[0] == 16 ? 16 : 0;
    if (size == 0) {
        PyErr_Format(PyExc_ValueError, "observed is %zd bytes, expected one packed IPv4 or IPv6 address",
                     observed_length);
        return NULL;
    }
    if (PyBytes_GET_SIZE(args[3]) != TOKEN_BYTES) {
        PyErr_Format(PyExc_ValueError, "token is %zd bytes, expected %d", PyBytes_GET_SIZE(args[3]), TOKEN_BYTES);
        return NULL;
    }
    if (!tail_ok(software_length)) return NULL;
    uint8_t out[MAX_ANSWER];
    put16(out, REGISTER_SUCCESS);
    put32(out + 4, COOKIE);
    memcpy(out + 8, m + 8, 12);
    put16(out + 20, XOR_MAPPED_ADDRESS_TYPE);
    put16(out + 22, (uint32_t)(4 + size));
    out[24] = 0;
    out[25] = size == 4 ? 0x01 : 0x02;
    out[26] = observed[1] ^ out[4]; /* the port XORed with the cookie's top half */
    out[27] = observed[2] ^ out[5];
    for (size_t i = 0; i < size; i++) out[28 + i] = observed[3 + i] ^ out[4 + i]; /* cookie, then txid */
    size_t offset = 28 + size;
    put16(out + offset, LEASE_TYPE);
    put16(out + offset + 2, 4);
    put32(out + offset + 4, (uint32_t)lease);
    put16(out + offset + 8, REGISTRATION_TOKEN_TYPE);
    put16(out + offset + 10, TOKEN_BYTES);
    memcpy(out + offset + 12, token, TOKEN_BYTES);
    offset += 12 + TOKEN_BYTES;
    memcpy(out + offset, software, (size_t)software_length);
    offset += (size_t)software_length;
    put16(out + 2, (uint32_t)(offset - 20 + 8));
    put16(out + offset, FINGERPRINT_TYPE);
    put16(out + offset + 2, 4);
    put32(out + offset + 4, crc32(out, offset) ^ FINGERPRINT_XOR);
    return PyBytes_FromStringAndSize((const char *)out, (Py_ssize_t)(offset + 8));
}

PyDoc_STRVAR(sha256_doc,
             "sha256(fast=True) -> str\n\n"
             "Choose how signed_with computes SHA-256: with the x86 SHA extensions if `fast` and the CPU has them\n"
             "(the choice at import), else in portable C. Returns the one in use: 'sha-ni' or 'portable'.");

static PyObject *sha256(PyObject *self, PyObject *args) {
    int fast = 1;
    if (!PyArg_ParseTuple(args, "|p", &fast)) return NULL;
    return PyUnicode_FromString(sha256_select(fast));
}

PyDoc_STRVAR(signed_with_doc,
             "signed_with(data, key) -> bool\n\n"
             "punch.rendezvous.signed.signed_with: whether the MESSAGE-INTEGRITY-SHA256 value in the 44-byte\n"
             "trailer of `data` (at least 64 bytes: a header and the trailer; False if shorter) is the HMAC-SHA-256\n"
             "under `key` of the message up to it, its header's length pointing past it; compared in constant time.");

static PyObject *signed_with(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyBytes_Check(args[0]) || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "signed_with() takes (data: bytes, key: bytes)");
        return NULL;
    }
    const uint8_t *m = (const uint8_t *)PyBytes_AS_STRING(args[0]);
    size_t n = (size_t)PyBytes_GET_SIZE(args[0]);
    if (n < 20 + TRAILER_SIZE || n - TRAILER_SIZE + 36 - 20 > 0xFFFF) Py_RETURN_FALSE;
    size_t at = n - TRAILER_SIZE;
    uint8_t length[2], mac[32];
    put16(length, (uint32_t)(at + 36 - 20));
    const uint8_t *parts[3] = {m, length, m + 4};
    const size_t lengths[3] = {2, 2, at - 4};
    hmac_sha256((const uint8_t *)PyBytes_AS_STRING(args[1]), (size_t)PyBytes_GET_SIZE(args[1]), parts, lengths, 3,
                mac);
    uint8_t difference = 0;
    for (int i = 0; i < 32; i++) difference |= mac[i] ^ m[at + 4 + (size_t)i];
    return PyBool_FromLong(difference == 0);
}

/* `address` ((host, port) or (host, port, flowinfo, scope_id), as Python's socket module takes them) as a
   sockaddr of `family`; 0 where it has none (the send then counts as failed, as Python's sendto would fail). */
static socklen_t to_sockaddr(PyObject *address, int family, struct sockaddr_storage *out) {
    Py_ssize_t size = PyTuple_Check(address) ? PyTuple_GET_SIZE(address) : 0;
    if (size != 2 && size != 4) return 0;
    Py_ssize_t host_length = 0;
    const char *host = PyUnicode_Check(PyTuple_GET_ITEM(address, 0))
                           ? PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(address, 0), &host_length)
                           : NULL;
    long port = PyLong_Check(PyTuple_GET_ITEM(address, 1)) ? PyLong_AsLong(PyTuple_GET_ITEM(address, 1)) : -1;
    if (host == NULL || strlen(host) != (size_t)host_length || port < 0 || port > 65535) { /* no NUL in a host */
        PyErr_Clear();
        return 0;
    }
    memset(out, 0, sizeof *out);
    if (family == AF_INET) {
        struct sockaddr_in *v4 = (struct sockaddr_in *)out;
        if (inet_pton(AF_INET, host, &v4->sin_addr) != 1) return 0;
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        return sizeof *v4;
    }
    if (family != AF_INET6) return 0;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) != 1) {
        struct addrinfo hints = {.ai_family = AF_INET6, .ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICHOST};
        struct addrinfo *found = NULL;
        if (getaddrinfo(host, NULL, &hints, &found) != 0 || found == NULL) return 0; /* e.g. fe80::1%eth0 */
        memcpy(v6, found->ai_addr, sizeof *v6);
        freeaddrinfo(found);
    }
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons((uint16_t)port);
    if (size == 4) {
        unsigned long flowinfo = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(address, 2));
        unsigned long scope = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(address, 3));
        if (PyErr_Occurred() || flowinfo > 0xFFFFFul || scope > 0xFFFFFFFFul) {
            PyErr_Clear();
            return 0;
        }
        v6->sin6_flowinfo = htonl((uint32_t)flowinfo);
        v6->sin6_scope_id = (uint32_t)scope;
    }
    return sizeof *v6;
}

PyDoc_STRVAR(send_batch_doc,
             "send_batch(fd, items) -> send_errors\n\n"
             "Send each (bytes, address) of `items` from the non-blocking UDP socket `fd`, in order, with sendmmsg\n"
             "(64 a call). A datagram the kernel refuses (a full buffer, an unreachable destination) or whose\n"
             "address the socket cannot take is lost and counted; the count is returned.");

static PyObject *send_batch(PyObject *self, PyObject *args) {
    int fd;
    PyObject *items;
    if (!PyArg_ParseTuple(args, "iO", &fd, &items)) return NULL;
    PyObject *sequence = PySequence_Fast(items, "send_batch() takes a sequence of (bytes, address)");
    if (sequence == NULL) return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(sequence);
    PyObject **item = PySequence_Fast_ITEMS(sequence);
    for (Py_ssize_t i = 0; i < count; i++) {
        if (!PyTuple_Check(item[i]) || PyTuple_GET_SIZE(item[i]) != 2 || !PyBytes_Check(PyTuple_GET_ITEM(item[i], 0))) {
            Py_DECREF(sequence);
            PyErr_Format(PyExc_TypeError, "send_batch() item %zd is not a (bytes, address) pair", i);
            return NULL;
        }
    }
    int family = AF_UNSPEC;
    socklen_t family_length = sizeof family;
    if (count && getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &family_length) != 0) {
        Py_DECREF(sequence);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    static struct sockaddr_storage destinations[BATCH];
    static struct mmsghdr msgs[BATCH];
    static struct iovec iov[BATCH];
    long send_errors = 0;
    for (Py_ssize_t first = 0; first < count; first += BATCH) {
        int n = 0;
        for (Py_ssize_t i = first; i < count && i < first + BATCH; i++) {
            socklen_t length = to_sockaddr(PyTuple_GET_ITEM(item[i], 1), family, &destinations[n]);
            if (length == 0) {
                send_errors++;
                continue;
            }
            PyObject *data = PyTuple_GET_ITEM(item[i], 0);
            iov[n] = (struct iovec){.iov_base = PyBytes_AS_STRING(data), .iov_len = (size_t)PyBytes_GET_SIZE(data)};
            msgs[n] = (struct mmsghdr){.msg_hdr = {.msg_name = &destinations[n], .msg_namelen = length,
                                                   .msg_iov = &iov[n], .msg_iovlen = 1}};
            n++;
        }
        for (int done = 0; done < n;) {
            int s = sendmmsg(fd, msgs + done, (unsigned)(n - done), 0);
            if (s < 0) {
                if (errno == EINTR) continue;
                send_errors++; /* this datagram is lost: count it, go on with the next */
                done++;
                continue;
            }
            done += s;
        }
    }
    Py_DECREF(sequence);
    return PyLong_FromLong(send_errors);
}

static PyMethodDef methods[] = {
    {"drain", drain, METH_VARARGS, drain_doc},
    {"answer", answer, METH_VARARGS, answer_doc},
    {"set_known", set_known, METH_VARARGS, set_known_doc},
    {"parse_refresh", parse_refresh, METH_O, parse_refresh_doc},
    {"refresh_answer", (PyCFunction)(void (*)(void))refresh_answer, METH_FASTCALL, refresh_answer_doc},
    {"signed_with", (PyCFunction)(void (*)(void))signed_with, METH_FASTCALL, signed_with_doc},
    {"sha256", sha256, METH_VARARGS, sha256_doc},
    {"send_batch", send_batch, METH_VARARGS, send_batch_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "punch._fastpath",
                                    "The server's optional C fast paths: Binding requests, keepalives.", -1, methods};

/* Raise it with every change of what the functions take or return: punch.stun.fastpath.API must match, so
   that a module built from an older source (a checkout updated without `pip install -e .`) is left unused. */
#define FASTPATH_API 5

PyMODINIT_FUNC PyInit__fastpath(void) {
    crc_init();
    sha256_select(1);
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "API", FASTPATH_API) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
