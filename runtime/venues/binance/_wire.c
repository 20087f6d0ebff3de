/* Binance combined-stream frames in the one layout Binance writes them, scanned in C.
 *
 * The parser's hottest step (runtime/venues/binance/feed.py) compiled: a frame laid out exactly as
 * Binance sends it (keys in its order, no whitespace, no escapes, numbers as plain decimals) is
 * turned into the event the Python path would make of it, in one pass over the bytes. Any other
 * frame goes to the Python path (the scanner's ``fallback``), which decides: it parses what it
 * can and drops the rest with its reason. So this module never drops, counts or rejects a frame;
 * it only recognizes good ones, and an event it makes is always the one the Python path makes of
 * the same bytes (tests/unit/test_compiled.py compares the two on generated and mutated frames).
 *
 * Grammar taken (anything else goes to the fallback):
 *   ticker: {"stream":"<name>@bookTicker","data":{"u":ID,"s":"SYM","b":DEC,"B":DEC,"a":DEC,"A":DEC}}
 *   depth:  {"stream":"<name>@depth<rest>","data":{"e":"depthUpdate","E":ID,"s":"SYM","U":ID,
 *            "u":ID,"b":[["P","Q"],...],"a":[["P","Q"],...]}}
 *   ID:  0|[1-9][0-9]{0,18}, at most 2**63 - 1 (what runtime.core.frames.Id allows)
 *   DEC: "(0|[1-9][0-9]*)(.[0-9]+)?", 40 characters at most (finite, not negative by construction)
 *   SYM: "[A-Z0-9]{1,32}", mapped through the parser's symbol table (unknown: the fallback)
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
    const char *p = c->p + 1;
    const char *start = p;
    const char *end = c->end;
    uint64_t mantissa = 0; /* exact while there are at most 19 digits */
    Py_ssize_t fraction = 0;
    Py_ssize_t digits;
    if (c->p >= end || c->p[0] != '"' || p >= end || !is_digit(*p)) {
        return 0;
    }
    if (*p == '0') {
        p++;
    }
    else {
        for (; p < end && is_digit(*p); p++) {
            mantissa = mantissa * 10 + (uint64_t)(*p - '0');
        }
    }
    if (p < end && *p == '.') {
        const char *first = ++p;
        for (; p < end && is_digit(*p); p++) {
            mantissa = mantissa * 10 + (uint64_t)(*p - '0');
        }
        if ((fraction = p - first) == 0) {
            return 0;
        }
    }
    if (p >= end || *p != '"' || p - start > MAX_DECIMAL) {
        return 0;
    }
    digits = (p - start) - (fraction > 0);
    if (digits <= 19 && mantissa <= ((uint64_t)1 << 53) && fraction <= 22) {
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

enum Kind { OTHER, TICKER, DEPTH };

/* '{"stream":"<name>@<kind>"', up to and including the stream's closing quote: TICKER if the
 * text after the name's first '@' is "bookTicker", DEPTH if it starts with "depth". */
static enum Kind
stream_kind(Cursor *c)
{
    const char *p;
    const char *at = NULL;
    size_t length;
    if (!LITERAL(c, "{\"stream\":\"")) {
        return OTHER;
    }
    for (p = c->p; p < c->end && *p != '"'; p++) {
        if (*p == '\\' || (unsigned char)*p < 0x20) {
            return OTHER;
        }
        if (*p == '@' && at == NULL) {
            at = p + 1;
        }
    }
    if (at == NULL || p >= c->end) {
        return OTHER;
    }
    c->p = p + 1;
    length = (size_t)(p - at);
    if (length == 10 && memcmp(at, "bookTicker", 10) == 0) {
        return TICKER;
    }
    return length >= 5 && memcmp(at, "depth", 5) == 0 ? DEPTH : OTHER;
}

/* The parser's view of one venue: its symbol table, name, the event types it makes and the
 * parser for every other frame. */
typedef struct {
    PyObject_HEAD
    PyObject *symbols;
    PyObject *venue;
    PyObject *book_ticker;
    PyObject *depth_update;
    PyObject *fallback;
} Scanner;

static int
Scanner_init(Scanner *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"symbols", "venue", "book_ticker", "depth_update", "fallback",
                               NULL};
    PyObject *symbols;
    PyObject *venue;
    PyObject *book_ticker;
    PyObject *depth_update;
    PyObject *fallback;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!UOOO", keywords, &PyDict_Type, &symbols,
                                     &venue, &book_ticker, &depth_update, &fallback)) {
        return -1;
    }
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "fallback must be callable");
        return -1;
    }
    Py_XSETREF(self->symbols, Py_NewRef(symbols));
    Py_XSETREF(self->venue, Py_NewRef(venue));
    Py_XSETREF(self->book_ticker, Py_NewRef(book_ticker));
    Py_XSETREF(self->depth_update, Py_NewRef(depth_update));
    Py_XSETREF(self->fallback, Py_NewRef(fallback));
    return 0;
}

/* The fallback is the parser's bound method and the parser holds the scanner's: a cycle, which
 * the garbage collector can break only if it sees the scanner's references. */
static int
Scanner_traverse(Scanner *self, visitproc visit, void *arg)
{
    Py_VISIT(self->symbols);
    Py_VISIT(self->venue);
    Py_VISIT(self->book_ticker);
    Py_VISIT(self->depth_update);
    Py_VISIT(self->fallback);
    return 0;
}

static int
Scanner_clear(Scanner *self)
{
    Py_CLEAR(self->symbols);
    Py_CLEAR(self->venue);
    Py_CLEAR(self->book_ticker);
    Py_CLEAR(self->depth_update);
    Py_CLEAR(self->fallback);
    return 0;
}

static void
Scanner_dealloc(Scanner *self)
{
    PyObject_GC_UnTrack(self);
    Scanner_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
none(void)
{
    Py_RETURN_NONE;
}

/* The rest of a combined bookTicker frame: its BookTicker, or None. */
static PyObject *
ticker(Scanner *self, Cursor c, PyObject *local_ts_ns)
{
    PyObject *u = NULL;
    PyObject *symbol;
    PyObject *result = NULL;
    double numbers[4]; /* bid, bid size, ask, ask size */
    static const char *const keys[4] = {",\"b\":", ",\"B\":", ",\"a\":", ",\"A\":"};
    int status;
    int error = 0;
    if (!LITERAL(&c, ",\"data\":{\"u\":")) {
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
        if (!literal(&c, keys[i], 5)) {
            goto done;
        }
        if ((status = scan_decimal(&c, &numbers[i])) <= 0) {
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
                                     floats[3], u, zero, local_ts_ns};
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

/* The rest of a combined depth diff: its DepthUpdate, or None. */
static PyObject *
depth(Scanner *self, Cursor c, PyObject *local_ts_ns)
{
    PyObject *ids[3] = {NULL, NULL, NULL}; /* E, U, u */
    PyObject *symbol = NULL;
    PyObject *sides[2] = {NULL, NULL};
    PyObject *result = NULL;
    int status;
    int error = 0;
    if (!LITERAL(&c, ",\"data\":{\"e\":\"depthUpdate\",\"E\":") || (ids[0] = scan_id(&c)) == NULL ||
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
                             Py_False, ids[0], local_ts_ns};
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

/* scan(raw, local_ts_ns) -> the event, or what the fallback makes of the frame */
static PyObject *
Scanner_scan(Scanner *self, PyObject *const *args, Py_ssize_t nargs)
{
    Cursor c;
    PyObject *event = none();
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "scan(raw: bytes, local_ts_ns: int)");
        return NULL;
    }
    if (self->fallback == NULL || self->symbols == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Scanner.__init__ was not called");
        return NULL;
    }
    if (PyBytes_CheckExact(args[0])) {
        c.p = PyBytes_AS_STRING(args[0]);
        c.end = c.p + PyBytes_GET_SIZE(args[0]);
        switch (stream_kind(&c)) {
        case TICKER:
            Py_SETREF(event, ticker(self, c, args[1]));
            break;
        case DEPTH:
            Py_SETREF(event, depth(self, c, args[1]));
            break;
        default:
            break;
        }
    }
    if (event != Py_None) {
        return event; /* an event, or NULL with an exception set */
    }
    Py_DECREF(event);
    return PyObject_Vectorcall(self->fallback, args, 2, NULL);
}

static PyMethodDef Scanner_methods[] = {
    {"scan", (PyCFunction)(void (*)(void))Scanner_scan, METH_FASTCALL,
     "scan(raw, local_ts_ns): the BookTicker or DepthUpdate of a combined bookTicker frame or "
     "depth diff in Binance's layout; for any other bytes, what fallback(raw, local_ts_ns) "
     "returns."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ScannerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "runtime.venues.binance._wire.Scanner",
    .tp_doc = "Scanner(symbols, venue, book_ticker, depth_update, fallback): Binance frames in "
              "Binance's own layout, as the given event types; fallback parses the others.",
    .tp_basicsize = sizeof(Scanner),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Scanner_init,
    .tp_dealloc = (destructor)Scanner_dealloc,
    .tp_traverse = (traverseproc)Scanner_traverse,
    .tp_clear = (inquiry)Scanner_clear,
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
