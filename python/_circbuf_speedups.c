/* _circbuf_speedups: the per-message calls of the Python package without
 * ctypes' per-call cost (docs/python.md, "Speed").
 *
 * A CPython extension module with no link dependency on libcircbuf: the
 * package loads libcircbuf.so.0 with ctypes as always and hands this module
 * the addresses of the C ABI's hot functions once (bind), so both go through
 * the same loaded library and the same handles. Every function here is one
 * C ABI call and the least Python around it (METH_FASTCALL, no keyword
 * parsing, handles and addresses as ints); the GIL is kept, as the package
 * keeps it for these calls (they never block). Nothing here is public API:
 * circbuf/_ring.py uses it when it imports, and falls back to ctypes when it
 * does not (or when CIRCBUF_PYTHON_PURE=1).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stddef.h>
#include <stdint.h>

typedef int (*ReadFn)(void*, void*, size_t);
typedef int (*ReadBatchFn)(void*, void*, size_t, uint32_t*, size_t, void*);
typedef int (*WriteFn)(void*, void const*, size_t);
typedef uint64_t (*CounterFn)(void const*);

static ReadFn g_read;
static ReadBatchFn g_read_batch;
static WriteFn g_write;
static CounterFn g_delivered;

static int Address(PyObject* o, void** out) {
  if (o == Py_None) {
    *out = NULL;
    return 0;
  }
  *out = PyLong_AsVoidPtr(o);
  return *out == NULL && PyErr_Occurred() ? -1 : 0;
}

static int Size(PyObject* o, size_t* out) {
  *out = PyLong_AsSize_t(o);
  return *out == (size_t)-1 && PyErr_Occurred() ? -1 : 0;
}

static int Bound(void) {
  if (g_read != NULL) return 0;
  PyErr_SetString(PyExc_RuntimeError, "_circbuf_speedups: bind() was not called");
  return -1;
}

/* bind(read, read_batch, write, delivered): the addresses of circbuf_read,
 * circbuf_read_batch, circbuf_write and circbuf_reader_delivered. */
static PyObject* Bind(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  (void)self;
  void* p[4];
  if (nargs != 4) return PyErr_Format(PyExc_TypeError, "bind() takes 4 addresses, not %zd", nargs);
  for (int i = 0; i < 4; ++i) {
    if (Address(args[i], &p[i]) < 0) return NULL;
    if (p[i] == NULL) return PyErr_Format(PyExc_ValueError, "bind(): address %d is NULL", i);
  }
  g_read = (ReadFn)p[0];
  g_read_batch = (ReadBatchFn)p[1];
  g_write = (WriteFn)p[2];
  g_delivered = (CounterFn)p[3];
  Py_RETURN_NONE;
}

/* read(handle, address, size) -> int: circbuf_read into memory the caller
 * holds (read_into's bound buffer). */
static PyObject* Read(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  (void)self;
  void* h = NULL;
  void* buffer = NULL;
  size_t size = 0;
  if (nargs != 3) return PyErr_Format(PyExc_TypeError, "read() takes 3 arguments, not %zd", nargs);
  if (Bound() < 0 || Address(args[0], &h) < 0 || Address(args[1], &buffer) < 0 || Size(args[2], &size) < 0) {
    return NULL;
  }
  return PyLong_FromLong(g_read(h, buffer, size));
}

/* read_bytes(handle, address, size) -> bytes or int: circbuf_read into the
 * reader's own buffer; a message comes back as bytes, any other outcome
 * (0 or negative) as its int. */
static PyObject* ReadBytes(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  (void)self;
  void* h = NULL;
  void* buffer = NULL;
  size_t size = 0;
  if (nargs != 3) return PyErr_Format(PyExc_TypeError, "read_bytes() takes 3 arguments, not %zd", nargs);
  if (Bound() < 0 || Address(args[0], &h) < 0 || Address(args[1], &buffer) < 0 || Size(args[2], &size) < 0) {
    return NULL;
  }
  int const n = g_read(h, buffer, size);
  if (n > 0) return PyBytes_FromStringAndSize((char const*)buffer, n);
  return PyLong_FromLong(n);
}

/* write(handle, data) -> int: circbuf_write of any C-contiguous buffer
 * (bytes without taking a buffer export): the bytes written (>= 1), or the
 * negative code (a message is never empty, so the two cannot be confused). */
static PyObject* Write(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  (void)self;
  void* h = NULL;
  if (nargs != 2) return PyErr_Format(PyExc_TypeError, "write() takes 2 arguments, not %zd", nargs);
  if (Bound() < 0 || Address(args[0], &h) < 0) return NULL;
  PyObject* const data = args[1];
  if (PyBytes_CheckExact(data)) {
    Py_ssize_t const n = PyBytes_GET_SIZE(data);
    int const rc = g_write(h, PyBytes_AS_STRING(data), (size_t)n);
    return PyLong_FromSsize_t(rc == 0 ? n : rc);
  }
  if (PyUnicode_Check(data)) {
    return PyErr_Format(PyExc_TypeError, "write() needs a bytes-like object, not str (encode it first)");
  }
  Py_buffer view;
  if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) return NULL; /* TypeError, BufferError */
  int const rc = g_write(h, view.buf, (size_t)view.len);
  Py_ssize_t const n = view.len;
  PyBuffer_Release(&view);
  return PyLong_FromSsize_t(rc == 0 ? n : rc);
}

/* read_batch(handle, address, capacity, sizes_address, max, result_address)
 * -> list of bytes, or a negative int: circbuf_read_batch, and the batch
 * cut into its messages here. */
static PyObject* ReadBatch(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  (void)self;
  void* h = NULL;
  void* buffer = NULL;
  size_t capacity = 0;
  void* sizes = NULL;
  size_t max = 0;
  void* result = NULL;
  if (nargs != 6) return PyErr_Format(PyExc_TypeError, "read_batch() takes 6 arguments, not %zd", nargs);
  if (Bound() < 0 || Address(args[0], &h) < 0 || Address(args[1], &buffer) < 0 || Size(args[2], &capacity) < 0 ||
      Address(args[3], &sizes) < 0 || Size(args[4], &max) < 0 || Address(args[5], &result) < 0) {
    return NULL;
  }
  int const n = g_read_batch(h, buffer, capacity, (uint32_t*)sizes, max, result);
  if (n < 0) return PyLong_FromLong(n);
  PyObject* const list = PyList_New(n);
  if (list == NULL) return NULL;
  char const* at = (char const*)buffer;
  for (int i = 0; i < n; ++i) {
    uint32_t const size = ((uint32_t const*)sizes)[i];
    PyObject* const message = PyBytes_FromStringAndSize(at, (Py_ssize_t)size);
    if (message == NULL) {
      Py_DECREF(list);
      return NULL;
    }
    PyList_SET_ITEM(list, i, message);
    at += size;
  }
  return list;
}

/* A read-only buffer is a TypeError, as the package's ctypes path says it. */
static PyObject* ReadOnly(char const* what) {
  if (PyErr_ExceptionMatches(PyExc_BufferError)) {
    PyErr_Clear();
    PyErr_Format(PyExc_TypeError, "read_batch_into(): %s must be a writable buffer", what);
  }
  return NULL;
}

/* read_batch_into(handle, buffer, sizes, result_address) -> int: circbuf_read_batch
 * into the caller's writable buffer and its array of uint32 lengths (any
 * writable C-contiguous buffer of 4-byte items: array('I'), numpy uint32, a
 * memoryview cast to 'I'); up to len(sizes) messages. The count, or a
 * negative code. */
static PyObject* ReadBatchInto(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  (void)self;
  void* h = NULL;
  void* result = NULL;
  if (nargs != 4) return PyErr_Format(PyExc_TypeError, "read_batch_into() takes 4 arguments, not %zd", nargs);
  if (Bound() < 0 || Address(args[0], &h) < 0 || Address(args[3], &result) < 0) return NULL;
  Py_buffer data;
  Py_buffer sizes;
  if (PyObject_GetBuffer(args[1], &data, PyBUF_WRITABLE) < 0) return ReadOnly("buffer");
  if (PyObject_GetBuffer(args[2], &sizes, PyBUF_WRITABLE | PyBUF_FORMAT) < 0) {
    PyBuffer_Release(&data);
    return ReadOnly("sizes");
  }
  PyObject* out = NULL;
  if (sizes.itemsize != 4 || sizes.len < 4) {
    PyErr_Format(PyExc_TypeError, "read_batch_into(): sizes must be a writable buffer of 4-byte unsigned items "
                                  "(array('I'), numpy.uint32), at least one long");
  } else {
    size_t const max = (size_t)(sizes.len / 4);
    out = PyLong_FromLong(g_read_batch(h, data.buf, (size_t)data.len, (uint32_t*)sizes.buf, max, result));
  }
  PyBuffer_Release(&sizes);
  PyBuffer_Release(&data);
  return out;
}

/* delivered(handle) -> int: circbuf_reader_delivered, a call that does
 * nothing but read a counter: the per-call floor of this binding. */
static PyObject* Delivered(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  (void)self;
  void* h = NULL;
  if (nargs != 1) return PyErr_Format(PyExc_TypeError, "delivered() takes 1 argument, not %zd", nargs);
  if (Bound() < 0 || Address(args[0], &h) < 0) return NULL;
  return PyLong_FromUnsignedLongLong(g_delivered(h));
}

/* ---- Call: a reader's read / read_into or a writer's write as one C callable ----
 * An instance attribute of the Reader or Writer (shadowing the class's
 * method of the same name), so that the common case (a message there, the
 * bound buffer, bytes to write) costs one vectorcall and one C ABI call, no
 * Python frame. Anything else (nothing to read, a lap, an error, another
 * buffer, other arguments) goes to `slow(owner, *args)`: the class's Python
 * method, which does everything the method does. The owner is held through a
 * weak reference, so no reference cycle keeps a Reader (and its ring) alive. */
enum { kRead = 0, kReadInto = 1, kWrite = 2 };

typedef struct {
  PyObject_HEAD
  vectorcallfunc vectorcall;
  int kind;
  void* handle;
  void* address; /* read: the reader's buffer; read_into: the bound buffer */
  size_t size;
  PyObject* bound; /* read_into: the bound buffer object (a strong reference), or NULL */
  PyObject* owner; /* a weak reference to the Reader or Writer */
  PyObject* slow;  /* the full method, called as slow(owner, *args, **kwargs) */
  PyObject* after; /* after(owner, outcome, *args): what to do with a C call's outcome other than success */
} Call;

/* slow(owner, *args) when the fast case does not apply (no C call made);
 * after(owner, outcome, *args) when the C call was made and did not succeed
 * (its outcome, a lap above all, must not be lost by calling again). */
static PyObject* Slow(Call* self, PyObject* const* args, size_t nargsf, PyObject* kwnames, PyObject* outcome) {
  Py_ssize_t const nargs = PyVectorcall_NARGS(nargsf);
  Py_ssize_t const total = nargs + (kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames));
  PyObject* stack[10];
  if (total > 8) {
    Py_XDECREF(outcome);
    return PyErr_Format(PyExc_TypeError, "too many arguments (%zd)", total);
  }
  PyObject* const owner = PyWeakref_GetObject(self->owner); /* borrowed; None once gone */
  if (owner == NULL) {
    Py_XDECREF(outcome);
    return NULL;
  }
  Py_ssize_t at = 0;
  stack[at++] = owner;
  if (outcome != NULL) stack[at++] = outcome;
  for (Py_ssize_t i = 0; i < total; ++i) stack[at + i] = args[i];
  PyObject* const result =
      PyObject_Vectorcall(outcome != NULL ? self->after : self->slow, stack, (size_t)(nargs + at), kwnames);
  Py_XDECREF(outcome);
  return result;
}

static PyObject* CallVectorcall(PyObject* callable, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
  Call* const self = (Call*)callable;
  Py_ssize_t const nargs = PyVectorcall_NARGS(nargsf);
  int rc = 0;
  if (kwnames == NULL && g_read != NULL) {
    switch (self->kind) {
      case kRead:
        if (nargs != 0) break;
        rc = g_read(self->handle, self->address, self->size);
        if (rc > 0) return PyBytes_FromStringAndSize((char const*)self->address, rc);
        return Slow(self, args, nargsf, kwnames, PyLong_FromLong(rc));
      case kReadInto:
        if (nargs != 1 || args[0] != self->bound || self->bound == NULL) break;
        rc = g_read(self->handle, self->address, self->size);
        if (rc > 0) return PyLong_FromLong(rc);
        return Slow(self, args, nargsf, kwnames, PyLong_FromLong(rc));
      case kWrite: {
        if (nargs != 1 || !PyBytes_CheckExact(args[0])) break;
        Py_ssize_t const n = PyBytes_GET_SIZE(args[0]);
        rc = g_write(self->handle, PyBytes_AS_STRING(args[0]), (size_t)n);
        if (rc == 0) return PyLong_FromSsize_t(n);
        return Slow(self, args, nargsf, kwnames, PyLong_FromLong(rc));
      }
      default: break;
    }
  }
  return Slow(self, args, nargsf, kwnames, NULL);
}

/* Call(kind, handle, address, size, owner_weakref, slow, after) */
static PyObject* CallNew(PyTypeObject* type, PyObject* args, PyObject* kwargs) {
  int kind = 0;
  PyObject* handle = NULL;
  PyObject* address = NULL;
  PyObject* size = NULL;
  PyObject* owner = NULL;
  PyObject* slow = NULL;
  PyObject* after = NULL;
  if (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0) return PyErr_Format(PyExc_TypeError, "Call() takes no keywords");
  if (!PyArg_ParseTuple(args, "iOOOOOO", &kind, &handle, &address, &size, &owner, &slow, &after)) return NULL;
  if (kind < kRead || kind > kWrite || !PyWeakref_CheckRef(owner) || !PyCallable_Check(slow) ||
      !PyCallable_Check(after)) {
    return PyErr_Format(PyExc_ValueError, "Call(): bad kind, owner, slow or after");
  }
  Call* const self = (Call*)type->tp_alloc(type, 0);
  if (self == NULL) return NULL;
  self->vectorcall = CallVectorcall;
  self->kind = kind;
  if (Address(handle, &self->handle) < 0 || Address(address, &self->address) < 0 || Size(size, &self->size) < 0) {
    Py_DECREF(self);
    return NULL;
  }
  self->bound = NULL;
  Py_INCREF(owner);
  self->owner = owner;
  Py_INCREF(slow);
  self->slow = slow;
  Py_INCREF(after);
  self->after = after;
  return (PyObject*)self;
}

static void CallDealloc(Call* self) {
  Py_XDECREF(self->bound);
  Py_XDECREF(self->owner);
  Py_XDECREF(self->slow);
  Py_XDECREF(self->after);
  Py_TYPE(self)->tp_free((PyObject*)self);
}

/* rebind(buffer, address, size): read_into's bound buffer (None, 0, 0: none). */
static PyObject* CallRebind(Call* self, PyObject* const* args, Py_ssize_t nargs) {
  void* address = NULL;
  size_t size = 0;
  if (nargs != 3) return PyErr_Format(PyExc_TypeError, "rebind() takes 3 arguments, not %zd", nargs);
  if (Address(args[1], &address) < 0 || Size(args[2], &size) < 0) return NULL;
  PyObject* const old = self->bound;
  self->bound = args[0] == Py_None ? NULL : args[0];
  Py_XINCREF(self->bound);
  Py_XDECREF(old);
  self->address = address;
  self->size = size;
  Py_RETURN_NONE;
}

static PyObject* CallCall(PyObject* callable, PyObject* args, PyObject* kwargs) {
  return PyVectorcall_Call(callable, args, kwargs);
}

static PyMethodDef kCallMethods[] = {
    {"rebind", (PyCFunction)(void (*)(void))CallRebind, METH_FASTCALL, "rebind(buffer, address, size)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject kCallType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "_circbuf_speedups.Call",
    .tp_basicsize = sizeof(Call),
    .tp_dealloc = (destructor)CallDealloc,
    .tp_vectorcall_offset = offsetof(Call, vectorcall),
    .tp_call = CallCall,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "A Reader's read / read_into or a Writer's write, as one C callable (internal).",
    .tp_methods = kCallMethods,
    .tp_new = CallNew,
};

static PyMethodDef kMethods[] = {
    {"bind", (PyCFunction)(void (*)(void))Bind, METH_FASTCALL, "bind(read, read_batch, write, delivered)"},
    {"read", (PyCFunction)(void (*)(void))Read, METH_FASTCALL, "read(handle, address, size) -> int"},
    {"read_bytes", (PyCFunction)(void (*)(void))ReadBytes, METH_FASTCALL,
     "read_bytes(handle, address, size) -> bytes | int"},
    {"write", (PyCFunction)(void (*)(void))Write, METH_FASTCALL, "write(handle, data) -> bytes written | code"},
    {"read_batch", (PyCFunction)(void (*)(void))ReadBatch, METH_FASTCALL,
     "read_batch(handle, address, capacity, sizes, max, result) -> list | int"},
    {"read_batch_into", (PyCFunction)(void (*)(void))ReadBatchInto, METH_FASTCALL,
     "read_batch_into(handle, buffer, sizes, result) -> int"},
    {"delivered", (PyCFunction)(void (*)(void))Delivered, METH_FASTCALL, "delivered(handle) -> int"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef kModule = {
    PyModuleDef_HEAD_INIT, "_circbuf_speedups", "The circbuf package's per-message calls (internal).", -1, kMethods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__circbuf_speedups(void) {
  if (PyType_Ready(&kCallType) < 0) return NULL;
  PyObject* const module = PyModule_Create(&kModule);
  if (module == NULL) return NULL;
  Py_INCREF(&kCallType);
  if (PyModule_AddObject(module, "Call", (PyObject*)&kCallType) < 0) {
    Py_DECREF(&kCallType);
    Py_DECREF(module);
    return NULL;
  }
  PyModule_AddIntConstant(module, "READ", kRead);
  PyModule_AddIntConstant(module, "READ_INTO", kReadInto);
  PyModule_AddIntConstant(module, "WRITE", kWrite);
  return module;
}
