/* One side of an L2 book, compiled: runtime/trading/book.py's ``PythonSide`` as a C type.
 *
 * A depth diff changes tens of levels, and in a dict each change hashes a float object and
 * compares keys through Python: about 100 ns a level, most of the depth path's time. Here a side
 * is an open-addressing table of (price, size) doubles keyed by the price's bits, with its best
 * price kept as levels come and go. Prices must be positive (0.0 marks an empty slot), as every
 * parser guarantees. tests/unit/test_compiled.py holds it to ``PythonSide`` on generated diffs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MIN_CAPACITY 16

typedef struct {
    double price; /* 0.0: empty */
    double size;
} Slot;

typedef struct {
    PyObject_HEAD
    Slot *slots;
    Py_ssize_t capacity; /* a power of two, at least twice ``count`` */
    int shift;           /* 64 - log2(capacity): how far ``home`` shifts the hash */
    Py_ssize_t count;
    int bids;
    double best;
} Side;

static double
empty_best(const Side *self)
{
    return self->bids ? 0.0 : Py_HUGE_VAL;
}

static int
better(const Side *self, double a, double b)
{
    return self->bids ? a > b : a < b;
}

static Py_ssize_t
home(const Side *self, double price)
{
    uint64_t bits;
    memcpy(&bits, &price, sizeof bits);
    /* Fibonacci hashing: the product's top bits, as many as the table has index bits. */
    return (Py_ssize_t)((bits * UINT64_C(0x9E3779B97F4A7C15)) >> self->shift);
}

/* The slot holding ``price``, or the empty slot where it would go. */
static Py_ssize_t
find(const Side *self, double price)
{
    Py_ssize_t i = home(self, price);
    while (self->slots[i].price != 0.0 && self->slots[i].price != price) {
        i = (i + 1) & (self->capacity - 1);
    }
    return i;
}

/* Fresh empty slots, ``capacity`` of them (a power of two); the old ones are the caller's. */
static int
allocate(Side *self, Py_ssize_t capacity)
{
    Slot *slots = PyMem_Calloc((size_t)capacity, sizeof(Slot));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->slots = slots;
    self->capacity = capacity;
    self->shift = 64;
    while (capacity > 1) {
        capacity >>= 1;
        self->shift--;
    }
    return 0;
}

static int
resize(Side *self, Py_ssize_t capacity)
{
    Slot *old = self->slots;
    Py_ssize_t old_capacity = self->capacity;
    if (allocate(self, capacity) < 0) {
        self->slots = old;
        return -1;
    }
    for (Py_ssize_t i = 0; i < old_capacity; i++) {
        if (old[i].price != 0.0) {
            self->slots[find(self, old[i].price)] = old[i];
        }
    }
    PyMem_Free(old);
    return 0;
}

/* Linear probing's deletion: later slots of the same run move back, so no tombstones. */
static void
remove_at(Side *self, Py_ssize_t hole)
{
    Py_ssize_t mask = self->capacity - 1;
    Py_ssize_t i = hole;
    self->slots[hole].price = 0.0;
    for (;;) {
        i = (i + 1) & mask;
        if (self->slots[i].price == 0.0) {
            break;
        }
        Py_ssize_t want = home(self, self->slots[i].price);
        /* Move the slot back unless its home lies cyclically in (hole, i]. */
        if ((i > hole) ? (want <= hole || want > i) : (want <= hole && want > i)) {
            self->slots[hole] = self->slots[i];
            self->slots[i].price = 0.0;
            hole = i;
        }
    }
    self->count--;
}

static void
recompute_best(Side *self)
{
    double best = empty_best(self);
    for (Py_ssize_t i = 0; i < self->capacity; i++) {
        double price = self->slots[i].price;
        if (price != 0.0 && better(self, price, best)) {
            best = price;
        }
    }
    self->best = best;
}

/* Store or delete one level; 1 if it deleted the best price, -1 with an exception set. */
static int
put(Side *self, double price, double size)
{
    Py_ssize_t i;
    if (size > 0.0) {
        if (!(price > 0.0)) {
            PyObject *value = PyFloat_FromDouble(price);
            if (value != NULL) {
                PyErr_Format(PyExc_ValueError, "a level's price must be positive, not %R", value);
                Py_DECREF(value);
            }
            return -1;
        }
        if (2 * (self->count + 1) > self->capacity && resize(self, 2 * self->capacity) < 0) {
            return -1;
        }
        i = find(self, price);
        if (self->slots[i].price == 0.0) {
            self->slots[i].price = price;
            self->count++;
        }
        self->slots[i].size = size;
        if (better(self, price, self->best)) {
            self->best = price;
        }
        return 0;
    }
    if (!(price > 0.0)) {
        return 0; /* never stored */
    }
    i = find(self, price);
    if (self->slots[i].price == 0.0) {
        return 0;
    }
    remove_at(self, i);
    return price == self->best;
}

/* Each (price, size) of ``levels``: a size above 0 stores it, any other deletes the price. */
static int
put_all(Side *self, PyObject *levels)
{
    int lost_best = 0;
    PyObject *items = PySequence_Fast(levels, "levels must be a sequence of (price, size)");
    if (items == NULL) {
        return -1;
    }
    for (Py_ssize_t n = 0; n < PySequence_Fast_GET_SIZE(items); n++) {
        PyObject *level = PySequence_Fast(PySequence_Fast_GET_ITEM(items, n),
                                          "a level must be a (price, size) pair");
        double price;
        double size;
        int status;
        if (level == NULL) {
            goto error;
        }
        if (PySequence_Fast_GET_SIZE(level) != 2) {
            PyErr_SetString(PyExc_ValueError, "a level must be a (price, size) pair");
            Py_DECREF(level);
            goto error;
        }
        price = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(level, 0));
        size = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(level, 1));
        Py_DECREF(level);
        if ((price == -1.0 || size == -1.0) && PyErr_Occurred()) {
            goto error;
        }
        if ((status = put(self, price, size)) < 0) {
            goto error;
        }
        lost_best |= status;
    }
    Py_DECREF(items);
    if (lost_best) {
        recompute_best(self);
    }
    return 0;
error:
    Py_DECREF(items);
    if (lost_best) {
        recompute_best(self);
    }
    return -1;
}

static void
clear_slots(Side *self)
{
    memset(self->slots, 0, (size_t)self->capacity * sizeof(Slot));
    self->count = 0;
    self->best = empty_best(self);
}

static int
Side_init(Side *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"bids", NULL};
    int bids;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "p", keywords, &bids)) {
        return -1;
    }
    PyMem_Free(self->slots);
    self->slots = NULL;
    if (allocate(self, MIN_CAPACITY) < 0) {
        return -1;
    }
    self->bids = bids;
    clear_slots(self);
    return 0;
}

static void
Side_dealloc(Side *self)
{
    PyMem_Free(self->slots);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
ready(Side *self)
{
    if (self->slots == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Side.__init__ was not called");
        return 0;
    }
    return 1;
}

static PyObject *
Side_apply(Side *self, PyObject *levels)
{
    if (!ready(self) || put_all(self, levels) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Side_replace(Side *self, PyObject *levels)
{
    Py_ssize_t wanted = MIN_CAPACITY;
    Py_ssize_t size;
    if (!ready(self)) {
        return NULL;
    }
    size = PyObject_Length(levels);
    if (size < 0) {
        return NULL;
    }
    while (wanted < 2 * size) {
        wanted *= 2;
    }
    if (wanted != self->capacity) {
        Slot *old = self->slots;
        if (allocate(self, wanted) < 0) {
            self->slots = old;
            return NULL;
        }
        PyMem_Free(old);
    }
    clear_slots(self);
    if (put_all(self, levels) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Side_clear(Side *self, PyObject *Py_UNUSED(ignored))
{
    if (!ready(self)) {
        return NULL;
    }
    clear_slots(self);
    Py_RETURN_NONE;
}

static PyObject *
level_tuple(const Slot *slot)
{
    return Py_BuildValue("(dd)", slot->price, slot->size);
}

static PyObject *
price_of(const Slot *slot)
{
    return PyFloat_FromDouble(slot->price);
}

/* A list of ``make(slot)`` for every level, unordered. */
static PyObject *
collect(Side *self, PyObject *(*make)(const Slot *))
{
    PyObject *list;
    Py_ssize_t n = 0;
    if (!ready(self) || (list = PyList_New(self->count)) == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < self->capacity; i++) {
        if (self->slots[i].price != 0.0) {
            PyObject *item = make(&self->slots[i]);
            if (item == NULL) {
                Py_DECREF(list);
                return NULL;
            }
            PyList_SET_ITEM(list, n++, item);
        }
    }
    return list;
}

static PyObject *
Side_items(Side *self, PyObject *Py_UNUSED(ignored))
{
    return collect(self, level_tuple);
}

static int
by_price(const void *a, const void *b)
{
    double x = ((const Slot *)a)->price;
    double y = ((const Slot *)b)->price;
    return (x > y) - (x < y);
}

static PyObject *
Side_best_levels(Side *self, PyObject *arg)
{
    Py_ssize_t count = PyLong_AsSsize_t(arg);
    Py_ssize_t n = 0;
    Slot *sorted;
    PyObject *levels;
    if (count == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (!ready(self)) {
        return NULL;
    }
    if (count < 0) {
        count = 0;
    }
    sorted = PyMem_Malloc((size_t)(self->count ? self->count : 1) * sizeof(Slot));
    if (sorted == NULL) {
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < self->capacity; i++) {
        if (self->slots[i].price != 0.0) {
            sorted[n++] = self->slots[i];
        }
    }
    qsort(sorted, (size_t)n, sizeof(Slot), by_price);
    if (count > n) {
        count = n;
    }
    levels = PyList_New(count);
    for (Py_ssize_t k = 0; levels != NULL && k < count; k++) {
        PyObject *level = level_tuple(&sorted[self->bids ? n - 1 - k : k]);
        if (level == NULL) {
            Py_CLEAR(levels);
            break;
        }
        PyList_SET_ITEM(levels, k, level);
    }
    PyMem_Free(sorted);
    return levels;
}

/* The size at ``key``, or NULL (no exception) if the side has no such price. */
static PyObject *
lookup(Side *self, PyObject *key, int *error)
{
    double price = PyFloat_AsDouble(key);
    Py_ssize_t i;
    if (price == -1.0 && PyErr_Occurred()) {
        *error = 1;
        return NULL;
    }
    if (!ready(self)) {
        *error = 1;
        return NULL;
    }
    if (!(price > 0.0)) {
        return NULL;
    }
    i = find(self, price);
    return self->slots[i].price == 0.0 ? NULL : PyFloat_FromDouble(self->slots[i].size);
}

static PyObject *
Side_get(Side *self, PyObject *const *args, Py_ssize_t nargs)
{
    int error = 0;
    PyObject *size;
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "get(price, default=None)");
        return NULL;
    }
    size = lookup(self, args[0], &error);
    if (size != NULL || error) {
        return size;
    }
    if (nargs == 2) {
        return Py_NewRef(args[1]);
    }
    Py_RETURN_NONE;
}

static PyObject *
Side_subscript(Side *self, PyObject *key)
{
    int error = 0;
    PyObject *size = lookup(self, key, &error);
    if (size == NULL && !error) {
        PyErr_SetObject(PyExc_KeyError, key);
    }
    return size;
}

static int
Side_contains(Side *self, PyObject *key)
{
    int error = 0;
    PyObject *size = lookup(self, key, &error);
    if (error) {
        return -1;
    }
    Py_XDECREF(size);
    return size != NULL;
}

static Py_ssize_t
Side_length(Side *self)
{
    return self->slots == NULL ? 0 : self->count;
}

static PyObject *
Side_iter(Side *self)
{
    PyObject *iterator;
    PyObject *prices = collect(self, price_of);
    if (prices == NULL) {
        return NULL;
    }
    iterator = PyObject_GetIter(prices);
    Py_DECREF(prices);
    return iterator;
}

static PyObject *
Side_get_best(Side *self, void *Py_UNUSED(closure))
{
    return PyFloat_FromDouble(self->slots == NULL ? 0.0 : self->best);
}

static PyMethodDef Side_methods[] = {
    {"apply", (PyCFunction)Side_apply, METH_O,
     "apply(levels): store each (price, size) with a size above 0, delete the others' prices."},
    {"replace", (PyCFunction)Side_replace, METH_O,
     "replace(levels): the side holds exactly the levels of ``levels`` with a size above 0."},
    {"clear", (PyCFunction)Side_clear, METH_NOARGS, "clear(): no level left."},
    {"items", (PyCFunction)Side_items, METH_NOARGS, "items(): every (price, size), unordered."},
    {"best_levels", (PyCFunction)Side_best_levels, METH_O,
     "best_levels(count): the best ``count`` (price, size), best first."},
    {"get", (PyCFunction)(void (*)(void))Side_get, METH_FASTCALL,
     "get(price, default=None): the size at ``price``."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Side_getset[] = {
    {"best", (getter)Side_get_best, NULL,
     "The best price: the highest bid or lowest ask; 0.0 or infinity once empty.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMappingMethods Side_as_mapping = {
    .mp_length = (lenfunc)Side_length,
    .mp_subscript = (binaryfunc)Side_subscript,
};

static PySequenceMethods Side_as_sequence = {
    .sq_contains = (objobjproc)Side_contains,
};

static PyTypeObject SideType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "runtime.trading._sides.Side",
    .tp_doc = "Side(bids): one side of an L2 book, price -> size, with its best price.",
    .tp_basicsize = sizeof(Side),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Side_init,
    .tp_dealloc = (destructor)Side_dealloc,
    .tp_methods = Side_methods,
    .tp_getset = Side_getset,
    .tp_as_mapping = &Side_as_mapping,
    .tp_as_sequence = &Side_as_sequence,
    .tp_iter = (getiterfunc)Side_iter,
};

static struct PyModuleDef sides_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "runtime.trading._sides",
    .m_doc = "One side of an L2 book, compiled (see _sides.c).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__sides(void)
{
    PyObject *module;
    if (PyType_Ready(&SideType) < 0) {
        return NULL;
    }
    module = PyModule_Create(&sides_module);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&SideType);
    if (PyModule_AddObject(module, "Side", (PyObject *)&SideType) < 0) {
        Py_DECREF(&SideType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
