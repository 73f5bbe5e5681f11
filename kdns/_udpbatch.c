/* kdns._udpbatch: the UDP hot loop's system calls, batched (Linux only, optional).

   One call receives up to `batch` queued datagrams with recvmmsg(2), answers those whose
   bytes after the ID are a key of the Responder's `replies` dict (the same lookup as
   Responder.handle's replay path, on the same dict), and sends those answers with one
   sendmmsg(2): the reply is the query's own two ID bytes followed by the cached body, sent
   to the address the query came from. From the first datagram that is not such a replay on,
   the datagrams are handed back to Python exactly as socket.recvfrom would have given them,
   (data, address), for the normal path: Python answers them after the batch's replays have
   gone, so replies leave in the order the queries came.

   What Python would do per replayed query is done here too: the listener's counter for the
   reply's statistics key is incremented. Nothing here blocks: the socket is non-blocking and
   trio waits for readability before the call. Each socket's loop has a Batch of its own (its
   receive buffers: mapped lazily, so only the pages datagrams touch become resident). If this
   module is not built, kdns runs the same loop in Python (kdns/serve/udp.py); both give the
   same bytes.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#ifdef __linux__

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>

#define MAX_BATCH 256
#define RECV_SIZE 65535 /* as the Python loop's recvfrom(65535) */

typedef struct {
    PyObject_HEAD
    int batch;
    int busy;
    char *buffers; /* `batch` receive buffers of RECV_SIZE bytes (an anonymous mapping) */
    struct mmsghdr in_msgs[MAX_BATCH];
    struct iovec in_iov[MAX_BATCH];
    struct sockaddr_storage in_addr[MAX_BATCH];
    struct mmsghdr out_msgs[MAX_BATCH];
    struct iovec out_iov[MAX_BATCH][2];
    PyObject *out_body[MAX_BATCH]; /* the (body, key) tuples being sent (strong references) */
} Batch;

/* The (host, port) or (host, port, flowinfo, scope_id) tuple socket.recvfrom returns. */
static PyObject *
address(const struct sockaddr_storage *sa)
{
    char host[INET6_ADDRSTRLEN];
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        if (inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host)) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("(si)", host, ntohs(a->sin_port));
    }
    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        if (inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host)) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("(siII)", host, ntohs(a->sin6_port), (unsigned int)ntohl(a->sin6_flowinfo),
                             (unsigned int)a->sin6_scope_id);
    }
    PyErr_Format(PyExc_OSError, "unexpected address family %d", (int)sa->ss_family);
    return NULL;
}

/* counts[key] += 1, as Counter does it (a missing key counts from 0). */
static int
count(PyObject *counts, PyObject *key)
{
    PyObject *old = PyDict_GetItemWithError(counts, key);
    if (old == NULL && PyErr_Occurred())
        return -1;
    PyObject *one = PyLong_FromLong(1);
    if (one == NULL)
        return -1;
    PyObject *new = old == NULL ? one : PyNumber_Add(old, one);
    if (old != NULL)
        Py_DECREF(one);
    if (new == NULL)
        return -1;
    int rc = PyDict_SetItem(counts, key, new);
    Py_DECREF(new);
    return rc;
}

/* Append (bytes, address) to `list`. */
static int
append_pair(PyObject *list, const char *data, Py_ssize_t size, const struct sockaddr_storage *sa)
{
    PyObject *peer = address(sa);
    if (peer == NULL)
        return -1;
    PyObject *pair = Py_BuildValue("(y#N)", data, size, peer);
    if (pair == NULL)
        return -1;
    int rc = PyList_Append(list, pair);
    Py_DECREF(pair);
    return rc;
}

/* Append reply `i` of the batch to `unsent` as (reply bytes, address). */
static int
give_back(Batch *b, int i, PyObject *unsent)
{
    struct iovec *iov = b->out_iov[i];
    PyObject *reply = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(iov[0].iov_len + iov[1].iov_len));
    if (reply == NULL)
        return -1;
    memcpy(PyBytes_AS_STRING(reply), iov[0].iov_base, iov[0].iov_len);
    memcpy(PyBytes_AS_STRING(reply) + iov[0].iov_len, iov[1].iov_base, iov[1].iov_len);
    PyObject *peer = address((const struct sockaddr_storage *)b->out_msgs[i].msg_hdr.msg_name);
    if (peer == NULL) {
        Py_DECREF(reply);
        return -1;
    }
    PyObject *pair = PyTuple_Pack(2, reply, peer);
    Py_DECREF(reply);
    Py_DECREF(peer);
    if (pair == NULL)
        return -1;
    int rc = PyList_Append(unsent, pair);
    Py_DECREF(pair);
    return rc;
}

PyDoc_STRVAR(answer_doc,
"answer(fd, replies, counts) -> (received, others, unsent, errno)\n\n"
"Receive up to `batch` (the constructor's) datagrams queued on the non-blocking UDP socket\n"
"`fd` (one recvmmsg). Up to the first that is not, each datagram whose bytes after the ID\n"
"are a key of `replies` (bytes -> (body, stats key)) is answered with its ID followed by the\n"
"body (one sendmmsg for all of them), and counts[stats key] is incremented. Returns how\n"
"many datagrams were received, the others (from the first miss on, in order) as\n"
"a list of (data, address) for Python to answer, the replies the kernel did not take as a\n"
"list of (reply, address), and the errno of a failed receive (0 if none; EAGAIN is none).");

static PyObject *answer_batch(Batch *b, int fd, PyObject *replies, PyObject *counts);

static PyObject *
answer(Batch *b, PyObject *args)
{
    int fd;
    PyObject *replies, *counts;
    if (!PyArg_ParseTuple(args, "iO!O!", &fd, &PyDict_Type, &replies, &PyDict_Type, &counts))
        return NULL;
    if (b->busy) { /* (a finalizer run by the garbage collector could only get here by a bug) */
        PyErr_SetString(PyExc_RuntimeError, "Batch.answer re-entered");
        return NULL;
    }
    b->busy = 1;
    PyObject *result = answer_batch(b, fd, replies, counts);
    b->busy = 0;
    return result;
}


static PyObject *
answer_batch(Batch *b, int fd, PyObject *replies, PyObject *counts)
{
    int batch = b->batch;
    char *buffers = b->buffers;
    for (int i = 0; i < batch; i++) {
        b->in_iov[i].iov_base = buffers + (size_t)i * RECV_SIZE;
        b->in_iov[i].iov_len = RECV_SIZE;
        memset(&b->in_msgs[i].msg_hdr, 0, sizeof(b->in_msgs[i].msg_hdr));
        b->in_msgs[i].msg_hdr.msg_name = &b->in_addr[i];
        b->in_msgs[i].msg_hdr.msg_namelen = sizeof(b->in_addr[i]);
        b->in_msgs[i].msg_hdr.msg_iov = &b->in_iov[i];
        b->in_msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int received, error = 0;
    do {
        received = recvmmsg(fd, b->in_msgs, (unsigned int)batch, MSG_DONTWAIT, NULL);
    } while (received < 0 && errno == EINTR);
    if (received < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            error = errno;
        received = 0;
    }

    PyObject *others = PyList_New(0), *unsent = PyList_New(0);
    int answered = 0;
    if (others == NULL || unsent == NULL)
        goto fail;
    int missed = 0; /* once one datagram goes to Python, so do all after it: replies keep their order */
    for (int i = 0; i < received; i++) {
        const char *data = b->in_iov[i].iov_base;
        Py_ssize_t size = b->in_msgs[i].msg_len;
        PyObject *hit = NULL;
        if (!missed && size >= 12) {
            PyObject *key = PyBytes_FromStringAndSize(data + 2, size - 2);
            if (key == NULL)
                goto fail;
            hit = PyDict_GetItemWithError(replies, key);
            Py_DECREF(key);
            if (hit == NULL && PyErr_Occurred())
                goto fail;
            Py_XINCREF(hit); /* held until sent: nothing below may free it */
        }
        if (hit != NULL && !(PyTuple_CheckExact(hit) && PyTuple_GET_SIZE(hit) == 2 &&
                             PyBytes_CheckExact(PyTuple_GET_ITEM(hit, 0)))) {
            Py_DECREF(hit); /* not a (body, key) pair: let Python deal with it */
            hit = NULL;
        }
        if (hit != NULL) {
            PyObject *body = PyTuple_GET_ITEM(hit, 0);
            b->out_body[answered] = hit;
            b->out_iov[answered][0].iov_base = (void *)data; /* the query's ID */
            b->out_iov[answered][0].iov_len = 2;
            b->out_iov[answered][1].iov_base = PyBytes_AS_STRING(body);
            b->out_iov[answered][1].iov_len = (size_t)PyBytes_GET_SIZE(body);
            memset(&b->out_msgs[answered].msg_hdr, 0, sizeof(b->out_msgs[answered].msg_hdr));
            b->out_msgs[answered].msg_hdr.msg_name = &b->in_addr[i];
            b->out_msgs[answered].msg_hdr.msg_namelen = b->in_msgs[i].msg_hdr.msg_namelen;
            b->out_msgs[answered].msg_hdr.msg_iov = b->out_iov[answered];
            b->out_msgs[answered].msg_hdr.msg_iovlen = 2;
            answered++;
            if (count(counts, PyTuple_GET_ITEM(hit, 1)) < 0)
                goto fail;
        } else {
            missed = 1;
            if (append_pair(others, data, size, &b->in_addr[i]) < 0)
                goto fail;
        }
    }

    /* Send. A reply the kernel does not take (a full buffer, a pending ICMP error) goes back
       to Python with the rest after it if the buffer is full, alone otherwise: Python sends
       those once more with sendto, waiting for room first, and logs what still fails. */
    for (int sent = 0; sent < answered;) {
        int n = sendmmsg(fd, b->out_msgs + sent, (unsigned int)(answered - sent), MSG_DONTWAIT);
        if (n > 0) {
            sent += n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            int last = (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) ? answered : sent + 1;
            for (; sent < last; sent++) {
                if (give_back(b, sent, unsent) < 0)
                    goto fail;
            }
        }
    }
    for (int i = 0; i < answered; i++)
        Py_DECREF(b->out_body[i]);
    return Py_BuildValue("(iNNi)", received, others, unsent, error);

fail:
    for (int i = 0; i < answered; i++)
        Py_DECREF(b->out_body[i]);
    Py_XDECREF(others);
    Py_XDECREF(unsent);
    return NULL;
}


static PyObject *
batch_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"batch", NULL};
    int batch;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "i:Batch", keywords, &batch))
        return NULL;
    if (batch < 1 || batch > MAX_BATCH) {
        PyErr_Format(PyExc_ValueError, "batch must be 1 to %d, not %d", MAX_BATCH, batch);
        return NULL;
    }
    void *buffers = mmap(NULL, (size_t)batch * RECV_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buffers == MAP_FAILED)
        return PyErr_SetFromErrno(PyExc_OSError);
    Batch *b = (Batch *)type->tp_alloc(type, 0);
    if (b == NULL) {
        munmap(buffers, (size_t)batch * RECV_SIZE);
        return NULL;
    }
    b->batch = batch;
    b->buffers = buffers;
    return (PyObject *)b;
}

static void
batch_dealloc(Batch *b)
{
    if (b->buffers != NULL)
        munmap(b->buffers, (size_t)b->batch * RECV_SIZE);
    Py_TYPE(b)->tp_free((PyObject *)b);
}

static PyMethodDef batch_methods[] = {
    {"answer", (PyCFunction)answer, METH_VARARGS, answer_doc},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject BatchType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "kdns._udpbatch.Batch",
    .tp_doc = PyDoc_STR("Batch(batch): receive buffers for up to `batch` datagrams a call, for one socket's loop."),
    .tp_basicsize = sizeof(Batch),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = batch_new,
    .tp_dealloc = (destructor)batch_dealloc,
    .tp_methods = batch_methods,
};

static PyMethodDef methods[] = {{NULL, NULL, 0, NULL}};

static int
exec_module(PyObject *module)
{
    if (PyType_Ready(&BatchType) < 0)
        return -1;
    if (PyModule_AddObjectRef(module, "Batch", (PyObject *)&BatchType) < 0)
        return -1;
    return PyModule_AddIntConstant(module, "MAX_BATCH", MAX_BATCH);
}

#else /* not Linux: an empty module; kdns then runs its Python loop */

static PyMethodDef methods[] = {{NULL, NULL, 0, NULL}};

static int
exec_module(PyObject *module)
{
    PyErr_SetString(PyExc_ImportError, "kdns._udpbatch needs Linux (recvmmsg, sendmmsg)");
    return -1;
}

#endif

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module},
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "kdns._udpbatch", "Batched UDP receive, replay and send for kdns's hot loop.",
    0, methods, slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__udpbatch(void)
{
    return PyModuleDef_Init(&module_def);
}
