/*
 * QTest for the sPAPR hypervisor pipe (hvpipe)
 *
 * Copyright (c) 2026 papr-hvpipe developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * The test plays the HMCs itself: every source's chardev is a socket server
 * the test connects to, speaking the protocol of
 * docs/specs/ppc-spapr-hvpipe.rst.  RTAS calls are made through qtest with
 * their arguments at fixed addresses of the RMA; guest code runs in one case
 * only, to make the H_CAS hypercall.
 */

#include "qemu/osdep.h"
#include "qemu/bswap.h"
#include <sys/socket.h>
#include <sys/un.h>
#include "libqtest.h"
#include "libqos/libqos.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"

#define SRC1                0x02000001
#define SRC2                0x02000002
#define SRC_IDLE            0x02000003  /* configured, never connected */
#define NSRC                2

#define RMA_SIZE            (256 * 1024 * 1024)
#define ARGS                0x100000
#define RETS                0x100100
#define SYSPARM             0x100200
#define LIST                0x101000
#define SBUF                0x102000
#define RBUF                0x103000
#define LOG                 0x104000
#define LOG_MAX             2048

#define ST_PARAM            -3
#define ST_CLOSED           -4
#define ST_SYSPARM_PARAM    -9999
#define NO_ERRORS_FOUND     1

#define HVPIPE_EVENT_MASK   0x04000000
#define HDR                 12
#define MS                  (1000 * 1000LL)
#define TEST_TIMEOUT_S      300

enum {
    FR_PAYLOAD = 0x01, FR_NOP = 0x02, FR_FAULT_RTAS = 0x10,
    FR_DELAY_EVENTS = 0x11, FR_SPURIOUS = 0x12, FR_MALFORMED = 0x13,
    FR_DROP = 0x14, FR_CLEAR_FAULTS = 0x15,
    FR_HELLO = 0x81, FR_OUT_PAYLOAD = 0x82, FR_ACK = 0x83, FR_DROPPED = 0x84,
    FR_OK = 0x85, FR_ERROR = 0x86, FR_STATE = 0x87,
};

typedef struct Hvp {
    QTestState *qts;
    char *dir;
    char *path[NSRC];
    int fd[NSRC];
} Hvp;

typedef struct Frame {
    uint8_t type;
    uint32_t tag;
    uint32_t len;
    uint8_t body[4096];
} Frame;

static const uint32_t srcids[NSRC] = { SRC1, SRC2 };

/* Sockets */

static void xwrite(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len) {
        ssize_t n = write(fd, p, len);

        g_assert_cmpint(n, >, 0);
        p += n;
        len -= n;
    }
}

/* Reads len bytes; false on EOF before the first byte */
static bool xread(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    size_t done = 0;

    while (done < len) {
        ssize_t n = read(fd, p + done, len - done);

        if (n == 0 && done == 0) {
            return false;
        }
        g_assert_cmpint(n, >, 0);
        done += n;
    }
    return true;
}

static int src_connect(const char *path)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    struct timeval tv = { .tv_sec = 10 };
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    int i;

    g_assert_cmpint(fd, >=, 0);
    g_strlcpy(addr.sun_path, path, sizeof(addr.sun_path));
    /* The server socket comes back a moment after a disconnect */
    for (i = 0; connect(fd, (struct sockaddr *)&addr, sizeof(addr)); i++) {
        g_assert_cmpint(i, <, 100);
        g_usleep(20 * 1000);
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static void frame_send(int fd, uint8_t type, uint32_t tag,
                       const void *body, uint32_t len)
{
    uint8_t hdr[HDR];

    stw_be_p(hdr, 0x4850);
    hdr[2] = 1;
    hdr[3] = type;
    stl_be_p(hdr + 4, tag);
    stl_be_p(hdr + 8, len);
    xwrite(fd, hdr, HDR);
    if (len) {
        xwrite(fd, body, len);
    }
}

static bool frame_recv(int fd, Frame *f)
{
    uint8_t hdr[HDR];

    if (!xread(fd, hdr, HDR)) {
        return false;
    }
    g_assert_cmphex(lduw_be_p(hdr), ==, 0x4850);
    g_assert_cmpint(hdr[2], ==, 1);
    f->type = hdr[3];
    f->tag = ldl_be_p(hdr + 4);
    f->len = ldl_be_p(hdr + 8);
    g_assert_cmpuint(f->len, <=, sizeof(f->body));
    g_assert(xread(fd, f->body, f->len) || !f->len);
    return true;
}

/* The next frame must be of this type (and tag, unless ~0) */
static void frame_expect(int fd, uint8_t type, uint32_t tag, Frame *f)
{
    Frame local;

    f = f ? f : &local;
    g_assert(frame_recv(fd, f));
    g_assert_cmphex(f->type, ==, type);
    if (tag != ~0u) {
        g_assert_cmphex(f->tag, ==, tag);
    }
}

static void frame_expect_error(int fd, uint32_t tag, uint8_t code)
{
    Frame f;

    frame_expect(fd, FR_ERROR, tag, &f);
    g_assert_cmpuint(f.len, >=, 4);
    g_assert_cmpint(f.body[0], ==, code);
}

static void frame_expect_eof(int fd)
{
    Frame f;

    g_assert_false(frame_recv(fd, &f));
}

/* Everything sent before was handled, and nothing else came back */
static void src_sync(int fd)
{
    frame_send(fd, FR_NOP, 0xdead, NULL, 0);
    frame_expect(fd, FR_OK, 0xdead, NULL);
}

static void src_control(int fd, uint8_t type, const void *body, uint32_t len)
{
    frame_send(fd, type, 0x77, body, len);
    frame_expect(fd, FR_OK, 0x77, NULL);
}

static void src_fault_rtas(int fd, uint8_t fn, uint8_t count, int32_t status)
{
    uint8_t body[8] = { fn, count };

    stl_be_p(body + 4, status);
    src_control(fd, FR_FAULT_RTAS, body, sizeof(body));
}

/* Returns the HELLO's system parameter 64 */
static uint8_t src_hello(Hvp *h, int i, bool slot_busy)
{
    Frame f;

    frame_expect(h->fd[i], FR_HELLO, 0, &f);
    g_assert_cmpuint(f.len, ==, 8);
    g_assert_cmphex(ldl_be_p(f.body), ==, srcids[i]);
    g_assert_cmpuint(lduw_be_p(f.body + 4), ==, 4048);
    g_assert_cmpint(f.body[7], ==, slot_busy);
    return f.body[6];
}

/* The next frame must be STATE: system parameter 64, the slot taken */
static void src_state_slot(int fd, bool on, bool slot_busy)
{
    Frame f;

    frame_expect(fd, FR_STATE, ~0u, &f);
    g_assert_cmpuint(f.len, ==, 4);
    g_assert_cmpint(f.body[0], ==, on);
    g_assert_cmpint(f.body[1], ==, slot_busy);
}

static void src_state(int fd, bool on)
{
    src_state_slot(fd, on, false);
}

/* QEMU */

/* faults: the two sources accept fault injection frames */
static Hvp *hvp_start_full(const char *dir, const char *extra, bool faults)
{
    Hvp *h = g_new0(Hvp, 1);
    g_autoptr(GString) args = g_string_new("-machine pseries,hvpipe=on "
                                           "-m 256M");
    int i;

    h->dir = dir ? g_strdup(dir) : g_dir_make_tmp("hvpipe-XXXXXX", NULL);
    g_assert(h->dir);
    for (i = 0; i < NSRC; i++) {
        h->path[i] = g_strdup_printf("%s/src%d%s.sock", h->dir, i,
                                     extra ? "b" : "");
        g_string_append_printf(args,
            " -chardev socket,id=hmc%d,path=%s,server=on,wait=off"
            " -device spapr-hvpipe-source,srcid=0x%08x,chardev=hmc%d%s",
            i, h->path[i], srcids[i], i,
            faults ? ",x-fault-injection=on" : "");
    }
    g_string_append_printf(args,
        " -chardev socket,id=idle,path=%s/idle%s.sock,server=on,wait=off"
        " -device spapr-hvpipe-source,srcid=0x%08x,chardev=idle %s",
        h->dir, extra ? "b" : "", SRC_IDLE, extra ? extra : "");
    h->qts = qtest_init(args->str);
    for (i = 0; i < NSRC; i++) {
        h->fd[i] = src_connect(h->path[i]);
    }
    return h;
}

static Hvp *hvp_start_opts(bool faults)
{
    Hvp *h = hvp_start_full(NULL, NULL, faults);
    int i;

    for (i = 0; i < NSRC; i++) {
        src_hello(h, i, false);
    }
    return h;
}

static Hvp *hvp_start(void)
{
    return hvp_start_opts(false);
}

static Hvp *hvp_start_faults(void)
{
    return hvp_start_opts(true);
}

static void hvp_stop(Hvp *h, bool remove_dir)
{
    int i;

    qtest_quit(h->qts);
    for (i = 0; i < NSRC; i++) {
        if (h->fd[i] >= 0) {
            close(h->fd[i]);
        }
        unlink(h->path[i]);
        g_free(h->path[i]);
    }
    if (remove_dir) {
        g_autofree char *idle = g_strdup_printf("%s/idle.sock", h->dir);
        g_autofree char *idleb = g_strdup_printf("%s/idleb.sock", h->dir);

        unlink(idle);
        unlink(idleb);
        rmdir(h->dir);
    }
    g_free(h->dir);
    g_free(h);
}

/* Waits until QEMU saw the host close source i's connection */
static void src_close(Hvp *h, int i)
{
    g_autofree char *label = g_strdup_printf("hmc%d", i);
    bool closed = false;
    int n;

    close(h->fd[i]);
    h->fd[i] = -1;
    for (n = 0; !closed; n++) {
        QDict *rsp = qtest_qmp(h->qts, "{'execute': 'query-chardev'}");
        QListEntry *e;

        g_assert_cmpint(n, <, 500);
        QLIST_FOREACH_ENTRY(qdict_get_qlist(rsp, "return"), e) {
            QDict *chr = qobject_to(QDict, qlist_entry_obj(e));

            if (!strcmp(qdict_get_str(chr, "label"), label)) {
                closed = g_str_has_prefix(qdict_get_str(chr, "filename"),
                                          "disconnected:");
            }
        }
        qobject_unref(rsp);
        if (!closed) {
            g_usleep(10 * 1000);
        }
    }
}

static void src_reconnect(Hvp *h, int i, bool slot_busy)
{
    if (h->fd[i] >= 0) {
        close(h->fd[i]);
    }
    h->fd[i] = src_connect(h->path[i]);
    src_hello(h, i, slot_busy);
}

/* RTAS, arguments and results at ARGS and RETS */

static void rtas_raw(Hvp *h, const char *name, int nargs,
                     const uint32_t *args, int nret)
{
    int i;

    for (i = 0; i < nargs; i++) {
        qtest_writel(h->qts, ARGS + 4 * i, args[i]);
    }
    for (i = 0; i < 4; i++) {
        qtest_writel(h->qts, RETS + 4 * i, 0x5a5a5a5a);
    }
    g_assert_cmpuint(qtest_rtas_call(h->qts, name, nargs, ARGS, nret, RETS),
                     ==, 0);
}

static int32_t ret_n(Hvp *h, int n)
{
    return qtest_readl(h->qts, RETS + 4 * n);
}

static int32_t rtas_send_list(Hvp *h, uint32_t srcid, uint32_t list)
{
    uint32_t args[2] = { srcid, list };

    rtas_raw(h, "ibm,send-hvpipe-msg", 2, args, 1);
    return ret_n(h, 0);
}

static void write_list(Hvp *h, uint64_t len, uint64_t addr, uint64_t size)
{
    qtest_writeq(h->qts, LIST, len);
    qtest_writeq(h->qts, LIST + 8, addr);
    qtest_writeq(h->qts, LIST + 16, size);
}

static int32_t rtas_send(Hvp *h, uint32_t srcid, const void *data, size_t len)
{
    qtest_memwrite(h->qts, SBUF, data, len);
    write_list(h, 24, SBUF, len);
    return rtas_send_list(h, srcid, LIST);
}

static int32_t rtas_receive_at(Hvp *h, uint32_t addr, uint32_t size,
                               uint32_t *srcid, uint32_t *len)
{
    uint32_t args[2] = { addr, size };

    rtas_raw(h, "ibm,receive-hvpipe-msg", 2, args, 3);
    *srcid = ret_n(h, 1);
    *len = ret_n(h, 2);
    return ret_n(h, 0);
}

static int32_t rtas_receive(Hvp *h, uint32_t *srcid, uint32_t *len)
{
    return rtas_receive_at(h, RBUF, 4096, srcid, len);
}

static int32_t check_exception(Hvp *h, uint32_t len)
{
    uint32_t args[6] = { 0x500, 0, HVPIPE_EVENT_MASK, 1, LOG, len };

    rtas_raw(h, "check-exception", 6, args, 1);
    return ret_n(h, 0);
}

/* Fetches an hvpipe event and checks it is well formed */
static void expect_event(Hvp *h, uint32_t srcid, uint8_t type)
{
    uint8_t log[112];
    int i;

    /* A connection loss is seen once QEMU's main loop read the EOF */
    for (i = 0; check_exception(h, LOG_MAX) == NO_ERRORS_FOUND; i++) {
        g_assert_cmpint(i, <, 500);
        g_usleep(10 * 1000);
    }
    g_assert_cmpint(ret_n(h, 0), ==, 0);
    qtest_memread(h->qts, LOG, log, sizeof(log));
    g_assert_cmphex(ldl_be_p(log), ==, 0x062400E6);
    g_assert_cmpuint(ldl_be_p(log + 4), ==, 104);
    g_assert_cmphex(log[8], ==, 0x86);
    g_assert_cmphex(log[10], ==, 0x8E);
    g_assert(!memcmp(log + 20, "IBM", 4));
    g_assert_cmphex(lduw_be_p(log + 24), ==, 0x5048);
    g_assert_cmphex(lduw_be_p(log + 72), ==, 0x5548);
    g_assert_cmphex(lduw_be_p(log + 96), ==, 0x5045);
    g_assert_cmpuint(lduw_be_p(log + 98), ==, 16);
    g_assert_cmpuint(log[100], ==, 1);
    g_assert_cmphex(ldl_be_p(log + 104), ==, srcid);
    g_assert_cmpuint(log[108], ==, type);
}

static void expect_no_event(Hvp *h)
{
    g_assert_cmpint(check_exception(h, LOG_MAX), ==, NO_ERRORS_FOUND);
}

static int32_t sysparm_set(Hvp *h, uint16_t len, uint8_t val)
{
    uint32_t args[2] = { 64, SYSPARM };

    qtest_writew(h->qts, SYSPARM, len);
    qtest_writeb(h->qts, SYSPARM + 2, val);
    rtas_raw(h, "ibm,set-system-parameter", 2, args, 1);
    return ret_n(h, 0);
}

static int32_t sysparm_get(Hvp *h, uint8_t *val)
{
    uint32_t args[3] = { 64, SYSPARM, 16 };

    qtest_writew(h->qts, SYSPARM, 0xffff);
    rtas_raw(h, "ibm,get-system-parameter", 3, args, 1);
    if (!ret_n(h, 0)) {
        g_assert_cmpuint(qtest_readw(h->qts, SYSPARM), ==, 1);
        *val = qtest_readb(h->qts, SYSPARM + 2);
    }
    return ret_n(h, 0);
}

/* Sets system parameter 64 and consumes the STATE frames */
static void hvp_enable(Hvp *h, bool on)
{
    int i;

    g_assert_cmpint(sysparm_set(h, 1, on), ==, 0);
    for (i = 0; i < NSRC; i++) {
        src_state(h->fd[i], on);
    }
}

static void host_payload(Hvp *h, int i, uint32_t tag, const char *text)
{
    frame_send(h->fd[i], FR_PAYLOAD, tag, text, strlen(text));
    src_sync(h->fd[i]);
}

/* Receives the pending payload and checks it and its ACK */
static void expect_receive(Hvp *h, int i, uint32_t tag, const char *text)
{
    uint32_t srcid, len;
    char buf[4096];

    g_assert_cmpint(rtas_receive(h, &srcid, &len), ==, 0);
    g_assert_cmphex(srcid, ==, srcids[i]);
    g_assert_cmpuint(len, ==, strlen(text));
    qtest_memread(h->qts, RBUF, buf, len);
    g_assert(!memcmp(buf, text, len));
    if (tag != ~0u) {
        frame_expect(h->fd[i], FR_ACK, tag, NULL);
    }
}

/* Minimal flattened device tree reader */

static const void *fdt_prop(const uint8_t *fdt, const char *node,
                            const char *name, int *len)
{
    const uint8_t *p = fdt + ldl_be_p(fdt + 8);
    const char *strings = (const char *)fdt + ldl_be_p(fdt + 12);
    g_autoptr(GString) path = g_string_new("");
    uint32_t tok;

    g_assert_cmphex((uint32_t)ldl_be_p(fdt), ==, 0xd00dfeed);
    while ((tok = ldl_be_p(p)) != 9) {
        p += 4;
        if (tok == 1) {
            const char *n = (const char *)p;

            if (*n || path->len) {
                g_string_append_printf(path, "/%s", n);
            }
            p += ROUND_UP(strlen(n) + 1, 4);
        } else if (tok == 2) {
            char *slash = strrchr(path->str, '/');

            g_string_truncate(path, slash ? slash - path->str : 0);
        } else if (tok == 3) {
            uint32_t plen = ldl_be_p(p);
            const char *pname = strings + ldl_be_p(p + 4);

            if (!strcmp(path->str, node) && !strcmp(pname, name)) {
                *len = plen;
                return p + 8;
            }
            p += 8 + ROUND_UP(plen, 4);
        } else {
            g_assert_cmpuint(tok, ==, 4);
        }
    }
    return NULL;
}

static uint8_t *dump_dtb(QTestState *qts)
{
    g_autofree char *file = g_strdup_printf("%s/hvpipe-dtb-%d",
                                            g_get_tmp_dir(), getpid());
    gchar *dtb;
    gsize size;

    qtest_qmp_assert_success(qts, "{'execute': 'dumpdtb', "
                             "'arguments': {'filename': %s}}", file);
    g_assert(g_file_get_contents(file, &dtb, &size, NULL));
    unlink(file);
    return (uint8_t *)dtb;
}

/* Tests */

static void test_device_tree(void)
{
    Hvp *h = hvp_start();
    g_autofree uint8_t *dtb = dump_dtb(h->qts);
    const uint8_t *send, *recv, *irq;
    int len;

    g_assert(fdt_prop(dtb, "/rtas", "ibm,hypervisor-pipe-capable", &len));
    g_assert_cmpint(len, ==, 0);
    send = fdt_prop(dtb, "/rtas", "ibm,send-hvpipe-msg", &len);
    g_assert(send);
    g_assert_cmpint(len, ==, 4);
    recv = fdt_prop(dtb, "/rtas", "ibm,receive-hvpipe-msg", &len);
    g_assert(recv);
    g_assert_cmpint(len, ==, 4);
    g_assert_cmphex(ldl_be_p(send), !=, ldl_be_p(recv));
    irq = fdt_prop(dtb, "/event-sources/ibm,hvpipe-msg-events",
                   "interrupts", &len);
    g_assert(irq);
    g_assert_cmpint(len, ==, 8);
    hvp_stop(h, true);
}

static void test_stock_machine(void)
{
    QTestState *qts = qtest_init("-machine pseries -m 256M");
    g_autofree uint8_t *dtb = dump_dtb(qts);
    int len;

    g_assert_null(fdt_prop(dtb, "/rtas", "ibm,hypervisor-pipe-capable",
                           &len));
    g_assert_null(fdt_prop(dtb, "/rtas", "ibm,send-hvpipe-msg", &len));
    g_assert_null(fdt_prop(dtb, "/rtas", "ibm,receive-hvpipe-msg", &len));
    g_assert_null(fdt_prop(dtb, "/event-sources/ibm,hvpipe-msg-events",
                           "interrupts", &len));
    g_assert(fdt_prop(dtb, "/event-sources/epow-events", "interrupts", &len));

    /* Neither the calls nor system parameter 64 exist */
    qtest_writel(qts, RETS, 0x5a5a5a5a);
    qtest_rtas_call(qts, "ibm,send-hvpipe-msg", 2, ARGS, 1, RETS);
    g_assert_cmphex(qtest_readl(qts, RETS), ==, 0x5a5a5a5a);
    qtest_writel(qts, ARGS, 64);
    qtest_writel(qts, ARGS + 4, SYSPARM);
    qtest_writel(qts, ARGS + 8, 16);
    g_assert_cmpuint(qtest_rtas_call(qts, "ibm,get-system-parameter", 3,
                                     ARGS, 1, RETS), ==, 0);
    g_assert_cmpint((int32_t)qtest_readl(qts, RETS), ==, ST_PARAM);
    qtest_quit(qts);
}

/*
 * QEMU must refuse to start with this command line, saying why; one that
 * starts is stopped after a while
 */
static void expect_startup_error(const char *args, const char *why)
{
    g_autofree char *cmd = g_strdup_printf("timeout 20 %s -accel qtest "
                                           "-display none -nodefaults %s",
                                           g_getenv("QTEST_QEMU_BINARY"),
                                           args);
    g_auto(GStrv) argv = NULL;
    g_autofree char *out = NULL, *err = NULL;
    int status;

    g_assert(g_shell_parse_argv(cmd, NULL, &argv, NULL));
    g_assert(g_spawn_sync(NULL, argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL,
                          &out, &err, &status, NULL));
    g_assert_cmpint(status, !=, 0);
    g_assert_nonnull(strstr(err, why));
}

static void test_bad_config(void)
{
    g_autofree char *dir = g_dir_make_tmp("hvpipe-XXXXXX", NULL);
    g_autofree char *dup = NULL;

    g_assert(dir);
    expect_startup_error("-machine pseries -chardev null,id=c "
                         "-device spapr-hvpipe-source,srcid=0x02000001,"
                         "chardev=c", "hvpipe=on");
    expect_startup_error("-machine pseries,hvpipe=on -chardev null,id=c "
                         "-device spapr-hvpipe-source,srcid=0x01000001,"
                         "chardev=c", "not an HMC source ID");
    dup = g_strdup_printf("-machine pseries,hvpipe=on "
                          "-chardev socket,id=c,path=%s/c,server=on,wait=off "
                          "-device spapr-hvpipe-source,srcid=0x02000001,"
                          "chardev=c "
                          "-chardev socket,id=d,path=%s/d,server=on,wait=off "
                          "-device spapr-hvpipe-source,srcid=0x02000001,"
                          "chardev=d", dir, dir);
    expect_startup_error(dup, "already in use");
    expect_startup_error("-machine pseries,hvpipe=on "
                         "-device spapr-hvpipe-source,srcid=0x02000001",
                         "needs a chardev");
    /* Without a socket, a host that was hung up on could never come back */
    expect_startup_error("-machine pseries,hvpipe=on -chardev null,id=c "
                         "-device spapr-hvpipe-source,srcid=0x02000001,"
                         "chardev=c", "needs a socket chardev");
    expect_startup_error("-machine pseries,hvpipe=on -chardev pipe,id=c,"
                         "path=/dev/null "
                         "-device spapr-hvpipe-source,srcid=0x02000001,"
                         "chardev=c", "needs a socket chardev");
    unlink(g_strdup_printf("%s/c", dir));
    unlink(g_strdup_printf("%s/d", dir));
    rmdir(dir);
}

/* The exact bytes: event log, receive buffer, ACK; nothing past the end */
static void test_receive_bytes(void)
{
    Hvp *h = hvp_start();
    uint8_t payload[4048], buf[4096];
    uint32_t srcid, len;
    int i;

    hvp_enable(h, true);
    for (i = 0; i < sizeof(payload); i++) {
        payload[i] = i * 7 + 3;
    }
    frame_send(h->fd[1], FR_PAYLOAD, 0x1234, payload, 100);
    src_sync(h->fd[1]);
    expect_event(h, SRC2, 1);

    memset(buf, 0xaa, sizeof(buf));
    qtest_memwrite(h->qts, RBUF, buf, sizeof(buf));
    g_assert_cmpint(rtas_receive(h, &srcid, &len), ==, 0);
    g_assert_cmphex(srcid, ==, SRC2);
    g_assert_cmpuint(len, ==, 100);
    qtest_memread(h->qts, RBUF, buf, sizeof(buf));
    g_assert(!memcmp(buf, payload, 100));
    for (i = 100; i < sizeof(buf); i++) {
        g_assert_cmphex(buf[i], ==, 0xaa);
    }
    frame_expect(h->fd[1], FR_ACK, 0x1234, NULL);

    /* The largest payload, into a buffer of exactly its size */
    frame_send(h->fd[0], FR_PAYLOAD, 7, payload, sizeof(payload));
    src_sync(h->fd[0]);
    expect_event(h, SRC1, 1);
    g_assert_cmpint(rtas_receive_at(h, RBUF, sizeof(payload), &srcid, &len),
                    ==, 0);
    g_assert_cmpuint(len, ==, sizeof(payload));
    qtest_memread(h->qts, RBUF, buf, len);
    g_assert(!memcmp(buf, payload, len));
    frame_expect(h->fd[0], FR_ACK, 7, NULL);

    /* Nothing pending: success, no source, no bytes */
    g_assert_cmpint(rtas_receive(h, &srcid, &len), ==, 0);
    g_assert_cmphex(srcid, ==, 0);
    g_assert_cmpuint(len, ==, 0);

    /* A short check-exception buffer gets only its own length */
    host_payload(h, 0, 8, "x");
    qtest_memset(h->qts, LOG, 0xaa, 64);
    g_assert_cmpint(check_exception(h, 16), ==, 0);
    qtest_memread(h->qts, LOG, buf, 64);
    g_assert_cmphex(ldl_be_p(buf), ==, 0x062400E6);
    g_assert_cmphex(buf[16], ==, 0xaa);
    hvp_stop(h, true);
}

static void test_send(void)
{
    Hvp *h = hvp_start();
    uint8_t payload[4048];
    Frame f;
    int i;

    for (i = 0; i < sizeof(payload); i++) {
        payload[i] = i ^ 0x5a;
    }
    hvp_enable(h, true);
    g_assert_cmpint(rtas_send(h, SRC1, "hello", 5), ==, 0);
    frame_expect(h->fd[0], FR_OUT_PAYLOAD, ~0u, &f);
    g_assert_cmpuint(f.len, ==, 5);
    g_assert(!memcmp(f.body, "hello", 5));
    g_assert_cmpint(rtas_send(h, SRC2, payload, sizeof(payload)), ==, 0);
    frame_expect(h->fd[1], FR_OUT_PAYLOAD, ~0u, &f);
    g_assert_cmpuint(f.len, ==, sizeof(payload));
    g_assert(!memcmp(f.body, payload, sizeof(payload)));
    src_sync(h->fd[0]);

    /* A buffer that ends on a 4 KiB boundary */
    qtest_memwrite(h->qts, SBUF + 4096 - 6, "edge!!", 6);
    write_list(h, 24, SBUF + 4096 - 6, 6);
    g_assert_cmpint(rtas_send_list(h, SRC1, LIST), ==, 0);
    frame_expect(h->fd[0], FR_OUT_PAYLOAD, ~0u, &f);
    g_assert_cmpuint(f.len, ==, 6);
    g_assert(!memcmp(f.body, "edge!!", 6));

    /* Configured but never connected: closed */
    g_assert_cmpint(rtas_send(h, SRC_IDLE, "x", 1), ==, ST_CLOSED);
    hvp_stop(h, true);
}

/* One row per malformed input of ibm,send-hvpipe-msg */
typedef struct SendCase {
    const char *desc;
    int nargs, nret;
    uint32_t srcid;
    uint32_t list;
    uint64_t list_len, buf_addr, buf_len;
    bool disable;
    int32_t status;
} SendCase;

static const SendCase send_cases[] = {
    { "nargs-1", 1, 1, SRC1, LIST, 24, SBUF, 4, false, ST_PARAM },
    { "nargs-3", 3, 1, SRC1, LIST, 24, SBUF, 4, false, ST_PARAM },
    { "nret-0", 2, 0, SRC1, LIST, 24, SBUF, 4, false, ST_PARAM },
    { "nret-2", 2, 2, SRC1, LIST, 24, SBUF, 4, false, ST_PARAM },
    { "srcid-not-hmc", 2, 1, 0x01000001, LIST, 24, SBUF, 4, false,
      ST_PARAM },
    { "srcid-reserved", 2, 1, 0x02010001, LIST, 24, SBUF, 4, false,
      ST_PARAM },
    /* Well formed but not configured: that pipe is unavailable */
    { "srcid-unconfigured", 2, 1, 0x02000099, LIST, 24, SBUF, 4, false,
      ST_CLOSED },
    { "list-len-0", 2, 1, SRC1, LIST, 0, SBUF, 4, false, ST_PARAM },
    { "list-len-no-pair", 2, 1, SRC1, LIST, 8, SBUF, 4, false, ST_PARAM },
    { "list-len-23", 2, 1, SRC1, LIST, 23, SBUF, 4, false, ST_PARAM },
    { "list-len-25", 2, 1, SRC1, LIST, 25, SBUF, 4, false, ST_PARAM },
    { "list-two-pairs", 2, 1, SRC1, LIST, 40, SBUF, 4, false, ST_PARAM },
    { "list-len-huge", 2, 1, SRC1, LIST, 0xfffffffffffffff8ULL, SBUF, 4,
      false, ST_PARAM },
    { "list-outside-ram", 2, 1, SRC1, 0xf0000000, 24, SBUF, 4, false,
      ST_PARAM },
    { "list-across-rma-end", 2, 1, SRC1, RMA_SIZE - 16, 24, SBUF, 4, false,
      ST_PARAM },
    { "buf-len-0", 2, 1, SRC1, LIST, 24, SBUF, 0, false, ST_PARAM },
    { "buf-len-4049", 2, 1, SRC1, LIST, 24, SBUF, 4049, false, ST_PARAM },
    { "buf-len-huge", 2, 1, SRC1, LIST, 24, SBUF, 1ULL << 63, false,
      ST_PARAM },
    { "buf-outside-ram", 2, 1, SRC1, LIST, 24, 0x100000000ULL, 4, false,
      ST_PARAM },
    { "buf-across-rma-end", 2, 1, SRC1, LIST, 24, RMA_SIZE - 2, 4, false,
      ST_PARAM },
    { "buf-addr-wraps", 2, 1, SRC1, LIST, 24, 0xfffffffffffffffeULL, 4,
      false, ST_PARAM },
    /* Each listed buffer is a 4 KiB buffer of its own */
    { "buf-crosses-4k", 2, 1, SRC1, LIST, 24, SBUF + 4094, 4, false,
      ST_PARAM },
    { "pipe-disabled", 2, 1, SRC1, LIST, 24, SBUF, 4, true, ST_CLOSED },
};

static void test_send_invalid(const void *data)
{
    const SendCase *c = data;
    Hvp *h = hvp_start();
    uint32_t args[3] = { c->srcid, c->list, 0 };

    if (!c->disable) {
        hvp_enable(h, true);
    }
    qtest_memwrite(h->qts, SBUF, "data", 4);
    if (c->list == LIST) {
        write_list(h, c->list_len, c->buf_addr, c->buf_len);
    } else if (c->list < RMA_SIZE) {
        qtest_writeq(h->qts, c->list, c->list_len);
        qtest_writeq(h->qts, c->list + 8, c->buf_addr);
    }
    rtas_raw(h, "ibm,send-hvpipe-msg", c->nargs, args, c->nret);
    g_assert_cmpint(ret_n(h, 0), ==, c->status);
    /* Nothing reached the source */
    src_sync(h->fd[0]);
    hvp_stop(h, true);
}

/* One row per malformed input of ibm,receive-hvpipe-msg */
typedef struct ReceiveCase {
    const char *desc;
    int nargs, nret;
    uint32_t addr, size;
} ReceiveCase;

static const ReceiveCase receive_cases[] = {
    { "nargs-1", 1, 3, RBUF, 4096 },
    { "nargs-3", 3, 3, RBUF, 4096 },
    { "nret-1", 2, 1, RBUF, 4096 },
    { "nret-2", 2, 2, RBUF, 4096 },
    { "size-0", 2, 3, RBUF, 0 },
    { "size-4097", 2, 3, RBUF, 4097 },
    { "size-smaller-than-payload", 2, 3, RBUF, 4 },
    { "buf-outside-ram", 2, 3, 0xf0000000, 4096 },
    { "buf-across-rma-end", 2, 3, RMA_SIZE - 8, 4096 },
};

static void test_receive_invalid(const void *data)
{
    const ReceiveCase *c = data;
    Hvp *h = hvp_start();
    uint32_t args[3] = { c->addr, c->size, 0 };
    uint8_t buf[16];
    int i;

    hvp_enable(h, true);
    host_payload(h, 0, 3, "payload");
    expect_event(h, SRC1, 1);
    qtest_memset(h->qts, RBUF, 0xaa, sizeof(buf));

    rtas_raw(h, "ibm,receive-hvpipe-msg", c->nargs, args, c->nret);
    g_assert_cmpint(ret_n(h, 0), ==, ST_PARAM);
    if (c->nret == 3) {
        g_assert_cmpint(ret_n(h, 1), ==, 0);
        g_assert_cmpint(ret_n(h, 2), ==, 0);
    }
    qtest_memread(h->qts, RBUF, buf, sizeof(buf));
    for (i = 0; i < sizeof(buf); i++) {
        g_assert_cmphex(buf[i], ==, 0xaa);
    }

    /* The payload is still pending, unacknowledged */
    src_sync(h->fd[0]);
    expect_receive(h, 0, 3, "payload");
    hvp_stop(h, true);
}

static void test_one_pending(void)
{
    Hvp *h = hvp_start();

    hvp_enable(h, true);
    host_payload(h, 0, 1, "first");
    host_payload(h, 1, 2, "second");

    /* A second payload of the same source waits for the first */
    frame_send(h->fd[0], FR_PAYLOAD, 3, "third", 5);
    frame_expect_error(h->fd[0], 3, 6);

    expect_event(h, SRC1, 1);
    expect_no_event(h);
    expect_no_event(h);
    expect_receive(h, 0, 1, "first");

    /* Queued in arrival order: the other source's payload comes next */
    host_payload(h, 0, 4, "fourth");
    expect_event(h, SRC2, 1);
    expect_no_event(h);
    expect_receive(h, 1, 2, "second");
    expect_event(h, SRC1, 1);
    expect_receive(h, 0, 4, "fourth");
    expect_no_event(h);
    hvp_stop(h, true);
}

static void test_sysparm(void)
{
    Hvp *h = hvp_start();
    uint32_t srcid, len;
    uint8_t val = 0xff;
    Frame f;

    g_assert_cmpint(sysparm_get(h, &val), ==, 0);
    g_assert_cmpint(val, ==, 0);

    /* Disabled: payloads are refused, sends are closed, no events */
    frame_send(h->fd[0], FR_PAYLOAD, 1, "early", 5);
    frame_expect_error(h->fd[0], 1, 7);
    g_assert_cmpint(rtas_send(h, SRC1, "x", 1), ==, ST_CLOSED);
    src_sync(h->fd[0]);

    hvp_enable(h, true);
    g_assert_cmpint(sysparm_get(h, &val), ==, 0);
    g_assert_cmpint(val, ==, 1);
    g_assert_cmpint(sysparm_set(h, 1, 2), ==, ST_SYSPARM_PARAM);
    g_assert_cmpint(sysparm_set(h, 0, 1), ==, ST_SYSPARM_PARAM);
    g_assert_cmpint(sysparm_get(h, &val), ==, 0);
    g_assert_cmpint(val, ==, 1);

    /* Disabling keeps the pending payload and returns the queued one */
    host_payload(h, 0, 10, "pending");
    host_payload(h, 1, 11, "queued");
    expect_event(h, SRC1, 1);
    g_assert_cmpint(sysparm_set(h, 1, 0), ==, 0);
    frame_expect(h->fd[0], FR_STATE, ~0u, NULL);
    frame_expect(h->fd[1], FR_DROPPED, 11, &f);
    g_assert_cmpuint(ldl_be_p(f.body), ==, 2);
    frame_expect(h->fd[1], FR_STATE, ~0u, NULL);
    expect_receive(h, 0, 10, "pending");
    expect_no_event(h);

    /* A disconnect while disabled is not reported */
    src_close(h, 1);
    src_reconnect(h, 1, false);
    hvp_enable(h, true);
    expect_no_event(h);
    g_assert_cmpint(rtas_receive(h, &srcid, &len), ==, 0);
    g_assert_cmpuint(len, ==, 0);
    hvp_stop(h, true);
}

static void test_connection(void)
{
    Hvp *h = hvp_start();
    uint32_t srcid, len;

    hvp_enable(h, true);

    /* Lost connection, reconnect */
    src_close(h, 1);
    expect_event(h, SRC2, 2);
    src_reconnect(h, 1, false);
    g_assert_cmpint(rtas_send(h, SRC2, "back", 4), ==, 0);
    frame_expect(h->fd[1], FR_OUT_PAYLOAD, ~0u, NULL);

    /* Disconnect with a payload pending: still receivable, no ACK */
    host_payload(h, 0, 5, "orphan");
    expect_event(h, SRC1, 1);
    src_close(h, 0);
    /* The loss queues behind the pending payload */
    expect_no_event(h);
    src_reconnect(h, 0, true);
    frame_send(h->fd[0], FR_PAYLOAD, 6, "busy", 4);
    frame_expect_error(h->fd[0], 6, 6);
    expect_receive(h, 0, ~0u, "orphan");
    src_sync(h->fd[0]);
    expect_event(h, SRC1, 2);

    /* Disconnect with a payload queued: it is gone */
    host_payload(h, 1, 7, "blocker");
    host_payload(h, 0, 8, "lost");
    src_close(h, 0);
    expect_event(h, SRC2, 1);
    expect_receive(h, 1, 7, "blocker");
    expect_event(h, SRC1, 2);
    expect_no_event(h);
    g_assert_cmpint(rtas_receive(h, &srcid, &len), ==, 0);
    g_assert_cmpuint(len, ==, 0);
    src_reconnect(h, 0, false);
    hvp_stop(h, true);
}

/*
 * A host that sends and never reads is dropped once QEMU's queue for it is
 * full, as if it had hung up: the main loop does not wait for it.
 */
static void test_stalled_host_flood(void)
{
    Hvp *h = hvp_start();
    struct timeval tv = { .tv_sec = 10 };
    uint8_t nops[HDR * 1024] = { 0 };
    size_t sent = 0;
    ssize_t n = 0;
    int i;

    hvp_enable(h, true);
    for (i = 0; i < 1024; i++) {
        stw_be_p(nops + HDR * i, 0x4850);
        nops[HDR * i + 2] = 1;
        nops[HDR * i + 3] = FR_NOP;
    }
    setsockopt(h->fd[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    while (sent < 64 * 1024 * 1024) {
        n = send(h->fd[0], nops, sizeof(nops), MSG_NOSIGNAL);
        if (n <= 0) {
            break;
        }
        sent += n;
    }
    g_assert_cmpint(n, <, 0);
    g_assert(errno == EPIPE || errno == ECONNRESET);

    /* The partition hears of it; the other source is unaffected */
    expect_event(h, SRC1, 2);
    g_assert_cmpint(rtas_send(h, SRC1, "x", 1), ==, ST_CLOSED);
    host_payload(h, 1, 5, "still here");
    expect_event(h, SRC2, 1);
    expect_receive(h, 1, 5, "still here");
    src_reconnect(h, 0, false);
    src_sync(h->fd[0]);
    hvp_stop(h, true);
}

/*
 * The partition sends to a host that never reads: once QEMU's queue for it
 * is full the pipe to it is closed (-4), never a vCPU waiting for it.
 */
static void test_stalled_host_sends(void)
{
    Hvp *h = hvp_start();
    uint8_t payload[4048];
    int32_t st = 0;
    int i;

    memset(payload, 0x3c, sizeof(payload));
    hvp_enable(h, true);
    for (i = 0; i < 1000 && st == 0; i++) {
        st = rtas_send(h, SRC1, payload, sizeof(payload));
    }
    g_assert_cmpint(st, ==, ST_CLOSED);
    expect_event(h, SRC1, 2);
    g_assert_cmpint(rtas_send(h, SRC2, "ok", 2), ==, 0);
    frame_expect(h->fd[1], FR_OUT_PAYLOAD, ~0u, NULL);
    src_reconnect(h, 0, false);
    g_assert_cmpint(rtas_send(h, SRC1, "again", 5), ==, 0);
    frame_expect(h->fd[0], FR_OUT_PAYLOAD, ~0u, NULL);
    hvp_stop(h, true);
}

static void test_bad_frames(void)
{
    Hvp *h = hvp_start_faults();
    uint8_t body[8] = { 0 };
    uint8_t bad[HDR] = { 0x48, 0x50, 2, FR_NOP };

    hvp_enable(h, true);
    frame_send(h->fd[0], 0x55, 1, NULL, 0);
    frame_expect_error(h->fd[0], 1, 3);
    frame_send(h->fd[0], FR_ACK, 2, NULL, 0);
    frame_expect_error(h->fd[0], 2, 3);
    frame_send(h->fd[0], FR_PAYLOAD, 3, NULL, 0);
    frame_expect_error(h->fd[0], 3, 4);
    frame_send(h->fd[0], FR_NOP, 4, body, 1);
    frame_expect_error(h->fd[0], 4, 4);
    frame_send(h->fd[0], FR_FAULT_RTAS, 5, body, 8);
    frame_expect_error(h->fd[0], 5, 5);
    body[0] = 9;
    frame_send(h->fd[0], FR_MALFORMED, 6, body, 8);
    frame_expect_error(h->fd[0], 6, 5);
    body[0] = 7;
    frame_send(h->fd[0], FR_DROP, 7, body, 8);
    frame_expect_error(h->fd[0], 7, 5);
    src_sync(h->fd[0]);

    /* Payload of 4049 bytes: the connection stays */
    {
        g_autofree uint8_t *big = g_malloc0(4049);

        frame_send(h->fd[0], FR_PAYLOAD, 8, big, 4049);
        frame_expect_error(h->fd[0], 8, 4);
        src_sync(h->fd[0]);
    }

    /* Framing lost: error, then hang-up and a lost event */
    xwrite(h->fd[0], bad, sizeof(bad));
    frame_expect_error(h->fd[0], 0, 1);
    frame_expect_eof(h->fd[0]);
    expect_event(h, SRC1, 2);

    stl_be_p(bad + 8, 4097);
    bad[2] = 1;
    xwrite(h->fd[1], bad, sizeof(bad));
    frame_expect_error(h->fd[1], 0, 2);
    frame_expect_eof(h->fd[1]);
    expect_event(h, SRC2, 2);

    src_reconnect(h, 0, false);
    src_reconnect(h, 1, false);
    hvp_stop(h, true);
}

static void test_fault_rtas(void)
{
    static const int32_t statuses[] = {
        -2, 9900, 9905, -1, -3, -4, -5, 42, 0x7fffffff,
    };
    Hvp *h = hvp_start_faults();
    uint32_t srcid, len;
    Frame f;
    int i;

    hvp_enable(h, true);
    for (i = 0; i < ARRAY_SIZE(statuses); i++) {
        src_fault_rtas(h->fd[0], 1, 2, statuses[i]);
        g_assert_cmpint(rtas_send(h, SRC1, "a", 1), ==, statuses[i]);
        g_assert_cmpint(rtas_send(h, SRC2, "b", 1), ==, statuses[i]);
        g_assert_cmpint(rtas_send(h, SRC1, "c", 1), ==, 0);
        frame_expect(h->fd[0], FR_OUT_PAYLOAD, ~0u, &f);
        g_assert_cmpint(f.body[0], ==, 'c');
    }
    src_sync(h->fd[1]);

    /* A failed receive leaves the payload pending */
    host_payload(h, 1, 9, "retry");
    expect_event(h, SRC2, 1);
    for (i = 0; i < ARRAY_SIZE(statuses); i++) {
        src_fault_rtas(h->fd[0], 2, 1, statuses[i]);
        g_assert_cmpint(rtas_receive(h, &srcid, &len), ==, statuses[i]);
        g_assert_cmpuint(srcid, ==, 0);
        g_assert_cmpuint(len, ==, 0);
    }
    expect_receive(h, 1, 9, "retry");

    /* Count 0 cancels, and so does CLEAR_FAULTS */
    src_fault_rtas(h->fd[0], 1, 5, -2);
    src_fault_rtas(h->fd[0], 1, 0, -2);
    g_assert_cmpint(rtas_send(h, SRC2, "d", 1), ==, 0);
    src_fault_rtas(h->fd[0], 1, 5, -2);
    src_control(h->fd[0], FR_CLEAR_FAULTS, NULL, 0);
    g_assert_cmpint(rtas_send(h, SRC2, "e", 1), ==, 0);
    hvp_stop(h, true);
}

static void test_fault_delay(void)
{
    Hvp *h = hvp_start_faults();
    uint8_t body[4];

    hvp_enable(h, true);
    stl_be_p(body, 100);
    src_control(h->fd[0], FR_DELAY_EVENTS, body, sizeof(body));
    host_payload(h, 1, 1, "late");
    expect_no_event(h);
    qtest_clock_step(h->qts, 99 * MS);
    expect_no_event(h);
    qtest_clock_step(h->qts, 2 * MS);
    expect_event(h, SRC2, 1);
    expect_receive(h, 1, 1, "late");

    /* Clearing the delay raises at once */
    host_payload(h, 1, 2, "now");
    expect_no_event(h);
    src_control(h->fd[0], FR_CLEAR_FAULTS, NULL, 0);
    expect_event(h, SRC2, 1);
    hvp_stop(h, true);
}

/*
 * A firmware image for -bios (loaded at 0, entered at 0x100, big-endian,
 * real mode): whenever the word at CAS_BLOCK is non-zero it makes the H_CAS
 * hypercall with the arguments at CAS_BLOCK + 8, stores its status at
 * CAS_BLOCK + 4 and clears the word.
 */
#define CAS_BLOCK           0x4000
#define CAS_VECTOR          0x5000
#define CAS_FDT             0x200000

static const uint32_t cas_code[] = {
    0x39204000,     /* li    r9, CAS_BLOCK */
    0x80090000,     /* 1: lwz r0, 0(r9) */
    0x2c000000,     /* cmpwi r0, 0 */
    0x4182fff8,     /* beq   1b */
    0x38600000,     /* li    r3, 0 */
    0x6063f002,     /* ori   r3, r3, KVMPPC_H_CAS */
    0x80890008,     /* lwz   r4, 8(r9): option vectors */
    0x80a9000c,     /* lwz   r5, 12(r9): device tree buffer */
    0x80c90010,     /* lwz   r6, 16(r9): its size */
    0x44000022,     /* sc    1 */
    0x90690004,     /* stw   r3, 4(r9) */
    0x38000000,     /* li    r0, 0 */
    0x90090000,     /* stw   r0, 0(r9) */
    0x4bffffd0,     /* b     1b */
};

static char *write_cas_firmware(const char *dir)
{
    char *path = g_strdup_printf("%s/cas.bin", dir);
    uint8_t image[0x100 + sizeof(cas_code)] = { 0 };
    int i;

    for (i = 0; i < ARRAY_SIZE(cas_code); i++) {
        stl_be_p(image + 0x100 + 4 * i, cas_code[i]);
    }
    g_assert(g_file_set_contents(path, (char *)image, sizeof(image), NULL));
    return path;
}

/* The guest calls H_CAS, as an OS does when it boots */
static void guest_cas(Hvp *h)
{
    /* Any PVR (mask 0), then the terminator; option vectors 1 to 5, empty */
    static const uint8_t vec[] = {
        0, 0, 0, 0, 0, 0, 0, 0,  0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,
        4,  0, 0,  0, 0,  0, 0,  0, 0,  0, 0,
    };
    int i;

    qtest_memwrite(h->qts, CAS_VECTOR, vec, sizeof(vec));
    qtest_writel(h->qts, CAS_BLOCK + 8, CAS_VECTOR);
    qtest_writel(h->qts, CAS_BLOCK + 12, CAS_FDT);
    qtest_writel(h->qts, CAS_BLOCK + 16, 1024 * 1024);
    qtest_writel(h->qts, CAS_BLOCK + 4, 0xffffffff);
    qtest_writel(h->qts, CAS_BLOCK, 1);
    for (i = 0; qtest_readl(h->qts, CAS_BLOCK); i++) {
        g_assert_cmpint(i, <, 1000);
        g_usleep(10 * 1000);
    }
    g_assert_cmpint(qtest_readl(h->qts, CAS_BLOCK + 4), ==, 0);
}

/*
 * H_CAS drops the machine's pending hot-plug event logs, which it finds by
 * their type.  An hvpipe log whose type a fault made the hot-plug one must
 * survive it: otherwise the pipe waits for its fetch for ever.
 */
static void test_cas_keeps_log(void)
{
    g_autofree char *dir = g_dir_make_tmp("hvpipe-XXXXXX", NULL);
    g_autofree char *fw = NULL, *extra = NULL;
    uint8_t malformed[8] = { 1, 0xE5, 1, 0 };
    uint8_t log[16];
    Hvp *h;
    int i;

    g_assert(dir);
    fw = write_cas_firmware(dir);
    extra = g_strdup_printf("-accel tcg -bios %s", fw);
    h = hvp_start_full(dir, extra, true);
    for (i = 0; i < NSRC; i++) {
        src_hello(h, i, false);
    }
    hvp_enable(h, true);
    src_control(h->fd[0], FR_MALFORMED, malformed, sizeof(malformed));
    host_payload(h, 0, 1, "typed as hot-plug");

    guest_cas(h);

    g_assert_cmpint(check_exception(h, LOG_MAX), ==, 0);
    qtest_memread(h->qts, LOG, log, sizeof(log));
    g_assert_cmphex(ldl_be_p(log), ==, 0x062400E5);
    expect_receive(h, 0, 1, "typed as hot-plug");
    host_payload(h, 1, 2, "next");
    expect_event(h, SRC2, 1);
    expect_receive(h, 1, 2, "next");
    unlink(fw);
    hvp_stop(h, true);
}

/* Without x-fault-injection=on a host cannot inject anything */
static void test_fault_off(void)
{
    static const uint8_t types[] = {
        FR_FAULT_RTAS, FR_DELAY_EVENTS, FR_SPURIOUS, FR_MALFORMED, FR_DROP,
        FR_CLEAR_FAULTS,
    };
    static const uint32_t lens[] = { 8, 4, 8, 8, 8, 0 };
    uint8_t body[8] = { 1, 1 };
    Hvp *h = hvp_start();
    int i;

    hvp_enable(h, true);
    stl_be_p(body + 4, SRC1);
    for (i = 0; i < ARRAY_SIZE(types); i++) {
        frame_send(h->fd[0], types[i], 40 + i, body, lens[i]);
        frame_expect_error(h->fd[0], 40 + i, 8);
    }
    src_sync(h->fd[0]);
    expect_no_event(h);
    g_assert_cmpint(rtas_send(h, SRC1, "x", 1), ==, 0);
    frame_expect(h->fd[0], FR_OUT_PAYLOAD, ~0u, NULL);
    hvp_stop(h, true);
}

/* One injected log at a time: a host cannot make QEMU's memory grow */
static void test_fault_one_injected(void)
{
    Hvp *h = hvp_start_faults();
    uint8_t body[8] = { 0 };
    uint8_t malformed[8] = { 2, 0, 0, 0 };
    int i;

    hvp_enable(h, true);
    stl_be_p(body, SRC2);
    body[4] = 1;
    src_control(h->fd[0], FR_SPURIOUS, body, sizeof(body));
    for (i = 0; i < 100; i++) {
        frame_send(h->fd[i % NSRC], FR_SPURIOUS, 100 + i, body, 8);
        frame_expect_error(h->fd[i % NSRC], 100 + i, 6);
    }
    stl_be_p(malformed + 4, SRC2);
    frame_send(h->fd[0], FR_MALFORMED, 7, malformed, 8);
    frame_expect_error(h->fd[0], 7, 6);
    /* A genuine event still goes through, after the injected log */
    host_payload(h, 1, 8, "genuine");
    expect_event(h, SRC2, 1);
    expect_event(h, SRC2, 1);
    expect_no_event(h);
    expect_receive(h, 1, 8, "genuine");

    /* Fetched: room for the next one */
    src_control(h->fd[1], FR_SPURIOUS, body, sizeof(body));
    expect_event(h, SRC2, 1);
    expect_no_event(h);
    hvp_stop(h, true);
}

static void test_fault_spurious(void)
{
    Hvp *h = hvp_start_faults();
    uint8_t body[8] = { 0 };
    uint32_t srcid, len;

    hvp_enable(h, true);
    stl_be_p(body, 0x02001234);
    body[4] = 1;
    src_control(h->fd[0], FR_SPURIOUS, body, sizeof(body));
    expect_event(h, 0x02001234, 1);
    g_assert_cmpint(rtas_receive(h, &srcid, &len), ==, 0);
    g_assert_cmpuint(srcid, ==, 0);
    g_assert_cmpuint(len, ==, 0);

    stl_be_p(body, SRC1);
    body[4] = 0x42;
    src_control(h->fd[0], FR_SPURIOUS, body, sizeof(body));
    expect_event(h, SRC1, 0x42);
    expect_no_event(h);
    hvp_stop(h, true);
}

typedef struct MalformedCase {
    const char *desc;
    uint8_t kind;
    uint32_t ext_len;
} MalformedCase;

static const MalformedCase malformed_cases[] = {
    { "wrong-type", 1, 104 },
    { "no-pe", 2, 88 },
    { "truncated", 3, 98 },
    { "short-pe", 4, 96 },
};

static void check_malformed(Hvp *h, const MalformedCase *c, uint32_t srcid)
{
    uint8_t log[112];

    g_assert_cmpint(check_exception(h, LOG_MAX), ==, 0);
    qtest_memread(h->qts, LOG, log, sizeof(log));
    g_assert_cmphex(ldl_be_p(log), ==, c->kind == 1 ? 0x062400E5 : 0x062400E6);
    g_assert_cmpuint(ldl_be_p(log + 4), ==, c->ext_len);
    switch (c->kind) {
    case 2:
        g_assert_cmpuint(log[24 + 27], ==, 2);
        break;
    case 3:
        g_assert_cmphex(lduw_be_p(log + 96), ==, 0x5045);
        g_assert_cmpuint(lduw_be_p(log + 98), ==, 16);
        g_assert_cmphex(lduw_be_p(log + 104), ==, srcid >> 16);
        break;
    case 4:
        g_assert_cmphex(lduw_be_p(log + 96), ==, 0x5045);
        g_assert_cmpuint(lduw_be_p(log + 98), ==, 8);
        break;
    default:
        g_assert_cmphex(ldl_be_p(log + 104), ==, srcid);
        break;
    }
}

static void test_fault_malformed(const void *data)
{
    const MalformedCase *c = data;
    Hvp *h = hvp_start_faults();
    uint8_t body[8] = { c->kind, 0xE5 };

    hvp_enable(h, true);

    /* Standalone */
    stl_be_p(body + 4, SRC2);
    src_control(h->fd[0], FR_MALFORMED, body, sizeof(body));
    check_malformed(h, c, SRC2);
    expect_no_event(h);

    /* On the next genuine event, whose payload still becomes pending */
    body[2] = 1;
    src_control(h->fd[0], FR_MALFORMED, body, sizeof(body));
    host_payload(h, 0, 1, "odd");
    check_malformed(h, c, SRC1);
    expect_receive(h, 0, 1, "odd");
    host_payload(h, 0, 2, "even");
    expect_event(h, SRC1, 1);
    hvp_stop(h, true);
}

static void test_fault_drop(void)
{
    Hvp *h = hvp_start_faults();
    uint8_t body[8] = { 0 };
    int i;

    hvp_enable(h, true);

    /* NOW */
    src_control(h->fd[0], FR_DROP, body, sizeof(body));
    frame_expect_eof(h->fd[0]);
    expect_event(h, SRC1, 2);
    src_reconnect(h, 0, false);

    /* ON_SEND: the send fails, nothing is delivered */
    body[0] = 2;
    src_control(h->fd[0], FR_DROP, body, sizeof(body));
    g_assert_cmpint(rtas_send(h, SRC1, "x", 1), ==, ST_CLOSED);
    frame_expect_eof(h->fd[0]);
    expect_event(h, SRC1, 2);
    src_reconnect(h, 0, false);

    /* ON_RECEIVE: the receive succeeds, the ACK is lost */
    body[0] = 4;
    src_control(h->fd[0], FR_DROP, body, sizeof(body));
    host_payload(h, 0, 3, "unacked");
    expect_event(h, SRC1, 1);
    expect_receive(h, 0, ~0u, "unacked");
    frame_expect_eof(h->fd[0]);
    expect_event(h, SRC1, 2);
    src_reconnect(h, 0, false);

    /* ON_EVENT: the payload is pending, the loss queues behind it */
    body[0] = 3;
    src_control(h->fd[1], FR_DROP, body, sizeof(body));
    frame_send(h->fd[1], FR_PAYLOAD, 4, "raised", 6);
    frame_expect_eof(h->fd[1]);
    expect_event(h, SRC2, 1);
    expect_no_event(h);
    expect_receive(h, 1, ~0u, "raised");
    expect_event(h, SRC2, 2);
    src_reconnect(h, 1, false);

    /* AFTER_MS */
    body[0] = 1;
    stl_be_p(body + 4, 50);
    src_control(h->fd[1], FR_DROP, body, sizeof(body));
    qtest_clock_step(h->qts, 49 * MS);
    src_sync(h->fd[1]);
    expect_no_event(h);
    qtest_clock_step(h->qts, 2 * MS);
    frame_expect_eof(h->fd[1]);
    expect_event(h, SRC2, 2);
    src_reconnect(h, 1, false);

    for (i = 0; i < NSRC; i++) {
        src_sync(h->fd[i]);
    }
    expect_no_event(h);
    hvp_stop(h, true);
}

/*
 * A pending payload, its unfetched event and the queue survive migration.
 * The hosts, connected to the destination before the state arrived, learn
 * that the pipe is enabled from a STATE frame, once the destination runs:
 * with -S (paused), not before "cont".
 */
static void migration_case(bool paused)
{
    Hvp *src = hvp_start();
    Hvp *dst;
    g_autofree char *file = g_strdup_printf("%s/state", src->dir);
    g_autofree char *uri = g_strdup_printf("exec:cat > %s", file);
    g_autofree char *in_uri = g_strdup_printf("exec:cat %s", file);
    QDict *rsp;
    const char *status;
    int i;

    hvp_enable(src, true);
    host_payload(src, 0, 0x51, "survivor");
    host_payload(src, 1, 0x52, "queued");

    qtest_qmp_assert_success(src->qts, "{'execute': 'migrate', "
                             "'arguments': {'uri': %s}}", uri);
    do {
        g_usleep(20 * 1000);
        rsp = qtest_qmp(src->qts, "{'execute': 'query-migrate'}");
        status = qdict_get_str(qdict_get_qdict(rsp, "return"), "status");
        g_assert(strcmp(status, "failed"));
        i = !strcmp(status, "completed");
        qobject_unref(rsp);
    } while (!i);

    dst = hvp_start_full(src->dir, paused ? "-incoming defer -S"
                                          : "-incoming defer", false);
    /* Connected before the state arrives: the destination's own state */
    for (i = 0; i < NSRC; i++) {
        g_assert_cmpint(src_hello(dst, i, false), ==, 0);
    }
    qtest_qmp_assert_success(dst->qts, "{'execute': 'migrate-incoming', "
                             "'arguments': {'uri': %s}}", in_uri);
    do {
        g_usleep(20 * 1000);
        rsp = qtest_qmp(dst->qts, "{'execute': 'query-status'}");
        status = qdict_get_str(qdict_get_qdict(rsp, "return"), "status");
        i = strcmp(status, "inmigrate");
        qobject_unref(rsp);
    } while (!i);
    if (paused) {
        /* Loaded, not running: no STATE yet, the next frame is the OK */
        for (i = 0; i < NSRC; i++) {
            src_sync(dst->fd[i]);
        }
        qtest_qmp_assert_success(dst->qts, "{'execute': 'cont'}");
    }
    /* The loaded state, before anything else: both slots are taken */
    for (i = 0; i < NSRC; i++) {
        src_state_slot(dst->fd[i], true, true);
    }
    hvp_stop(src, false);
    unlink(file);

    /*
     * The event that was never fetched is still there.  The hosts here never
     * sent those payloads: no ACK for them, and their slots free up
     */
    expect_event(dst, SRC1, 1);
    expect_receive(dst, 0, ~0u, "survivor");
    expect_event(dst, SRC2, 1);
    expect_receive(dst, 1, ~0u, "queued");
    expect_no_event(dst);
    for (i = 0; i < NSRC; i++) {
        src_sync(dst->fd[i]);
    }
    host_payload(dst, 0, 0x53, "fresh");
    expect_event(dst, SRC1, 1);
    expect_receive(dst, 0, 0x53, "fresh");
    hvp_stop(dst, true);
}

static void test_migration(void)
{
    migration_case(false);
}

static void test_migration_paused(void)
{
    migration_case(true);
}

/* An HMP command that must succeed: HMP prints nothing but its errors */
static void hmp_ok(Hvp *h, const char *cmd)
{
    g_autofree char *out = qtest_hmp(h->qts, "%s", cmd);

    g_assert_cmpstr(out, ==, "");
}

/*
 * loadvm brings back the payload and the unfetched event of the snapshot,
 * although the partition received them after savevm.  A payload that arrived
 * after savevm is gone: the reset that precedes the load returns it to its
 * source.
 */
static void test_savevm_loadvm(void)
{
    g_autofree char *dir = NULL, *img = NULL, *drive = NULL;
    uint32_t srcid, len;
    uint8_t val = 0xff;
    Hvp *h;
    Frame f;
    int i;

    if (!have_qemu_img()) {
        g_test_skip("QTEST_QEMU_IMG not set or qemu-img missing: "
                    "savevm needs a qcow2 image");
        return;
    }
    dir = g_dir_make_tmp("hvpipe-XXXXXX", NULL);
    g_assert(dir);
    img = g_strdup_printf("%s/snap.qcow2", dir);
    /* The VM state goes to the image, past its 1 MiB of disk */
    mkqcow2(img, 1);
    drive = g_strdup_printf("-drive if=none,id=snap,file=%s,format=qcow2",
                            img);
    h = hvp_start_full(dir, drive, false);
    for (i = 0; i < NSRC; i++) {
        src_hello(h, i, false);
    }
    hvp_enable(h, true);
    host_payload(h, 0, 0x61, "snapshot");
    hmp_ok(h, "savevm hvpipe");

    /* Fetched and received after savevm: nothing pending any more */
    expect_event(h, SRC1, 1);
    expect_receive(h, 0, 0x61, "snapshot");
    expect_no_event(h);
    g_assert_cmpint(rtas_receive(h, &srcid, &len), ==, 0);
    g_assert_cmphex(srcid, ==, 0);
    g_assert_cmpuint(len, ==, 0);
    /* A payload after savevm, raised, its event left unfetched */
    host_payload(h, 1, 0x62, "after");

    /*
     * The reset before the load disables the pipe and returns "after", then
     * the hosts hear the snapshot's state: enabled
     */
    hmp_ok(h, "loadvm hvpipe");
    src_state(h->fd[0], false);
    src_state_slot(h->fd[0], true, true);
    frame_expect(h->fd[1], FR_DROPPED, 0x62, &f);
    g_assert_cmpuint(ldl_be_p(f.body), ==, 1);
    src_state(h->fd[1], false);
    src_state(h->fd[1], true);

    /*
     * The snapshot's state: enabled, the same event, the same bytes; its
     * payload is no longer owed an ACK
     */
    g_assert_cmpint(sysparm_get(h, &val), ==, 0);
    g_assert_cmpint(val, ==, 1);
    expect_event(h, SRC1, 1);
    expect_no_event(h);
    expect_receive(h, 0, ~0u, "snapshot");
    expect_no_event(h);
    src_sync(h->fd[0]);

    /* The later payload's slot is free again */
    host_payload(h, 1, 0x63, "again");
    expect_event(h, SRC2, 1);
    expect_receive(h, 1, 0x63, "again");
    unlink(img);
    hvp_stop(h, true);
}

int main(int argc, char **argv)
{
    int i;

    g_test_init(&argc, &argv, NULL);
    /* A QEMU that stops answering must not hang the run: QEMU dies with us */
    alarm(TEST_TIMEOUT_S);

    qtest_add_func("spapr-hvpipe/device-tree", test_device_tree);
    qtest_add_func("spapr-hvpipe/stock-machine", test_stock_machine);
    qtest_add_func("spapr-hvpipe/bad-config", test_bad_config);
    qtest_add_func("spapr-hvpipe/receive-bytes", test_receive_bytes);
    qtest_add_func("spapr-hvpipe/send", test_send);
    for (i = 0; i < ARRAY_SIZE(send_cases); i++) {
        g_autofree char *name = g_strdup_printf("spapr-hvpipe/send-invalid/%s",
                                                send_cases[i].desc);

        qtest_add_data_func(name, &send_cases[i], test_send_invalid);
    }
    for (i = 0; i < ARRAY_SIZE(receive_cases); i++) {
        g_autofree char *name =
            g_strdup_printf("spapr-hvpipe/receive-invalid/%s",
                            receive_cases[i].desc);

        qtest_add_data_func(name, &receive_cases[i], test_receive_invalid);
    }
    qtest_add_func("spapr-hvpipe/one-pending", test_one_pending);
    qtest_add_func("spapr-hvpipe/sysparm-64", test_sysparm);
    qtest_add_func("spapr-hvpipe/connection", test_connection);
    qtest_add_func("spapr-hvpipe/bad-frames", test_bad_frames);
    qtest_add_func("spapr-hvpipe/stalled-host/flood", test_stalled_host_flood);
    qtest_add_func("spapr-hvpipe/stalled-host/sends", test_stalled_host_sends);
    qtest_add_func("spapr-hvpipe/fault/rtas", test_fault_rtas);
    qtest_add_func("spapr-hvpipe/fault/delay", test_fault_delay);
    qtest_add_func("spapr-hvpipe/fault/spurious", test_fault_spurious);
    qtest_add_func("spapr-hvpipe/fault/off-by-default", test_fault_off);
    qtest_add_func("spapr-hvpipe/fault/cas-keeps-log", test_cas_keeps_log);
    qtest_add_func("spapr-hvpipe/fault/one-injected-log",
                   test_fault_one_injected);
    for (i = 0; i < ARRAY_SIZE(malformed_cases); i++) {
        g_autofree char *name =
            g_strdup_printf("spapr-hvpipe/fault/malformed/%s",
                            malformed_cases[i].desc);

        qtest_add_data_func(name, &malformed_cases[i], test_fault_malformed);
    }
    qtest_add_func("spapr-hvpipe/fault/drop", test_fault_drop);
    qtest_add_func("spapr-hvpipe/migration", test_migration);
    qtest_add_func("spapr-hvpipe/migration-paused", test_migration_paused);
    qtest_add_func("spapr-hvpipe/savevm-loadvm", test_savevm_loadvm);

    return g_test_run();
}
