/* Binance combined-stream frames in the one layout Binance writes them, scanned in C.
 *
 * The parser's hottest step (runtime/venues/binance/feed.py) compiled: a frame laid out exactly as
 * Binance sends it (keys in its order, no whitespace, no escapes, numbers as plain decimals) is
 * turned into the event the Python path would make of it, in one pass over the bytes. Anything
 * else returns None and the Python path decides: it parses what it can and drops the rest with
 * its reason. So this module never drops, counts or rejects a frame; it only recognizes good ones,
 * and an event it returns is always the one the Python path returns for the same bytes
 * (tests/unit/test_binance_wire.py compares the two on generated and mutated frames).
 *
 * Grammar accepted (anything else: None):
 *   ticker: {"stream":"<name>@bookTicker","data":{"u":ID,"s":"SYM","b":DEC,"B":DEC,"a":DEC,"A":DEC}}
 *   depth:  {"stream":"<name>@depth<rest>","data":{"e":"depthUpdate","E":ID,"s":"SYM","U":ID,
 *            "u":ID,"b":[["P","Q"],...],"a":[["P","Q"],...]}}
 *   ID:  0|[1-9][0-9]{0,18}, at most 2**63 - 1 (what runtime.core.frames.Id allows)
 *   DEC: "(0|[1-9][0-9]*)(.[0-9]+)?", 40 characters at most (finite, not negative by construction)
 *   SYM: "[A-Z0-9]{1,32}", mapped through the parser's symbol table (unknown: None)
 * and the values' checks: ticker 0 < bid <= ask; depth every price > 0 and U <= u, at most
 * MAX_LEVELS levels a side.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_DECIMAL 40
#define MAX_ID_DIGITS 19
#define MAX_SYMBOL 32
#define MAX_LEVELS 256

typedef struct {
    const char *p;
    const char *end;
} Cursor;

static int
literal(Cursor *c, const char *text, size_t n)
{
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, text, n) != 0) {
        return 0;
    }
    c->p += n;
    return 1;
}

#define LITERAL(c, text) literal((c), (text), sizeof(text) - 1)

static int
is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

/* ID, as a Python int (new reference), or NULL without an exception set if it is not one. */
static PyObject *
scan_id(Cursor *c)
{
    const char *p = c->p;
    uint64_t value = 0; /* 19 digits fit: 9,999,999,999,999,999,999 < 2**64 */
    int digits = 0;
    if (p < c->end && *p == '0') {
        p++;
        digits = 1;
    }
    else {
        while (p < c->end && is_digit(*p) && digits <= MAX_ID_DIGITS) {
            value = value * 10 + (uint64_t)(*p - '0');
            p++;
            digits++;
        }
    }
    if (digits == 0 || digits > MAX_ID_DIGITS || value > (uint64_t)INT64_MAX ||
        (p < c->end && is_digit(*p))) {
        return NULL;
    }
    c->p = p;
    return PyLong_FromLongLong((long long)value);
}

static const double POWERS_OF_TEN[] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

/* DEC into *out; 0 (no exception set) if the text is not one, -1 with an exception set. */
static int
scan_decimal(Cursor *c, double *out)
{
    const char *start = c->p + 1;
    const char *p = start;
    uint64_t mantissa = 0;
    int significant = 0;
    int fraction = 0;
    if (p >= c->end || c->p[0] != '"') {
        return 0;
    }
    if (p < c->end && *p == '0') {
        p++;
    }
    else {
        if (p >= c->end || !is_digit(*p)) {
            return 0;
        }
        while (p < c->end && is_digit(*p)) {
            if (significant < 19) {
                mantissa = mantissa * 10 + (uint64_t)(*p - '0');
            }
            significant += (mantissa != 0);
            p++;
        }
    }
    if (p < c->end && *p == '.') {
        p++;
        if (p >= c->end || !is_digit(*p)) {
            return 0;
        }
        while (p < c->end && is_digit(*p)) {
            if (significant < 19) {
                mantissa = mantissa * 10 + (uint64_t)(*p - '0');
                fraction++;
            }
            significant += (mantissa != 0);
            p++;
        }
    }
    if (p >= c->end || *p != '"' || p - start > MAX_DECIMAL) {
        return 0;
    }
    if (significant <= 19 && mantissa <= ((uint64_t)1 << 53) && fraction <= 22) {
        /* Both operands exact, so one IEEE division gives the correctly rounded value, as a
         * correctly rounding parser (msgspec's, Python's float()) does: Clinger's fast path. */
        *out = (double)mantissa / POWERS_OF_TEN[fraction];
    }
    else {
        char text[MAX_DECIMAL + 1];
        size_t n = (size_t)(p - start);
        memcpy(text, start, n);
        text[n] = '\0';
        *out = PyOS_string_to_double(text, NULL, NULL);
        if (*out == -1.0 && PyErr_Occurred()) {
            return -1;
        }
    }
    c->p = p + 1;
    return 1;
}

/* SYM mapped through ``symbols`` (borrowed reference), or NULL; -1 in *error on an exception. */
static PyObject *
scan_symbol(Cursor *c, PyObject *symbols, int *error)
{
    const char *start;
    const char *p;
    PyObject *key;
    PyObject *symbol;
    if (!LITERAL(c, "\"")) {
        return NULL;
    }
    start = p = c->p;
    while (p < c->end && p - start <= MAX_SYMBOL &&
           ((*p >= 'A' && *p <= 'Z') || is_digit(*p))) {
        p++;
    }
    if (p == start || p - start > MAX_SYMBOL || p >= c->end || *p != '"') {
        return NULL;
    }
    key = PyUnicode_FromStringAndSize(start, p - start);
    if (key == NULL) {
        *error = -1;
        return NULL;
    }
    symbol = PyDict_GetItemWithError(symbols, key);
    Py_DECREF(key);
    if (symbol == NULL && PyErr_Occurred()) {
        *error = -1;
    }
    c->p = p + 1;
    return symbol;
}

/* '{"stream":"<name>@<kind>' up to and including the stream's closing quote: 1 if the text
 * after the name's first '@' starts with ``kind`` (the whole rest if ``exact``). */
static int
scan_stream(Cursor *c, const char *kind, size_t kind_len, int exact)
{
    const char *p;
    const char *at = NULL;
    if (!LITERAL(c, "{\"stream\":\"")) {
        return 0;
    }
    for (p = c->p; p < c->end && *p != '"'; p++) {
        if (*p == '\\' || (unsigned char)*p < 0x20) {
            return 0;
        }
        if (*p == '@' && at == NULL) {
            at = p;
        }
    }
    if (at == NULL || p >= c->end) {
        return 0;
    }
    at++;
    if ((size_t)(p - at) < kind_len || memcmp(at, kind, kind_len) != 0 ||
        (exact && (size_t)(p - at) != kind_len)) {
        return 0;
    }
    c->p = p + 1;
    return 1;
}

/* The parser's view of one venue: its symbol table, name and the event types it makes. */
typedef struct {
    PyObject_HEAD
    PyObject *symbols;
    PyObject *venue;
    PyObject *book_ticker;
    PyObject *depth_update;
} Scanner;

static int
Scanner_init(Scanner *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"symbols", "venue", "book_ticker", "depth_update", NULL};
    PyObject *symbols;
    PyObject *venue;
    PyObject *book_ticker;
    PyObject *depth_update;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!UOO", keywords, &PyDict_Type, &symbols,
                                     &venue, &book_ticker, &depth_update)) {
        return -1;
    }
    Py_INCREF(symbols);
    Py_INCREF(venue);
    Py_INCREF(book_ticker);
    Py_INCREF(depth_update);
    Py_XSETREF(self->symbols, symbols);
    Py_XSETREF(self->venue, venue);
    Py_XSETREF(self->book_ticker, book_ticker);
    Py_XSETREF(self->depth_update, depth_update);
    return 0;
}

static void
Scanner_dealloc(Scanner *self)
{
    Py_XDECREF(self->symbols);
    Py_XDECREF(self->venue);
    Py_XDECREF(self->book_ticker);
    Py_XDECREF(self->depth_update);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
frame_args(Scanner *self, PyObject *const *args, Py_ssize_t nargs, Cursor *c)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "expected (raw: bytes, local_ts_ns: int)");
        return -1;
    }
    if (self->symbols == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "scanner not initialized");
        return -1;
    }
    if (!PyBytes_CheckExact(args[0])) {
        return 0;
    }
    c->p = PyBytes_AS_STRING(args[0]);
    c->end = c->p + PyBytes_GET_SIZE(args[0]);
    return 1;
}

static PyObject *
none(void)
{
    Py_RETURN_NONE;
}

/* ticker(raw, local_ts_ns) -> BookTicker | None */
static PyObject *
Scanner_ticker(Scanner *self, PyObject *const *args, Py_ssize_t nargs)
{
    Cursor c;
    PyObject *u = NULL;
    PyObject *symbol;
    PyObject *result = NULL;
    double numbers[4]; /* bid, bid size, ask, ask size */
    static const char *const keys[4] = {",\"b\":", ",\"B\":", ",\"a\":", ",\"A\":"};
    int status = frame_args(self, args, nargs, &c);
    int error = 0;
    if (status <= 0) {
        return status < 0 ? NULL : none();
    }
    if (!scan_stream(&c, "bookTicker", 10, 1) || !LITERAL(&c, ",\"data\":{\"u\":")) {
        return none();
    }
    if ((u = scan_id(&c)) == NULL) {
        return PyErr_Occurred() ? NULL : none();
    }
    if (!LITERAL(&c, ",\"s\":")) {
        goto done;
    }
    symbol = scan_symbol(&c, self->symbols, &error);
    if (symbol == NULL) {
        goto done;
    }
    for (int i = 0; i < 4; i++) {
        if (!literal(&c, keys[i], 5) || (status = scan_decimal(&c, &numbers[i])) <= 0) {
            error = status;
            goto done;
        }
    }
    if (!LITERAL(&c, "}}") || c.p != c.end || !(numbers[0] > 0.0 && numbers[0] <= numbers[2])) {
        goto done;
    }
    {
        PyObject *floats[4];
        int made = 0;
        for (; made < 4; made++) {
            if ((floats[made] = PyFloat_FromDouble(numbers[made])) == NULL) {
                break;
            }
        }
        if (made == 4) {
            PyObject *zero = PyLong_FromLong(0);
            if (zero != NULL) {
                PyObject *call[9] = {self->venue, symbol, floats[0], floats[1], floats[2],
                                     floats[3], u, zero, args[1]};
                result = PyObject_Vectorcall(self->book_ticker, call, 9, NULL);
                Py_DECREF(zero);
            }
        }
        while (made-- > 0) {
            Py_DECREF(floats[made]);
        }
        Py_DECREF(u);
        return result;
    }
done:
    Py_DECREF(u);
    return error < 0 ? NULL : none();
}

/* '[["P","Q"],...]' into a tuple of (price, size) tuples (new reference); NULL without an
 * exception if it is not one (or has a price that is not positive, or too many levels). */
static PyObject *
scan_levels(Cursor *c)
{
    double values[2 * MAX_LEVELS];
    Py_ssize_t count = 0;
    PyObject *levels;
    int status;
    if (!LITERAL(c, "[")) {
        return NULL;
    }
    if (!LITERAL(c, "]")) {
        for (;;) {
            if (count == MAX_LEVELS || !LITERAL(c, "[")) {
                return NULL;
            }
            status = scan_decimal(c, &values[2 * count]);
            if (status <= 0 || !(values[2 * count] > 0.0) || !LITERAL(c, ",")) {
                return NULL;
            }
            status = scan_decimal(c, &values[2 * count + 1]);
            if (status <= 0 || !LITERAL(c, "]")) {
                return NULL;
            }
            count++;
            if (LITERAL(c, "]")) {
                break;
            }
            if (!LITERAL(c, ",")) {
                return NULL;
            }
        }
    }
    levels = PyTuple_New(count);
    if (levels == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *level = PyTuple_New(2);
        if (level == NULL) {
            Py_DECREF(levels);
            return NULL;
        }
        PyTuple_SET_ITEM(levels, i, level);
        for (int j = 0; j < 2; j++) {
            PyObject *number = PyFloat_FromDouble(values[2 * i + j]);
            if (number == NULL) {
                Py_DECREF(levels);
                return NULL;
            }
            PyTuple_SET_ITEM(level, j, number);
        }
    }
    return levels;
}

/* depth(raw, local_ts_ns) -> DepthUpdate | None (a diff, never a snapshot) */
static PyObject *
Scanner_depth(Scanner *self, PyObject *const *args, Py_ssize_t nargs)
{
    Cursor c;
    PyObject *ids[3] = {NULL, NULL, NULL}; /* E, U, u */
    PyObject *symbol = NULL;
    PyObject *sides[2] = {NULL, NULL};
    PyObject *result = NULL;
    int status = frame_args(self, args, nargs, &c);
    int error = 0;
    if (status <= 0) {
        return status < 0 ? NULL : none();
    }
    if (!scan_stream(&c, "depth", 5, 0) ||
        !LITERAL(&c, ",\"data\":{\"e\":\"depthUpdate\",\"E\":") || (ids[0] = scan_id(&c)) == NULL ||
        !LITERAL(&c, ",\"s\":") ||
        (symbol = scan_symbol(&c, self->symbols, &error)) == NULL ||
        !LITERAL(&c, ",\"U\":") || (ids[1] = scan_id(&c)) == NULL ||
        !LITERAL(&c, ",\"u\":") || (ids[2] = scan_id(&c)) == NULL ||
        !LITERAL(&c, ",\"b\":") || (sides[0] = scan_levels(&c)) == NULL ||
        !LITERAL(&c, ",\"a\":") || (sides[1] = scan_levels(&c)) == NULL ||
        !LITERAL(&c, "}}") || c.p != c.end) {
        goto done;
    }
    status = PyObject_RichCompareBool(ids[2], ids[1], Py_GE);
    if (status < 0) {
        error = -1;
    }
    else if (status > 0) {
        PyObject *call[9] = {self->venue, symbol, ids[1], ids[2], sides[0], sides[1],
                             Py_False, ids[0], args[1]};
        result = PyObject_Vectorcall(self->depth_update, call, 9, NULL);
    }
done:
    for (int i = 0; i < 3; i++) {
        Py_XDECREF(ids[i]);
    }
    Py_XDECREF(sides[0]);
    Py_XDECREF(sides[1]);
    if (result != NULL || error < 0 || PyErr_Occurred()) {
        return result;
    }
    return none();
}

static PyMethodDef Scanner_methods[] = {
    {"ticker", (PyCFunction)(void (*)(void))Scanner_ticker, METH_FASTCALL,
     "ticker(raw, local_ts_ns): the BookTicker of a combined bookTicker frame in Binance's "
     "layout, or None (the Python path decides)."},
    {"depth", (PyCFunction)(void (*)(void))Scanner_depth, METH_FASTCALL,
     "depth(raw, local_ts_ns): the DepthUpdate of a combined depth diff in Binance's layout, "
     "or None (the Python path decides)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ScannerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "runtime.venues.binance._wire.Scanner",
    .tp_doc = "Scanner(symbols, venue, book_ticker, depth_update): Binance frames in Binance's own "
               "layout, as the given event types.",
    .tp_basicsize = sizeof(Scanner),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Scanner_init,
    .tp_dealloc = (destructor)Scanner_dealloc,
    .tp_methods = Scanner_methods,
};

static struct PyModuleDef wire_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "runtime.venues.binance._wire",
    .m_doc = "Binance frames in the layout Binance writes them, scanned in C (see _wire.c).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__wire(void)
{
    PyObject *module;
    if (PyType_Ready(&ScannerType) < 0) {
        return NULL;
    }
    module = PyModule_Create(&wire_module);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&ScannerType);
    if (PyModule_AddObject(module, "Scanner", (PyObject *)&ScannerType) < 0) {
        Py_DECREF(&ScannerType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
