/* Optional C loop of RFC 6811 validation over many IPv4 routes (collectors/bgp/rpki/rov.py,
 * FamilyIndex.count_memo): the same answers as the Python loop there, which stays the
 * reference and the fallback (tests/test_rpki_rov.py compares them). IPv4 only: keys fit
 * in 64 bits (network << 8 | length, 40 bits); IPv6 tables are small and stay in Python.
 *
 * count(items, memo, origin, lookup, by_length, buckets, bucket_shift, probe_cache,
 *       probes_of) -> [not_found, valid, invalid]
 *   items: (key, attrs) pairs (attrs.origin_as) when origin < 0, else keys
 *   memo: key -> origin << 2 | state (read when lookup, always written)
 *   by_length: list of 33 dicts network -> asn << 8 | maxLength, or a tuple of them
 *   buckets: network >> bucket_shift -> bit mask of VRP lengths that may cover it
 *   probe_cache: mask << 8 | route length -> ((length, netmask, get), ...), longest
 *   first; probes_of(mask << 8 | length) fills it on a miss.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define NOT_FOUND 0
#define VALID 1
#define INVALID 2

static PyObject *origin_as_name;

static int
payload_matches(PyObject *payload, long long origin, long long length, int *matched)
{
    /* *matched = 1 when one VRP of `payload` has `origin` and maxLength >= length. */
    *matched = 0;
    if (PyLong_Check(payload)) {
        long long p = PyLong_AsLongLong(payload);
        if (p == -1 && PyErr_Occurred())
            return -1;
        if ((p >> 8) == origin && length <= (p & 0xFF))
            *matched = 1;
        return 0;
    }
    if (!PyTuple_Check(payload)) {
        PyErr_SetString(PyExc_TypeError, "VRP payload is neither an int nor a tuple");
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(payload);
    for (Py_ssize_t i = 0; i < n; i++) {
        long long p = PyLong_AsLongLong(PyTuple_GET_ITEM(payload, i));
        if (p == -1 && PyErr_Occurred())
            return -1;
        if ((p >> 8) == origin && length <= (p & 0xFF)) {
            *matched = 1;
            return 0;
        }
    }
    return 0;
}

/* Caches of one count() call over many routes (a re-validation: 577k routes a carrier).
 * Per route the loop used to make three Python ints only to look them up or store them
 * (the bucket, the probe-cache key, the memo value): the bucket masks become a C array, and
 * the probe tuples and memo values are kept in small direct-mapped tables (new references,
 * released at the end). An UPDATE's few routes skip the array (its set-up costs more). */
#define SLOTS 1024
#define MANY_ROUTES 16384

typedef struct {
    unsigned long long key;
    PyObject *obj; /* new reference or NULL */
} Slot;

static Py_ssize_t
slot_of(unsigned long long key)
{
    return (Py_ssize_t)((key * 0x9E3779B97F4A7C15ULL) >> 54); /* 10 bits: SLOTS */
}

static void
slots_clear(Slot *slots)
{
    for (Py_ssize_t i = 0; i < SLOTS; i++)
        Py_CLEAR(slots[i].obj);
}

/* The bucket masks as an array of 2^16 (IPv4, bucket_shift 16), or NULL to use the dict. */
static unsigned long long *
bucket_array(PyObject *buckets, int bucket_shift, PyObject *items)
{
    if (bucket_shift != 16)
        return NULL;
    Py_ssize_t n = PyObject_Size(items);
    if (n < 0) {
        PyErr_Clear();
        return NULL;
    }
    if (n < MANY_ROUTES)
        return NULL;
    unsigned long long *masks = PyMem_Calloc(1u << 16, sizeof(unsigned long long));
    if (masks == NULL)
        return NULL;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(buckets, &pos, &key, &value)) {
        unsigned long long k = PyLong_AsUnsignedLongLong(key);
        unsigned long long v = PyLong_AsUnsignedLongLong(value);
        if (PyErr_Occurred() || k >= (1u << 16)) {
            PyErr_Clear(); /* not what we expect: the dict path answers instead */
            PyMem_Free(masks);
            return NULL;
        }
        masks[k] = v;
    }
    return masks;
}

static PyObject *
count(PyObject *self, PyObject *args)
{
    PyObject *items, *memo, *by_length, *buckets, *probe_cache, *probes_of;
    long long fixed_origin;
    int lookup;
    int bucket_shift;
    if (!PyArg_ParseTuple(args, "OO!LpO!O!iO!O", &items, &PyDict_Type, &memo, &fixed_origin,
                          &lookup, &PyList_Type, &by_length, &PyDict_Type, &buckets,
                          &bucket_shift, &PyDict_Type, &probe_cache, &probes_of))
        return NULL;
    Py_ssize_t counts[3] = {0, 0, 0};
    Slot probe_slots[SLOTS];
    Slot value_slots[SLOTS];
    unsigned long long *masks = bucket_array(buckets, bucket_shift, items);
    int cached = masks != NULL; /* many routes: the slots are used too */
    if (cached) {
        memset(probe_slots, 0, sizeof(probe_slots));
        memset(value_slots, 0, sizeof(value_slots));
    }
    PyObject *iter = PyObject_GetIter(items);
    if (iter == NULL) {
        PyMem_Free(masks); /* the slots hold nothing yet */
        return NULL;
    }
    PyObject *item;
    while ((item = PyIter_Next(iter)) != NULL) {
        PyObject *key;
        long long origin = fixed_origin;
        if (fixed_origin < 0) {
            if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
                PyErr_SetString(PyExc_TypeError, "expected (key, attrs) pairs");
                goto error_item;
            }
            key = PyTuple_GET_ITEM(item, 0);
            PyObject *origin_obj = PyObject_GetAttr(PyTuple_GET_ITEM(item, 1), origin_as_name);
            if (origin_obj == NULL)
                goto error_item;
            origin = PyLong_AsLongLong(origin_obj);
            Py_DECREF(origin_obj);
            if (origin == -1 && PyErr_Occurred())
                goto error_item;
        } else {
            key = item;
        }
        if (lookup) {
            PyObject *known = PyDict_GetItemWithError(memo, key);  /* borrowed */
            if (known != NULL) {
                long long k = PyLong_AsLongLong(known);
                if (k == -1 && PyErr_Occurred())
                    goto error_item;
                if ((k >> 2) == origin) {
                    counts[k & 3]++;
                    Py_DECREF(item);
                    continue;
                }
            } else if (PyErr_Occurred()) {
                goto error_item;
            }
        }
        unsigned long long key_value = PyLong_AsUnsignedLongLong(key);
        if (key_value == (unsigned long long)-1 && PyErr_Occurred())
            goto error_item;
        unsigned long long network = key_value >> 8;
        long long length = (long long)(key_value & 0xFF);
        unsigned long long mask_value = 0;
        if (cached && (network >> bucket_shift) < (1u << 16)) {
            mask_value = masks[network >> bucket_shift];
        } else {
            PyObject *bucket = PyLong_FromUnsignedLongLong(network >> bucket_shift);
            if (bucket == NULL)
                goto error_item;
            PyObject *mask = PyDict_GetItemWithError(buckets, bucket);  /* borrowed */
            Py_DECREF(bucket);
            if (mask != NULL) {
                mask_value = PyLong_AsUnsignedLongLong(mask);
                if (mask_value == (unsigned long long)-1 && PyErr_Occurred())
                    goto error_item;
            } else if (PyErr_Occurred()) {
                goto error_item;
            }
        }
        unsigned long long mask_length_value = (mask_value << 8) | (unsigned long long)length;
        Slot *probe_slot = cached ? &probe_slots[slot_of(mask_length_value)] : NULL;
        PyObject *probes;
        if (probe_slot != NULL && probe_slot->obj != NULL
                && probe_slot->key == mask_length_value) {
            probes = probe_slot->obj;
            Py_INCREF(probes);
        } else {
            PyObject *mask_length = PyLong_FromUnsignedLongLong(mask_length_value);
            if (mask_length == NULL)
                goto error_item;
            probes = PyDict_GetItemWithError(probe_cache, mask_length);  /* borrowed */
            if (probes != NULL) {
                Py_INCREF(probes);
            } else if (PyErr_Occurred()) {
                Py_DECREF(mask_length);
                goto error_item;
            } else {
                probes = PyObject_CallOneArg(probes_of, mask_length);
                if (probes == NULL) {
                    Py_DECREF(mask_length);
                    goto error_item;
                }
            }
            Py_DECREF(mask_length);
            if (probe_slot != NULL) {
                Py_INCREF(probes);
                Py_XSETREF(probe_slot->obj, probes);
                probe_slot->key = mask_length_value;
            }
        }
        if (!PyTuple_Check(probes)) {
            Py_DECREF(probes);
            PyErr_SetString(PyExc_TypeError, "probes are not a tuple");
            goto error_item;
        }
        int state = NOT_FOUND;
        Py_ssize_t n_probes = PyTuple_GET_SIZE(probes);
        for (Py_ssize_t i = 0; i < n_probes; i++) {
            PyObject *probe = PyTuple_GET_ITEM(probes, i);
            Py_ssize_t n = PyLong_AsSsize_t(PyTuple_GET_ITEM(probe, 0));
            unsigned long long netmask = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(probe, 1));
            if (PyErr_Occurred() || n < 0 || n >= PyList_GET_SIZE(by_length)) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_ValueError, "probe length out of range");
                Py_DECREF(probes);
                goto error_item;
            }
            PyObject *prefix = PyLong_FromUnsignedLongLong(network & netmask);
            if (prefix == NULL) {
                Py_DECREF(probes);
                goto error_item;
            }
            PyObject *payload = PyDict_GetItemWithError(PyList_GET_ITEM(by_length, n), prefix);
            Py_DECREF(prefix);
            if (payload == NULL) {
                if (PyErr_Occurred()) {
                    Py_DECREF(probes);
                    goto error_item;
                }
                continue;
            }
            state = INVALID;
            if (origin) {
                int matched;
                if (payload_matches(payload, origin, length, &matched) < 0) {
                    Py_DECREF(probes);
                    goto error_item;
                }
                if (matched) {
                    state = VALID;
                    break;
                }
            }
        }
        Py_DECREF(probes);
        counts[state]++;
        long long memo_value = (origin << 2) | state;
        int stored;
        if (cached) {
            Slot *value_slot = &value_slots[slot_of((unsigned long long)memo_value)];
            if (value_slot->obj == NULL || value_slot->key != (unsigned long long)memo_value) {
                PyObject *value = PyLong_FromLongLong(memo_value);
                if (value == NULL)
                    goto error_item;
                Py_XSETREF(value_slot->obj, value);
                value_slot->key = (unsigned long long)memo_value;
            }
            stored = PyDict_SetItem(memo, key, value_slot->obj);
        } else {
            PyObject *value = PyLong_FromLongLong(memo_value);
            if (value == NULL)
                goto error_item;
            stored = PyDict_SetItem(memo, key, value);
            Py_DECREF(value);
        }
        if (stored < 0)
            goto error_item;
        Py_DECREF(item);
    }
    Py_DECREF(iter);
    goto done;

error_item:
    Py_DECREF(item);
    Py_DECREF(iter);
done: /* both ways out: release the call's caches; an error is still set on the way */
    if (cached) {
        slots_clear(probe_slots);
        slots_clear(value_slots);
    }
    PyMem_Free(masks);
    if (PyErr_Occurred())
        return NULL;
    return Py_BuildValue("[nnn]", counts[0], counts[1], counts[2]);
}

static PyObject *
select_routes(PyObject *self, PyObject *args)
{
    /* select(table, kshift, buckets, pairs) -> [(key, value), ...] or [key, ...]: the
     * entries of a dict keyed by IPv4 route keys whose bucket (key >> kshift) is in the
     * set `buckets` (rov.py: the routes a VRP change may affect). */
    PyObject *table, *buckets;
    int kshift, pairs;
    if (!PyArg_ParseTuple(args, "O!iO!p", &PyDict_Type, &table, &kshift, &PySet_Type, &buckets,
                          &pairs))
        return NULL;
    /* the buckets as a bitmap: IPv4 buckets are the first 16 bits */
    static unsigned char bitmap[1 << 13];
    memset(bitmap, 0, sizeof(bitmap));
    PyObject *iter = PyObject_GetIter(buckets);
    if (iter == NULL)
        return NULL;
    PyObject *b;
    while ((b = PyIter_Next(iter)) != NULL) {
        unsigned long long v = PyLong_AsUnsignedLongLong(b);
        Py_DECREF(b);
        if (v == (unsigned long long)-1 && PyErr_Occurred())
            break;
        if (v >= (1u << 16)) {
            PyErr_SetString(PyExc_ValueError, "IPv4 bucket out of range");
            break;
        }
        bitmap[v >> 3] |= (unsigned char)(1u << (v & 7));
    }
    Py_DECREF(iter);
    if (PyErr_Occurred())
        return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(table, &pos, &key, &value)) {
        unsigned long long k = PyLong_AsUnsignedLongLong(key);
        if (k == (unsigned long long)-1 && PyErr_Occurred())
            goto error;
        unsigned long long bucket = k >> kshift;
        if (bucket >= (1u << 16)) {
            PyErr_SetString(PyExc_ValueError, "not an IPv4 route key");
            goto error;
        }
        if (!(bitmap[bucket >> 3] & (1u << (bucket & 7))))
            continue;
        PyObject *entry = pairs ? PyTuple_Pack(2, key, value) : (Py_INCREF(key), key);
        if (entry == NULL)
            goto error;
        int failed = PyList_Append(out, entry);
        Py_DECREF(entry);
        if (failed < 0)
            goto error;
    }
    return out;
error:
    Py_DECREF(out);
    return NULL;
}

static PyMethodDef methods[] = {
    {"count", count, METH_VARARGS,
     "count(items, memo, origin, lookup, by_length, buckets, bucket_shift, probe_cache, "
     "probes_of) -> [not_found, valid, invalid] (IPv4)"},
    {"select", select_routes, METH_VARARGS,
     "select(table, kshift, buckets, pairs) -> entries whose key >> kshift is in buckets"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rov", "C loop of RFC 6811 validation (see rov.py)", -1, methods,
};

PyMODINIT_FUNC
PyInit__rov(void)
{
    origin_as_name = PyUnicode_InternFromString("origin_as");
    if (origin_as_name == NULL)
        return NULL;
    return PyModule_Create(&module);
}
