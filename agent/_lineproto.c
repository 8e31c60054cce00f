/*
 * Line-protocol encoding of a batch of points, the agent's hot path.
 *
 * Why C: the pure-Python encoder spends about 2 us per point formatting fields, which is
 * most of the agent's CPU per point and kept delivery at half the speed of a raw POST;
 * this takes about 0.27 us. It writes directly only what needs no judgement: names with
 * nothing to escape (the same text in both protocol versions), integers, and floats it
 * can write exactly as repr does. Everything else (escaping, string fields, other floats)
 * is done by Python (agent/points.py, called back on a cache miss) or CPython's own
 * repr, so the two encoders cannot disagree; hypothesis tests compare their bytes.
 * agent/points.py falls back to pure Python when this module is not built.
 *
 * One file (~860 lines): `encode_batch`, `stamp` and `select` share the Point slot offsets
 * (learn_point_type, point_member) and the interned attribute names, static to this
 * compilation unit; split, they would need a shared header and symbols exported between
 * extension modules, for no gain in what each part does.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MAX_PLAIN_TAGS 16
#define MAX_SHAPE_FIELDS 32

/* The key layout of the last point seen, all of it known to need no escaping. A collector's
 * points share their key objects (literals in its code), so recognising the layout is one
 * pointer comparison per key, instead of scanning every name and sorting the tags again.
 * Strong references: a freed key's address could come back as another string. */
typedef struct {
    PyObject *measurement;
    Py_ssize_t n_tags; /* -1: no layout remembered */
    PyObject *tag_keys[MAX_PLAIN_TAGS]; /* in the dict's order */
    unsigned char sorted[MAX_PLAIN_TAGS]; /* dict positions in series-key order */
    Py_ssize_t n_fields; /* -1: no layout remembered */
    PyObject *field_keys[MAX_SHAPE_FIELDS];
} Shape;

static void shape_clear_tags(Shape *shape) {
    Py_CLEAR(shape->measurement);
    for (Py_ssize_t i = 0; i < shape->n_tags; i++) {
        Py_CLEAR(shape->tag_keys[i]);
    }
    shape->n_tags = -1;
}

static void shape_clear_fields(Shape *shape) {
    for (Py_ssize_t i = 0; i < shape->n_fields; i++) {
        Py_CLEAR(shape->field_keys[i]);
    }
    shape->n_fields = -1;
}

/* The request body, built in place inside a bytes object: no copy when it is returned. */
typedef struct {
    Shape shape;
    PyObject *bytes;
    char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
    /* " <time_ns>" of the last line: the points of one collection share their timestamp. */
    PyObject *last_time_obj;
    long long last_time_ns;
    char time_text[24];
    int time_text_len;
} Buffer;

static int buf_reserve(Buffer *b, Py_ssize_t extra) {
    if (b->len + extra <= b->cap) {
        return 0;
    }
    Py_ssize_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) {
        cap *= 2;
    }
    if (b->bytes == NULL) {
        b->bytes = PyBytes_FromStringAndSize(NULL, cap);
        if (b->bytes == NULL) {
            return -1;
        }
    } else if (_PyBytes_Resize(&b->bytes, cap) < 0) {
        return -1;
    }
    b->data = PyBytes_AS_STRING(b->bytes);
    b->cap = cap;
    return 0;
}

static int buf_put(Buffer *b, const char *s, Py_ssize_t n) {
    if (buf_reserve(b, n) < 0) {
        return -1;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}

/* UTF-8 text of a str; compact ASCII strings (nearly all names) are read in place. */
static inline const char *utf8_of(PyObject *str, Py_ssize_t *len) {
    if (PyUnicode_IS_COMPACT_ASCII(str)) {
        *len = PyUnicode_GET_LENGTH(str);
        return (const char *)(((PyASCIIObject *)str) + 1);
    }
    return PyUnicode_AsUTF8AndSize(str, len);
}

static int buf_put_str(Buffer *b, PyObject *str) {
    Py_ssize_t n;
    const char *s = utf8_of(str, &n);
    if (s == NULL) {
        return -1;
    }
    return buf_put(b, s, n);
}

static PyObject *str_measurement, *str_tags, *str_fields, *str_time_ns, *str_host;

/* Decimal digits of v into out (no terminator); returns the length. snprintf costs more
 * than the rest of a point's encoding. */
static int put_int64(char *out, long long v) {
    static const char pairs[] =
        "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
        "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
        "8081828384858687888990919293949596979899";
    char digits[24];
    int start = 24;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    while (u >= 100) {
        unsigned pair = (unsigned)(u % 100) * 2;
        u /= 100;
        digits[--start] = pairs[pair + 1];
        digits[--start] = pairs[pair];
    }
    if (u >= 10) {
        digits[--start] = pairs[u * 2 + 1];
        digits[--start] = pairs[u * 2];
    } else {
        digits[--start] = (char)('0' + u);
    }
    int len = 0;
    if (v < 0) {
        out[len++] = '-';
    }
    memcpy(out + len, digits + start, (size_t)(24 - start));
    return len + 24 - start;
}

/* Python's repr(d) for the common cases, exactly, or -1 to ask PyOS_double_to_string.
 *
 * repr writes the shortest digits that read back as d, in fixed notation for
 * 1e-4 <= |d| < 1e16. Handled here:
 * - integral |d| < 2**53: every integer there is a double, so no shorter text reads back;
 * - |d| with k decimals and at most 15 significant digits, k the smallest that reads
 *   back: m / 10**k is correctly rounded (m < 2**53 and 10**k are exact), so the text
 *   "m with k decimals" reads back as d exactly when the division gives d. With at most
 *   15 digits, two neighbouring candidates are further apart than d's ulp, so the text is
 *   the only one of its length: the one repr picks.
 * tests/test_points.py compares this against repr. */
static int format_double(char *out, double d) {
    int len = 0;
    if (signbit(d)) {
        out[len++] = '-';
        d = -d;
    }
    if (d == 0.0) {
        memcpy(out + len, "0.0", 3);
        return len + 3;
    }
    if (!(d >= 1e-4 && d < 9007199254740992.0)) {
        return -1;
    }
    long long whole = (long long)d;
    if ((double)whole == d) {
        len += put_int64(out + len, whole);
        memcpy(out + len, ".0", 2);
        return len + 2;
    }
    double scale = 1.0;
    for (int k = 1; k <= 19; k++) {
        scale *= 10.0;
        double scaled = d * scale;
        if (scaled >= 1e15) {
            return -1;
        }
        long long m = llround(scaled);
        if ((double)m / scale != d) {
            continue;
        }
        char digits[24];
        int n = put_int64(digits, m);
        if (n <= k) { /* 0.000ddd */
            out[len++] = '0';
            out[len++] = '.';
            memset(out + len, '0', (size_t)(k - n));
            len += k - n;
            memcpy(out + len, digits, (size_t)n);
            return len + n;
        }
        memcpy(out + len, digits, (size_t)(n - k));
        len += n - k;
        out[len++] = '.';
        memcpy(out + len, digits + n - k, (size_t)k);
        return len + k;
    }
    return -1;
}

/* format_float(d) -> str, for the test that holds format_double to repr. */
static PyObject *format_float(PyObject *self, PyObject *arg) {
    double d = PyFloat_AsDouble(arg);
    if (d == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    char out[48];
    int n = format_double(out, d);
    if (n < 0) {
        Py_RETURN_NONE;
    }
    return PyUnicode_FromStringAndSize(out, n);
}

/* Bytes after which a name is no longer written as it is: what InfluxDB escapes (, = space),
 * the backslash (1.x and 2.x read it differently), and what ends a line. Names without any
 * of these are the same text in both protocol versions (see escape_identifier in
 * agent/points.py); all others go through the Python encoder. */
static unsigned char not_plain[256];

static int is_plain(const char *s, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        if (not_plain[(unsigned char)s[i]]) {
            return 0;
        }
    }
    return 1;
}

/* UTF-8 byte order is code point order, the order Python's sorted() gives str keys. */
static int key_before(PyObject *a, PyObject *b) {
    Py_ssize_t a_len, b_len;
    const char *a_text = utf8_of(a, &a_len);
    const char *b_text = utf8_of(b, &b_len);
    Py_ssize_t n = a_len < b_len ? a_len : b_len;
    int c = memcmp(a_text, b_text, (size_t)n);
    return c < 0 || (c == 0 && a_len < b_len);
}

/* Remembers this point's measurement and tag keys as the shape, when they all need no
 * escaping: 1 remembered, 0 not (the Python encoder writes this series). */
static int learn_tag_shape(Shape *shape, PyObject *measurement, PyObject **keys,
                           Py_ssize_t count) {
    shape_clear_tags(shape);
    Py_ssize_t len;
    const char *text = utf8_of(measurement, &len);
    if (text == NULL) {
        PyErr_Clear(); /* e.g. a lone surrogate: the Python encoder reports it */
        return 0;
    }
    if (!is_plain(text, len)) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        if (!PyUnicode_CheckExact(keys[i])) {
            return 0;
        }
        text = utf8_of(keys[i], &len);
        if (text == NULL) {
            PyErr_Clear();
            return 0;
        }
        if (!is_plain(text, len)) {
            return 0;
        }
    }
    for (Py_ssize_t i = 0; i < count; i++) { /* insertion sort: a handful of tags */
        Py_ssize_t at = i;
        while (at > 0 && key_before(keys[i], keys[shape->sorted[at - 1]])) {
            shape->sorted[at] = shape->sorted[at - 1];
            at--;
        }
        shape->sorted[at] = (unsigned char)i;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_INCREF(keys[i]);
        shape->tag_keys[i] = keys[i];
    }
    Py_INCREF(measurement);
    shape->measurement = measurement;
    shape->n_tags = count;
    return 1;
}

/* The series key (measurement and sorted tags) written straight into b when no name needs
 * escaping: 1 written, 0 not plain (b unchanged, ask the cache), -1 error. Most points
 * take this path, which hashes nothing and allocates nothing. */
static int put_plain_series(Buffer *b, PyObject *measurement, PyObject *tags) {
    Py_ssize_t n_tags = PyDict_GET_SIZE(tags);
    if (n_tags > MAX_PLAIN_TAGS || !PyUnicode_CheckExact(measurement)) {
        return 0;
    }
    Shape *shape = &b->shape;
    PyObject *keys[MAX_PLAIN_TAGS], *values[MAX_PLAIN_TAGS];
    int same = measurement == shape->measurement && n_tags == shape->n_tags;
    Py_ssize_t pos = 0, count = 0;
    PyObject *key, *value;
    while (PyDict_Next(tags, &pos, &key, &value)) {
        same = same && key == shape->tag_keys[count];
        keys[count] = key;
        values[count++] = value;
    }
    if (!same && !learn_tag_shape(shape, measurement, keys, count)) {
        return 0;
    }
    Py_ssize_t measurement_len;
    const char *measurement_text = utf8_of(measurement, &measurement_len);
    const char *value_text[MAX_PLAIN_TAGS];
    Py_ssize_t value_len[MAX_PLAIN_TAGS];
    Py_ssize_t total = measurement_len;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (!PyUnicode_CheckExact(values[i])) {
            return 0;
        }
        value_text[i] = utf8_of(values[i], &value_len[i]);
        if (value_text[i] == NULL) {
            PyErr_Clear();
            return 0;
        }
        if (!is_plain(value_text[i], value_len[i])) {
            return 0;
        }
        if (value_len[i] > 0) { /* an empty tag is an absent tag */
            Py_ssize_t key_len;
            utf8_of(keys[i], &key_len);
            total += 2 + key_len + value_len[i];
        }
    }
    if (buf_reserve(b, total) < 0) {
        return -1;
    }
    char *out = b->data + b->len;
    memcpy(out, measurement_text, (size_t)measurement_len);
    out += measurement_len;
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_ssize_t j = shape->sorted[i];
        if (value_len[j] == 0) {
            continue;
        }
        Py_ssize_t key_len;
        const char *key_text = utf8_of(keys[j], &key_len);
        *out++ = ',';
        memcpy(out, key_text, (size_t)key_len);
        out += key_len;
        *out++ = '=';
        memcpy(out, value_text[j], (size_t)value_len[j]);
        out += value_len[j];
    }
    b->len += total;
    return 1;
}

/* Where a Point (a slots dataclass) keeps its four members, so the loop reads them
 * directly instead of through attribute lookup. -1: not known, use getattr. */
static PyTypeObject *point_type = NULL;
static Py_ssize_t point_offsets[4] = {-1, -1, -1, -1};

static void learn_point_type(PyTypeObject *type) {
    PyObject *names[4] = {str_measurement, str_tags, str_fields, str_time_ns};
    Py_ssize_t offsets[4];
    for (int i = 0; i < 4; i++) {
        PyObject *descr = PyObject_GetAttr((PyObject *)type, names[i]);
        if (descr == NULL) {
            PyErr_Clear();
            return;
        }
        int usable = Py_IS_TYPE(descr, &PyMemberDescr_Type) &&
                     ((PyMemberDescrObject *)descr)->d_member->type == T_OBJECT_EX;
        offsets[i] = usable ? ((PyMemberDescrObject *)descr)->d_member->offset : -1;
        Py_DECREF(descr);
        if (!usable) {
            return;
        }
    }
    Py_XDECREF(point_type);
    Py_INCREF(type);
    point_type = type;
    memcpy(point_offsets, offsets, sizeof offsets);
}

/* New reference to member i of point, or NULL with an exception set. */
static PyObject *point_member(PyObject *point, int i, PyObject *name) {
    if (Py_TYPE(point) == point_type) {
        PyObject *value = *(PyObject **)((char *)point + point_offsets[i]);
        if (value != NULL) {
            Py_INCREF(value);
            return value;
        }
    }
    return PyObject_GetAttr(point, name);
}

/* Cached text for `key` in `cache`, else `fallback(*args)` (which fills the cache). */
static PyObject *cached_or_call(PyObject *cache, PyObject *key, PyObject *fallback,
                                PyObject *arg1, PyObject *arg2) {
    PyObject *hit = PyDict_GetItemWithError(cache, key);
    if (hit != NULL) {
        Py_INCREF(hit);
        return hit;
    }
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (arg2 != NULL) {
        return PyObject_CallFunctionObjArgs(fallback, arg1, arg2, NULL);
    }
    return PyObject_CallFunctionObjArgs(fallback, arg1, NULL);
}

/* Appends "key=value" for one field; returns 1 written, 0 dropped, -1 error. */
static int put_field(Buffer *b, PyObject *key, PyObject *value, PyObject *field_cache,
                     PyObject *field_key, PyObject *format_value, int first, int key_plain) {
    char number[32];
    const char *text = NULL;
    Py_ssize_t text_len = 0;
    char *owned = NULL;
    PyObject *formatted = NULL;

    if (value == Py_True) {
        text = "true";
        text_len = 4;
    } else if (value == Py_False) {
        text = "false";
        text_len = 5;
    } else if (PyLong_CheckExact(value)) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (v == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (overflow) {
            formatted = PyObject_CallFunctionObjArgs(format_value, value, NULL);
        } else {
            text_len = put_int64(number, v);
            number[text_len++] = 'i';
            text = number;
        }
    } else if (PyFloat_CheckExact(value)) {
        double d = PyFloat_AS_DOUBLE(value);
        if (!isfinite(d)) {
            return 0;
        }
        text_len = format_double(number, d);
        if (text_len >= 0) {
            text = number;
        } else {
            owned = PyOS_double_to_string(d, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
            if (owned == NULL) {
                return -1;
            }
            text = owned;
            text_len = (Py_ssize_t)strlen(owned);
        }
    } else {
        formatted = PyObject_CallFunctionObjArgs(format_value, value, NULL);
    }
    if (formatted != NULL) {
        if (formatted == Py_None) {
            Py_DECREF(formatted);
            return 0;
        }
        text = PyUnicode_AsUTF8AndSize(formatted, &text_len);
        if (text == NULL) {
            Py_DECREF(formatted);
            return -1;
        }
    } else if (text == NULL) {
        return -1; /* the call above failed */
    }
    int rc = -1;
    PyObject *escaped = NULL;
    if (key_plain || PyUnicode_CheckExact(key)) {
        Py_ssize_t key_len;
        const char *key_text = utf8_of(key, &key_len);
        if (key_text != NULL && (key_plain || is_plain(key_text, key_len))) {
            if (buf_reserve(b, 2 + key_len + text_len) == 0) {
                char *out = b->data + b->len;
                if (!first) {
                    *out++ = ',';
                }
                memcpy(out, key_text, (size_t)key_len);
                out += key_len;
                *out++ = '=';
                memcpy(out, text, (size_t)text_len);
                b->len = out + text_len - b->data;
                rc = 1;
            }
            goto cleanup;
        }
        PyErr_Clear();
    }
    escaped = cached_or_call(field_cache, key, field_key, key, NULL);
    if (escaped != NULL) {
        if ((first || buf_put(b, ",", 1) == 0) && buf_put_str(b, escaped) == 0 &&
            buf_put(b, "=", 1) == 0 && buf_put(b, text, text_len) == 0) {
            rc = 1;
        }
        Py_DECREF(escaped);
    }
cleanup:
    Py_XDECREF(formatted);
    if (owned != NULL) {
        PyMem_Free(owned);
    }
    return rc;
}

/* Remembers these field keys as the shape when they all need no escaping. */
static void learn_field_shape(Shape *shape, PyObject *fields) {
    shape_clear_fields(shape);
    if (PyDict_GET_SIZE(fields) > MAX_SHAPE_FIELDS) {
        return;
    }
    Py_ssize_t pos = 0, count = 0;
    PyObject *key, *value;
    while (PyDict_Next(fields, &pos, &key, &value)) {
        if (!PyUnicode_CheckExact(key)) {
            return;
        }
        Py_ssize_t len;
        const char *text = utf8_of(key, &len);
        if (text == NULL) {
            PyErr_Clear();
            return;
        }
        if (!is_plain(text, len)) {
            return;
        }
    }
    pos = 0;
    while (PyDict_Next(fields, &pos, &key, &value)) {
        Py_INCREF(key);
        shape->field_keys[count++] = key;
    }
    shape->n_fields = count;
}

static int put_point(Buffer *b, PyObject *point, PyObject *series_cache, PyObject *series_key,
                     PyObject *field_cache, PyObject *field_key, PyObject *format_value,
                     Py_ssize_t *lines, Py_ssize_t *dropped_fields, Py_ssize_t *dropped_points) {
    PyObject *measurement = NULL, *tags = NULL, *fields = NULL, *time_ns = NULL;
    PyObject *cache_key = NULL, *series = NULL;
    int rc = -1;
    Py_ssize_t line_start = b->len;

    measurement = point_member(point, 0, str_measurement);
    tags = measurement ? point_member(point, 1, str_tags) : NULL;
    fields = tags ? point_member(point, 2, str_fields) : NULL;
    time_ns = fields ? point_member(point, 3, str_time_ns) : NULL;
    if (time_ns == NULL) {
        goto done;
    }
    if (!PyDict_Check(tags) || !PyDict_Check(fields)) {
        PyErr_SetString(PyExc_TypeError, "Point.tags and Point.fields must be dicts");
        goto done;
    }
    if (*lines > 0 && buf_put(b, "\n", 1) < 0) {
        goto done;
    }
    int plain = put_plain_series(b, measurement, tags);
    if (plain < 0) {
        goto done;
    }
    if (!plain) {
        /* Cache key: one flat tuple (measurement, k1, v1, k2, v2, ...), one allocation. It
         * cannot collide with the Python encoder's (measurement, ((k, v), ...)) keys. */
        cache_key = PyTuple_New(1 + 2 * PyDict_GET_SIZE(tags));
        if (cache_key == NULL) {
            goto done;
        }
        Py_INCREF(measurement);
        PyTuple_SET_ITEM(cache_key, 0, measurement);
        Py_ssize_t tag_pos = 0, slot = 1;
        PyObject *tag_key, *tag_value;
        while (PyDict_Next(tags, &tag_pos, &tag_key, &tag_value)) {
            Py_INCREF(tag_key);
            Py_INCREF(tag_value);
            PyTuple_SET_ITEM(cache_key, slot++, tag_key);
            PyTuple_SET_ITEM(cache_key, slot++, tag_value);
        }
        series = PyDict_GetItemWithError(series_cache, cache_key);
        if (series != NULL) {
            Py_INCREF(series);
        } else {
            if (PyErr_Occurred()) {
                goto done;
            }
            series = PyObject_CallFunctionObjArgs(series_key, measurement, tags, NULL);
            if (series == NULL || PyDict_SetItem(series_cache, cache_key, series) < 0) {
                goto done;
            }
        }
        if (buf_put_str(b, series) < 0) {
            goto done;
        }
    }
    if (buf_put(b, " ", 1) < 0) {
        goto done;
    }
    Py_ssize_t pos = 0, index = 0;
    PyObject *key, *value;
    int written = 0;
    Shape *shape = &b->shape;
    int same = PyDict_GET_SIZE(fields) == shape->n_fields;
    while (PyDict_Next(fields, &pos, &key, &value)) {
        same = same && key == shape->field_keys[index++];
        int field_rc = put_field(b, key, value, field_cache, field_key, format_value,
                                 written == 0, same);
        if (field_rc < 0) {
            goto done;
        }
        if (field_rc == 0) {
            (*dropped_fields)++;
        } else {
            written++;
        }
    }
    if (!same) {
        learn_field_shape(shape, fields);
    }
    if (written == 0) {
        b->len = line_start; /* nothing a server can carry: no line at all */
        (*dropped_points)++;
        rc = 0;
        goto done;
    }
    if (time_ns != b->last_time_obj) { /* one collection's points share the int object */
        /* AndOverflow reads the digits directly; plain AsLongLong goes through a byte array
         * for every value above 2**30 (all timestamps). It raises the same error. */
        int overflow = 0;
        long long ts = PyLong_AsLongLongAndOverflow(time_ns, &overflow);
        if (overflow) {
            ts = PyLong_AsLongLong(time_ns);
        }
        if (ts == -1 && PyErr_Occurred()) {
            goto done;
        }
        if (ts != b->last_time_ns || b->last_time_obj == NULL) {
            b->time_text_len = 0;
            if (ts != 0) {
                b->time_text[0] = ' ';
                b->time_text_len = 1 + put_int64(b->time_text + 1, ts);
            }
            b->last_time_ns = ts;
        }
        Py_INCREF(time_ns);
        Py_XSETREF(b->last_time_obj, time_ns);
    }
    if (b->time_text_len && buf_put(b, b->time_text, b->time_text_len) < 0) {
        goto done;
    }
    (*lines)++;
    rc = 0;
done:
    Py_XDECREF(measurement);
    Py_XDECREF(tags);
    Py_XDECREF(fields);
    Py_XDECREF(time_ns);
    Py_XDECREF(cache_key);
    Py_XDECREF(series);
    return rc;
}

/* Bytes per line of the last batch: the next body is reserved at that size (plus a
 * margin) so it is neither regrown (a copy and fresh pages) nor much too large. */
static Py_ssize_t last_bytes_per_line = 128;

/* encode_batch(points, series_cache, series_key, field_cache, field_key, format_value)
 *   -> (body: bytes, lines: int, dropped_fields: int, dropped_points: int) */
static PyObject *encode_batch(PyObject *self, PyObject *args) {
    PyObject *points, *series_cache, *series_key, *field_cache, *field_key, *format_value;
    if (!PyArg_ParseTuple(args, "OO!OO!OO", &points, &PyDict_Type, &series_cache, &series_key,
                          &PyDict_Type, &field_cache, &field_key, &format_value)) {
        return NULL;
    }
    PyObject *seq = PySequence_Fast(points, "points must be a sequence");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t lines = 0, dropped_fields = 0, dropped_points = 0;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    Buffer b = {{NULL, -1, {NULL}, {0}, -1, {NULL}}, NULL, NULL, 0, 0, NULL, 0, {0}, 0};
    if (buf_reserve(&b, 64 + n * (last_bytes_per_line + last_bytes_per_line / 8)) < 0) {
        Py_DECREF(seq);
        return NULL;
    }
    PyObject **items = PySequence_Fast_ITEMS(seq);
    if (n > 0 && Py_TYPE(items[0]) != point_type) {
        learn_point_type(Py_TYPE(items[0]));
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (put_point(&b, items[i], series_cache, series_key, field_cache, field_key,
                      format_value, &lines, &dropped_fields, &dropped_points) < 0) {
            Py_DECREF(seq);
            Py_DECREF(b.bytes);
            Py_XDECREF(b.last_time_obj);
            shape_clear_tags(&b.shape);
            shape_clear_fields(&b.shape);
            return NULL;
        }
    }
    Py_DECREF(seq);
    Py_XDECREF(b.last_time_obj);
    shape_clear_tags(&b.shape);
    shape_clear_fields(&b.shape);
    if (lines > 0) {
        last_bytes_per_line = b.len / lines + 1;
    }
    if (_PyBytes_Resize(&b.bytes, b.len) < 0) {
        return NULL;
    }
    return Py_BuildValue("(Nnnn)", b.bytes, lines, dropped_fields, dropped_points);
}

/* stamp(points: list, now_ns: int, hostname: str) -> None
 * What Pipeline.emit adds to every point: a timestamp where time_ns is 0, the host tag
 * where there is none. */
static PyObject *stamp(PyObject *self, PyObject *args) {
    PyObject *points, *now_ns, *hostname;
    if (!PyArg_ParseTuple(args, "O!O!U", &PyList_Type, &points, &PyLong_Type, &now_ns,
                          &hostname)) {
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(points);
    if (n > 0 && Py_TYPE(PyList_GET_ITEM(points, 0)) != point_type) {
        learn_point_type(Py_TYPE(PyList_GET_ITEM(points, 0)));
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(points); i++) {
        PyObject *point = PyList_GET_ITEM(points, i);
        Py_INCREF(point);
        PyObject *time_ns = point_member(point, 3, str_time_ns);
        int has_time = time_ns ? PyObject_IsTrue(time_ns) : -1;
        Py_XDECREF(time_ns);
        if (has_time < 0 || (has_time == 0 && PyObject_SetAttr(point, str_time_ns, now_ns) < 0)) {
            Py_DECREF(point);
            return NULL;
        }
        PyObject *tags = point_member(point, 1, str_tags);
        int has_host;
        if (tags != NULL && PyDict_CheckExact(tags)) { /* one lookup, not two */
            has_host = PyDict_SetDefault(tags, str_host, hostname) == NULL ? -1 : 1;
        } else {
            has_host = tags ? PySequence_Contains(tags, str_host) : -1;
        }
        if (has_host < 0 || (has_host == 0 && PyObject_SetItem(tags, str_host, hostname) < 0)) {
            Py_XDECREF(tags);
            Py_DECREF(point);
            return NULL;
        }
        Py_DECREF(tags);
        Py_DECREF(point);
    }
    Py_RETURN_NONE;
}

/* select(points: list, wanted: frozenset, filtered: str, tag: str, values: frozenset)
 *     -> list
 * The points the alert engine looks at (agent/alerts/engine.py), in order: those whose
 * measurement is in `wanted`, and those of measurement `filtered` whose tag `tag` is in
 * `values` (`link` points of the carrier uplinks). About 15 ns per point, against 100 ns
 * for the same loop in Python: the engine must cost a small fraction of the pipeline. */
static PyObject *select_points(PyObject *self, PyObject *args) {
    PyObject *points, *wanted, *filtered, *tag, *values;
    if (!PyArg_ParseTuple(args, "O!O!UUO!", &PyList_Type, &points, &PyFrozenSet_Type, &wanted,
                          &filtered, &tag, &PyFrozenSet_Type, &values)) {
        return NULL;
    }
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(points);
    if (n > 0 && Py_TYPE(PyList_GET_ITEM(points, 0)) != point_type) {
        learn_point_type(Py_TYPE(PyList_GET_ITEM(points, 0)));
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(points); i++) {
        PyObject *point = PyList_GET_ITEM(points, i);
        Py_INCREF(point);
        PyObject *measurement = point_member(point, 0, str_measurement);
        if (measurement == NULL) {
            goto fail;
        }
        int take;
        int is_filtered = measurement == filtered
            || (PyUnicode_Check(measurement) && PyUnicode_Compare(measurement, filtered) == 0);
        if (is_filtered) {
            take = 0;
            PyObject *tags = point_member(point, 1, str_tags);
            if (tags == NULL) {
                Py_DECREF(measurement);
                goto fail;
            }
            if (PyDict_Check(tags)) {
                PyObject *value = PyDict_GetItemWithError(tags, tag); /* borrowed */
                if (value == NULL && PyErr_Occurred()) {
                    Py_DECREF(tags);
                    Py_DECREF(measurement);
                    goto fail;
                }
                take = value != NULL ? PySet_Contains(values, value) : 0;
                if (take < 0) {
                    PyErr_Clear(); /* an unhashable tag value: not an uplink */
                    take = 0;
                }
            }
            Py_DECREF(tags);
        } else {
            take = PySet_Contains(wanted, measurement);
            if (take < 0) {
                PyErr_Clear();
                take = 0;
            }
        }
        Py_DECREF(measurement);
        if (take && PyList_Append(out, point) < 0) {
            goto fail;
        }
        Py_DECREF(point);
        continue;
    fail:
        Py_DECREF(point);
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

static PyMethodDef methods[] = {
    {"stamp", stamp, METH_VARARGS, "Timestamp and host tag where a point has none."},
    {"select", select_points, METH_VARARGS,
     "Points whose measurement is wanted, or is `filtered` with tag `tag` in `values`."},
    {"encode_batch", encode_batch, METH_VARARGS,
     "Encode points as line protocol; escaping comes from the caller's caches and callbacks."},
    {"format_float", format_float, METH_O,
     "repr(d) when the fast path can write it, else None (for tests)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_lineproto", "Line-protocol hot path (see agent/points.py).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__lineproto(void) {
    str_measurement = PyUnicode_InternFromString("measurement");
    str_tags = PyUnicode_InternFromString("tags");
    str_fields = PyUnicode_InternFromString("fields");
    str_time_ns = PyUnicode_InternFromString("time_ns");
    str_host = PyUnicode_InternFromString("host");
    if (!str_measurement || !str_tags || !str_fields || !str_time_ns || !str_host) {
        return NULL;
    }
    for (const char *c = ",= \\\n\r"; *c; c++) {
        not_plain[(unsigned char)*c] = 1;
    }
    not_plain[0] = 1;
    return PyModule_Create(&module);
}
