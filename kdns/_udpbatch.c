/* kdns._udpbatch: the UDP hot loop's system calls, batched (Linux only, optional).

   A call receives up to `batch` queued datagrams with recvmmsg(2) and answers those whose
   bytes after the ID are a key of the Responder's replay table (the same lookup as
   Responder.replay_entry, on the same two dicts: the current generation, then the previous
   one, whose hits are copied into the current one), and sends those answers with one
   sendmmsg(2): the reply is the query's own two ID bytes followed by the cached body, sent to
   the address the query came from. A run of datagrams that are not such replays is handed
   back to Python as (data, address, labels): the datagram and its address exactly as
   socket.recvfrom would have given them, and its question name's labels already read
   (`question_labels`, or None), and the call returns there; Python answers them and gives the replies to the next call, which sends
   them (in order, with the replays that follow, in one sendmmsg) and goes on with the rest of
   the datagrams received before it receives again. So replies leave in the order the queries
   came, and a first-time question costs Python no system call of its own.

   A replay table entry is (body, stats key) for an answer from the index, or (body, stats
   key, deadline, base, patches) for one made from the forwarding cache: replayed only before
   `deadline` (a time.monotonic() reading: CLOCK_MONOTONIC here) and only to a client inside
   the recursion allow list (`acl`, RecursionAcl.packed), otherwise Python answers it; its
   reply is written into the query's receive buffer (free once the query is read, and not
   received into again before the reply is sent) with each TTL of `patches` counted down by
   the whole seconds since `base`, as kdns/ttlpatch.py `patched` does.

   What Python would do per replayed query is done here too: the listener's counter for the
   reply's statistics key is incremented. Nothing here blocks: the socket is non-blocking and
   trio waits for readability before a receiving call. Each socket's loop has a Batch of its
   own (its receive buffers: mapped lazily, so only the pages datagrams touch become resident).
   If this module is not built, kdns runs the same loop in Python (kdns/serve/udp.py); both
   give the same bytes in the same order. (About 600 lines: one loop, its buffers, its
   lookups and its checks belong together.)
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
#include <time.h>

#define MAX_BATCH 256
#define RECV_SIZE 65535 /* as the Python loop's recvfrom(65535) */
#define FORWARDED_OVERHEAD 120 /* responder.FORWARDED_OVERHEAD: what a promoted forwarded entry costs beyond its patches */
#define PATCH 6 /* ttlpatch.PATCH: offset in the body (2 bytes), TTL at the base time (4), big-endian */
#define ACL_ENTRY 18 /* RecursionAcl.packed: family (4 or 6), prefix length, 16 address bytes */
#define PEERS 8 /* address tuples remembered */

typedef struct {
    PyObject_HEAD
    int batch;
    int busy;
    int received; /* datagrams in the buffers from the last recvmmsg */
    int next;     /* the first of them not yet answered or handed back */
    int handed;   /* how many were handed back by the last call (their replies come with the next) */
    int handed_at[MAX_BATCH]; /* and which */
    char *buffers; /* `batch` receive buffers of RECV_SIZE bytes (an anonymous mapping) */
    struct mmsghdr in_msgs[MAX_BATCH];
    struct iovec in_iov[MAX_BATCH];
    struct sockaddr_storage in_addr[MAX_BATCH];
    struct mmsghdr out_msgs[2 * MAX_BATCH];
    struct iovec out_iov[2 * MAX_BATCH][2];
    PyObject *out_ref[2 * MAX_BATCH]; /* what is being sent (strong references) */
    /* The address tuples of the last few clients (a load generator, a node-local cache: few
       clients send most queries), so that a datagram handed back does not build its own. */
    struct sockaddr_storage peer_addr[PEERS];
    socklen_t peer_len[PEERS];
    PyObject *peer[PEERS];
    int peer_next;
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

/* The address tuple of `sa` (a new reference), remembered for the next datagram from it. */
static PyObject *
peer_of(Batch *b, const struct sockaddr_storage *sa, socklen_t len)
{
    for (int k = 0; k < PEERS; k++) {
        if (b->peer[k] != NULL && b->peer_len[k] == len && memcmp(&b->peer_addr[k], sa, (size_t)len) == 0) {
            Py_INCREF(b->peer[k]);
            return b->peer[k];
        }
    }
    PyObject *peer = address(sa);
    if (peer == NULL || len > (socklen_t)sizeof(struct sockaddr_storage))
        return peer;
    int k = b->peer_next;
    b->peer_next = (k + 1) % PEERS;
    Py_XSETREF(b->peer[k], Py_NewRef(peer));
    memcpy(&b->peer_addr[k], sa, (size_t)len);
    b->peer_len[k] = len;
    return peer;
}

/* The labels of the question name of the query `data`, lowercased (ASCII letters only, as
   bytes.lower) and decoded as latin-1, as wire.plain_labels gives them: a new tuple of str,
   or None (a new reference) when the name is not a plain uncompressed name, or a label holds
   a zero byte (the Python fast path finds the end of the name by its first zero byte). */
static PyObject *
question_labels(const char *data, Py_ssize_t size)
{
    PyObject *labels[128];
    int n = 0;
    Py_ssize_t pos = 12;
    char text[64];
    for (;;) {
        if (pos >= size || n >= 127)
            goto none;
        unsigned char length = (unsigned char)data[pos];
        if (length == 0)
            break;
        if (length > 63 || pos + 1 + length > size || pos + 1 + length - 12 >= 255)
            goto none;
        for (int k = 0; k < length; k++) {
            char c = data[pos + 1 + k];
            if (c == 0)
                goto none;
            text[k] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
        }
        PyObject *label = PyUnicode_DecodeLatin1(text, length, NULL);
        if (label == NULL)
            goto fail;
        labels[n++] = label;
        pos += 1 + length;
    }
    PyObject *tuple = PyTuple_New(n);
    if (tuple == NULL)
        goto fail;
    for (int k = 0; k < n; k++)
        PyTuple_SET_ITEM(tuple, k, labels[k]);
    return tuple;
none:
    for (int k = 0; k < n; k++)
        Py_DECREF(labels[k]);
    Py_RETURN_NONE;
fail:
    for (int k = 0; k < n; k++)
        Py_DECREF(labels[k]);
    return NULL;
}

/* Append (bytes, address, labels) to `list` (labels: `question_labels`). */
static int
append_pair(Batch *b, PyObject *list, const char *data, Py_ssize_t size, const struct sockaddr_storage *sa, socklen_t len)
{
    PyObject *peer = peer_of(b, sa, len);
    if (peer == NULL)
        return -1;
    PyObject *labels = size >= 17 ? question_labels(data, size) : Py_NewRef(Py_None);
    if (labels == NULL) {
        Py_DECREF(peer);
        return -1;
    }
    PyObject *pair = Py_BuildValue("(y#NN)", data, size, peer, labels);
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
    if (iov[1].iov_len)
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
"answer(fd, replies, previous, counts, acl, answers, receive) -> (replayed, others, unsent, errno, more, promoted, promoted_bytes)\n\n"
"First send `answers` (None, or one reply or None per datagram the last call handed back, in\n"
"order). Then, if every datagram of the last receive is done and `receive` is true, receive up\n"
"to `batch` (the constructor's) datagrams queued on the non-blocking UDP socket `fd` (one\n"
"recvmmsg). Go through the datagrams not yet done: each whose bytes after the ID are a key\n"
"of `replies` or else of `previous` (bytes -> (body, stats key) or (body, stats key,\n"
"deadline, base, patches)) is answered with its ID followed by the body, and counts[stats\n"
"key] is incremented; an entry found in `previous` is copied into `replies`; a (body, key,\n"
"deadline, base, patches) entry only before `deadline` (time.monotonic) and to a client inside\n"
"`acl` (None: everyone; else RecursionAcl.packed), with the TTLs at `patches` counted down by\n"
"the whole seconds since `base` (kdns.ttlpatch). The first run of other datagrams is handed\n"
"back, and the call\n"
"ends there. All the replies of the call go out in one sendmmsg.\n\n"
"Returns how many datagrams were replayed, the ones handed back as a list of (data,\n"
"address, labels of the question name or None) for Python to answer, the replies the kernel did not take as a list of (reply,\n"
"address), the errno of a failed receive (0 if none; EAGAIN is none), whether datagrams of\n"
"this receive are left for the next call, and how many entries were copied from `previous`\n"
"and what they take (keys and bodies, plus FORWARDED_OVERHEAD and the patches for each with a\n"
"deadline).");

static PyObject *answer_batch(Batch *b, int fd, PyObject *replies, PyObject *previous, PyObject *counts, PyObject *acl,
                              PyObject *answers, int receive);

static PyObject *
answer(Batch *b, PyObject *args)
{
    int fd, receive;
    PyObject *replies, *previous, *counts, *acl, *answers;
    if (!PyArg_ParseTuple(args, "iO!O!O!OOp", &fd, &PyDict_Type, &replies, &PyDict_Type, &previous, &PyDict_Type, &counts,
                          &acl, &answers, &receive))
        return NULL;
    if (acl != Py_None && (!PyBytes_Check(acl) || PyBytes_GET_SIZE(acl) % ACL_ENTRY != 0)) {
        PyErr_SetString(PyExc_TypeError, "acl must be None or RecursionAcl.packed");
        return NULL;
    }
    if (answers != Py_None && !PyList_Check(answers)) {
        PyErr_SetString(PyExc_TypeError, "answers must be None or a list");
        return NULL;
    }
    if (b->busy) { /* (a finalizer run by the garbage collector could only get here by a bug) */
        PyErr_SetString(PyExc_RuntimeError, "Batch.answer re-entered");
        return NULL;
    }
    b->busy = 1;
    PyObject *result = answer_batch(b, fd, replies, previous, counts, acl, answers, receive);
    b->busy = 0;
    return result;
}

/* Whether the client at `sa` is inside one of the ranges of `acl` (RecursionAcl.packed). */
static int
allowed(const struct sockaddr_storage *sa, PyObject *acl)
{
    if (acl == Py_None)
        return 1;
    const unsigned char *address;
    int family;
    if (sa->ss_family == AF_INET) {
        address = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
        family = 4;
    } else if (sa->ss_family == AF_INET6) {
        address = (const unsigned char *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
        family = 6;
    } else {
        return 0;
    }
    const unsigned char *entries = (const unsigned char *)PyBytes_AS_STRING(acl);
    Py_ssize_t n = PyBytes_GET_SIZE(acl) / ACL_ENTRY;
    for (Py_ssize_t i = 0; i < n; i++) {
        const unsigned char *e = entries + i * ACL_ENTRY;
        if (e[0] != family)
            continue;
        int bits = e[1], whole = bits / 8, rest = bits % 8;
        if (whole > (family == 4 ? 4 : 16))
            continue;
        if (memcmp(address, e + 2, (size_t)whole) != 0)
            continue;
        if (rest) {
            unsigned char mask = (unsigned char)(0xFF << (8 - rest));
            if ((address[whole] & mask) != (e[2 + whole] & mask))
                continue;
        }
        return 1;
    }
    return 0;
}

/* Queue a reply of `first` (`first_len` bytes) then `second` for the address of datagram `i`;
   `ref` (a new reference) is held until it is sent. */
static void
queue(Batch *b, int *out, int i, const void *first, size_t first_len, const void *second, size_t second_len, PyObject *ref)
{
    int k = *out;
    b->out_ref[k] = ref;
    b->out_iov[k][0].iov_base = (void *)first;
    b->out_iov[k][0].iov_len = first_len;
    b->out_iov[k][1].iov_base = (void *)second;
    b->out_iov[k][1].iov_len = second_len;
    memset(&b->out_msgs[k].msg_hdr, 0, sizeof(b->out_msgs[k].msg_hdr));
    b->out_msgs[k].msg_hdr.msg_name = &b->in_addr[i];
    b->out_msgs[k].msg_hdr.msg_namelen = b->in_msgs[i].msg_hdr.msg_namelen;
    b->out_msgs[k].msg_hdr.msg_iov = b->out_iov[k];
    b->out_msgs[k].msg_hdr.msg_iovlen = 2;
    *out = k + 1;
}

/* The replay table entry for datagram `data` (a new reference), or NULL with no error set when
   it is not to be replayed; NULL with an error set on failure. */
static PyObject *
lookup(const char *data, Py_ssize_t size, const struct sockaddr_storage *sa, PyObject *replies, PyObject *previous,
       PyObject *acl, double now, int *promoted, Py_ssize_t *promoted_bytes)
{
    PyObject *key = PyBytes_FromStringAndSize(data + 2, size - 2);
    if (key == NULL)
        return NULL;
    PyObject *hit = PyDict_GetItemWithError(replies, key);
    int old = 0;
    if (hit == NULL && !PyErr_Occurred()) {
        hit = PyDict_GetItemWithError(previous, key);
        old = 1;
    }
    if (hit == NULL) {
        Py_DECREF(key);
        return NULL;
    }
    Py_ssize_t n = PyTuple_CheckExact(hit) ? PyTuple_GET_SIZE(hit) : 0;
    if ((n != 2 && n != 5) || !PyBytes_CheckExact(PyTuple_GET_ITEM(hit, 0))) {
        Py_DECREF(key); /* not an entry of ours: let Python deal with it */
        return NULL;
    }
    if (n == 5 && (!PyFloat_CheckExact(PyTuple_GET_ITEM(hit, 2)) || !PyFloat_CheckExact(PyTuple_GET_ITEM(hit, 3)) ||
                   !PyBytes_CheckExact(PyTuple_GET_ITEM(hit, 4)) || PyBytes_GET_SIZE(PyTuple_GET_ITEM(hit, 4)) % PATCH != 0 ||
                   PyBytes_GET_SIZE(PyTuple_GET_ITEM(hit, 0)) > RECV_SIZE - 2)) {
        Py_DECREF(key); /* not an entry of ours (or too big to write into a receive buffer): Python's */
        return NULL;
    }
    Py_INCREF(hit); /* held until sent: nothing below may free it */
    if (old) { /* asked again: into the current generation */
        if (PyDict_SetItem(replies, key, hit) < 0) {
            Py_DECREF(key);
            Py_DECREF(hit);
            return NULL;
        }
        *promoted += 1;
        *promoted_bytes += PyBytes_GET_SIZE(key) + PyBytes_GET_SIZE(PyTuple_GET_ITEM(hit, 0)) +
                           (n == 5 ? FORWARDED_OVERHEAD + PyBytes_GET_SIZE(PyTuple_GET_ITEM(hit, 4)) : 0);
    }
    Py_DECREF(key);
    if (n == 5) { /* made from the forwarding cache: until its deadline, to allowed clients */
        if (!(now < PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(hit, 2))) || !allowed(sa, acl)) {
            Py_DECREF(hit);
            return NULL;
        }
    }
    return hit;
}

/* Write the reply of the forwarded entry `hit` (lookup's checks passed) after the query's ID
   in its receive buffer `reply` (RECV_SIZE bytes), with each TTL of its patches counted down
   by the whole seconds since its base (never below 0), as ttlpatch.patched; its length. */
static size_t
patch_ttls(char *reply, PyObject *hit, double now)
{
    PyObject *body = PyTuple_GET_ITEM(hit, 0), *patches = PyTuple_GET_ITEM(hit, 4);
    Py_ssize_t size = PyBytes_GET_SIZE(body);
    memcpy(reply + 2, PyBytes_AS_STRING(body), (size_t)size);
    double since = now - PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(hit, 3));
    /* int(now - base) in Python: truncated toward 0 (now is never before base) */
    long long passed = since < 0 ? 0 : since > 4294967295.0 ? 4294967296LL : (long long)since;
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(patches);
    const unsigned char *end = p + PyBytes_GET_SIZE(patches);
    unsigned char *out = (unsigned char *)reply + 2;
    for (; p < end; p += PATCH) {
        size_t offset = (size_t)p[0] << 8 | p[1];
        long long base = (long long)p[2] << 24 | (long long)p[3] << 16 | (long long)p[4] << 8 | p[5];
        if (offset + 4 > (size_t)size)
            continue; /* (not an offset of this body: ttlpatch never makes one) */
        unsigned long value = base > passed ? (unsigned long)(base - passed) : 0;
        out[offset] = (unsigned char)(value >> 24);
        out[offset + 1] = (unsigned char)(value >> 16);
        out[offset + 2] = (unsigned char)(value >> 8);
        out[offset + 3] = (unsigned char)value;
    }
    return 2 + (size_t)size;
}

/* Send the `out` queued replies with sendmmsg and release them. A reply the kernel does not
   take (a full buffer, a pending ICMP error) goes to `unsent` with the rest after it if the
   buffer is full, alone otherwise: Python sends those once more with sendto, waiting for room
   first, and logs what still fails. -1 on a Python error (the references are released). */
static int
send_queued(Batch *b, int fd, int out, PyObject *unsent)
{
    int rc = 0;
    for (int sent = 0; sent < out && rc == 0;) {
        int n = sendmmsg(fd, b->out_msgs + sent, (unsigned int)(out - sent), MSG_DONTWAIT);
        if (n > 0) {
            sent += n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            int last = (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) ? out : sent + 1;
            for (; sent < last; sent++) {
                if (give_back(b, sent, unsent) < 0) {
                    rc = -1;
                    break;
                }
            }
        }
    }
    for (int k = 0; k < out; k++)
        Py_DECREF(b->out_ref[k]);
    return rc;
}

static PyObject *
answer_batch(Batch *b, int fd, PyObject *replies, PyObject *previous, PyObject *counts, PyObject *acl, PyObject *answers,
             int receive)
{
    int out = 0, replayed = 0, error = 0, promoted = 0;
    Py_ssize_t promoted_bytes = 0;
    PyObject *others = PyList_New(0), *unsent = PyList_New(0);
    if (others == NULL || unsent == NULL)
        goto fail;

    /* The replies to what the last call handed back, in order (None: nothing to send). */
    if (answers != Py_None) {
        Py_ssize_t given = PyList_GET_SIZE(answers);
        for (int j = 0; j < b->handed && j < given; j++) {
            PyObject *reply = PyList_GET_ITEM(answers, j);
            if (!PyBytes_CheckExact(reply))
                continue;
            Py_INCREF(reply);
            queue(b, &out, b->handed_at[j], PyBytes_AS_STRING(reply), (size_t)PyBytes_GET_SIZE(reply), NULL, 0, reply);
        }
    }
    b->handed = 0;

    if (b->next >= b->received && receive) {
        if (out > 0) { /* they go to addresses of the last receive: before the next one */
            int queued = out;
            out = 0;
            if (send_queued(b, fd, queued, unsent) < 0)
                goto fail;
        }
        b->received = b->next = 0;
        if (PyList_GET_SIZE(unsent) == 0) { /* (a full send buffer: no more datagrams now) */
            int batch = b->batch;
            for (int i = 0; i < batch; i++) {
                b->in_iov[i].iov_base = b->buffers + (size_t)i * RECV_SIZE;
                b->in_iov[i].iov_len = RECV_SIZE;
                memset(&b->in_msgs[i].msg_hdr, 0, sizeof(b->in_msgs[i].msg_hdr));
                b->in_msgs[i].msg_hdr.msg_name = &b->in_addr[i];
                b->in_msgs[i].msg_hdr.msg_namelen = sizeof(b->in_addr[i]);
                b->in_msgs[i].msg_hdr.msg_iov = &b->in_iov[i];
                b->in_msgs[i].msg_hdr.msg_iovlen = 1;
            }
            int received;
            do {
                received = recvmmsg(fd, b->in_msgs, (unsigned int)batch, MSG_DONTWAIT, NULL);
            } while (received < 0 && errno == EINTR);
            if (received < 0) {
                if (errno != EAGAIN && errno != EWOULDBLOCK)
                    error = errno;
                received = 0;
            }
            b->received = received;
        }
    }

    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double now = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    while (b->next < b->received) {
        int i = b->next;
        const char *data = b->in_iov[i].iov_base;
        Py_ssize_t size = b->in_msgs[i].msg_len;
        PyObject *hit = NULL;
        if (size >= 12) {
            hit = lookup(data, size, &b->in_addr[i], replies, previous, acl, now, &promoted, &promoted_bytes);
            if (hit == NULL && PyErr_Occurred())
                goto fail;
        }
        if (hit != NULL) {
            if (b->handed > 0) { /* after a run handed back: its replies go first (next call) */
                Py_DECREF(hit);
                break;
            }
            PyObject *body = PyTuple_GET_ITEM(hit, 0);
            if (PyTuple_GET_SIZE(hit) == 2)
                queue(b, &out, i, data, 2, PyBytes_AS_STRING(body), (size_t)PyBytes_GET_SIZE(body), hit);
            else
                queue(b, &out, i, data, patch_ttls(b->in_iov[i].iov_base, hit, now), NULL, 0, hit);
            replayed++;
            b->next++;
            if (count(counts, PyTuple_GET_ITEM(hit, 1)) < 0)
                goto fail;
        } else {
            if (append_pair(b, others, data, size, &b->in_addr[i], b->in_msgs[i].msg_hdr.msg_namelen) < 0)
                goto fail;
            b->handed_at[b->handed++] = i;
            b->next++;
        }
    }

    {
        int queued = out;
        out = 0;
        if (send_queued(b, fd, queued, unsent) < 0)
            goto fail;
    }
    return Py_BuildValue("(iNNiNin)", replayed, others, unsent, error, PyBool_FromLong(b->next < b->received), promoted,
                         promoted_bytes);

fail:
    for (int k = 0; k < out; k++)
        Py_DECREF(b->out_ref[k]);
    b->received = b->next = b->handed = 0;
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
    for (int k = 0; k < PEERS; k++)
        Py_CLEAR(b->peer[k]);
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
    if (PyModule_AddIntConstant(module, "FORWARDED_OVERHEAD", FORWARDED_OVERHEAD) < 0)
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
