/*
 * skip._native: the compiled twin of the ESP engine's steady state (AEAD ESP, RFC 4303).
 *
 * Why it exists: at 1400 bytes the pure-Python engine spends three quarters of a
 * protect + unprotect round in the interpreter (header splicing, padding, replay bitmap),
 * not in AES. This module does the same work in one call per packet, into one allocation,
 * with one long-lived OpenSSL cipher context per direction.
 *
 * What it is not: a second engine. skip/ipsec/esp.py stays the reference and handles every
 * case this module declines. AeadEsp.protect / .unprotect return None for anything but the
 * common case (option-free IPv4, a whole inner datagram, a good tag, good padding, a new
 * sequence number, no TFC dummy, no ECN mark to merge) *before changing any state*, and the
 * Python path then runs on the same packet and produces the exact result or error. So
 * errors, reason codes and counters have one implementation.
 *
 * ReplayWindow is a drop-in for skip.crypto.replay.ReplayWindow (same methods, same
 * reason codes and messages); the SA uses it on both of its paths when this module is built,
 * so the two paths share one window.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <limits.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <openssl/evp.h>

#define ESP_HEAD 8   /* SPI || sequence number (low half) */
#define IV_SIZE 8    /* RFC 4106 / 7634 explicit IV: the sequence number */
#define TAG_SIZE 16
#define SALT_SIZE 4
#define MIN_BODY (IV_SIZE + 2 + TAG_SIZE) /* esp.py's _min_body for these ciphers */
#define PROTO_ESP 50
#define PROTO_NONE 59
#define MAX_WINDOW 65536

static PyObject *ReplayError; /* skip.errors.ReplayError */

/* ------------------------------------------------------------------------------------------
 * byte helpers
 */

static inline uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void put16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static inline void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static inline void put64(unsigned char *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

/* The one's-complement sum of a 20-byte header, folded to 16 bits. */
static unsigned ipv4_fold(const unsigned char *h)
{
    uint32_t sum = 0;
    for (int i = 0; i < 20; i += 2)
        sum += (uint32_t)h[i] << 8 | h[i + 1];
    while (sum >> 16)
        sum = (sum & 0xFFFF) + (sum >> 16);
    return sum;
}

/* Fill in the checksum of the option-free IPv4 header at h (finish_ipv4_header's
 * convention: the complement of the folded sum). */
static void ipv4_finish(unsigned char *h)
{
    h[10] = h[11] = 0;
    put16(h + 10, ~ipv4_fold(h) & 0xFFFF);
}

/* A whole, unfragmented, option-free IPv4 datagram (plain_ipv4 in skip/wire/ip.py). */
static int plain_ipv4(const unsigned char *p, Py_ssize_t n, int verify)
{
    if (n < 20 || p[0] != 0x45)
        return 0;
    if ((Py_ssize_t)(p[2] << 8 | p[3]) != n || ((p[6] << 8 | p[7]) & 0x3FFF))
        return 0;
    if (verify) {
        unsigned s = ipv4_fold(p);
        if (s != 0xFFFF && s != 0)
            return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------------------------------
 * ReplayWindow: RFC 4303 section 3.4.3 / Appendix A, the bitmap as machine words
 * (bit i of the multi-word number = sequence number top - i), shifted as the top advances.
 */

typedef struct {
    PyObject_HEAD
    uint64_t top;
    uint64_t limit;
    uint32_t size;
    uint32_t nwords;
    int esn;
    uint64_t *bits; /* nwords words, word 0 holds bits 0..63 */
} Window;

static PyTypeObject WindowType;

static int replay_error(const char *reason, PyObject *message)
{
    if (message == NULL)
        return -1;
    PyObject *err = PyObject_CallFunction(ReplayError, "sO", reason, message);
    Py_DECREF(message);
    if (err != NULL) {
        PyErr_SetObject(ReplayError, err);
        Py_DECREF(err);
    }
    return -1;
}

static inline int window_bit(const Window *w, uint64_t behind)
{
    return (int)(w->bits[behind >> 6] >> (behind & 63) & 1);
}

/* ReplayWindow.infer: 0 and *seq set, or -1 with a ReplayError (raise=1) / silently. */
static int window_infer(const Window *w, uint32_t low, uint64_t *seq, int raise)
{
    if (!w->esn) {
        *seq = low;
        return 0;
    }
    uint64_t size = w->size;
    uint32_t top_low = (uint32_t)w->top;
    int64_t top_high = (int64_t)(w->top >> 32), high;
    if ((uint64_t)top_low >= size - 1) /* Case A */
        high = (uint64_t)low >= top_low - size + 1 ? top_high : top_high + 1;
    else /* Case B */
        high = low >= (uint32_t)(top_low - size + 1) ? top_high - 1 : top_high;
    if (high < 0) {
        if (raise)
            replay_error("replay_too_old", PyUnicode_FromFormat(
                "low half %lu falls before the first sequence number", (unsigned long)low));
        return -1;
    }
    if (high > 0xFFFFFFFFLL) {
        if (raise)
            replay_error("seq_exhausted",
                         PyUnicode_FromString("the 64-bit sequence space is used up"));
        return -1;
    }
    *seq = (uint64_t)high << 32 | low;
    return 0;
}

/* For s <= top: how far behind the top s is, if it is inside the window and not yet seen;
 * -1 (with a ReplayError when raise) otherwise. check and accept share it. */
static int64_t window_behind(const Window *w, uint64_t s, int raise)
{
    uint64_t top = w->top;
    if (s == 0) {
        if (raise)
            replay_error("seq_zero", PyUnicode_FromString("sequence number 0 is never valid"));
        return -1;
    }
    uint64_t behind = top - s;
    if (behind >= w->size) {
        if (raise)
            replay_error("replay_too_old", PyUnicode_FromFormat(
                "sequence number %llu is %llu behind the top %llu", (unsigned long long)s,
                (unsigned long long)behind, (unsigned long long)top));
        return -1;
    }
    if (window_bit(w, behind)) {
        if (raise)
            replay_error("replay", PyUnicode_FromFormat(
                "sequence number %llu was already received", (unsigned long long)s));
        return -1;
    }
    return (int64_t)behind;
}

static int window_check(const Window *w, uint32_t low, uint64_t *seq, int raise)
{
    if (window_infer(w, low, seq, raise) < 0)
        return -1;
    if (*seq > w->top)
        return 0;
    return window_behind(w, *seq, raise) < 0 ? -1 : 0;
}

/* Shift the bitmap left by `advance` bits and set bit 0. */
static void window_advance(Window *w, uint64_t advance)
{
    uint32_t n = w->nwords;
    if (advance >= w->size) {
        memset(w->bits, 0, n * sizeof(uint64_t));
    } else {
        uint32_t words = (uint32_t)(advance >> 6), shift = (uint32_t)(advance & 63);
        for (int64_t i = (int64_t)n - 1; i >= 0; i--) {
            int64_t src = i - words;
            uint64_t v = 0;
            if (src >= 0) {
                v = w->bits[src] << shift;
                if (shift && src > 0)
                    v |= w->bits[src - 1] >> (64 - shift);
            }
            w->bits[i] = v;
        }
    }
    w->bits[0] |= 1;
}

static int window_accept(Window *w, uint64_t s, int raise)
{
    uint64_t top = w->top;
    if (s > top) {
        if (s > w->limit) {
            if (raise)
                replay_error("seq_exhausted", PyUnicode_FromFormat(
                    "%llu exceeds the sequence space", (unsigned long long)s));
            return -1;
        }
        window_advance(w, s - top);
        w->top = s;
        return 0;
    }
    int64_t behind = window_behind(w, s, raise);
    if (behind < 0)
        return -1;
    w->bits[behind >> 6] |= (uint64_t)1 << (behind & 63);
    return 0;
}

static PyObject *Window_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"size", "esn", NULL};
    long size = 64;
    int esn = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|lp", kwlist, &size, &esn))
        return NULL;
    if (size < 1 || size > MAX_WINDOW) {
        PyErr_Format(PyExc_ValueError, "window size %ld is not 1..%d (the Python factory "
                     "checks this with reason bad_sa)", size, MAX_WINDOW);
        return NULL;
    }
    Window *w = (Window *)type->tp_alloc(type, 0);
    if (w == NULL)
        return NULL;
    w->size = (uint32_t)size;
    w->nwords = (uint32_t)((size + 63) / 64);
    w->esn = esn;
    w->limit = esn ? UINT64_MAX : 0xFFFFFFFFULL;
    w->top = 0;
    w->bits = PyMem_Calloc(w->nwords, sizeof(uint64_t));
    if (w->bits == NULL) {
        Py_DECREF(w);
        return PyErr_NoMemory();
    }
    return (PyObject *)w;
}

static void Window_dealloc(Window *w)
{
    PyMem_Free(w->bits);
    Py_TYPE(w)->tp_free((PyObject *)w);
}

static int low_half(PyObject *arg, uint32_t *low)
{
    unsigned long long v = PyLong_AsUnsignedLongLong(arg);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    if (v > 0xFFFFFFFFULL) {
        PyErr_SetString(PyExc_OverflowError, "the low half of a sequence number is 32 bits");
        return -1;
    }
    *low = (uint32_t)v;
    return 0;
}

static PyObject *Window_infer(Window *w, PyObject *arg)
{
    uint32_t low;
    uint64_t seq;
    if (low_half(arg, &low) < 0 || window_infer(w, low, &seq, 1) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(seq);
}

static PyObject *Window_check(Window *w, PyObject *arg)
{
    uint32_t low;
    uint64_t seq;
    if (low_half(arg, &low) < 0 || window_check(w, low, &seq, 1) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(seq);
}

static PyObject *Window_accept(Window *w, PyObject *arg)
{
    /* a negative number is seq_zero's case in the reference (seq <= 0) */
    long long signed_value = PyLong_AsLongLong(arg);
    if (signed_value == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        unsigned long long v = PyLong_AsUnsignedLongLong(arg);
        if (v == (unsigned long long)-1 && PyErr_Occurred())
            return NULL;
        if (window_accept(w, v, 1) < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    if (signed_value <= 0) {
        replay_error("seq_zero", PyUnicode_FromString("sequence number 0 is never valid"));
        return NULL;
    }
    if (window_accept(w, (uint64_t)signed_value, 1) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Window_get_top(Window *w, void *closure)
{
    return PyLong_FromUnsignedLongLong(w->top);
}

static PyObject *Window_get_size(Window *w, void *closure)
{
    return PyLong_FromUnsignedLong(w->size);
}

static PyObject *Window_get_esn(Window *w, void *closure)
{
    return PyBool_FromLong(w->esn);
}

static PyMethodDef Window_methods[] = {
    {"infer", (PyCFunction)Window_infer, METH_O,
     "The full sequence number a received low half stands for (RFC 4303 A2.1)."},
    {"check", (PyCFunction)Window_check, METH_O,
     "The full sequence number if a packet carrying this low half may be new; changes "
     "nothing."},
    {"accept", (PyCFunction)Window_accept, METH_O,
     "Record a number check() returned, once its packet's ICV verified."},
    {NULL}};

static PyGetSetDef Window_getset[] = {
    {"top", (getter)Window_get_top, NULL, "the highest sequence number accepted so far", NULL},
    {"size", (getter)Window_get_size, NULL, "the window W in packets", NULL},
    {"esn", (getter)Window_get_esn, NULL, "64-bit extended sequence numbers", NULL},
    {NULL}};

static PyTypeObject WindowType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "skip._native.ReplayWindow",
    .tp_doc = "The receiver's anti-replay state of one SA (compiled twin of "
              "skip.crypto.replay.ReplayWindow).",
    .tp_basicsize = sizeof(Window),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = Window_new,
    .tp_dealloc = (destructor)Window_dealloc,
    .tp_methods = Window_methods,
    .tp_getset = Window_getset,
};

/* ------------------------------------------------------------------------------------------
 * AeadEsp: one SA's per-packet work for AES-GCM-16 or ChaCha20-Poly1305 ESP with sequence
 * numbers, transport or tunnel mode.
 */

typedef struct {
    PyObject_HEAD
    EVP_CIPHER_CTX *seal;
    EVP_CIPHER_CTX *open;
    unsigned char nonce_salt[SALT_SIZE];
    uint32_t spi;
    int esn;
    int tunnel;          /* 0: transport (IPv4 only here); 4 or 6: the outer IP version */
    int ttl;
    int df;              /* -1: copy DF from an inner IPv4 header; else the fixed flags word */
    unsigned char src[16], dst[16];
    Window *window;      /* the SA's replay window (a strong reference) */
} Esp;

static PyObject *Esp_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"cipher", "key", "salt", "spi", "esn", "window", "outer", NULL};
    const char *cipher_name;
    Py_buffer key, salt;
    unsigned long spi;
    int esn;
    PyObject *window, *outer = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "sy*y*kpO!|O", kwlist, &cipher_name, &key,
                                     &salt, &spi, &esn, &WindowType, &window, &outer))
        return NULL;
    Esp *self = NULL;
    const EVP_CIPHER *cipher = NULL;
    if (strcmp(cipher_name, "aes-gcm-16") == 0) {
        cipher = key.len == 16 ? EVP_aes_128_gcm()
                 : key.len == 24 ? EVP_aes_192_gcm()
                 : key.len == 32 ? EVP_aes_256_gcm() : NULL;
    } else if (strcmp(cipher_name, "chacha20-poly1305") == 0) {
        cipher = key.len == 32 ? EVP_chacha20_poly1305() : NULL;
    } else {
        PyErr_Format(PyExc_ValueError, "no compiled ESP for %s", cipher_name);
        goto done;
    }
    if (cipher == NULL || salt.len != SALT_SIZE || spi < 1 || spi > 0xFFFFFFFFUL) {
        PyErr_SetString(PyExc_ValueError, "bad key, salt or SPI for the compiled ESP");
        goto done;
    }
    if (((Window *)window)->esn != esn) {
        PyErr_SetString(PyExc_ValueError, "the replay window's ESN setting differs");
        goto done;
    }
    self = (Esp *)type->tp_alloc(type, 0);
    if (self == NULL)
        goto done;
    self->spi = (uint32_t)spi;
    self->esn = esn;
    memcpy(self->nonce_salt, salt.buf, SALT_SIZE);
    Py_INCREF(window);
    self->window = (Window *)window;
    if (outer != Py_None) {
        Py_buffer s, d;
        int ttl, df;
        if (!PyArg_ParseTuple(outer, "y*y*ii", &s, &d, &ttl, &df)) {
            Py_CLEAR(self);
            goto done;
        }
        int ok = s.len == d.len && (s.len == 4 || s.len == 16) && ttl >= 1 && ttl <= 255;
        if (ok) {
            self->tunnel = s.len == 4 ? 4 : 6;
            memcpy(self->src, s.buf, s.len);
            memcpy(self->dst, d.buf, d.len);
            self->ttl = ttl;
            self->df = df;
        }
        PyBuffer_Release(&s);
        PyBuffer_Release(&d);
        if (!ok) {
            PyErr_SetString(PyExc_ValueError, "outer must be (src, dst, ttl, df) of one IP "
                            "version");
            Py_CLEAR(self);
            goto done;
        }
    }
    self->seal = EVP_CIPHER_CTX_new();
    self->open = EVP_CIPHER_CTX_new();
    if (self->seal == NULL || self->open == NULL
        || EVP_EncryptInit_ex(self->seal, cipher, NULL, key.buf, NULL) != 1
        || EVP_DecryptInit_ex(self->open, cipher, NULL, key.buf, NULL) != 1) {
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL refused the AEAD key");
        Py_CLEAR(self);
    }
done:
    PyBuffer_Release(&key);
    PyBuffer_Release(&salt);
    return (PyObject *)self;
}

static void Esp_dealloc(Esp *self)
{
    EVP_CIPHER_CTX_free(self->seal);
    EVP_CIPHER_CTX_free(self->open);
    Py_XDECREF(self->window);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The AAD (SPI || [ESN high] || low) into aad; returns its length. */
static int esp_aad(const Esp *self, uint64_t seq, unsigned char *aad)
{
    put32(aad, self->spi);
    if (self->esn) {
        put32(aad + 4, (uint32_t)(seq >> 32));
        put32(aad + 8, (uint32_t)seq);
        return 12;
    }
    put32(aad + 4, (uint32_t)seq);
    return 8;
}

/* What protecting p (n bytes) with a shim of shim_len bytes comes to: the wire size, its IP
 * header's size and the ESP next header into *head_len / *next_header; 0 when it is not the
 * common case (options, fragments of a header, a wrong length, over 64 KB: the Python path's
 * check_inner / bad_length). Changes nothing, so a caller may ask before it spends a number. */
static Py_ssize_t esp_size(const Esp *self, const unsigned char *p, Py_ssize_t n,
                           Py_ssize_t shim_len, Py_ssize_t *head_len, int *next_header)
{
    Py_ssize_t body_len;
    if (self->tunnel) {
        if (n >= 20 && p[0] == 0x45 && (Py_ssize_t)(p[2] << 8 | p[3]) == n)
            *next_header = 4;
        else if (n >= 40 && p[0] >> 4 == 6 && (Py_ssize_t)(p[4] << 8 | p[5]) + 40 == n)
            *next_header = 41;
        else
            return 0;
        body_len = n;
        *head_len = self->tunnel == 4 ? 20 : 40;
    } else {
        if (!plain_ipv4(p, n, 0))
            return 0;
        *next_header = p[9];
        body_len = n - 20;
        *head_len = 20;
    }
    Py_ssize_t pad = (4 - (body_len + 2) % 4) % 4;
    Py_ssize_t total = *head_len + shim_len + ESP_HEAD + IV_SIZE + body_len + pad + 2 + TAG_SIZE;
    if ((self->tunnel == 6 ? total - 40 : total) > 0xFFFF)
        return 0;
    return total;
}

/* Protect p into o (total bytes, as esp_size said, with its head_len and next_header);
 * -1 when OpenSSL failed (no Python error set). */
static int esp_seal(Esp *self, const unsigned char *p, Py_ssize_t n, uint64_t seq,
                    const char *shim, Py_ssize_t shim_len, int protocol, unsigned ident,
                    unsigned char *o, Py_ssize_t total, Py_ssize_t head_len, int next_header)
{
    const unsigned char *body = self->tunnel ? p : p + 20;
    Py_ssize_t body_len = self->tunnel ? n : n - 20;
    Py_ssize_t pad = (4 - (body_len + 2) % 4) % 4;
    Py_ssize_t sealed = body_len + pad + 2;
    if (self->tunnel == 4) {
        unsigned tc = 0, flags = 0;
        if (p[0] >> 4 == 4) {
            tc = p[1];
            flags = (unsigned)p[6] << 8 & 0x4000;
        } else {
            tc = (p[0] & 0x0F) << 4 | p[1] >> 4;
        }
        if (self->df >= 0)
            flags = (unsigned)self->df;
        o[0] = 0x45;
        o[1] = (unsigned char)tc;
        put16(o + 2, (unsigned)total);
        put16(o + 4, ident);
        put16(o + 6, flags);
        o[8] = (unsigned char)self->ttl;
        o[9] = (unsigned char)protocol;
        memcpy(o + 12, self->src, 4);
        memcpy(o + 16, self->dst, 4);
        ipv4_finish(o);
    } else if (self->tunnel == 6) {
        unsigned tc = p[0] >> 4 == 4 ? p[1] : ((p[0] & 0x0F) << 4 | p[1] >> 4);
        put32(o, 0x60000000u | tc << 20);
        put16(o + 4, (unsigned)(total - 40));
        o[6] = (unsigned char)protocol;
        o[7] = (unsigned char)self->ttl;
        memcpy(o + 8, self->src, 16);
        memcpy(o + 24, self->dst, 16);
    } else {
        memcpy(o, p, 20);
        put16(o + 2, (unsigned)total);
        o[9] = (unsigned char)protocol;
        ipv4_finish(o);
    }
    unsigned char *e = o + head_len;
    memcpy(e, shim, shim_len);
    e += shim_len;
    put32(e, self->spi);
    put32(e + 4, (uint32_t)seq);
    put64(e + 8, seq); /* the IV */
    unsigned char *ct = e + ESP_HEAD + IV_SIZE;
    memcpy(ct, body, body_len);
    for (Py_ssize_t i = 0; i < pad; i++)
        ct[body_len + i] = (unsigned char)(i + 1);
    ct[body_len + pad] = (unsigned char)pad;
    ct[body_len + pad + 1] = (unsigned char)next_header;

    unsigned char nonce[12], aad[12];
    memcpy(nonce, self->nonce_salt, SALT_SIZE);
    memcpy(nonce + SALT_SIZE, e + 8, IV_SIZE);
    int aad_len = esp_aad(self, seq, aad), len;
    EVP_CIPHER_CTX *c = self->seal;
    if (EVP_EncryptInit_ex(c, NULL, NULL, NULL, nonce) != 1
        || EVP_EncryptUpdate(c, NULL, &len, aad, aad_len) != 1
        || EVP_EncryptUpdate(c, ct, &len, ct, (int)sealed) != 1
        || EVP_EncryptFinal_ex(c, ct + len, &len) != 1
        || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, TAG_SIZE, ct + sealed) != 1)
        return -1;
    return 0;
}

/*
 * protect(packet, seq, shim, protocol, ident) -> bytes | None
 *
 * ``seq``: the sequence number the SA's counter handed out; ``shim``: bytes between the IP
 * header and ESP (SKIP's header, or b""), ``protocol``: the IP protocol in front of it
 * (57 with a shim, else 50); ``ident``: the outer IPv4 Identification (tunnel over IPv4).
 * None: not the common case, the Python path protects this packet with the same seq.
 */
static PyObject *Esp_protect(Esp *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "protect(packet, seq, shim, protocol, ident)");
        return NULL;
    }
    if (!PyBytes_CheckExact(args[0]) || !PyBytes_CheckExact(args[2]))
        Py_RETURN_NONE; /* the Python path takes any bytes-like object */
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]);
    const char *shim = PyBytes_AS_STRING(args[2]);
    Py_ssize_t shim_len = PyBytes_GET_SIZE(args[2]);
    uint64_t seq = PyLong_AsUnsignedLongLong(args[1]);
    if (seq == (uint64_t)-1 && PyErr_Occurred())
        return NULL;
    long protocol = PyLong_AsLong(args[3]);
    if (protocol == -1 && PyErr_Occurred())
        return NULL;
    long ident = PyLong_AsLong(args[4]);
    if (ident == -1 && PyErr_Occurred())
        return NULL;
    if (protocol < 0 || protocol > 255 || ident < 0 || ident > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "protocol is 0..255, ident 0..65535");
        return NULL;
    }
    Py_ssize_t head_len;
    int next_header;
    Py_ssize_t total = esp_size(self, p, n, shim_len, &head_len, &next_header);
    if (total == 0)
        Py_RETURN_NONE;
    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL)
        return NULL;
    if (esp_seal(self, p, n, seq, shim, shim_len, (int)protocol, (unsigned)ident,
                 (unsigned char *)PyBytes_AS_STRING(out), total, head_len, next_header) < 0) {
        Py_DECREF(out);
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL failed to seal");
        return NULL;
    }
    return out;
}

/* Open p (n bytes, a SKIP shim of shim_len bytes before ESP) into o (room for n bytes): 1 and
 * the datagram's length in *len and its sequence number in *seq, or 0 when it is anything
 * but a good common-case packet. The replay window is checked, not advanced: the caller
 * accepts *seq once it keeps the datagram, so a caller may still decline after this. */
static int esp_open(Esp *self, const unsigned char *p, Py_ssize_t n, Py_ssize_t shim_len,
                    unsigned char *o, Py_ssize_t *len_out, uint64_t *seq)
{
    if (!plain_ipv4(p, n, 1) || shim_len < 0 || shim_len > n || (!shim_len && p[9] != PROTO_ESP))
        return 0; /* shim_len bounded before any arithmetic on it */
    Py_ssize_t offset = 20 + shim_len, body = offset + ESP_HEAD;
    if (n - body < MIN_BODY)
        return 0;
    if (get32(p + offset) != self->spi)
        return 0;
    if (window_check(self->window, get32(p + offset + 4), seq, 0) < 0)
        return 0;

    const unsigned char *iv = p + body, *ct = iv + IV_SIZE;
    Py_ssize_t ct_len = n - body - IV_SIZE - TAG_SIZE;
    Py_ssize_t keep = self->tunnel ? 0 : 20; /* bytes of header in front of the payload */
    unsigned char nonce[12], aad[12];
    memcpy(nonce, self->nonce_salt, SALT_SIZE);
    memcpy(nonce + SALT_SIZE, iv, IV_SIZE);
    int aad_len = esp_aad(self, *seq, aad), len;
    EVP_CIPHER_CTX *c = self->open;
    if (EVP_DecryptInit_ex(c, NULL, NULL, NULL, nonce) != 1
        || EVP_DecryptUpdate(c, NULL, &len, aad, aad_len) != 1
        || EVP_DecryptUpdate(c, o + keep, &len, ct, (int)ct_len) != 1
        || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, TAG_SIZE,
                               (void *)(ct + ct_len)) != 1
        || EVP_DecryptFinal_ex(c, o + keep + len, &len) != 1)
        return 0; /* bad tag: the Python path counts and raises bad_icv */

    /* the trailer (split_trailer with the RFC 4303 pattern check) */
    const unsigned char *pt = o + keep;
    if (ct_len < 2)
        return 0;
    unsigned pad = pt[ct_len - 2], next_header = pt[ct_len - 1];
    Py_ssize_t end = ct_len - 2 - pad;
    if (end < 0 || next_header == PROTO_NONE)
        return 0;
    for (unsigned i = 0; i < pad; i++)
        if (pt[end + i] != i + 1)
            return 0;

    if (self->tunnel) {
        int ok;
        unsigned inner_tc;
        if (next_header == 4 || next_header == 0) {
            ok = end >= 20 && pt[0] == 0x45 && (Py_ssize_t)(pt[2] << 8 | pt[3]) == end;
            inner_tc = ok ? pt[1] : 0;
        } else if (next_header == 41) {
            ok = end >= 40 && pt[0] >> 4 == 6 && (Py_ssize_t)(pt[4] << 8 | pt[5]) + 40 == end;
            inner_tc = ok ? ((pt[0] & 0x0F) << 4 | pt[1] >> 4) : 0;
        } else {
            ok = 0;
            inner_tc = 0;
        }
        /* outer CE over an ECN-capable inner header: decapsulate marks it, in Python */
        if (!ok || ((p[1] & 3) == 3 && (inner_tc & 3) != 0 && (inner_tc & 3) != 3))
            return 0;
    } else {
        memcpy(o, p, 20);
        put16(o + 2, (unsigned)(20 + end));
        o[9] = (unsigned char)next_header;
        ipv4_finish(o);
    }
    *len_out = keep + end;
    return 1;
}

/*
 * unprotect(packet, shim_len) -> bytes | None
 *
 * The datagram after ESP removal (transport: the IPv4 header restored; tunnel: the inner
 * datagram), with the replay window advanced; None with nothing changed when the packet is
 * anything but a good common-case packet (the Python path then says what it is).
 */
static PyObject *Esp_unprotect(Esp *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "unprotect(packet, shim_len)");
        return NULL;
    }
    if (!PyBytes_CheckExact(args[0]))
        Py_RETURN_NONE;
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]);
    Py_ssize_t shim_len = PyLong_AsSsize_t(args[1]);
    if (shim_len == -1 && PyErr_Occurred())
        return NULL;
    PyObject *out = PyBytes_FromStringAndSize(NULL, n);
    if (out == NULL)
        return NULL;
    Py_ssize_t len;
    uint64_t seq;
    if (!esp_open(self, p, n, shim_len, (unsigned char *)PyBytes_AS_STRING(out), &len, &seq)
        || window_accept(self->window, seq, 0) < 0) {
        Py_DECREF(out);
        Py_RETURN_NONE;
    }
    if (_PyBytes_Resize(&out, len) < 0)
        return NULL;
    return out;
}

static PyMethodDef Esp_methods[] = {
    {"protect", (PyCFunction)(void (*)(void))Esp_protect, METH_FASTCALL,
     "protect(packet, seq, shim, protocol, ident) -> bytes, or None: the Python path's"},
    {"unprotect", (PyCFunction)(void (*)(void))Esp_unprotect, METH_FASTCALL,
     "unprotect(packet, shim_len) -> bytes, or None (nothing changed): the Python path's"},
    {NULL}};

static PyTypeObject EspType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "skip._native.AeadEsp",
    .tp_doc = "The common case of one AEAD ESP SA, compiled (see skip/ipsec/esp.py).",
    .tp_basicsize = sizeof(Esp),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = Esp_new,
    .tp_dealloc = (destructor)Esp_dealloc,
    .tp_methods = Esp_methods,
};

/* ------------------------------------------------------------------------------------------
 * pump_out / pump_in: skipd's steady-state loops (skip/daemon/runtime.py's _pump_tun and
 * _pump_wire over the routes of skip/daemon/fastpath.py), TUN read to raw-socket send and
 * raw-socket read to TUN write with no interpreter in between.
 *
 * They keep no state of their own beyond one call: they read the same Python objects the
 * Python loops use (the route, the pair's current Kp, the SA's counters and sequence
 * counter, the peer's statistics), and what a run of packets through one route and one Kp
 * adds to them (counts, the last sequence number and Identification, the time) is written
 * back once, when the run ends: at the next route or Kp, and before the call returns. No
 * Python code runs in between, so nothing can see the difference. And they decline a
 * packet (hand it back, nothing changed) at the first thing that is not the steady state,
 * for the Python loop to take it the way it takes every packet without them.
 */

static PyObject *s_lane, *s_expires, *s_used, *s_bytes_out, *s_packets_out, *s_max_bytes,
    *s_state, *s_sent, *s_tx_ok, *s_next_id, *s_last, *s_limit, *s_advance, *s_stats,
    *s_last_packet, *s_protected_out, *s_accept_from, *s_accept_until, *s_ephemeral,
    *s_confirmed, *s_nomadic, *s_received, *s_rx_ok, *s_peer, *s_version, *s_packets_in,
    *s_bytes_in, *s_protected_in;
/* End a run (out_end, in_end) while a Python error is pending, and keep that error: what
 * the run did before it stays counted. */
#define END_KEEPING_ERROR(end, run, traffic, now_obj)                                       \
    do {                                                                                    \
        PyObject *type_, *value_, *trace_;                                                  \
        PyErr_Fetch(&type_, &value_, &trace_);                                              \
        end(run, traffic, now_obj);                                                         \
        PyErr_Clear();                                                                      \
        PyErr_Restore(type_, value_, trace_);                                               \
    } while (0)

static unsigned char pump_read[65536], pump_wire[65536 + 256], pump_open[65536];

static int add_to(PyObject *obj, PyObject *name, long long delta)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL)
        return -1;
    long long x = PyLong_AsLongLong(v);
    Py_DECREF(v);
    if (x == -1 && PyErr_Occurred())
        return -1;
    PyObject *sum = PyLong_FromLongLong(x + delta);
    if (sum == NULL)
        return -1;
    int r = PyObject_SetAttr(obj, name, sum);
    Py_DECREF(sum);
    return r;
}

static int add_to_item(PyObject *dict, PyObject *key, long long delta)
{
    PyObject *count = PyDict_GetItemWithError(dict, key); /* borrowed */
    long long so_far = 0;
    if (count == NULL && PyErr_Occurred())
        return -1;
    if (count != NULL && (so_far = PyLong_AsLongLong(count)) == -1 && PyErr_Occurred())
        return -1;
    PyObject *more = PyLong_FromLongLong(so_far + delta);
    if (more == NULL)
        return -1;
    int r = PyDict_SetItem(dict, key, more);
    Py_DECREF(more);
    return r;
}

/* An attribute as a C number: -1 with a Python error, else 0 (huge values saturate). */
static int ll_attr(PyObject *obj, PyObject *name, long long *out)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL)
        return -1;
    int overflow;
    *out = PyLong_AsLongLongAndOverflow(v, &overflow);
    Py_DECREF(v);
    if (*out == -1 && PyErr_Occurred())
        return -1;
    if (overflow)
        *out = overflow > 0 ? LLONG_MAX : LLONG_MIN;
    return 0;
}

static int double_attr(PyObject *obj, PyObject *name, double *out)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL)
        return -1;
    *out = PyFloat_AsDouble(v);
    Py_DECREF(v);
    return *out == -1.0 && PyErr_Occurred() ? -1 : 0;
}

static int is_routed_v6(int protocol)
{
    /* fastpath.py's _IPV6_ROUTED: no extension header (the general path walks those) */
    return protocol == 6 || protocol == 17 || protocol == 58 || protocol == 4 || protocol == 41
           || protocol == 59;
}

/* The run pump_out is in: one route, its pair's current Kp, what the run added. */
typedef struct {
    unsigned char key[16];
    Py_ssize_t key_len;  /* 0: no run */
    PyObject *route, *used, *counter, *outer, *state, *stats, *endpoint; /* strong */
    Esp *core;
    const char *shim;
    Py_ssize_t shim_len;
    int shim_protocol;
    long long bytes_out, max_bytes; /* the SA's bytes_out, with the run's */
    unsigned long long last, limit; /* sequence numbers */
    long next_id;
    Py_ssize_t path_limit;
    unsigned char dst[4];
    long long sealed, sealed_bytes, sent, sent_bytes; /* the run's */
    PyObject *kp_lane;   /* strong: keeps core and shim alive */
    PyObject *tx;        /* strong: retired if the run cannot be written back */
} OutRun;

/* Write the run back into the Python objects and end it; -1 on a Python error. */
static int out_end(OutRun *r, PyObject *traffic, PyObject *now_obj)
{
    int bad = 0;
    if (r->key_len && r->sealed) {
        PyObject *last = PyLong_FromUnsignedLongLong(r->last);
        PyObject *done = last == NULL ? NULL : PyObject_CallMethodOneArg(r->counter, s_advance,
                                                                         last);
        Py_XDECREF(last);
        bad = done == NULL;
        Py_XDECREF(done);
        if (!bad && r->outer != Py_None && r->core->tunnel == 4) {
            PyObject *id = PyLong_FromLong(r->next_id);
            bad = id == NULL || PyObject_SetAttr(r->outer, s_next_id, id) < 0;
            Py_XDECREF(id);
        }
        bad = bad || add_to(r->used, s_packets_out, r->sealed) < 0
              || add_to(r->used, s_bytes_out, r->sealed_bytes) < 0
              || PyObject_SetAttr(r->state, s_sent, now_obj) < 0
              || add_to(r->endpoint, s_tx_ok, r->sealed) < 0;
        if (bad) {
            /* the counter may not know what was sealed: never seal under this Kp again */
            PyObject *type, *value, *trace;
            PyErr_Fetch(&type, &value, &trace);
            PyObject *gone = PyFloat_FromDouble(-1.0);
            if (gone == NULL || PyObject_SetAttr(r->tx, s_expires, gone) < 0)
                PyErr_Clear();
            Py_XDECREF(gone);
            PyErr_Restore(type, value, trace);
        }
    }
    if (!bad && r->key_len && r->sent)
        bad = add_to(r->stats, s_packets_out, r->sent) < 0
              || add_to(r->stats, s_bytes_out, r->sent_bytes) < 0
              || PyObject_SetAttr(r->stats, s_last_packet, now_obj) < 0
              || add_to_item(traffic, s_protected_out, r->sent) < 0;
    Py_CLEAR(r->route);
    Py_CLEAR(r->used);
    Py_CLEAR(r->counter);
    Py_CLEAR(r->outer);
    Py_CLEAR(r->state);
    Py_CLEAR(r->stats);
    Py_CLEAR(r->endpoint);
    Py_CLEAR(r->kp_lane);
    Py_CLEAR(r->tx);
    r->key_len = 0;
    r->sealed = r->sealed_bytes = r->sent = r->sent_bytes = 0;
    return bad ? -1 : 0;
}

/* Start a run for the route at key (the run is ended): 1 started, 0 decline, -1 error. */
static int out_begin(OutRun *r, const unsigned char *key, Py_ssize_t key_len, PyObject *sends,
                     PyObject *limits, double now)
{
    int result = -1;
    /* route and tx are held strongly: the attribute reads below may run Python code that
     * changes the dicts they came from */
    PyObject *k = NULL, *lane = NULL, *kp_lane = NULL, *route = NULL, *tx = NULL;
    if ((k = PyBytes_FromStringAndSize((const char *)key, key_len)) == NULL)
        goto out;
    route = PyDict_GetItemWithError(sends, k);
    if (route == NULL) {
        result = PyErr_Occurred() ? -1 : 0;
        goto out;
    }
    Py_INCREF(route);
    if ((lane = PyObject_GetAttr(route, s_lane)) == NULL)
        goto out;
    if (lane == Py_None) {
        result = 0;
        goto out;
    }
    if (!PyTuple_Check(lane) || PyTuple_GET_SIZE(lane) != 3
        || !PyDict_Check(PyTuple_GET_ITEM(lane, 0))) {
        PyErr_SetString(PyExc_TypeError, "a route's lane is (txs: dict, pair, endpoint)");
        goto out;
    }
    tx = PyDict_GetItemWithError(PyTuple_GET_ITEM(lane, 0), PyTuple_GET_ITEM(lane, 1));
    if (tx == NULL) {
        result = PyErr_Occurred() ? -1 : 0;
        goto out;
    }
    Py_INCREF(tx);
    /* the steady sender's test: now < tx.expires and tx.used.bytes_out < tx.max_bytes */
    double expires;
    if (double_attr(tx, s_expires, &expires) < 0)
        goto out;
    if (!(now < expires)) {
        result = 0;
        goto out;
    }
    if ((kp_lane = PyObject_GetAttr(tx, s_lane)) == NULL)
        goto out;
    if (kp_lane == Py_None) {
        result = 0;
        goto out;
    }
    if (!PyTuple_Check(kp_lane) || PyTuple_GET_SIZE(kp_lane) != 5
        || !PyObject_TypeCheck(PyTuple_GET_ITEM(kp_lane, 0), &EspType)
        || !PyBytes_CheckExact(PyTuple_GET_ITEM(kp_lane, 3))) {
        PyErr_SetString(PyExc_TypeError, "a Kp's lane is (AeadEsp, counter, outer, shim, "
                        "protocol)");
        goto out;
    }
    Esp *core = (Esp *)PyTuple_GET_ITEM(kp_lane, 0);
    if (core->tunnel == 6 || (!core->tunnel && key_len != 4)) {
        result = 0; /* an IPv6 outer header: the raw IPv6 socket is the Python path's */
        goto out;
    }
    long shim_protocol = PyLong_AsLong(PyTuple_GET_ITEM(kp_lane, 4));
    if (shim_protocol == -1 && PyErr_Occurred())
        goto out;
    const unsigned char *dst = core->tunnel ? core->dst : key;
    PyObject *lkey = PyBytes_FromStringAndSize((const char *)dst, 4);
    if (lkey == NULL)
        goto out;
    PyObject *limit_obj = PyDict_GetItemWithError(limits, lkey); /* borrowed */
    Py_DECREF(lkey);
    if (limit_obj == NULL) {
        result = PyErr_Occurred() ? -1 : 0; /* not learned yet: the Python path learns it */
        goto out;
    }
    Py_ssize_t path_limit = PyLong_AsSsize_t(limit_obj);
    if (path_limit == -1 && PyErr_Occurred())
        goto out;
    PyObject *counter = PyTuple_GET_ITEM(kp_lane, 1), *outer = PyTuple_GET_ITEM(kp_lane, 2);
    long long last, limit, next_id = 0;
    if ((r->used = PyObject_GetAttr(tx, s_used)) == NULL
        || ll_attr(r->used, s_bytes_out, &r->bytes_out) < 0
        || ll_attr(tx, s_max_bytes, &r->max_bytes) < 0
        || ll_attr(counter, s_last, &last) < 0 || ll_attr(counter, s_limit, &limit) < 0
        || (outer != Py_None && ll_attr(outer, s_next_id, &next_id) < 0)
        || (r->state = PyObject_GetAttr(tx, s_state)) == NULL
        || (r->stats = PyObject_GetAttr(route, s_stats)) == NULL) {
        Py_CLEAR(r->used);
        Py_CLEAR(r->state);
        goto out;
    }
    memcpy(r->key, key, key_len);
    r->key_len = key_len;
    Py_INCREF(route);
    r->route = route;
    Py_INCREF(counter);
    r->counter = counter;
    Py_INCREF(outer);
    r->outer = outer;
    r->endpoint = PyTuple_GET_ITEM(lane, 2);
    Py_INCREF(r->endpoint);
    r->kp_lane = kp_lane;
    kp_lane = NULL;
    Py_INCREF(tx);
    r->tx = tx;
    r->core = core;
    r->shim = PyBytes_AS_STRING(PyTuple_GET_ITEM(r->kp_lane, 3));
    r->shim_len = PyBytes_GET_SIZE(PyTuple_GET_ITEM(r->kp_lane, 3));
    r->shim_protocol = (int)shim_protocol;
    r->last = (unsigned long long)last;
    r->limit = (unsigned long long)limit;
    r->next_id = (long)(next_id & 0xFFFF);
    r->path_limit = path_limit;
    memcpy(r->dst, dst, 4);
    result = 1;
out:
    Py_XDECREF(k);
    Py_XDECREF(lane);
    Py_XDECREF(kp_lane);
    Py_XDECREF(route);
    Py_XDECREF(tx);
    return result;
}

/* One packet in pump_read: 1 sent, 0 declined (nothing changed), -1 a Python error, 2 the
 * send failed (*failure: (packet, wire, route, errno), the run ended). */
static int pump_one(OutRun *r, Py_ssize_t n, int sock_fd, PyObject *sends, PyObject *limits,
                    long kmp_port, PyObject *traffic, double now, PyObject *now_obj,
                    PyObject **failure)
{
    const unsigned char *p = pump_read;
    Py_ssize_t key_at, key_len, ports;
    int protocol;
    if (n >= 20 && p[0] == 0x45) {
        key_at = 16, key_len = 4, ports = 20, protocol = p[9];
    } else if (n >= 40 && p[0] >> 4 == 6) {
        key_at = 24, key_len = 16, ports = 40, protocol = p[6];
        if (!is_routed_v6(protocol))
            return 0;
    } else {
        return 0;
    }
    if (protocol == 17) {
        if (n < ports + 4)
            return 0;
        long sport = p[ports] << 8 | p[ports + 1], dport = p[ports + 2] << 8 | p[ports + 3];
        if (sport == kmp_port || dport == kmp_port)
            return 0; /* key management goes in cleartext: the general path says so */
    }
    if (r->key_len != key_len || memcmp(r->key, p + key_at, key_len) != 0) {
        if (out_end(r, traffic, now_obj) < 0)
            return -1;
        int started = out_begin(r, p + key_at, key_len, sends, limits, now);
        if (started <= 0)
            return started;
    }
    Py_ssize_t head_len;
    int next_header;
    Py_ssize_t total = esp_size(r->core, p, n, r->shim_len, &head_len, &next_header);
    if (total == 0 || total > r->path_limit || !(r->bytes_out < r->max_bytes)
        || r->last >= r->limit)
        return 0; /* not the common case, too big, the Kp used up, the counter exhausted */
    unsigned long long seq = r->last + 1;
    if (esp_seal(r->core, p, n, seq, r->shim, r->shim_len, r->shim_protocol,
                 (unsigned)r->next_id, pump_wire, total, head_len, next_header) < 0)
        return 0; /* the Python path's cryptography tries, and says what failed */
    /* sealed: protected from here on, as EspSA._protect and the steady sender count it,
     * whether or not the kernel takes it */
    r->last = seq;
    if (r->core->tunnel == 4)
        r->next_id = (r->next_id + 1) & 0xFFFF;
    r->bytes_out += n;
    r->sealed++;
    r->sealed_bytes += n;
    struct sockaddr_in to = {.sin_family = AF_INET};
    memcpy(&to.sin_addr, r->dst, 4);
    ssize_t sent;
    do
        sent = sendto(sock_fd, pump_wire, (size_t)total, 0, (struct sockaddr *)&to, sizeof to);
    while (sent < 0 && errno == EINTR);
    if (sent < 0) {
        int err = errno;
        PyObject *route = r->route;
        Py_INCREF(route);
        int bad = out_end(r, traffic, now_obj) < 0;
        *failure = bad ? NULL : Py_BuildValue("(y#y#Oi)", (const char *)p, n,
                                              (const char *)pump_wire, total, route, err);
        Py_DECREF(route);
        return *failure == NULL ? -1 : 2;
    }
    r->sent++;
    r->sent_bytes += n;
    return 1;
}

/*
 * pump_out(tun_fd, sock_fd, sends, limits, kmp_port, traffic, now, budget)
 *     -> (read, leftover)
 *
 * Reads up to ``budget`` datagrams from the TUN device and sends each one the steady state
 * covers. ``read``: how many it took from the device. ``leftover``: None (the device is
 * empty, or the budget is spent), a datagram it declined (bytes: the caller's per-packet
 * path takes it, then calls again), or (datagram, wire, route, errno) when the socket
 * refused a protected datagram (the caller counts it as its own send failure). A read error
 * other than EAGAIN raises OSError.
 */
static PyObject *pump_out(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8 || !PyDict_Check(args[2]) || !PyDict_Check(args[3])
        || !PyDict_Check(args[5])) {
        PyErr_SetString(PyExc_TypeError, "pump_out(tun_fd, sock_fd, sends: dict, limits: dict, "
                        "kmp_port, traffic: dict, now, budget)");
        return NULL;
    }
    int tun_fd = (int)PyLong_AsLong(args[0]), sock_fd = (int)PyLong_AsLong(args[1]);
    long kmp_port = PyLong_AsLong(args[4]);
    double now = PyFloat_AsDouble(args[6]);
    Py_ssize_t budget = PyLong_AsSsize_t(args[7]);
    if (PyErr_Occurred())
        return NULL;
    OutRun run = {0};
    Py_ssize_t taken = 0;
    PyObject *result = NULL;
    while (taken < budget) {
        Py_ssize_t n = read(tun_fd, pump_read, sizeof pump_read);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            int err = errno;
            if (out_end(&run, args[5], args[6]) < 0)
                return NULL;
            errno = err;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        taken++;
        PyObject *failure = NULL;
        int r = pump_one(&run, n, sock_fd, args[2], args[3], kmp_port, args[5], now, args[6],
                         &failure);
        if (r == 2)
            result = Py_BuildValue("(nN)", taken, failure); /* the run has ended */
        else if (r == 0)
            result = Py_BuildValue("(ny#)", taken, (const char *)pump_read, n);
        if (r < 0 || (r != 1 && result == NULL)) {
            END_KEEPING_ERROR(out_end, &run, args[5], args[6]);
            return NULL;
        }
        if (r != 1)
            break;
    }
    if (out_end(&run, args[5], args[6]) < 0) {
        Py_XDECREF(result);
        return NULL;
    }
    return result != NULL ? result : Py_BuildValue("(nO)", taken, Py_None);
}

/* The run pump_in is in: one Kp (its cache key, the SKIP header's bytes from the outer
 * source on) and one receive route (the inner source), and what the run added. */
typedef struct {
    unsigned char key[512];
    Py_ssize_t key_len; /* 0: no Kp */
    Py_ssize_t length;  /* the SKIP header's */
    PyObject *rx, *counters, *state, *endpoint, *lane; /* strong */
    Esp *core;
    unsigned char src[16];
    Py_ssize_t src_len; /* 0: no route */
    PyObject *stats;    /* strong, the route's */
    long long opened, opened_bytes, delivered, delivered_bytes;
} InRun;

static int in_end_route(InRun *r, PyObject *traffic, PyObject *now_obj)
{
    int bad = r->src_len && r->delivered
              && (add_to(r->stats, s_packets_in, r->delivered) < 0
                  || add_to(r->stats, s_bytes_in, r->delivered_bytes) < 0
                  || PyObject_SetAttr(r->stats, s_last_packet, now_obj) < 0
                  || add_to_item(traffic, s_protected_in, r->delivered) < 0);
    Py_CLEAR(r->stats);
    r->src_len = 0;
    r->delivered = r->delivered_bytes = 0;
    return bad ? -1 : 0;
}

static int in_end(InRun *r, PyObject *traffic, PyObject *now_obj)
{
    int bad = in_end_route(r, traffic, now_obj) < 0;
    if (!bad && r->key_len && r->opened)
        bad = add_to(r->counters, s_packets_in, r->opened) < 0
              || add_to(r->counters, s_bytes_in, r->opened_bytes) < 0
              || PyObject_SetAttr(r->state, s_received, now_obj) < 0
              || PyObject_SetAttr(r->state, s_last, r->rx) < 0
              || add_to(r->endpoint, s_rx_ok, r->opened) < 0;
    Py_CLEAR(r->rx);
    Py_CLEAR(r->counters);
    Py_CLEAR(r->state);
    Py_CLEAR(r->endpoint);
    Py_CLEAR(r->lane);
    r->key_len = 0;
    r->opened = r->opened_bytes = 0;
    return bad ? -1 : 0;
}

/* Start a Kp run for the packet p (the run is ended): 1, 0 decline, -1 error. */
static int in_begin(InRun *r, const unsigned char *p, Py_ssize_t n, PyObject *rxs,
                    PyObject *layouts, PyObject *endpoint, double now)
{
    uint32_t word0 = get32(p + 20), word2 = get32(p + 28);
    if (word0 & 0x0FFFFF00)
        return 0; /* NSIDs or reserved bits: rx_key's */
    int result = -1;
    PyObject *words = NULL, *key = NULL, *lane = NULL, *eph = NULL, *confirmed = NULL,
             *state = NULL, *nomadic = NULL, *rx = NULL;
    if ((words = Py_BuildValue("(kk)", (unsigned long)word0, (unsigned long)word2)) == NULL)
        goto out;
    PyObject *length_obj = PyDict_GetItemWithError(layouts, words); /* borrowed */
    if (length_obj == NULL) {
        result = PyErr_Occurred() ? -1 : 0;
        goto out;
    }
    Py_ssize_t length = PyLong_AsSsize_t(length_obj);
    if (length == -1 && PyErr_Occurred())
        goto out;
    if (length < 12 || 8 + length > (Py_ssize_t)sizeof r->key || n < 20 + length) {
        result = 0;
        goto out;
    }
    if ((key = PyBytes_FromStringAndSize((const char *)p + 12, 8 + length)) == NULL)
        goto out;
    rx = PyDict_GetItemWithError(rxs, key); /* held: the reads below may run Python code */
    if (rx == NULL) {
        result = PyErr_Occurred() ? -1 : 0;
        goto out;
    }
    Py_INCREF(rx);
    double from, until;
    if (double_attr(rx, s_accept_from, &from) < 0 || double_attr(rx, s_accept_until, &until) < 0)
        goto out;
    if (!(from <= now && now < until)) {
        result = 0;
        goto out;
    }
    if ((lane = PyObject_GetAttr(rx, s_lane)) == NULL)
        goto out;
    if (lane == Py_None) {
        result = 0;
        goto out;
    }
    if (!PyTuple_Check(lane) || PyTuple_GET_SIZE(lane) != 2
        || !PyObject_TypeCheck(PyTuple_GET_ITEM(lane, 0), &EspType)) {
        PyErr_SetString(PyExc_TypeError, "a Kp's open lane is (AeadEsp, counters)");
        goto out;
    }
    if ((eph = PyObject_GetAttr(rx, s_ephemeral)) == NULL)
        goto out;
    if (eph != Py_None) {
        if ((confirmed = PyObject_GetAttr(eph, s_confirmed)) == NULL)
            goto out;
        int yes = PyObject_IsTrue(confirmed);
        if (yes <= 0) {
            result = yes; /* a PFS key to confirm: endpoint.unprotect's */
            goto out;
        }
    }
    if ((state = PyObject_GetAttr(rx, s_state)) == NULL
        || (nomadic = PyObject_GetAttr(state, s_nomadic)) == NULL)
        goto out;
    int roams = PyObject_IsTrue(nomadic);
    if (roams != 0) {
        result = roams < 0 ? -1 : 0; /* a nomadic peer's address moves: the Python path's */
        goto out;
    }
    memcpy(r->key, p + 12, 8 + length);
    r->key_len = 8 + length;
    r->length = length;
    Py_INCREF(rx);
    r->rx = rx;
    r->lane = lane;
    lane = NULL;
    r->core = (Esp *)PyTuple_GET_ITEM(r->lane, 0);
    r->counters = PyTuple_GET_ITEM(r->lane, 1);
    Py_INCREF(r->counters);
    r->state = state;
    state = NULL;
    Py_INCREF(endpoint);
    r->endpoint = endpoint;
    result = 1;
out:
    Py_XDECREF(words);
    Py_XDECREF(key);
    Py_XDECREF(lane);
    Py_XDECREF(eph);
    Py_XDECREF(confirmed);
    Py_XDECREF(state);
    Py_XDECREF(nomadic);
    Py_XDECREF(rx);
    return result;
}

/* The receive route for the inner source at src, for the run's Kp: 1, 0 decline, -1. */
static int in_route(InRun *r, const unsigned char *src, Py_ssize_t src_len, PyObject *receives,
                    PyObject *traffic, PyObject *now_obj)
{
    if (in_end_route(r, traffic, now_obj) < 0)
        return -1;
    int result = -1;
    PyObject *rkey = NULL, *peer = NULL, *version = NULL, *rpeer = NULL, *rversion = NULL,
             *route = NULL;
    if ((rkey = PyBytes_FromStringAndSize((const char *)src, src_len)) == NULL)
        goto out;
    route = PyDict_GetItemWithError(receives, rkey); /* held, as in out_begin */
    if (route == NULL) {
        result = PyErr_Occurred() ? -1 : 0;
        goto out;
    }
    Py_INCREF(route);
    if ((peer = PyObject_GetAttr(r->rx, s_peer)) == NULL
        || (rpeer = PyObject_GetAttr(route, s_peer)) == NULL
        || (version = PyObject_GetAttr(r->rx, s_version)) == NULL
        || (rversion = PyObject_GetAttr(route, s_version)) == NULL)
        goto out;
    int same = PyObject_RichCompareBool(peer, rpeer, Py_EQ);
    if (same > 0)
        same = PyObject_RichCompareBool(version, rversion, Py_EQ);
    if (same <= 0) {
        result = same; /* another peer's source: policy asks */
        goto out;
    }
    if ((r->stats = PyObject_GetAttr(route, s_stats)) == NULL)
        goto out;
    memcpy(r->src, src, src_len);
    r->src_len = src_len;
    result = 1;
out:
    Py_XDECREF(rkey);
    Py_XDECREF(peer);
    Py_XDECREF(version);
    Py_XDECREF(rpeer);
    Py_XDECREF(rversion);
    Py_XDECREF(route);
    return result;
}

/* One datagram in pump_read: 1 delivered, 0 declined (nothing changed), -1 a Python error,
 * 2 the TUN device refused it (all else done: the caller counts the loss). */
static int pump_in_one(InRun *r, Py_ssize_t n, int tun_fd, PyObject *rxs, PyObject *layouts,
                       PyObject *endpoint, PyObject *receives, int gik, int groups,
                       PyObject *traffic, double now, PyObject *now_obj)
{
    const unsigned char *p = pump_read;
    if (n < 32 || p[0] != 0x45 || p[9] != 57)
        return 0;
    if (groups && (p[16] & 0xF0) == 0xE0)
        return 0; /* multicast: the groups' own keys */
    if (!(r->key_len && n >= 12 + r->key_len && memcmp(r->key, p + 12, r->key_len) == 0)) {
        if (in_end(r, traffic, now_obj) < 0)
            return -1;
        int started = in_begin(r, p, n, rxs, layouts, endpoint, now);
        if (started <= 0)
            return started;
    }
    Py_ssize_t len;
    uint64_t seq;
    if (!esp_open(r->core, p, n, r->length, pump_open, &len, &seq))
        return 0;
    const unsigned char *q = pump_open;
    Py_ssize_t src_at, src_len;
    int protocol;
    if (len >= 20 && q[0] == 0x45) {
        protocol = q[9];
        if (protocol == 1 && (len < 21 || q[20] == 39 || ((q[6] << 8 | q[7]) & 0x3FFF)))
            return 0; /* SKIP ICMP (type 39), or a fragment of ICMP: the advisor's */
        src_at = 12, src_len = 4;
    } else if (len >= 40 && q[0] >> 4 == 6) {
        protocol = q[6];
        if (protocol != 6 && protocol != 17)
            return 0; /* ICMPv6 or an extension header: locate_upper's walk */
        src_at = 8, src_len = 16;
    } else {
        return 0;
    }
    if (gik && protocol != 6 && protocol != 1 && protocol != 58)
        return 0; /* with groups, UDP may be a GIK message to us */
    if (r->src_len != src_len || memcmp(r->src, q + src_at, src_len) != 0) {
        int found = in_route(r, q + src_at, src_len, receives, traffic, now_obj);
        if (found <= 0)
            return found;
    }
    /* kept: from here on, what endpoint.unprotect and deliver do with it */
    if (window_accept(r->core->window, seq, 0) < 0)
        return 0;
    r->opened++;
    r->opened_bytes += len;
    ssize_t wrote;
    do
        wrote = write(tun_fd, q, (size_t)len);
    while (wrote < 0 && errno == EINTR);
    if (wrote < 0)
        return 2;
    r->delivered++;
    r->delivered_bytes += len;
    return 1;
}

/*
 * pump_in(sock_fd, tun_fd, lane, receives, gik, groups, traffic, now, budget)
 *     -> (read, leftover)
 *
 * ``lane``: the engine's receive_lane (receive cache, header layouts, endpoint). Reads up
 * to ``budget`` datagrams from the raw IPv4 socket and delivers each one the steady state
 * covers to the TUN device. ``leftover``: None (the socket is empty or the budget spent), a
 * datagram it declined (bytes: the caller's inbound takes it, then calls again), or True
 * when the TUN device refused a delivered datagram (the caller counts the loss). A receive
 * error other than EAGAIN raises OSError.
 */
static PyObject *pump_in(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9 || !PyTuple_Check(args[2]) || PyTuple_GET_SIZE(args[2]) != 3
        || !PyDict_Check(PyTuple_GET_ITEM(args[2], 0))
        || !PyDict_Check(PyTuple_GET_ITEM(args[2], 1)) || !PyDict_Check(args[3])
        || !PyDict_Check(args[6])) {
        PyErr_SetString(PyExc_TypeError, "pump_in(sock_fd, tun_fd, (rxs, layouts, endpoint), "
                        "receives: dict, gik, groups, traffic: dict, now, budget)");
        return NULL;
    }
    int sock_fd = (int)PyLong_AsLong(args[0]), tun_fd = (int)PyLong_AsLong(args[1]);
    int gik = PyObject_IsTrue(args[4]), groups = PyObject_IsTrue(args[5]);
    double now = PyFloat_AsDouble(args[7]);
    Py_ssize_t budget = PyLong_AsSsize_t(args[8]);
    if (PyErr_Occurred())
        return NULL;
    PyObject *lane = args[2], *result = NULL;
    InRun run = {0};
    Py_ssize_t taken = 0;
    while (taken < budget) {
        Py_ssize_t n = recv(sock_fd, pump_read, sizeof pump_read, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            int err = errno;
            if (in_end(&run, args[6], args[7]) < 0)
                return NULL;
            errno = err;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        taken++;
        int r = pump_in_one(&run, n, tun_fd, PyTuple_GET_ITEM(lane, 0),
                            PyTuple_GET_ITEM(lane, 1), PyTuple_GET_ITEM(lane, 2), args[3], gik,
                            groups, args[6], now, args[7]);
        if (r == 2)
            result = Py_BuildValue("(nO)", taken, Py_True);
        else if (r == 0)
            result = Py_BuildValue("(ny#)", taken, (const char *)pump_read, n);
        if (r < 0 || (r != 1 && result == NULL)) {
            END_KEEPING_ERROR(in_end, &run, args[6], args[7]);
            return NULL;
        }
        if (r != 1)
            break;
    }
    if (in_end(&run, args[6], args[7]) < 0) {
        Py_XDECREF(result);
        return NULL;
    }
    return result != NULL ? result : Py_BuildValue("(nO)", taken, Py_None);
}

static PyMethodDef module_methods[] = {
    {"pump_out", (PyCFunction)(void (*)(void))pump_out, METH_FASTCALL,
     "pump_out(tun_fd, sock_fd, sends, limits, kmp_port, traffic, now, budget) -> "
     "(read, leftover): skipd's steady send loop"},
    {"pump_in", (PyCFunction)(void (*)(void))pump_in, METH_FASTCALL,
     "pump_in(sock_fd, tun_fd, lane, receives, gik, groups, traffic, now, budget) -> "
     "(read, leftover): skipd's steady receive loop"},
    {NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "skip._native",
    .m_doc = "The compiled steady state of skip's ESP engine; skip/ipsec/esp.py is the "
             "reference.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__native(void)
{
    PyObject *errors = PyImport_ImportModule("skip.errors");
    if (errors == NULL)
        return NULL;
    ReplayError = PyObject_GetAttrString(errors, "ReplayError");
    Py_DECREF(errors);
    if (ReplayError == NULL)
        return NULL;
    if (PyType_Ready(&WindowType) < 0 || PyType_Ready(&EspType) < 0)
        return NULL;
    if ((s_lane = PyUnicode_InternFromString("lane")) == NULL)
        return NULL;
    if ((s_expires = PyUnicode_InternFromString("expires")) == NULL)
        return NULL;
    if ((s_used = PyUnicode_InternFromString("used")) == NULL)
        return NULL;
    if ((s_bytes_out = PyUnicode_InternFromString("bytes_out")) == NULL)
        return NULL;
    if ((s_packets_out = PyUnicode_InternFromString("packets_out")) == NULL)
        return NULL;
    if ((s_max_bytes = PyUnicode_InternFromString("max_bytes")) == NULL)
        return NULL;
    if ((s_state = PyUnicode_InternFromString("state")) == NULL)
        return NULL;
    if ((s_sent = PyUnicode_InternFromString("sent")) == NULL)
        return NULL;
    if ((s_tx_ok = PyUnicode_InternFromString("_tx_ok")) == NULL)
        return NULL;
    if ((s_next_id = PyUnicode_InternFromString("next_id")) == NULL)
        return NULL;
    if ((s_last = PyUnicode_InternFromString("last")) == NULL)
        return NULL;
    if ((s_limit = PyUnicode_InternFromString("limit")) == NULL)
        return NULL;
    if ((s_advance = PyUnicode_InternFromString("advance")) == NULL)
        return NULL;
    if ((s_stats = PyUnicode_InternFromString("stats")) == NULL)
        return NULL;
    if ((s_last_packet = PyUnicode_InternFromString("last_packet")) == NULL)
        return NULL;
    if ((s_protected_out = PyUnicode_InternFromString("protected_out")) == NULL)
        return NULL;
    if ((s_accept_from = PyUnicode_InternFromString("accept_from")) == NULL)
        return NULL;
    if ((s_accept_until = PyUnicode_InternFromString("accept_until")) == NULL)
        return NULL;
    if ((s_ephemeral = PyUnicode_InternFromString("ephemeral")) == NULL)
        return NULL;
    if ((s_confirmed = PyUnicode_InternFromString("confirmed")) == NULL)
        return NULL;
    if ((s_nomadic = PyUnicode_InternFromString("nomadic")) == NULL)
        return NULL;
    if ((s_received = PyUnicode_InternFromString("received")) == NULL)
        return NULL;
    if ((s_rx_ok = PyUnicode_InternFromString("_rx_ok")) == NULL)
        return NULL;
    if ((s_peer = PyUnicode_InternFromString("peer")) == NULL)
        return NULL;
    if ((s_version = PyUnicode_InternFromString("version")) == NULL)
        return NULL;
    if ((s_packets_in = PyUnicode_InternFromString("packets_in")) == NULL)
        return NULL;
    if ((s_bytes_in = PyUnicode_InternFromString("bytes_in")) == NULL)
        return NULL;
    if ((s_protected_in = PyUnicode_InternFromString("protected_in")) == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "ReplayWindow", (PyObject *)&WindowType) < 0
        || PyModule_AddObjectRef(m, "AeadEsp", (PyObject *)&EspType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
