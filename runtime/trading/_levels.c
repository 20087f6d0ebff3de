/* One side of an L2 book takes a diff's levels: the loop of runtime/trading/book.py's
 * ``apply_levels`` compiled, with the same result (tests/unit/test_book.py runs both on the
 * same diffs). It is the depth path's costliest Python loop: a dict store or delete per level.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>

/* Where ``a`` is better than ``b`` for this side: higher for bids, lower for asks. */
static int
better(double a, double b, int bids)
{
    return bids ? a > b : a < b;
}

/* The best price left in ``side`` after its best went: the highest bid or lowest ask, or the
 * empty side's (0.0 for bids, infinity for asks). -1.0 with an exception set on an error. */
static double
best_of(PyObject *side, int bids)
{
    Py_ssize_t position = 0;
    PyObject *price;
    PyObject *size;
    double best = bids ? 0.0 : Py_HUGE_VAL;
    int first = 1;
    while (PyDict_Next(side, &position, &price, &size)) {
        double value = PyFloat_AsDouble(price);
        if (value == -1.0 && PyErr_Occurred()) {
            return -1.0;
        }
        if (first || better(value, best, bids)) {
            best = value;
            first = 0;
        }
    }
    return best;
}

/* apply_levels(side, levels, best, bids) -> the side's new best price */
static PyObject *
apply_levels(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *side;
    PyObject *levels;
    double best;
    int bids;
    int lost_best = 0;
    if (nargs != 4 || !PyDict_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError,
                        "apply_levels(side: dict, levels, best: float, bids: bool)");
        return NULL;
    }
    side = args[0];
    best = PyFloat_AsDouble(args[2]);
    if (best == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if ((bids = PyObject_IsTrue(args[3])) < 0) {
        return NULL;
    }
    levels = PySequence_Fast(args[1], "levels must be a sequence of (price, size)");
    if (levels == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(levels); i++) {
        PyObject *level = PySequence_Fast_GET_ITEM(levels, i);
        PyObject *price;
        PyObject *size;
        double price_value;
        double size_value;
        if (!PyTuple_CheckExact(level) || PyTuple_GET_SIZE(level) != 2) {
            PyErr_SetString(PyExc_TypeError, "a level must be a (price, size) tuple");
            goto error;
        }
        price = PyTuple_GET_ITEM(level, 0);
        size = PyTuple_GET_ITEM(level, 1);
        price_value = PyFloat_AsDouble(price);
        size_value = PyFloat_AsDouble(size);
        if ((price_value == -1.0 || size_value == -1.0) && PyErr_Occurred()) {
            goto error;
        }
        if (size_value > 0.0) {
            if (PyDict_SetItem(side, price, size) < 0) {
                goto error;
            }
            if (better(price_value, best, bids)) {
                best = price_value;
            }
        }
        else {
            PyObject *held = PyDict_GetItemWithError(side, price);
            if (held != NULL) {
                if (PyDict_DelItem(side, price) < 0) {
                    goto error;
                }
                lost_best |= price_value == best;
            }
            else if (PyErr_Occurred()) {
                goto error;
            }
        }
    }
    Py_DECREF(levels);
    if (lost_best) {
        best = best_of(side, bids);
        if (best == -1.0 && PyErr_Occurred()) {
            return NULL;
        }
    }
    return PyFloat_FromDouble(best);
error:
    Py_DECREF(levels);
    return NULL;
}

static PyMethodDef levels_methods[] = {
    {"apply_levels", (PyCFunction)(void (*)(void))apply_levels, METH_FASTCALL,
     "apply_levels(side, levels, best, bids): store each (price, size) with size > 0, delete "
     "the others' prices; the side's new best price (see runtime/trading/book.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef levels_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "runtime.trading._levels",
    .m_doc = "An L2 book side takes a diff's levels, compiled (see _levels.c).",
    .m_size = -1,
    .m_methods = levels_methods,
};

PyMODINIT_FUNC
PyInit__levels(void)
{
    return PyModule_Create(&levels_module);
}
