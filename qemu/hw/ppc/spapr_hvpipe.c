/*
 * QEMU PowerPC pSeries Logical Partition (aka sPAPR) hypervisor pipe
 *
 * Copyright (c) 2026 papr-hvpipe developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * The hypervisor pipe (hvpipe) is the partition's single in-band channel to
 * its external sources, the HMCs.  The machine owns one SpaprHvpipeState,
 * created by "-machine pseries,hvpipe=on"; every source is a
 * "spapr-hvpipe-source" device whose socket chardev carries the framed
 * protocol of docs/specs/ppc-spapr-hvpipe.rst to a host program playing the
 * HMC.
 *
 * Payload from a source to the partition:
 *   1. a PAYLOAD frame fills the source's slot and takes a sequence number;
 *   2. hvpipe_kick() raises the oldest queued item (payload or connection
 *      loss, all sources together) as an event log of the hvpipe class, but
 *      only while the OS enabled the pipe (system parameter 64), no payload
 *      is pending and no earlier hvpipe event log waits for check-exception;
 *      a raised payload becomes the partition's one pending payload;
 *   3. ibm,receive-hvpipe-msg copies it into the guest, frees the slot, sends
 *      the ACK frame to the source and kicks the queue again.
 *
 * Payload from the partition to a source: ibm,send-hvpipe-msg validates the
 * buffer list and queues a PAYLOAD frame for the chardev.
 *
 * Nothing waits for a host: frames go out without blocking, what the chardev
 * does not take at once waits in a bounded per-source queue drained from a
 * G_IO_OUT watch, and a host that lets the queue fill is dropped as if it
 * had hung up.
 *
 * Guest memory is untrusted: every address and length taken from the guest
 * is checked against the RMA before it is used, and every access is checked.
 */

#include "qemu/osdep.h"
#include "qemu/bswap.h"
#include "qemu/log.h"
#include "qemu/main-loop.h"
#include "qemu/module.h"
#include "qemu/timer.h"
#include "qapi/error.h"
#include "chardev/char.h"
#include "chardev/char-fe.h"
#include "exec/address-spaces.h"
#include "hw/qdev-properties.h"
#include "hw/qdev-properties-system.h"
#include "migration/vmstate.h"
#include "hw/resettable.h"
#include "system/reset.h"
#include "system/runstate.h"
#include "hw/ppc/spapr.h"
#include "hw/ppc/spapr_hvpipe.h"
#include "trace.h"

/* ibm,send-hvpipe-msg: the pipe to that source is closed or unavailable */
#define HVPIPE_RTAS_CLOSED          -4

/*
 * Buffer list: a big-endian u64 length in bytes, then (address, length)
 * pairs of u64; firmware accepts one pair.  Each buffer is 4 KiB.
 */
#define HVPIPE_LIST_MAX_PAIRS       1
#define HVPIPE_WORK_AREA_SIZE       4096

/* Chardev protocol, see docs/specs/ppc-spapr-hvpipe.rst */
#define HVPIPE_MAGIC                0x4850
#define HVPIPE_VERSION              1
#define HVPIPE_HDR_SIZE             12
#define HVPIPE_MAX_BODY             4096
#define HVPIPE_ERROR_TEXT_MAX       200
/* Frames waiting for the chardev, per source: 16 of the largest */
#define HVPIPE_TXQ_SIZE             (16 * (HVPIPE_HDR_SIZE + HVPIPE_MAX_BODY))

enum {
    HVPIPE_FRAME_PAYLOAD            = 0x01,
    HVPIPE_FRAME_NOP                = 0x02,
    HVPIPE_FRAME_FAULT_RTAS         = 0x10,
    HVPIPE_FRAME_DELAY_EVENTS       = 0x11,
    HVPIPE_FRAME_SPURIOUS_EVENT     = 0x12,
    HVPIPE_FRAME_MALFORMED_EVENT    = 0x13,
    HVPIPE_FRAME_DROP_CONNECTION    = 0x14,
    HVPIPE_FRAME_CLEAR_FAULTS       = 0x15,
    HVPIPE_FRAME_HELLO              = 0x81,
    HVPIPE_FRAME_OUT_PAYLOAD        = 0x82,
    HVPIPE_FRAME_ACK                = 0x83,
    HVPIPE_FRAME_DROPPED            = 0x84,
    HVPIPE_FRAME_OK                 = 0x85,
    HVPIPE_FRAME_ERROR              = 0x86,
    HVPIPE_FRAME_STATE              = 0x87,
};

enum {
    HVPIPE_ERR_BAD_HEADER           = 1,
    HVPIPE_ERR_TOO_LONG             = 2,
    HVPIPE_ERR_BAD_TYPE             = 3,
    HVPIPE_ERR_BAD_LENGTH           = 4,
    HVPIPE_ERR_BAD_VALUE            = 5,
    HVPIPE_ERR_BUSY                 = 6,
    HVPIPE_ERR_DISABLED             = 7,
    HVPIPE_ERR_NO_FAULTS            = 8,
};

enum {
    HVPIPE_DROPPED_RESET            = 1,
    HVPIPE_DROPPED_DISABLED         = 2,
};

/* Functions named by FAULT_RTAS */
enum {
    HVPIPE_FN_SEND                  = 1,
    HVPIPE_FN_RECEIVE               = 2,
    HVPIPE_FN_MAX,
};

/* Moments of DROP_CONNECTION */
enum {
    HVPIPE_DROP_NOW                 = 0,
    HVPIPE_DROP_AFTER_MS            = 1,
    HVPIPE_DROP_ON_SEND             = 2,
    HVPIPE_DROP_ON_EVENT            = 3,
    HVPIPE_DROP_ON_RECEIVE          = 4,
    HVPIPE_DROP_NONE                = 0xff,
};

#define HVPIPE_MALFORMED_NEXT       0x01

/* An event log waiting for check-exception; built when it is fetched */
typedef struct SpaprHvpipeLog {
    bool outstanding;
    uint8_t event_type;
    uint8_t shape;
    uint8_t log_type;
    uint32_t srcid;
} SpaprHvpipeLog;

struct SpaprHvpipeSource {
    DeviceState parent_obj;

    uint32_t srcid;
    CharBackend chr;
    bool fault_injection;

    SpaprHvpipeState *pipe;
    QTAILQ_ENTRY(SpaprHvpipeSource) next;
    bool connected;
    uint32_t out_tag;
    uint32_t rx_len;
    uint8_t rx[HVPIPE_HDR_SIZE + HVPIPE_MAX_BODY];
    uint8_t *txq;
    uint32_t txq_len;
    guint tx_watch;
    uint8_t drop_moment;
    QEMUTimer *drop_timer;
    QEMUBH *drop_bh;

    /*
     * The source's one payload, from the PAYLOAD frame until the partition
     * received it.  payload_seq orders it in the partition-wide queue until
     * it is raised (0: not queued); lost_seq likewise for a connection-lost
     * event.  slot_ack: the ACK is owed to the current connection; neither
     * it nor slot_tag migrates.
     */
    bool slot_full;
    bool slot_ack;
    uint32_t slot_tag;
    uint32_t slot_len;
    uint8_t slot_data[SPAPR_HVPIPE_MAX_PAYLOAD];
    uint64_t payload_seq;
    uint64_t lost_seq;
};

struct SpaprHvpipeState {
    DeviceState parent_obj;

    SpaprMachineState *spapr;
    QTAILQ_HEAD(, SpaprHvpipeSource) sources;
    bool loaded;        /* state loaded, hosts not told yet */

    /* Guest-visible state, migrated */
    bool enabled;
    uint64_t next_seq;
    bool pending;
    uint32_t pending_srcid;
    /* The raised event's log, until check-exception fetches it */
    SpaprHvpipeLog log;
    /* An injected log (SPURIOUS_EVENT, MALFORMED_EVENT), one at a time */
    SpaprHvpipeLog injected;

    /* Fault injection: host test state, not migrated */
    uint32_t fault_count[HVPIPE_FN_MAX];
    int32_t fault_status[HVPIPE_FN_MAX];
    uint32_t delay_ms;
    bool delay_expired;
    QEMUTimer *delay_timer;
    uint8_t malform_shape;
    uint8_t malform_log_type;
};

static bool hvpipe_srcid_is_hmc(uint32_t srcid)
{
    return (srcid & SPAPR_HVPIPE_SRCID_TYPE_MASK) ==
           SPAPR_HVPIPE_SRCID_TYPE_HMC &&
           !(srcid & SPAPR_HVPIPE_SRCID_RESV_MASK);
}

static SpaprHvpipeSource *hvpipe_find_source(SpaprHvpipeState *pipe,
                                             uint32_t srcid)
{
    SpaprHvpipeSource *s;

    QTAILQ_FOREACH(s, &pipe->sources, next) {
        if (s->srcid == srcid) {
            return s;
        }
    }
    return NULL;
}

/*
 * RTAS buffers are work areas in the RMA.  Anything the guest names outside
 * of it is a parameter error, never an access.
 */
static bool hvpipe_guest_range_ok(SpaprHvpipeState *pipe, uint64_t addr,
                                  uint64_t len)
{
    hwaddr rma = pipe->spapr->rma_size;

    return len && addr < rma && len <= rma - addr;
}

static bool hvpipe_guest_read(SpaprHvpipeState *pipe, uint64_t addr,
                              void *buf, uint64_t len)
{
    return hvpipe_guest_range_ok(pipe, addr, len) &&
           address_space_read(&address_space_memory, addr,
                              MEMTXATTRS_UNSPECIFIED, buf, len) == MEMTX_OK;
}

static bool hvpipe_guest_write(SpaprHvpipeState *pipe, uint64_t addr,
                               const void *buf, uint64_t len)
{
    return hvpipe_guest_range_ok(pipe, addr, len) &&
           address_space_write(&address_space_memory, addr,
                               MEMTXATTRS_UNSPECIFIED, buf, len) == MEMTX_OK;
}

/* Frames to the host */

static void hvpipe_source_drop(SpaprHvpipeSource *s);

static gboolean hvpipe_source_writable(void *do_not_use, GIOCondition cond,
                                       void *opaque);

/* Writes what the chardev takes now, the rest when it can take more */
static void hvpipe_source_flush(SpaprHvpipeSource *s)
{
    while (s->connected && s->txq_len) {
        int n = qemu_chr_fe_write(&s->chr, s->txq, s->txq_len);

        if (n <= 0) {
            break;
        }
        memmove(s->txq, s->txq + n, s->txq_len - n);
        s->txq_len -= n;
    }
    if (s->connected && s->txq_len && !s->tx_watch) {
        s->tx_watch = qemu_chr_fe_add_watch(&s->chr, G_IO_OUT | G_IO_HUP,
                                            hvpipe_source_writable, s);
        if (!s->tx_watch) {
            hvpipe_source_drop(s);
        }
    }
}

static gboolean hvpipe_source_writable(void *do_not_use, GIOCondition cond,
                                       void *opaque)
{
    SpaprHvpipeSource *s = opaque;

    s->tx_watch = 0;
    hvpipe_source_flush(s);
    return G_SOURCE_REMOVE;
}

/*
 * Queues a frame for the host.  A host that let the queue fill stopped
 * reading: the pipe to it is closed (false), as if it had hung up, rather
 * than making the guest or the main loop wait for it.
 */
static bool hvpipe_source_send(SpaprHvpipeSource *s, uint8_t type,
                               uint32_t tag, const void *body, uint32_t len)
{
    uint8_t *frame;

    assert(len <= HVPIPE_MAX_BODY);
    if (!s->connected) {
        return false;
    }
    trace_spapr_hvpipe_frame_out(s->srcid, type, tag, len, s->txq_len);
    if (s->txq_len + HVPIPE_HDR_SIZE + len > HVPIPE_TXQ_SIZE) {
        trace_spapr_hvpipe_stalled(s->srcid, s->txq_len);
        hvpipe_source_drop(s);
        return false;
    }
    frame = s->txq + s->txq_len;
    stw_be_p(frame, HVPIPE_MAGIC);
    frame[2] = HVPIPE_VERSION;
    frame[3] = type;
    stl_be_p(frame + 4, tag);
    stl_be_p(frame + 8, len);
    if (len) {
        memcpy(frame + HVPIPE_HDR_SIZE, body, len);
    }
    s->txq_len += HVPIPE_HDR_SIZE + len;
    hvpipe_source_flush(s);
    /* A write error hangs up a socket chardev at once */
    return s->connected;
}

static void hvpipe_source_reply(SpaprHvpipeSource *s, uint8_t type,
                                uint32_t tag)
{
    hvpipe_source_send(s, type, tag, NULL, 0);
}

static void G_GNUC_PRINTF(5, 6) hvpipe_source_error(SpaprHvpipeSource *s,
                                                     uint8_t code,
                                                     uint8_t type,
                                                     uint32_t tag,
                                                     const char *fmt, ...)
{
    uint8_t body[4 + HVPIPE_ERROR_TEXT_MAX];
    g_autofree char *text = NULL;
    size_t text_len;
    va_list ap;

    va_start(ap, fmt);
    text = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    text_len = MIN(strlen(text), HVPIPE_ERROR_TEXT_MAX);

    body[0] = code;
    body[1] = type;
    body[2] = 0;
    body[3] = 0;
    memcpy(body + 4, text, text_len);
    hvpipe_source_send(s, HVPIPE_FRAME_ERROR, tag, body, 4 + text_len);
}

static void hvpipe_source_dropped(SpaprHvpipeSource *s, uint32_t reason)
{
    uint8_t body[4];

    stl_be_p(body, reason);
    hvpipe_source_send(s, HVPIPE_FRAME_DROPPED, s->slot_tag, body,
                       sizeof(body));
}

/* STATE: system parameter 64, and whether the source's slot is taken */
static void hvpipe_broadcast_state(SpaprHvpipeState *pipe)
{
    SpaprHvpipeSource *s;

    QTAILQ_FOREACH(s, &pipe->sources, next) {
        uint8_t body[4] = { pipe->enabled, s->slot_full };

        hvpipe_source_send(s, HVPIPE_FRAME_STATE, s->out_tag++, body,
                           sizeof(body));
    }
}

/* The partition-wide queue of events */

static void hvpipe_log_set(SpaprHvpipeState *pipe, SpaprHvpipeLog *log,
                           uint32_t srcid, uint8_t event_type, uint8_t shape,
                           uint8_t log_type)
{
    trace_spapr_hvpipe_event(srcid, event_type, shape, log != &pipe->log);
    log->outstanding = true;
    log->srcid = srcid;
    log->event_type = event_type;
    log->shape = shape;
    log->log_type = log_type;
    spapr_hvpipe_irq_pulse(pipe->spapr);
}

static void hvpipe_raise(SpaprHvpipeState *pipe, uint32_t srcid,
                         uint8_t event_type)
{
    uint8_t shape = pipe->malform_shape;

    pipe->malform_shape = SPAPR_HVPIPE_LOG_WELL_FORMED;
    hvpipe_log_set(pipe, &pipe->log, srcid, event_type, shape,
                   pipe->malform_log_type);
}

static SpaprHvpipeSource *hvpipe_queue_head(SpaprHvpipeState *pipe,
                                            bool *lost)
{
    SpaprHvpipeSource *s, *head = NULL;
    uint64_t oldest = UINT64_MAX;

    QTAILQ_FOREACH(s, &pipe->sources, next) {
        if (s->lost_seq && s->lost_seq < oldest) {
            oldest = s->lost_seq;
            head = s;
            *lost = true;
        }
        if (s->payload_seq && s->payload_seq < oldest) {
            oldest = s->payload_seq;
            head = s;
            *lost = false;
        }
    }
    return head;
}

/*
 * Raise the oldest queued event if the pipe allows one now: enabled, no
 * payload pending for the partition, no hvpipe event log still waiting for
 * check-exception, and the injected delay (if any) elapsed.
 */
static void hvpipe_kick(SpaprHvpipeState *pipe)
{
    SpaprHvpipeSource *s;
    bool lost = false;

    if (!pipe->enabled || pipe->pending || pipe->log.outstanding) {
        return;
    }
    s = hvpipe_queue_head(pipe, &lost);
    if (!s) {
        return;
    }
    if (pipe->delay_ms && !pipe->delay_expired) {
        if (!timer_pending(pipe->delay_timer)) {
            timer_mod(pipe->delay_timer,
                      qemu_clock_get_ms(QEMU_CLOCK_VIRTUAL) + pipe->delay_ms);
        }
        return;
    }
    pipe->delay_expired = false;

    if (lost) {
        s->lost_seq = 0;
        hvpipe_raise(pipe, s->srcid, SPAPR_HVPIPE_EVENT_LOST);
        return;
    }

    s->payload_seq = 0;
    pipe->pending = true;
    pipe->pending_srcid = s->srcid;
    hvpipe_raise(pipe, s->srcid, SPAPR_HVPIPE_EVENT_PAYLOAD);
    if (s->drop_moment == HVPIPE_DROP_ON_EVENT) {
        hvpipe_source_drop(s);
    }
}

static void hvpipe_delay_expired(void *opaque)
{
    SpaprHvpipeState *pipe = opaque;

    pipe->delay_expired = true;
    hvpipe_kick(pipe);
}

SpaprEventLogEntry *spapr_hvpipe_take_log(SpaprHvpipeState *pipe)
{
    SpaprHvpipeLog *log = pipe->injected.outstanding ? &pipe->injected
                                                     : &pipe->log;
    SpaprEventLogEntry *entry;

    if (!log->outstanding) {
        return NULL;
    }
    entry = spapr_hvpipe_log_new(pipe->spapr, log->srcid, log->event_type,
                                 log->shape, log->log_type);
    log->outstanding = false;
    if (log == &pipe->log) {
        hvpipe_kick(pipe);
    } else if (pipe->log.outstanding) {
        /* The interrupt stays raised while a log waits */
        spapr_hvpipe_irq_pulse(pipe->spapr);
    }
    return entry;
}

/* Frees the source's slot; the host hears of it if it still waits for it */
static void hvpipe_source_discard(SpaprHvpipeSource *s, uint32_t reason)
{
    if (s->slot_ack) {
        hvpipe_source_dropped(s, reason);
    }
    s->slot_full = false;
    s->slot_ack = false;
    s->payload_seq = 0;
}

/* System parameter 64 */

uint8_t spapr_hvpipe_get_enabled(SpaprHvpipeState *pipe)
{
    return pipe->enabled;
}

void spapr_hvpipe_set_enabled(SpaprHvpipeState *pipe, bool enabled)
{
    SpaprHvpipeSource *s;

    trace_spapr_hvpipe_sysparm(enabled);
    if (pipe->enabled == enabled) {
        return;
    }
    pipe->enabled = enabled;

    if (!enabled) {
        /* What was not announced yet is returned; the pending payload stays */
        QTAILQ_FOREACH(s, &pipe->sources, next) {
            if (s->payload_seq) {
                hvpipe_source_discard(s, HVPIPE_DROPPED_DISABLED);
            }
            s->lost_seq = 0;
        }
        timer_del(pipe->delay_timer);
        pipe->delay_expired = false;
    }
    hvpipe_broadcast_state(pipe);
    hvpipe_kick(pipe);
}

int spapr_hvpipe_set_sysparm(SpaprHvpipeState *pipe, uint64_t buffer)
{
    uint8_t buf[3];

    /* A big-endian u16 length, then the value */
    if (!hvpipe_guest_read(pipe, buffer, buf, sizeof(buf)) ||
        lduw_be_p(buf) < 1 || buf[2] > 1) {
        qemu_log_mask(LOG_GUEST_ERROR, "ibm,set-system-parameter 64: bad "
                      "buffer at 0x%" PRIx64 ", must hold a length of at "
                      "least 1 and 0 or 1\n", buffer);
        return RTAS_OUT_SYSPARM_PARAM_ERROR;
    }
    spapr_hvpipe_set_enabled(pipe, buf[2]);
    return RTAS_OUT_SUCCESS;
}

/* RTAS */

static bool hvpipe_take_fault(SpaprHvpipeState *pipe, int fn, int32_t *status)
{
    if (!pipe->fault_count[fn]) {
        return false;
    }
    pipe->fault_count[fn]--;
    *status = pipe->fault_status[fn];
    return true;
}

/* Validates the buffer list and queues its payload; the RTAS status */
static int32_t hvpipe_send(SpaprHvpipeState *pipe, uint32_t srcid,
                           target_ulong list_addr, uint64_t *len)
{
    uint8_t payload[SPAPR_HVPIPE_MAX_PAYLOAD];
    uint64_t list[1 + 2 * HVPIPE_LIST_MAX_PAIRS];
    uint64_t list_len, buf_addr;
    SpaprHvpipeSource *s;

    if (!hvpipe_srcid_is_hmc(srcid)) {
        qemu_log_mask(LOG_GUEST_ERROR, "ibm,send-hvpipe-msg: source ID "
                      "0x%08x is not an HMC ID\n", srcid);
        return RTAS_OUT_PARAM_ERROR;
    }
    if (!hvpipe_guest_read(pipe, list_addr, list, sizeof(list[0]))) {
        qemu_log_mask(LOG_GUEST_ERROR, "ibm,send-hvpipe-msg: buffer list at "
                      "0x" TARGET_FMT_lx " is not in the RMA\n", list_addr);
        return RTAS_OUT_PARAM_ERROR;
    }
    list_len = be64_to_cpu(list[0]);
    if (list_len != sizeof(list) ||
        !hvpipe_guest_read(pipe, list_addr, list, list_len)) {
        qemu_log_mask(LOG_GUEST_ERROR, "ibm,send-hvpipe-msg: buffer list of "
                      "%" PRIu64 " bytes at 0x" TARGET_FMT_lx ", must be %zu "
                      "(one buffer) in the RMA\n", list_len, list_addr,
                      sizeof(list));
        return RTAS_OUT_PARAM_ERROR;
    }
    buf_addr = be64_to_cpu(list[1]);
    *len = be64_to_cpu(list[2]);
    if (!*len || *len > SPAPR_HVPIPE_MAX_PAYLOAD ||
        (buf_addr & (HVPIPE_WORK_AREA_SIZE - 1)) + *len >
        HVPIPE_WORK_AREA_SIZE ||
        !hvpipe_guest_read(pipe, buf_addr, payload, *len)) {
        /* Each listed buffer is a 4 KiB buffer of its own */
        qemu_log_mask(LOG_GUEST_ERROR, "ibm,send-hvpipe-msg: buffer of "
                      "%" PRIu64 " bytes at 0x%" PRIx64 ", must be 1 to %d "
                      "in one 4 KiB page of the RMA\n", *len, buf_addr,
                      SPAPR_HVPIPE_MAX_PAYLOAD);
        return RTAS_OUT_PARAM_ERROR;
    }

    /* A well-formed HMC ID that names no source: that pipe is unavailable */
    s = hvpipe_find_source(pipe, srcid);
    if (!s || !pipe->enabled || !s->connected) {
        return HVPIPE_RTAS_CLOSED;
    }
    if (s->drop_moment == HVPIPE_DROP_ON_SEND) {
        hvpipe_source_drop(s);
        return HVPIPE_RTAS_CLOSED;
    }
    if (!hvpipe_source_send(s, HVPIPE_FRAME_OUT_PAYLOAD, s->out_tag++,
                            payload, *len)) {
        return HVPIPE_RTAS_CLOSED;
    }
    return RTAS_OUT_SUCCESS;
}

static void rtas_ibm_send_hvpipe_msg(PowerPCCPU *cpu, SpaprMachineState *spapr,
                                     uint32_t token, uint32_t nargs,
                                     target_ulong args, uint32_t nret,
                                     target_ulong rets)
{
    SpaprHvpipeState *pipe = spapr->hvpipe;
    uint64_t len = 0;
    uint32_t srcid;
    int32_t status;

    if (nargs != 2 || nret != 1) {
        qemu_log_mask(LOG_GUEST_ERROR, "ibm,send-hvpipe-msg: %u inputs and "
                      "%u outputs, must be 2 and 1\n", nargs, nret);
        rtas_st(rets, 0, RTAS_OUT_PARAM_ERROR);
        return;
    }
    srcid = rtas_ld(args, 0);
    if (hvpipe_take_fault(pipe, HVPIPE_FN_SEND, &status)) {
        trace_spapr_hvpipe_fault("ibm,send-hvpipe-msg", status);
    } else {
        status = hvpipe_send(pipe, srcid, rtas_ld(args, 1), &len);
    }
    trace_spapr_hvpipe_send(srcid, len, status);
    rtas_st(rets, 0, status);
}

static void hvpipe_receive_ret(target_ulong rets, int32_t status,
                               uint32_t srcid, uint32_t len)
{
    trace_spapr_hvpipe_receive(srcid, len, status);
    rtas_st(rets, 0, status);
    rtas_st(rets, 1, srcid);
    rtas_st(rets, 2, len);
}

static void rtas_ibm_receive_hvpipe_msg(PowerPCCPU *cpu,
                                        SpaprMachineState *spapr,
                                        uint32_t token, uint32_t nargs,
                                        target_ulong args, uint32_t nret,
                                        target_ulong rets)
{
    SpaprHvpipeState *pipe = spapr->hvpipe;
    target_ulong buf_addr, buf_size;
    SpaprHvpipeSource *s;
    int32_t status;

    if (nret != 3 || nargs != 2) {
        qemu_log_mask(LOG_GUEST_ERROR, "ibm,receive-hvpipe-msg: %u inputs "
                      "and %u outputs, must be 2 and 3\n", nargs, nret);
        if (nret == 3) {
            hvpipe_receive_ret(rets, RTAS_OUT_PARAM_ERROR, 0, 0);
        } else {
            rtas_st(rets, 0, RTAS_OUT_PARAM_ERROR);
        }
        return;
    }
    if (hvpipe_take_fault(pipe, HVPIPE_FN_RECEIVE, &status)) {
        trace_spapr_hvpipe_fault("ibm,receive-hvpipe-msg", status);
        hvpipe_receive_ret(rets, status, 0, 0);
        return;
    }

    buf_addr = rtas_ld(args, 0);
    buf_size = rtas_ld(args, 1);
    if (buf_size > HVPIPE_WORK_AREA_SIZE ||
        !hvpipe_guest_range_ok(pipe, buf_addr, buf_size)) {
        qemu_log_mask(LOG_GUEST_ERROR, "ibm,receive-hvpipe-msg: buffer of "
                      TARGET_FMT_lu " bytes at 0x" TARGET_FMT_lx ", must be "
                      "1 to %d in the RMA\n", buf_size, buf_addr,
                      HVPIPE_WORK_AREA_SIZE);
        hvpipe_receive_ret(rets, RTAS_OUT_PARAM_ERROR, 0, 0);
        return;
    }

    s = pipe->pending ? hvpipe_find_source(pipe, pipe->pending_srcid) : NULL;
    if (!s || !s->slot_full) {
        pipe->pending = false;
        hvpipe_receive_ret(rets, RTAS_OUT_SUCCESS, 0, 0);
        return;
    }

    /* Never truncate: a short buffer leaves the payload pending */
    if (buf_size < s->slot_len ||
        !hvpipe_guest_write(pipe, buf_addr, s->slot_data, s->slot_len)) {
        qemu_log_mask(LOG_GUEST_ERROR, "ibm,receive-hvpipe-msg: buffer of "
                      TARGET_FMT_lu " bytes for a payload of %u\n",
                      buf_size, s->slot_len);
        hvpipe_receive_ret(rets, RTAS_OUT_PARAM_ERROR, 0, 0);
        return;
    }
    hvpipe_receive_ret(rets, RTAS_OUT_SUCCESS, s->srcid, s->slot_len);

    pipe->pending = false;
    s->slot_full = false;
    if (s->drop_moment == HVPIPE_DROP_ON_RECEIVE) {
        hvpipe_source_drop(s);
    } else if (s->slot_ack) {
        hvpipe_source_reply(s, HVPIPE_FRAME_ACK, s->slot_tag);
    }
    s->slot_ack = false;
    hvpipe_kick(pipe);
}

/* Sources: connection */

static void hvpipe_source_lost(SpaprHvpipeSource *s)
{
    SpaprHvpipeState *pipe = s->pipe;

    trace_spapr_hvpipe_lost(s->srcid);
    s->connected = false;
    s->rx_len = 0;
    s->txq_len = 0;
    if (s->tx_watch) {
        g_source_remove(s->tx_watch);
        s->tx_watch = 0;
    }
    s->drop_moment = HVPIPE_DROP_NONE;
    timer_del(s->drop_timer);

    /* A queued payload dies with the connection, a pending one stays */
    if (s->payload_seq) {
        s->payload_seq = 0;
        s->slot_full = false;
    }
    s->slot_ack = false;

    if (pipe->enabled && !s->lost_seq) {
        s->lost_seq = pipe->next_seq++;
    }
    hvpipe_kick(pipe);
}

static void hvpipe_source_drop_bh(void *opaque)
{
    SpaprHvpipeSource *s = opaque;

    qemu_chr_fe_disconnect(&s->chr);
}

/*
 * Close the connection as the host would have: the model forgets it at
 * once, the chardev is disconnected from a bottom half because this may run
 * inside the chardev's own read handler.
 */
static void hvpipe_source_drop(SpaprHvpipeSource *s)
{
    hvpipe_source_lost(s);
    qemu_bh_schedule(s->drop_bh);
}

static void hvpipe_source_drop_timer(void *opaque)
{
    SpaprHvpipeSource *s = opaque;

    if (s->connected) {
        hvpipe_source_drop(s);
    }
}

static void hvpipe_source_opened(SpaprHvpipeSource *s)
{
    uint8_t hello[8];

    trace_spapr_hvpipe_connected(s->srcid);
    s->connected = true;
    s->rx_len = 0;
    s->txq_len = 0;
    s->out_tag = 1;
    s->drop_moment = HVPIPE_DROP_NONE;

    stl_be_p(hello, s->srcid);
    stw_be_p(hello + 4, SPAPR_HVPIPE_MAX_PAYLOAD);
    hello[6] = s->pipe->enabled;
    hello[7] = s->slot_full;
    hvpipe_source_send(s, HVPIPE_FRAME_HELLO, 0, hello, sizeof(hello));
}

static void hvpipe_source_event(void *opaque, QEMUChrEvent event)
{
    SpaprHvpipeSource *s = opaque;

    switch (event) {
    case CHR_EVENT_OPENED:
        hvpipe_source_opened(s);
        break;
    case CHR_EVENT_CLOSED:
        if (s->connected) {
            hvpipe_source_lost(s);
        }
        break;
    default:
        break;
    }
}

/* Sources: frames from the host */

static void hvpipe_source_payload(SpaprHvpipeSource *s, uint32_t tag,
                                  const uint8_t *body, uint32_t len)
{
    SpaprHvpipeState *pipe = s->pipe;

    if (!len || len > SPAPR_HVPIPE_MAX_PAYLOAD) {
        hvpipe_source_error(s, HVPIPE_ERR_BAD_LENGTH, HVPIPE_FRAME_PAYLOAD,
                            tag, "payload of %u bytes, must be 1 to %u",
                            len, SPAPR_HVPIPE_MAX_PAYLOAD);
        return;
    }
    if (!pipe->enabled) {
        hvpipe_source_error(s, HVPIPE_ERR_DISABLED, HVPIPE_FRAME_PAYLOAD,
                            tag, "the partition has not enabled hvpipe");
        return;
    }
    if (s->slot_full) {
        hvpipe_source_error(s, HVPIPE_ERR_BUSY, HVPIPE_FRAME_PAYLOAD, tag,
                            "a payload of this source is still waiting");
        return;
    }

    memcpy(s->slot_data, body, len);
    s->slot_len = len;
    s->slot_tag = tag;
    s->slot_full = true;
    s->slot_ack = true;
    s->payload_seq = pipe->next_seq++;
    hvpipe_kick(pipe);
}

static bool hvpipe_source_check_len(SpaprHvpipeSource *s, uint8_t type,
                                    uint32_t tag, uint32_t len,
                                    uint32_t expected)
{
    if (len != expected) {
        hvpipe_source_error(s, HVPIPE_ERR_BAD_LENGTH, type, tag,
                            "body of %u bytes, must be %u", len, expected);
        return false;
    }
    return true;
}

static void hvpipe_source_bad_value(SpaprHvpipeSource *s, uint8_t type,
                                    uint32_t tag, const char *what)
{
    hvpipe_source_error(s, HVPIPE_ERR_BAD_VALUE, type, tag, "bad %s", what);
}

static void hvpipe_fault_rtas(SpaprHvpipeSource *s, uint32_t tag,
                              const uint8_t *body)
{
    SpaprHvpipeState *pipe = s->pipe;
    uint8_t fn = body[0];

    if (fn != HVPIPE_FN_SEND && fn != HVPIPE_FN_RECEIVE) {
        hvpipe_source_bad_value(s, HVPIPE_FRAME_FAULT_RTAS, tag, "function");
        return;
    }
    if (lduw_be_p(body + 2)) {
        hvpipe_source_bad_value(s, HVPIPE_FRAME_FAULT_RTAS, tag, "reserved");
        return;
    }
    pipe->fault_count[fn] = body[1];
    pipe->fault_status[fn] = ldl_be_p(body + 4);
    hvpipe_source_reply(s, HVPIPE_FRAME_OK, tag);
}

static void hvpipe_set_delay(SpaprHvpipeState *pipe, uint32_t ms)
{
    pipe->delay_ms = ms;
    if (!ms && timer_pending(pipe->delay_timer)) {
        timer_del(pipe->delay_timer);
        hvpipe_kick(pipe);
    }
}

/* One injected log at a time: a host cannot make the guest's queue grow */
static bool hvpipe_injected_free(SpaprHvpipeSource *s, uint8_t type,
                                 uint32_t tag)
{
    if (s->pipe->injected.outstanding) {
        hvpipe_source_error(s, HVPIPE_ERR_BUSY, type, tag,
                            "an injected event log is still unfetched");
        return false;
    }
    return true;
}

static void hvpipe_spurious_event(SpaprHvpipeSource *s, uint32_t tag,
                                  const uint8_t *body)
{
    if (body[5] || body[6] || body[7]) {
        hvpipe_source_bad_value(s, HVPIPE_FRAME_SPURIOUS_EVENT, tag,
                                "reserved");
        return;
    }
    if (!hvpipe_injected_free(s, HVPIPE_FRAME_SPURIOUS_EVENT, tag)) {
        return;
    }
    hvpipe_source_reply(s, HVPIPE_FRAME_OK, tag);
    hvpipe_log_set(s->pipe, &s->pipe->injected, ldl_be_p(body), body[4],
                   SPAPR_HVPIPE_LOG_WELL_FORMED, 0);
}

static void hvpipe_malformed_event(SpaprHvpipeSource *s, uint32_t tag,
                                   const uint8_t *body)
{
    SpaprHvpipeState *pipe = s->pipe;
    uint8_t shape = body[0], log_type = body[1], flags = body[2];

    if (shape == SPAPR_HVPIPE_LOG_WELL_FORMED ||
        shape >= SPAPR_HVPIPE_LOG_SHAPE_MAX) {
        hvpipe_source_bad_value(s, HVPIPE_FRAME_MALFORMED_EVENT, tag, "kind");
        return;
    }
    if (flags & ~HVPIPE_MALFORMED_NEXT || body[3]) {
        hvpipe_source_bad_value(s, HVPIPE_FRAME_MALFORMED_EVENT, tag,
                                "flags or reserved");
        return;
    }
    if (!(flags & HVPIPE_MALFORMED_NEXT) &&
        !hvpipe_injected_free(s, HVPIPE_FRAME_MALFORMED_EVENT, tag)) {
        return;
    }
    hvpipe_source_reply(s, HVPIPE_FRAME_OK, tag);
    if (flags & HVPIPE_MALFORMED_NEXT) {
        pipe->malform_shape = shape;
        pipe->malform_log_type = log_type;
    } else {
        hvpipe_log_set(pipe, &pipe->injected, ldl_be_p(body + 4),
                       SPAPR_HVPIPE_EVENT_PAYLOAD, shape, log_type);
    }
}

static void hvpipe_drop_connection(SpaprHvpipeSource *s, uint32_t tag,
                                   const uint8_t *body)
{
    uint8_t moment = body[0];
    uint32_t arg = ldl_be_p(body + 4);

    if (moment > HVPIPE_DROP_ON_RECEIVE) {
        hvpipe_source_bad_value(s, HVPIPE_FRAME_DROP_CONNECTION, tag,
                                "moment");
        return;
    }
    if (body[1] || body[2] || body[3]) {
        hvpipe_source_bad_value(s, HVPIPE_FRAME_DROP_CONNECTION, tag,
                                "reserved");
        return;
    }
    hvpipe_source_reply(s, HVPIPE_FRAME_OK, tag);

    timer_del(s->drop_timer);
    s->drop_moment = moment;
    switch (moment) {
    case HVPIPE_DROP_NOW:
        hvpipe_source_drop(s);
        break;
    case HVPIPE_DROP_AFTER_MS:
        timer_mod(s->drop_timer,
                  qemu_clock_get_ms(QEMU_CLOCK_VIRTUAL) + arg);
        break;
    default:
        break;
    }
}

static void hvpipe_clear_faults(SpaprHvpipeState *pipe)
{
    SpaprHvpipeSource *s;

    memset(pipe->fault_count, 0, sizeof(pipe->fault_count));
    pipe->malform_shape = SPAPR_HVPIPE_LOG_WELL_FORMED;
    QTAILQ_FOREACH(s, &pipe->sources, next) {
        s->drop_moment = HVPIPE_DROP_NONE;
        timer_del(s->drop_timer);
    }
    hvpipe_set_delay(pipe, 0);
}

static void hvpipe_source_frame(SpaprHvpipeSource *s, uint8_t type,
                                uint32_t tag, const uint8_t *body,
                                uint32_t len)
{
    trace_spapr_hvpipe_frame_in(s->srcid, type, tag, len);
    if (type >= HVPIPE_FRAME_FAULT_RTAS && type <= HVPIPE_FRAME_CLEAR_FAULTS &&
        !s->fault_injection) {
        hvpipe_source_error(s, HVPIPE_ERR_NO_FAULTS, type, tag,
                            "fault injection is off (x-fault-injection)");
        return;
    }

    switch (type) {
    case HVPIPE_FRAME_PAYLOAD:
        hvpipe_source_payload(s, tag, body, len);
        break;
    case HVPIPE_FRAME_NOP:
        if (hvpipe_source_check_len(s, type, tag, len, 0)) {
            hvpipe_source_reply(s, HVPIPE_FRAME_OK, tag);
        }
        break;
    case HVPIPE_FRAME_FAULT_RTAS:
        if (hvpipe_source_check_len(s, type, tag, len, 8)) {
            hvpipe_fault_rtas(s, tag, body);
        }
        break;
    case HVPIPE_FRAME_DELAY_EVENTS:
        if (hvpipe_source_check_len(s, type, tag, len, 4)) {
            hvpipe_source_reply(s, HVPIPE_FRAME_OK, tag);
            hvpipe_set_delay(s->pipe, ldl_be_p(body));
        }
        break;
    case HVPIPE_FRAME_SPURIOUS_EVENT:
        if (hvpipe_source_check_len(s, type, tag, len, 8)) {
            hvpipe_spurious_event(s, tag, body);
        }
        break;
    case HVPIPE_FRAME_MALFORMED_EVENT:
        if (hvpipe_source_check_len(s, type, tag, len, 8)) {
            hvpipe_malformed_event(s, tag, body);
        }
        break;
    case HVPIPE_FRAME_DROP_CONNECTION:
        if (hvpipe_source_check_len(s, type, tag, len, 8)) {
            hvpipe_drop_connection(s, tag, body);
        }
        break;
    case HVPIPE_FRAME_CLEAR_FAULTS:
        if (hvpipe_source_check_len(s, type, tag, len, 0)) {
            hvpipe_source_reply(s, HVPIPE_FRAME_OK, tag);
            hvpipe_clear_faults(s->pipe);
        }
        break;
    default:
        hvpipe_source_error(s, HVPIPE_ERR_BAD_TYPE, type, tag,
                            "unknown frame type 0x%02x", type);
        break;
    }
}

/* The bytes that complete the header, or else the frame, being read */
static uint32_t hvpipe_source_frame_rest(SpaprHvpipeSource *s)
{
    if (s->rx_len < HVPIPE_HDR_SIZE) {
        return HVPIPE_HDR_SIZE - s->rx_len;
    }
    return HVPIPE_HDR_SIZE + ldl_be_p(s->rx + 8) - s->rx_len;
}

/*
 * Take whatever the host has sent, up to a frame's size: the receive
 * handler cuts it into frames.  Asking for one header, then one body,
 * costs a read() and a main loop iteration each, on every payload.
 */
static int hvpipe_source_can_receive(void *opaque)
{
    SpaprHvpipeSource *s = opaque;

    return s->connected ? sizeof(s->rx) : 0;
}

static void hvpipe_source_receive(void *opaque, const uint8_t *buf, int size)
{
    SpaprHvpipeSource *s = opaque;

    while (size > 0 && s->connected) {
        uint32_t n = MIN(size, hvpipe_source_frame_rest(s));
        uint32_t body_len;

        memcpy(s->rx + s->rx_len, buf, n);
        s->rx_len += n;
        buf += n;
        size -= n;
        if (s->rx_len < HVPIPE_HDR_SIZE) {
            continue;
        }

        body_len = ldl_be_p(s->rx + 8);
        if (s->rx_len == HVPIPE_HDR_SIZE) {
            /* Framing is lost for good: tell the host and hang up */
            if (lduw_be_p(s->rx) != HVPIPE_MAGIC ||
                s->rx[2] != HVPIPE_VERSION) {
                hvpipe_source_error(s, HVPIPE_ERR_BAD_HEADER, s->rx[3],
                                    ldl_be_p(s->rx + 4),
                                    "bad magic or version");
                hvpipe_source_drop(s);
                return;
            }
            if (body_len > HVPIPE_MAX_BODY) {
                hvpipe_source_error(s, HVPIPE_ERR_TOO_LONG, s->rx[3],
                                    ldl_be_p(s->rx + 4),
                                    "body of %u bytes, at most %u",
                                    body_len, HVPIPE_MAX_BODY);
                hvpipe_source_drop(s);
                return;
            }
        }
        if (s->rx_len == HVPIPE_HDR_SIZE + body_len) {
            s->rx_len = 0;
            hvpipe_source_frame(s, s->rx[3], ldl_be_p(s->rx + 4),
                                s->rx + HVPIPE_HDR_SIZE, body_len);
        }
    }
}

/* Reset and migration */

static void spapr_hvpipe_reset_hold(Object *obj, ResetType type)
{
    SpaprHvpipeState *pipe = SPAPR_HVPIPE(obj);
    SpaprHvpipeSource *s;

    QTAILQ_FOREACH(s, &pipe->sources, next) {
        if (s->slot_full) {
            hvpipe_source_discard(s, HVPIPE_DROPPED_RESET);
        }
        s->lost_seq = 0;
        s->drop_moment = HVPIPE_DROP_NONE;
        timer_del(s->drop_timer);
    }
    pipe->pending = false;
    pipe->log.outstanding = false;
    pipe->injected.outstanding = false;
    timer_del(pipe->delay_timer);
    pipe->delay_expired = false;
    if (pipe->enabled) {
        pipe->enabled = false;
        hvpipe_broadcast_state(pipe);
    }
}

/*
 * When a loaded machine runs: the hosts last heard the state from before the
 * load (a HELLO on the destination, the STATE 0 of loadvm's reset), tell them
 * the loaded one, and which slots the loaded payloads take.  By then every
 * source's section is loaded too, whatever their order in the incoming
 * stream.  Raise what is queued behind the loaded event log, if any.
 */
static void hvpipe_vm_state_change(void *opaque, bool running,
                                   RunState state)
{
    SpaprHvpipeState *pipe = opaque;

    if (running && pipe->loaded) {
        pipe->loaded = false;
        hvpipe_broadcast_state(pipe);
        hvpipe_kick(pipe);
    }
}

static int hvpipe_post_load(void *opaque, int version_id)
{
    SpaprHvpipeState *pipe = opaque;

    if (pipe->log.shape >= SPAPR_HVPIPE_LOG_SHAPE_MAX ||
        pipe->injected.shape >= SPAPR_HVPIPE_LOG_SHAPE_MAX) {
        return -EINVAL;
    }
    pipe->loaded = true;
    return 0;
}

static const VMStateDescription vmstate_spapr_hvpipe_log = {
    .name = "spapr-hvpipe/log",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        VMSTATE_BOOL(outstanding, SpaprHvpipeLog),
        VMSTATE_UINT8(event_type, SpaprHvpipeLog),
        VMSTATE_UINT8(shape, SpaprHvpipeLog),
        VMSTATE_UINT8(log_type, SpaprHvpipeLog),
        VMSTATE_UINT32(srcid, SpaprHvpipeLog),
        VMSTATE_END_OF_LIST()
    },
};

static bool hvpipe_injected_needed(void *opaque)
{
    SpaprHvpipeState *pipe = opaque;

    return pipe->injected.outstanding;
}

static const VMStateDescription vmstate_spapr_hvpipe_injected = {
    .name = "spapr-hvpipe/injected",
    .version_id = 1,
    .minimum_version_id = 1,
    .needed = hvpipe_injected_needed,
    .fields = (const VMStateField[]) {
        VMSTATE_STRUCT(injected, SpaprHvpipeState, 1,
                       vmstate_spapr_hvpipe_log, SpaprHvpipeLog),
        VMSTATE_END_OF_LIST()
    },
};

static int hvpipe_pre_load(void *opaque)
{
    SpaprHvpipeState *pipe = opaque;

    /* Absent unless an injected log was waiting */
    pipe->injected.outstanding = false;
    return 0;
}

static const VMStateDescription vmstate_spapr_hvpipe = {
    .name = TYPE_SPAPR_HVPIPE,
    .version_id = 1,
    .minimum_version_id = 1,
    .pre_load = hvpipe_pre_load,
    .post_load = hvpipe_post_load,
    .fields = (const VMStateField[]) {
        VMSTATE_BOOL(enabled, SpaprHvpipeState),
        VMSTATE_UINT64(next_seq, SpaprHvpipeState),
        VMSTATE_BOOL(pending, SpaprHvpipeState),
        VMSTATE_UINT32(pending_srcid, SpaprHvpipeState),
        VMSTATE_STRUCT(log, SpaprHvpipeState, 1, vmstate_spapr_hvpipe_log,
                       SpaprHvpipeLog),
        VMSTATE_END_OF_LIST()
    },
    .subsections = (const VMStateDescription * const []) {
        &vmstate_spapr_hvpipe_injected,
        NULL
    },
};

static int hvpipe_source_pre_load(void *opaque)
{
    SpaprHvpipeSource *s = opaque;

    /* The slot's subsection is there only when the slot is taken */
    s->slot_full = false;
    s->slot_len = 0;
    return 0;
}

static int hvpipe_source_post_load(void *opaque, int version_id)
{
    SpaprHvpipeSource *s = opaque;

    if (s->slot_len > SPAPR_HVPIPE_MAX_PAYLOAD ||
        (s->slot_full && !s->slot_len) || (s->payload_seq && !s->slot_full)) {
        return -EINVAL;
    }
    /*
     * The payload's ACK was owed to a connection of the machine that saved
     * the state, not to whoever is connected here: none is sent.
     */
    s->slot_ack = false;
    return 0;
}

static bool hvpipe_source_slot_needed(void *opaque)
{
    SpaprHvpipeSource *s = opaque;

    return s->slot_full;
}

static const VMStateDescription vmstate_spapr_hvpipe_source_slot = {
    .name = "spapr-hvpipe-source/slot",
    .version_id = 1,
    .minimum_version_id = 1,
    .needed = hvpipe_source_slot_needed,
    .fields = (const VMStateField[]) {
        VMSTATE_BOOL(slot_full, SpaprHvpipeSource),
        VMSTATE_UINT32(slot_len, SpaprHvpipeSource),
        VMSTATE_UINT8_ARRAY(slot_data, SpaprHvpipeSource,
                            SPAPR_HVPIPE_MAX_PAYLOAD),
        VMSTATE_END_OF_LIST()
    },
};

static const VMStateDescription vmstate_spapr_hvpipe_source = {
    .name = TYPE_SPAPR_HVPIPE_SOURCE,
    .version_id = 1,
    .minimum_version_id = 1,
    .pre_load = hvpipe_source_pre_load,
    .post_load = hvpipe_source_post_load,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT32_EQUAL(srcid, SpaprHvpipeSource, NULL),
        VMSTATE_UINT64(payload_seq, SpaprHvpipeSource),
        VMSTATE_UINT64(lost_seq, SpaprHvpipeSource),
        VMSTATE_END_OF_LIST()
    },
    .subsections = (const VMStateDescription * const []) {
        &vmstate_spapr_hvpipe_source_slot,
        NULL
    },
};

/* QOM */

static void spapr_hvpipe_realize(DeviceState *dev, Error **errp)
{
    SpaprHvpipeState *pipe = SPAPR_HVPIPE(dev);

    pipe->spapr = SPAPR_MACHINE(qdev_get_machine());
    QTAILQ_INIT(&pipe->sources);
    pipe->next_seq = 1;
    qemu_add_vm_change_state_handler(hvpipe_vm_state_change, pipe);
    pipe->delay_timer = timer_new_ms(QEMU_CLOCK_VIRTUAL,
                                     hvpipe_delay_expired, pipe);
    /* Not on a bus: the machine's reset reaches it through this */
    qemu_register_resettable(OBJECT(dev));

    spapr_rtas_register(RTAS_IBM_SEND_HVPIPE_MSG, "ibm,send-hvpipe-msg",
                        rtas_ibm_send_hvpipe_msg);
    spapr_rtas_register(RTAS_IBM_RECEIVE_HVPIPE_MSG, "ibm,receive-hvpipe-msg",
                        rtas_ibm_receive_hvpipe_msg);
}

static void spapr_hvpipe_class_init(ObjectClass *oc, void *data)
{
    DeviceClass *dc = DEVICE_CLASS(oc);
    ResettableClass *rc = RESETTABLE_CLASS(oc);

    rc->phases.hold = spapr_hvpipe_reset_hold;
    dc->desc = "sPAPR hypervisor pipe";
    dc->realize = spapr_hvpipe_realize;
    dc->vmsd = &vmstate_spapr_hvpipe;
    dc->user_creatable = false;
}

void spapr_hvpipe_create(SpaprMachineState *spapr)
{
    DeviceState *dev = qdev_new(TYPE_SPAPR_HVPIPE);

    object_property_add_child(OBJECT(spapr), "pipe", OBJECT(dev));
    qdev_realize_and_unref(dev, NULL, &error_fatal);
    spapr->hvpipe = SPAPR_HVPIPE(dev);
}

static void spapr_hvpipe_source_realize(DeviceState *dev, Error **errp)
{
    SpaprHvpipeSource *s = SPAPR_HVPIPE_SOURCE(dev);
    SpaprMachineState *spapr;

    spapr = (SpaprMachineState *)object_dynamic_cast(qdev_get_machine(),
                                                     TYPE_SPAPR_MACHINE);
    if (!spapr || !spapr->hvpipe) {
        error_setg(errp, "%s needs -machine pseries,hvpipe=on",
                   TYPE_SPAPR_HVPIPE_SOURCE);
        return;
    }
    if (!hvpipe_srcid_is_hmc(s->srcid)) {
        error_setg(errp, "srcid 0x%08x is not an HMC source ID 0x0200QQQQ",
                   s->srcid);
        return;
    }
    if (hvpipe_find_source(spapr->hvpipe, s->srcid)) {
        error_setg(errp, "srcid 0x%08x is already in use", s->srcid);
        return;
    }
    if (!qemu_chr_fe_backend_connected(&s->chr)) {
        error_setg(errp, "%s needs a chardev", TYPE_SPAPR_HVPIPE_SOURCE);
        return;
    }
    /*
     * A bad frame or a host that stops reading closes the connection: only
     * a socket lets the host come back.
     */
    if (!object_dynamic_cast(OBJECT(qemu_chr_fe_get_driver(&s->chr)),
                             TYPE_CHARDEV_SOCKET)) {
        error_setg(errp, "%s needs a socket chardev",
                   TYPE_SPAPR_HVPIPE_SOURCE);
        return;
    }

    s->pipe = spapr->hvpipe;
    s->drop_moment = HVPIPE_DROP_NONE;
    s->drop_timer = timer_new_ms(QEMU_CLOCK_VIRTUAL,
                                 hvpipe_source_drop_timer, s);
    s->drop_bh = qemu_bh_new_guarded(hvpipe_source_drop_bh, s,
                                     &dev->mem_reentrancy_guard);
    s->txq = g_malloc(HVPIPE_TXQ_SIZE);
    QTAILQ_INSERT_TAIL(&s->pipe->sources, s, next);
    qemu_chr_fe_set_handlers(&s->chr, hvpipe_source_can_receive,
                             hvpipe_source_receive, hvpipe_source_event,
                             NULL, s, NULL, true);
}

static void spapr_hvpipe_source_unrealize(DeviceState *dev)
{
    SpaprHvpipeSource *s = SPAPR_HVPIPE_SOURCE(dev);

    qemu_chr_fe_deinit(&s->chr, false);
    QTAILQ_REMOVE(&s->pipe->sources, s, next);
    timer_free(s->drop_timer);
    qemu_bh_delete(s->drop_bh);
    if (s->tx_watch) {
        g_source_remove(s->tx_watch);
    }
    g_free(s->txq);
}

static const Property spapr_hvpipe_source_properties[] = {
    DEFINE_PROP_UINT32("srcid", SpaprHvpipeSource, srcid, 0),
    DEFINE_PROP_CHR("chardev", SpaprHvpipeSource, chr),
    DEFINE_PROP_BOOL("x-fault-injection", SpaprHvpipeSource, fault_injection,
                     false),
};

static void spapr_hvpipe_source_class_init(ObjectClass *oc, void *data)
{
    DeviceClass *dc = DEVICE_CLASS(oc);

    dc->desc = "sPAPR hypervisor pipe source (HMC)";
    dc->realize = spapr_hvpipe_source_realize;
    dc->unrealize = spapr_hvpipe_source_unrealize;
    dc->hotpluggable = false;
    dc->vmsd = &vmstate_spapr_hvpipe_source;
    device_class_set_props(dc, spapr_hvpipe_source_properties);
    object_class_property_set_description(oc, "srcid",
        "Source ID of the HMC, 0x0200QQQQ");
    object_class_property_set_description(oc, "chardev",
        "Socket chardev to the host playing the HMC "
        "(protocol: docs/specs/ppc-spapr-hvpipe.rst)");
    object_class_property_set_description(oc, "x-fault-injection",
        "Let the host inject firmware faults (for tests)");
    set_bit(DEVICE_CATEGORY_MISC, dc->categories);
}

static const TypeInfo spapr_hvpipe_types[] = {
    {
        .name          = TYPE_SPAPR_HVPIPE,
        .parent        = TYPE_DEVICE,
        .instance_size = sizeof(SpaprHvpipeState),
        .class_init    = spapr_hvpipe_class_init,
    },
    {
        .name          = TYPE_SPAPR_HVPIPE_SOURCE,
        .parent        = TYPE_DEVICE,
        .instance_size = sizeof(SpaprHvpipeSource),
        .class_init    = spapr_hvpipe_source_class_init,
    },
};

DEFINE_TYPES(spapr_hvpipe_types)
