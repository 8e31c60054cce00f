/*
 * The wait of the uplinks' carrier poll, without Python in the loop.
 *
 * Why C: the poll re-reads the sysfs carrier files every 50 ms (collectors/links/carrier.py
 * says why it polls at all). Done by a Python thread, each wake-up takes the GIL and runs
 * the interpreter: 0.23 % of a core for three uplinks, a quarter of what the whole agent
 * may cost. Here the thread sleeps and reads in C with the GIL released and comes back to
 * Python only when a file changed or the stop descriptor became readable: 0.13 %, most of
 * it the kernel's own cost of twenty timed wake-ups and sixty sysfs reads a second.
 * carrier.py does the same in Python when this module is not built.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_FILES 64
#define VALUE_BYTES 8 /* as carrier.py reads: "1\n", "0\n" or an errno as text */

typedef struct {
    char bytes[VALUE_BYTES];
    Py_ssize_t len;
} Value;

/* What carrier.py's read() gives for one file: its first bytes, or the errno as text. */
static void read_value(int fd, Value *out) {
    ssize_t n = pread(fd, out->bytes, VALUE_BYTES, 0);
    if (n < 0) {
        out->len = snprintf(out->bytes, VALUE_BYTES, "%d", errno);
        if (out->len >= VALUE_BYTES) {
            out->len = VALUE_BYTES - 1;
        }
    } else {
        out->len = n;
    }
}

static int same(const Value *a, const Value *b) {
    return a->len == b->len && memcmp(a->bytes, b->bytes, (size_t)a->len) == 0;
}

PyDoc_STRVAR(wait_change_doc,
"wait_change(fds, previous, stop_fd, period_ns) -> tuple[bytes, ...] | None\n\n"
"Every period_ns read each fd (pread of 8 bytes at 0; the errno as text on failure) until\n"
"the values differ from `previous` (then return them) or stop_fd is readable (None).");

static PyObject *wait_change(PyObject *self, PyObject *args) {
    PyObject *fds_obj, *previous_obj;
    int stop_fd;
    long long period_ns;
    if (!PyArg_ParseTuple(args, "OOiL", &fds_obj, &previous_obj, &stop_fd, &period_ns)) {
        return NULL;
    }
    PyObject *fds_seq = PySequence_Fast(fds_obj, "fds must be a sequence of ints");
    if (fds_seq == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fds_seq);
    int fds[MAX_FILES];
    Value before[MAX_FILES], now[MAX_FILES];
    if (n > MAX_FILES || period_ns <= 0) {
        Py_DECREF(fds_seq);
        PyErr_SetString(PyExc_ValueError, "at most 64 files and a period > 0");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        fds[i] = (int)PyLong_AsLong(PySequence_Fast_GET_ITEM(fds_seq, i));
    }
    Py_DECREF(fds_seq);
    if (PyErr_Occurred()) {
        return NULL;
    }
    /* previous: None (nothing seen yet: return the first reading) or one bytes per fd */
    int have_previous = previous_obj != Py_None;
    if (have_previous) {
        if (!PyTuple_Check(previous_obj) || PyTuple_GET_SIZE(previous_obj) != n) {
            PyErr_SetString(PyExc_ValueError, "previous must be None or a tuple, one per fd");
            return NULL;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            char *data;
            Py_ssize_t len;
            if (PyBytes_AsStringAndSize(PyTuple_GET_ITEM(previous_obj, i), &data, &len) < 0) {
                return NULL;
            }
            before[i].len = len < VALUE_BYTES ? len : VALUE_BYTES;
            memcpy(before[i].bytes, data, (size_t)before[i].len);
        }
    }
    struct pollfd stop = {.fd = stop_fd, .events = POLLIN};
    struct timespec period = {.tv_sec = (time_t)(period_ns / 1000000000LL),
                              .tv_nsec = (long)(period_ns % 1000000000LL)};
    int stopped = 0, changed = 0, error = 0;
    Py_BEGIN_ALLOW_THREADS
    while (!stopped && !changed && !error) {
        if (have_previous) {
            int ready = ppoll(&stop, 1, &period, NULL);
            if (ready < 0 && errno != EINTR) {
                error = errno;
                break;
            }
            if (ready > 0) {
                stopped = 1;
                break;
            }
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            read_value(fds[i], &now[i]);
            if (!have_previous || !same(&now[i], &before[i])) {
                changed = 1;
            }
        }
        if (n == 0) {
            have_previous = 1; /* nothing to read: only the stop can end the wait */
        }
    }
    Py_END_ALLOW_THREADS
    if (error) {
        errno = error;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (stopped) {
        Py_RETURN_NONE;
    }
    PyObject *result = PyTuple_New(n);
    if (result == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *value = PyBytes_FromStringAndSize(now[i].bytes, now[i].len);
        if (value == NULL) {
            Py_DECREF(result);
            return NULL;
        }
        PyTuple_SET_ITEM(result, i, value);
    }
    return result;
}

static PyMethodDef methods[] = {
    {"wait_change", wait_change, METH_VARARGS, wait_change_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_carrier", "The carrier poll's wait, GIL released.", -1, methods,
};

PyMODINIT_FUNC PyInit__carrier(void) { return PyModule_Create(&module); }
