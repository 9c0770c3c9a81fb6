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

    const unsigned char *body;
    Py_ssize_t body_len, head_len;
    int next_header;
    if (self->tunnel) {
        if (n >= 20 && p[0] == 0x45 && (Py_ssize_t)(p[2] << 8 | p[3]) == n)
            next_header = 4;
        else if (n >= 40 && p[0] >> 4 == 6 && (Py_ssize_t)(p[4] << 8 | p[5]) + 40 == n)
            next_header = 41;
        else
            Py_RETURN_NONE; /* options, fragments of a header, errors: check_inner's */
        body = p;
        body_len = n;
        head_len = self->tunnel == 4 ? 20 : 40;
    } else {
        if (!plain_ipv4(p, n, 0))
            Py_RETURN_NONE;
        next_header = p[9];
        body = p + 20;
        body_len = n - 20;
        head_len = 20;
    }
    Py_ssize_t pad = (4 - (body_len + 2) % 4) % 4;
    Py_ssize_t sealed = body_len + pad + 2;
    Py_ssize_t esp_len = shim_len + ESP_HEAD + IV_SIZE + sealed + TAG_SIZE;
    Py_ssize_t total = head_len + esp_len;
    if ((self->tunnel == 6 ? total - 40 : total) > 0xFFFF)
        Py_RETURN_NONE; /* the Python path raises bad_length */

    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL)
        return NULL;
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
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
        put16(o + 4, (unsigned)ident);
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
        || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, TAG_SIZE, ct + sealed) != 1) {
        Py_DECREF(out);
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL failed to seal");
        return NULL;
    }
    return out;
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
    if (!plain_ipv4(p, n, 1) || shim_len < 0 || shim_len > n || (!shim_len && p[9] != PROTO_ESP))
        Py_RETURN_NONE; /* shim_len bounded before any arithmetic on it */
    Py_ssize_t offset = 20 + shim_len, body = offset + ESP_HEAD;
    if (n - body < MIN_BODY)
        Py_RETURN_NONE;
    if (get32(p + offset) != self->spi)
        Py_RETURN_NONE;
    Window *w = self->window;
    uint64_t seq;
    if (window_check(w, get32(p + offset + 4), &seq, 0) < 0)
        Py_RETURN_NONE;

    const unsigned char *iv = p + body, *ct = iv + IV_SIZE;
    Py_ssize_t ct_len = n - body - IV_SIZE - TAG_SIZE;
    Py_ssize_t keep = self->tunnel ? 0 : 20; /* bytes of header in front of the payload */
    PyObject *out = PyBytes_FromStringAndSize(NULL, keep + ct_len);
    if (out == NULL)
        return NULL;
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
    unsigned char nonce[12], aad[12];
    memcpy(nonce, self->nonce_salt, SALT_SIZE);
    memcpy(nonce + SALT_SIZE, iv, IV_SIZE);
    int aad_len = esp_aad(self, seq, aad), len;
    EVP_CIPHER_CTX *c = self->open;
    if (EVP_DecryptInit_ex(c, NULL, NULL, NULL, nonce) != 1
        || EVP_DecryptUpdate(c, NULL, &len, aad, aad_len) != 1
        || EVP_DecryptUpdate(c, o + keep, &len, ct, (int)ct_len) != 1
        || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, TAG_SIZE,
                               (void *)(ct + ct_len)) != 1
        || EVP_DecryptFinal_ex(c, o + keep + len, &len) != 1)
        goto decline; /* bad tag: the Python path counts and raises bad_icv */

    /* the trailer (split_trailer with the RFC 4303 pattern check) */
    const unsigned char *pt = o + keep;
    if (ct_len < 2)
        goto decline;
    unsigned pad = pt[ct_len - 2], next_header = pt[ct_len - 1];
    Py_ssize_t end = ct_len - 2 - pad;
    if (end < 0 || next_header == PROTO_NONE)
        goto decline;
    for (unsigned i = 0; i < pad; i++)
        if (pt[end + i] != i + 1)
            goto decline;

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
            goto decline;
    } else {
        memcpy(o, p, 20);
        put16(o + 2, (unsigned)(20 + end));
        o[9] = (unsigned char)next_header;
        ipv4_finish(o);
    }
    if (window_accept(w, seq, 0) < 0)
        goto decline;
    if (_PyBytes_Resize(&out, keep + end) < 0)
        return NULL;
    return out;

decline:
    Py_DECREF(out);
    Py_RETURN_NONE;
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

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "skip._native",
    .m_doc = "The compiled steady state of skip's ESP engine; skip/ipsec/esp.py is the "
             "reference.",
    .m_size = -1,
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
