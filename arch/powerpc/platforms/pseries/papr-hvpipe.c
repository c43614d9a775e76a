// SPDX-License-Identifier: GPL-2.0-only
/*
 * PAPR hypervisor pipe (hvpipe): /dev/papr-hvpipe.
 *
 * PowerVM gives the partition one pipe to its sources (Hardware Management
 * Consoles). An ioctl on /dev/papr-hvpipe gives a file descriptor per
 * source; write() sends with ibm,send-hvpipe-msg and returns once the
 * source has the message.
 *
 * Receiving starts with the event interrupt: check-exception's error log
 * names a source and says whether a payload waits or the connection was
 * lost. The handler notes the event in a ring; an ordered work item
 * handles the ring oldest first, calls ibm,receive-hvpipe-msg for a
 * payload (which acknowledges it) and queues it on the fd of the source
 * *that call* returns. Firmware raises no further event, for any source,
 * until the payload is received, so whatever stops receiving blocks the
 * whole pipe: a payload for a full queue is left with firmware only until
 * its reader makes room (back-pressure), a payload nobody has open is
 * received and dropped, a failed receive is retried for as long as it
 * fails, and a malformed event is followed by a receive. The rules, and
 * what they assume of firmware, are in Documentation/arch/powerpc/papr_hvpipe.rst.
 */

#define pr_fmt(fmt) "papr-hvpipe: " fmt

#include <linux/anon_inodes.h>
#include <linux/build_bug.h>
#include <linux/debugfs.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/init.h>
#include <linux/interrupt.h>
#include <linux/irqdomain.h>
#include <linux/list.h>
#include <linux/lockdep.h>
#include <linux/miscdevice.h>
#include <linux/moduleparam.h>
#include <linux/of.h>
#include <linux/of_irq.h>
#include <linux/overflow.h>
#include <linux/poll.h>
#include <linux/ratelimit.h>
#include <linux/sched/signal.h>
#include <linux/seq_file.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/unaligned.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>
#include <kunit/static_stub.h>
#include <kunit/visibility.h>
#include <asm/irq.h>
#include <asm/machdep.h>
#include <asm/papr-sysparm.h>
#include <asm/rtas-work-area.h>
#include <asm/rtas.h>
#include <uapi/asm/papr-hvpipe.h>

#include "papr-hvpipe.h"

#define CREATE_TRACE_POINTS
#include "papr_hvpipe_trace.h"

static_assert(sizeof(struct papr_hvpipe_hdr) == 48);
static_assert(PAPR_HVPIPE_IOC_CREATE_HANDLE == 0x8004B209);

/*
 * Function-specific status of ibm,send-hvpipe-msg: the pipe to the source
 * is closed or unavailable. The PAPR text defining the hypervisor pipe
 * option is not public; the value is the one firmware returns to the
 * Linux 6.18 driver, whose user ABI maps it to EPIPE. A receive answering
 * it is mapped the same way, and retried like any failed receive.
 */
#define RTAS_HVPIPE_CLOSED	-4

/* check-exception found no error log to return. */
#define RTAS_CE_NO_EVENT	1

/* Source ID 0xCCRRQQQQ: CC type, RR reserved, QQQQ index. */
#define HVPIPE_HMC_ID_MASK	0x02000000
#define HVPIPE_SRC_TYPE_MASK	0xff000000
#define HVPIPE_SRC_RSVD_MASK	0x00ff0000
#define HVPIPE_SRC_INDEX_MASK	0x0000ffff

#define HVPIPE_HDR_LEN		sizeof(struct papr_hvpipe_hdr)
#define HVPIPE_MAX_WRITE	(HVPIPE_HDR_LEN + HVPIPE_MAX_PAYLOAD)

/* Event type bits in the "PE" section. */
#define HVPIPE_EVENT_TYPES	(HVPIPE_MSG_AVAILABLE | HVPIPE_LOST_CONNECTION)

/*
 * Not a firmware event type: an hvpipe event could not be read, so whether
 * a payload waits, and from which source, is unknown. The receive path
 * receives once; firmware names the source, or returns 0 bytes.
 */
#define HVPIPE_EVENT_PROBE	0x100

#define HVPIPE_EVENT_RING	16	/* Events noted, not yet handled. */

/*
 * The send work area: the buffer list at its start and the payload in a
 * 4 KiB buffer of its own after it, as the list's author describes the
 * format. One allocation keeps to one work area at a time; the allocator
 * aligns it to its size, so the payload buffer is page-aligned.
 */
#define HVPIPE_SEND_AREA_SIZE	SZ_8K
#define HVPIPE_SEND_PAYLOAD	SZ_4K

/*
 * The receive work area: firmware's 4 KiB buffer is its second page, so that
 * the header can be laid just in front of the payload and a reader's copy
 * is one copy to user space, not two. Each copy to user space is a window
 * of user access that ends, on CPUs with the uaccess flush mitigation, with
 * an L1D cache flush.
 */
#define HVPIPE_RECV_AREA_SIZE	SZ_8K
#define HVPIPE_RECV_PAYLOAD	SZ_4K
#define HVPIPE_RECV_BUF_SIZE	SZ_4K

/* Section data of the "PE" error log section: source ID, event type. */
#define HVPIPE_SECTION_DATA_LEN	5

/* Retry delay when no memory is left for a message. */
#define HVPIPE_NOMEM_DELAY	(HZ / 10)

/*
 * How long a reader woken to receive its source's payload itself has before
 * the work item receives it instead: the work item leaves an offered payload
 * alone until then, even when it is already running.
 */
#define HVPIPE_DIRECT_GRACE	(HZ / 20)

/* First delay after a failed receive; it doubles up to the second. */
#define HVPIPE_RX_RETRY_DELAY	msecs_to_jiffies(10)
#define HVPIPE_RX_RETRY_MAX	(10 * HZ)

/**
 * enum hvpipe_fw - Classes of failing RTAS status, counted per function.
 * @HVPIPE_FW_HW_ERROR:      -1, hardware error.
 * @HVPIPE_FW_INVALID:       -3, invalid parameter.
 * @HVPIPE_FW_CLOSED:        -4, pipe to the source closed or unavailable.
 * @HVPIPE_FW_NOT_SUPPORTED: -5, function not supported.
 * @HVPIPE_FW_UNEXPECTED:    Any other failing status.
 * @HVPIPE_FW_NR:            Number of classes.
 */
enum hvpipe_fw {
	HVPIPE_FW_HW_ERROR,
	HVPIPE_FW_INVALID,
	HVPIPE_FW_CLOSED,
	HVPIPE_FW_NOT_SUPPORTED,
	HVPIPE_FW_UNEXPECTED,
	HVPIPE_FW_NR,
};

/**
 * struct hvpipe_event_stats - Event counters, under &hvpipe_dev.event_lock.
 * @interrupts:     Event interrupts taken.
 * @no_event:       check-exception found no event (status 1).
 * @ce_failed:      check-exception failed with another status: a receive
 *                  follows, as the event may stand for a payload.
 * @bad_log_type:   Error log type was not RTAS_TYPE_HVPIPE.
 * @no_section:     No well-formed "PE" section in the log.
 * @short_section:  "PE" section too short for a source ID and a type.
 * @unknown_type:   Event type with neither known bit set.
 * @payload:        Payload-available events noted.
 * @lost:           Lost-connection events noted.
 * @overflow:       Lost-connection events dropped because the event ring
 *                  was full.
 * @deferred:       Payload events (or receives after a malformed event)
 *                  that found the ring full: kept aside and handled once
 *                  the ring drains, never dropped.
 * @stale:          Payload events (or receives after a malformed event)
 *                  a newer one superseded before they were handled.
 * @spurious:       Receives after an event that found nothing pending
 *                  (0 bytes): not a message, nothing dropped.
 */
struct hvpipe_event_stats {
	u64 interrupts;
	u64 no_event;
	u64 ce_failed;
	u64 bad_log_type;
	u64 no_section;
	u64 short_section;
	u64 unknown_type;
	u64 payload;
	u64 lost;
	u64 overflow;
	u64 deferred;
	u64 stale;
	u64 spurious;
};

/**
 * struct hvpipe_stats - Message counters, under &hvpipe_dev.lock.
 * @sent:              Messages sent.
 * @received:          Messages received and queued to a source fd, or
 *                     copied to its reader.
 * @received_direct:   Of those, copied to a reader that received them.
 * @dropped_no_handle: Messages received for a source with no open fd.
 * @dropped_closed:    Messages still queued when their fd was closed.
 * @dropped_oversize:  Payloads firmware reported larger than
 *                     %HVPIPE_MAX_PAYLOAD: received (ACKed) and dropped.
 * @dropped_rx_failed: Payload events given up because firmware does not
 *                     support the receive (-5).
 * @misrouted:         Payloads whose source differed from the event's.
 * @backpressure:      Receives deferred because the source queue was full.
 * @rx_retries:        Failed receives retried later.
 * @nomem:             Receives deferred for lack of memory.
 * @queue_hwm:         Deepest source queue seen.
 * @send_fw:           Failing ibm,send-hvpipe-msg statuses by class.
 * @recv_fw:           Failing ibm,receive-hvpipe-msg statuses by class.
 */
struct hvpipe_stats {
	u64 sent;
	u64 received;
	u64 received_direct;
	u64 dropped_no_handle;
	u64 dropped_closed;
	u64 dropped_oversize;
	u64 dropped_rx_failed;
	u64 misrouted;
	u64 backpressure;
	u64 rx_retries;
	u64 nomem;
	u64 queue_hwm;
	u64 send_fw[HVPIPE_FW_NR];
	u64 recv_fw[HVPIPE_FW_NR];
};

/**
 * struct hvpipe_event - One event noted by the interrupt handler.
 * @srcid: Source the event names.
 * @type:  %HVPIPE_MSG_AVAILABLE, %HVPIPE_LOST_CONNECTION or
 *         %HVPIPE_EVENT_PROBE (then @srcid is 0).
 */
struct hvpipe_event {
	u32 srcid;
	u32 type;
};

/**
 * struct hvpipe_item - A queued message or lost-connection notice.
 * @node:  Entry in &hvpipe_source.queue.
 * @flags: %HVPIPE_MSG_AVAILABLE or %HVPIPE_LOST_CONNECTION.
 * @len:   Payload bytes; 0 for the notice.
 */
struct hvpipe_item {
	struct list_head node;
	u32 flags;
	u32 len;
};

/**
 * struct hvpipe_msg - A received payload.
 * @item: Its place in the queue; @item.len bytes in @data.
 * @data: The payload.
 */
struct hvpipe_msg {
	struct hvpipe_item item;
	u8 data[];
};

/**
 * struct hvpipe_source - State of one open source fd.
 * @dev:        The instance this source belongs to.
 * @srcid:      Source ID.
 * @depth:      Most messages queued before receiving stops.
 * @nmsgs:      Messages on @queue, and any a reader took off it and is
 *              copying out; @lost is not counted.
 * @hwm:        Most messages @queue ever held.
 * @queue:      Messages and the lost-connection notice, oldest first.
 * @lost:       The lost-connection notice, queued at most once. poll()
 *              reports a hang-up while it is queued.
 * @wait:       Readers, writers and pollers.
 * @sent:       Messages sent to the source.
 * @received:   Messages received from the source.
 * @lost_count: Lost-connection notices queued.
 * @rcu:        Frees the source after the interrupt handler, which looks
 *              it up under RCU, can no longer see it.
 *
 * All but @dev, @srcid, @depth and @wait are under &hvpipe_dev.lock.
 */
struct hvpipe_source {
	struct hvpipe_dev *dev;
	u32 srcid;
	u32 depth;
	u32 nmsgs;
	u32 hwm;
	struct list_head queue;
	struct hvpipe_item lost;
	wait_queue_head_t wait;
	u64 sent;
	u64 received;
	u64 lost_count;
	struct rcu_head rcu;
};

/**
 * struct hvpipe_reader - A reader receiving for itself.
 * @src:   Its source.
 * @buf:   Its user buffer.
 * @count: Size of @buf.
 * @done:  Out: bytes copied to @buf (header and payload), 0 if none.
 */
struct hvpipe_reader {
	struct hvpipe_source *src;
	char __user *buf;
	size_t count;
	ssize_t done;
};

/**
 * struct hvpipe_dev - One hvpipe instance.
 * @lock:        Process context only: @sources updates, source queues,
 *               @rx_blocked, @suspended, @migrations, @stats.
 * @event_lock:  Shared with the interrupt handler, taken irqsave:
 *               @ring, @ring_head, @ring_count, @payload_deferred,
 *               @deferred, @offered, @offer_pos, @offer_end,
 *               @event_stats.
 * @sources:     Open sources by the index of their ID.
 * @ring:        Events noted by the interrupt handler, oldest at
 *               @ring_head. The receive path removes an event only
 *               after handling it.
 * @ring_head:   Index of the oldest event.
 * @ring_count:  Events in @ring; poll() takes a first look without
 *               @event_lock.
 * @payload_deferred: A payload (or probe) event found @ring full; it is
 *               moved to @ring once @ring is empty. Firmware raises no
 *               event while a payload is unreceived, so one is enough.
 * @deferred:    The deferred event.
 * @offered:     The payload event at @offer_pos is offered to the reader
 *               the interrupt woke for it, until @offer_end (jiffies).
 * @offer_pos:   Its index in @ring.
 * @offer_end:   When the work item may receive it instead.
 * @receiving:   The receive path is receiving for the oldest event: set
 *               under @rx_mutex before the call, cleared once the event
 *               is removed or the call failed. Read as a hint by the
 *               interrupt handler and poll().
 * @rx_mutex:    Serialises the receive path: the work item, and readers
 *               that receive a payload for their own source.
 * @rx_blocked:  The oldest event waits for room in a source queue.
 * @rx_tries:    Failed receives for the oldest event so far; under
 *               @rx_mutex.
 * @rx_msg:      Message of %HVPIPE_MAX_PAYLOAD bytes the next payload is
 *               received into, allocated before the receive; under
 *               @rx_mutex.
 * @suspended:   Partition migration in progress: no send, no receive.
 *               Written under @lock and rtas_ibm_send_hvpipe_msg_lock,
 *               so a send needs only the latter; poll() takes a first
 *               look without either.
 * @migrations:  Completed partition migrations: a write() that sees it
 *               change fails, as its source ID may name another source.
 *               Written under @lock and rtas_ibm_send_hvpipe_msg_lock;
 *               write() takes its first look without either.
 * @queue_depth: See &struct hvpipe_config.
 * @wq:          Ordered workqueue running @rx_work.
 * @rx_work:     The receive path.
 * @irqs:        Requested event interrupts.
 * @nr_irqs:     Entries in @irqs.
 * @stats:       Message counters.
 * @event_stats: Event counters.
 * @miscdev:     /dev/papr-hvpipe, registered for the firmware instance.
 */
struct hvpipe_dev {
	spinlock_t lock;		/* Process context only. */
	spinlock_t event_lock;		/* Shared with the interrupt. */
	struct xarray sources;
	struct hvpipe_event ring[HVPIPE_EVENT_RING];
	unsigned int ring_head;
	unsigned int ring_count;
	bool payload_deferred;
	struct hvpipe_event deferred;
	bool offered;
	unsigned int offer_pos;
	unsigned long offer_end;
	bool receiving;
	struct mutex rx_mutex;		/* The receive path. */
	bool rx_blocked;
	unsigned int rx_tries;
	struct hvpipe_msg *rx_msg;
	bool suspended;
	u32 migrations;
	unsigned int queue_depth;
	struct workqueue_struct *wq;
	struct delayed_work rx_work;
	unsigned int irqs[HVPIPE_MAX_IRQS];
	unsigned int nr_irqs;
	struct hvpipe_stats stats;
	struct hvpipe_event_stats event_stats;
	struct miscdevice miscdev;
};

/**
 * struct hvpipe_buffer_list - Buffer list of ibm,send-hvpipe-msg.
 * @size: Bytes in the list: this 8-byte header and one 16-byte pair.
 * @addr: Physical address of the payload's buffer.
 * @len:  Bytes of payload.
 */
struct hvpipe_buffer_list {
	__be64 size;
	__be64 addr;
	__be64 len;
};

static_assert(sizeof(struct hvpipe_buffer_list) == 24);
static_assert(sizeof(struct hvpipe_buffer_list) <= HVPIPE_SEND_PAYLOAD);
static_assert(HVPIPE_SEND_PAYLOAD + HVPIPE_MAX_PAYLOAD <= HVPIPE_SEND_AREA_SIZE);
static_assert(HVPIPE_MAX_PAYLOAD <= HVPIPE_RECV_BUF_SIZE);
static_assert(HVPIPE_HDR_LEN <= HVPIPE_RECV_PAYLOAD);
static_assert(HVPIPE_RECV_PAYLOAD + HVPIPE_RECV_BUF_SIZE <=
	      HVPIPE_RECV_AREA_SIZE);

static unsigned int hvpipe_queue_depth = HVPIPE_DEFAULT_DEPTH;

static int hvpipe_queue_depth_set(const char *val,
				  const struct kernel_param *kp)
{
	return param_set_uint_minmax(val, kp, 1, HVPIPE_MAX_DEPTH);
}

static const struct kernel_param_ops hvpipe_queue_depth_ops = {
	.set = hvpipe_queue_depth_set,
	.get = param_get_uint,
};

module_param_cb(queue_depth, &hvpipe_queue_depth_ops, &hvpipe_queue_depth,
		0644);
MODULE_PARM_DESC(queue_depth,
		 "Messages queued per source fd before receiving stops (1-1024, default 16; new fds only)");

/*
 * check-exception writes the error log here. It must be RTAS-addressable,
 * which kernel data is, and the lock keeps two CPUs taking the event
 * interrupt from sharing it.
 */
static char hvpipe_log_buf[RTAS_ERROR_LOG_MAX] __aligned(8);
static DEFINE_SPINLOCK(hvpipe_log_lock);

/* A receive failing for minutes is reported once a minute after the first. */
static DEFINE_RATELIMIT_STATE(hvpipe_rx_ratelimit, 60 * HZ, 1);

/*
 * The instance backed by firmware, for the migration hook; published with
 * release once complete, read with acquire.
 */
static struct hvpipe_dev *hvpipe_main;

/*
 * Only HMC IDs with the reserved byte clear can be opened, so the sources
 * are kept by the ID's low 16 bits, the index: the xarray is then one level
 * deep for indexes below 64 and at most three, where the whole ID (0x02 in
 * its top byte) takes five, and the event interrupt looks a source up for
 * every payload.
 */
static bool hvpipe_srcid_valid(u32 srcid)
{
	return (srcid & HVPIPE_SRC_TYPE_MASK) == HVPIPE_HMC_ID_MASK &&
	       !(srcid & HVPIPE_SRC_RSVD_MASK);
}

/* The key of a valid source ID in &hvpipe_dev.sources. */
static unsigned long hvpipe_srcid_index(u32 srcid)
{
	return srcid & HVPIPE_SRC_INDEX_MASK;
}

/* The source open for @srcid, or NULL. Under RCU or &hvpipe_dev.lock. */
static struct hvpipe_source *hvpipe_source_find(struct hvpipe_dev *dev,
						u32 srcid)
{
	if (!hvpipe_srcid_valid(srcid))
		return NULL;
	return xa_load(&dev->sources, hvpipe_srcid_index(srcid));
}

/*
 * Firmware calls. Each makes exactly one RTAS call, so the KUnit suite can
 * stand in for firmware here and exercise everything above.
 */

/**
 * hvpipe_call_send() - Call ibm,send-hvpipe-msg once.
 * @srcid: Destination source ID.
 * @list:  Physical address of the buffer list, RTAS-addressable.
 *
 * Context: Process context; the caller holds rtas_ibm_send_hvpipe_msg_lock.
 * Return: The RTAS status.
 */
VISIBLE_IF_KUNIT s32 hvpipe_call_send(u32 srcid, phys_addr_t list)
{
	KUNIT_STATIC_STUB_REDIRECT(hvpipe_call_send, srcid, list);

	return rtas_call(rtas_function_token(RTAS_FN_IBM_SEND_HVPIPE_MSG), 2, 1,
			 NULL, srcid, (u32)list);
}
EXPORT_SYMBOL_IF_KUNIT(hvpipe_call_send);

/**
 * hvpipe_call_receive() - Call ibm,receive-hvpipe-msg once.
 * @buf:   Physical address of the receive buffer, RTAS-addressable.
 * @size:  Size of @buf.
 * @srcid: Out: source the payload came from (0 if the call failed).
 * @bytes: Out: bytes firmware wrote to @buf (0 if the call failed).
 *
 * Context: Process context; the caller holds
 * rtas_ibm_receive_hvpipe_msg_lock.
 * Return: The RTAS status.
 */
VISIBLE_IF_KUNIT s32 hvpipe_call_receive(phys_addr_t buf, u32 size, u32 *srcid,
					 u32 *bytes)
{
	/* rtas_call() leaves them alone when it fails before the call. */
	int rets[2] = {};
	s32 fwrc;

	KUNIT_STATIC_STUB_REDIRECT(hvpipe_call_receive, buf, size, srcid, bytes);

	fwrc = rtas_call(rtas_function_token(RTAS_FN_IBM_RECEIVE_HVPIPE_MSG),
			 2, 3, rets, (u32)buf, size);
	*srcid = rets[0];
	*bytes = rets[1];
	return fwrc;
}
EXPORT_SYMBOL_IF_KUNIT(hvpipe_call_receive);

/**
 * hvpipe_call_check_exception() - Fetch the error log of an hvpipe event.
 * @hwirq: Hardware number of the event interrupt.
 * @log:   Error log buffer, RTAS-addressable.
 * @len:   Size of @log.
 *
 * Context: Any, including hard interrupt.
 * Return: The RTAS status: 0 when an event was returned in @log,
 * %RTAS_CE_NO_EVENT when there was none.
 */
VISIBLE_IF_KUNIT s32 hvpipe_call_check_exception(unsigned long hwirq,
						 void *log, size_t len)
{
	KUNIT_STATIC_STUB_REDIRECT(hvpipe_call_check_exception, hwirq, log, len);

	return rtas_call(rtas_function_token(RTAS_FN_CHECK_EXCEPTION), 6, 1,
			 NULL, RTAS_VECTOR_EXTERNAL_INTERRUPT, hwirq,
			 RTAS_HVPIPE_MSG_EVENTS, 1, __pa(log), len);
}
EXPORT_SYMBOL_IF_KUNIT(hvpipe_call_check_exception);

/**
 * hvpipe_call_set_enable() - Set system parameter 64 (hvpipe enablement).
 * @enable: Whether the OS uses hvpipe.
 *
 * Context: Process context, may sleep.
 * Return: 0 on success, -errno otherwise.
 */
VISIBLE_IF_KUNIT int hvpipe_call_set_enable(bool enable)
{
	struct papr_sysparm_buf *buf;
	int ret;

	KUNIT_STATIC_STUB_REDIRECT(hvpipe_call_set_enable, enable);

	buf = papr_sysparm_buf_alloc();
	if (!buf)
		return -ENOMEM;
	buf->len = cpu_to_be16(1);
	buf->val[0] = enable;
	ret = papr_sysparm_set(PAPR_SYSPARM_HVPIPE_ENABLE, buf);
	papr_sysparm_buf_free(buf);
	return ret;
}
EXPORT_SYMBOL_IF_KUNIT(hvpipe_call_set_enable);

/*
 * The final status of either hvpipe function, decoded once: its class for
 * the counters and the errno user space sees (facts of the user ABI:
 * -1 EIO, -3 EINVAL, -4 EPIPE, -5 EOPNOTSUPP, anything else EIO).
 */
static int hvpipe_status(s32 fwrc, const char *name, enum hvpipe_fw *class)
{
	static const int errnos[HVPIPE_FW_NR] = {
		[HVPIPE_FW_HW_ERROR] = -EIO,
		[HVPIPE_FW_INVALID] = -EINVAL,
		[HVPIPE_FW_CLOSED] = -EPIPE,
		[HVPIPE_FW_NOT_SUPPORTED] = -EOPNOTSUPP,
		[HVPIPE_FW_UNEXPECTED] = -EIO,
	};

	switch (fwrc) {
	case RTAS_SUCCESS:
		return 0;
	case RTAS_HARDWARE_ERROR:
		*class = HVPIPE_FW_HW_ERROR;
		break;
	case RTAS_INVALID_PARAMETER:
		*class = HVPIPE_FW_INVALID;
		break;
	case RTAS_HVPIPE_CLOSED:
		*class = HVPIPE_FW_CLOSED;
		break;
	case RTAS_FUNC_NOT_SUPPORTED:
		*class = HVPIPE_FW_NOT_SUPPORTED;
		break;
	default:
		*class = HVPIPE_FW_UNEXPECTED;
		pr_err_ratelimited("unexpected %s status %d\n", name, fwrc);
		break;
	}
	return errnos[*class];
}

/**
 * rtas_ibm_send_hvpipe_msg() - Send the message described by a work area.
 * @area:  Work area holding the buffer list and the payload.
 * @srcid: Destination source ID.
 * @fwrc:  Out: the last RTAS status.
 * @class: Out: its class, when it failed.
 *
 * Retries busy and extended-delay statuses.
 *
 * Context: May sleep. The caller holds rtas_ibm_send_hvpipe_msg_lock.
 * Return: 0 when the message reached the source, -EIO on a hardware
 * error or an unexpected status, -EINVAL on an invalid parameter, -EPIPE
 * when the pipe to the source is closed, -EOPNOTSUPP when firmware does
 * not support the function.
 */
static int rtas_ibm_send_hvpipe_msg(struct rtas_work_area *area, u32 srcid,
				    s32 *fwrc, enum hvpipe_fw *class)
{
	s32 rc;

	lockdep_assert_held(&rtas_ibm_send_hvpipe_msg_lock);

	do {
		rc = hvpipe_call_send(srcid, rtas_work_area_phys(area));
	} while (rtas_busy_delay(rc));

	*fwrc = rc;
	return hvpipe_status(rc, "ibm,send-hvpipe-msg", class);
}

/**
 * rtas_ibm_receive_hvpipe_msg() - Receive the waiting payload into a work area.
 * @area:  Receive work area: the payload is written at its
 *         %HVPIPE_RECV_PAYLOAD.
 * @srcid: Out: source the payload came from.
 * @bytes: Out: payload bytes written.
 * @fwrc:  Out: the last RTAS status.
 * @class: Out: its class, when it failed.
 *
 * Retries busy and extended-delay statuses. A successful call acknowledges
 * the payload to its source, even when the byte count is then rejected.
 *
 * Context: May sleep. The caller holds rtas_ibm_receive_hvpipe_msg_lock.
 * Return: 0 on success, -EIO on a hardware error or an unexpected status,
 * -EINVAL on an invalid parameter, -EPIPE when the pipe is closed or
 * unavailable, -EOPNOTSUPP when firmware does not support the function,
 * -EBADMSG when firmware reports more than %HVPIPE_MAX_PAYLOAD bytes (the
 * payload is then ACKed but unusable).
 */
static int rtas_ibm_receive_hvpipe_msg(struct rtas_work_area *area,
				       u32 *srcid, u32 *bytes, s32 *fwrc,
				       enum hvpipe_fw *class)
{
	s32 rc;
	int ret;

	lockdep_assert_held(&rtas_ibm_receive_hvpipe_msg_lock);

	do {
		rc = hvpipe_call_receive(rtas_work_area_phys(area) +
					 HVPIPE_RECV_PAYLOAD,
					 HVPIPE_RECV_BUF_SIZE, srcid, bytes);
	} while (rtas_busy_delay(rc));

	*fwrc = rc;
	ret = hvpipe_status(rc, "ibm,receive-hvpipe-msg", class);
	/*
	 * Sources send at most HVPIPE_MAX_PAYLOAD bytes: anything more is a
	 * firmware fault on data a source controls, never a reason to copy
	 * beyond the payload or to warn.
	 */
	if (!ret && *bytes > HVPIPE_MAX_PAYLOAD)
		ret = -EBADMSG;
	return ret;
}

/*
 * Lay out the buffer list and the payload in a send work area: the payload
 * from @payload, or with @payload NULL from the user's write() buffer @ubuf
 * (header and payload) with page faults disabled, since the work area and
 * the function's lock are held: -EFAULT if it is not all resident. The
 * header then lands just before the payload, in the unused rest of the
 * list's page, so that one copy reads the whole buffer as write() always
 * has.
 */
static int hvpipe_fill_send_area(void *area, phys_addr_t phys,
				 const void *payload,
				 const char __user *ubuf, size_t len)
{
	struct hvpipe_buffer_list *list = area;

	if (payload)
		memcpy(area + HVPIPE_SEND_PAYLOAD, payload, len);
	else if (copy_from_user_nofault(area + HVPIPE_SEND_PAYLOAD -
					HVPIPE_HDR_LEN, ubuf,
					HVPIPE_HDR_LEN + len))
		return -EFAULT;
	list->size = cpu_to_be64(sizeof(*list));
	list->addr = cpu_to_be64(phys + HVPIPE_SEND_PAYLOAD);
	list->len = cpu_to_be64(len);
	return 0;
}

/**
 * hvpipe_parse_event() - Find the hvpipe event in a check-exception log.
 * @buf: The error log.
 * @len: Bytes of @buf that may be read.
 * @ev:  Out: the source and the event type byte.
 *
 * Walks the sections the way get_pseries_errorlog() does, but never reads
 * beyond @len and rejects section lengths that would loop or overrun.
 *
 * Return: 0 on success, -EPROTO if the log is not of type
 * RTAS_TYPE_HVPIPE, -ENOENT if it has no well-formed "PE" section,
 * -EMSGSIZE if the section is too short for its data.
 */
static int hvpipe_parse_event(const void *buf, size_t len,
			      struct hvpipe_event *ev)
{
	const size_t log_hdr = offsetof(struct rtas_error_log, buffer);
	const size_t ext_hdr = offsetof(struct rtas_ext_event_log_v6, vendor_log);
	const struct rtas_ext_event_log_v6 *ext;
	const struct rtas_error_log *log = buf;
	const struct pseries_errorlog *sect;
	const u8 *p, *end;
	size_t ext_len;
	u16 sect_len;

	if (len < log_hdr)
		return -ENOENT;
	if (rtas_error_type(log) != RTAS_TYPE_HVPIPE)
		return -EPROTO;

	ext_len = be32_to_cpu(log->extended_log_length);
	if (ext_len < ext_hdr || ext_len > len - log_hdr)
		return -ENOENT;
	ext = (const struct rtas_ext_event_log_v6 *)log->buffer;
	if ((ext->byte2 & 0x0f) != RTAS_V6EXT_LOG_FORMAT_EVENT_LOG ||
	    be32_to_cpu(ext->company_id) != RTAS_V6EXT_COMPANY_ID_IBM)
		return -ENOENT;

	p = ext->vendor_log;
	end = log->buffer + ext_len;
	while (end - p >= sizeof(*sect)) {
		sect = (const struct pseries_errorlog *)p;
		sect_len = get_unaligned_be16(&sect->length);
		if (sect_len < sizeof(*sect) || sect_len > end - p)
			return -ENOENT;
		if (get_unaligned_be16(&sect->id) ==
		    PSERIES_ELOG_SECT_ID_HVPIPE_EVENT) {
			if (sect_len < sizeof(*sect) + HVPIPE_SECTION_DATA_LEN)
				return -EMSGSIZE;
			ev->srcid = get_unaligned_be32(sect->data);
			ev->type = sect->data[4];
			return 0;
		}
		p += sect_len;
	}

	return -ENOENT;
}

/**
 * hvpipe_kick() - Run the receive path.
 * @dev:   The instance.
 * @delay: Jiffies to wait first; 0 also cuts short a delayed run.
 *
 * Context: Any.
 */
VISIBLE_IF_KUNIT void hvpipe_kick(struct hvpipe_dev *dev, unsigned long delay)
{
	KUNIT_STATIC_STUB_REDIRECT(hvpipe_kick, dev, delay);

	if (delay)
		queue_delayed_work(dev->wq, &dev->rx_work, delay);
	else
		mod_delayed_work(dev->wq, &dev->rx_work, 0);
}
EXPORT_SYMBOL_IF_KUNIT(hvpipe_kick);

/* Note one event; false (counted) if the ring is full. Under event_lock. */
static bool hvpipe_ring_push(struct hvpipe_dev *dev, u32 srcid, u32 type)
{
	unsigned int tail;

	lockdep_assert_held(&dev->event_lock);

	if (dev->ring_count == HVPIPE_EVENT_RING) {
		if (type == HVPIPE_LOST_CONNECTION)
			dev->event_stats.overflow++;
		return false;
	}
	tail = (dev->ring_head + dev->ring_count) % HVPIPE_EVENT_RING;
	dev->ring[tail] = (struct hvpipe_event) { .srcid = srcid, .type = type };
	WRITE_ONCE(dev->ring_count, dev->ring_count + 1);
	return true;
}

/*
 * Note an event that calls for a receive (a payload or a probe), never
 * dropping it: if the ring is full it is kept aside, a payload event in
 * preference to a probe. Under event_lock.
 */
static void hvpipe_ring_push_rx(struct hvpipe_dev *dev, u32 srcid, u32 type)
{
	lockdep_assert_held(&dev->event_lock);

	if (hvpipe_ring_push(dev, srcid, type))
		return;
	dev->event_stats.deferred++;
	if (dev->payload_deferred && type == HVPIPE_EVENT_PROBE)
		return;
	dev->payload_deferred = true;
	dev->deferred = (struct hvpipe_event) { .srcid = srcid, .type = type };
}

/*
 * A payload event for @srcid: if its reader waits with nothing queued, wake
 * it to receive the payload itself, one wake-up on the way to it instead of
 * two (the work item's, then the reader's). Only a hint, taken without
 * dev->lock: the reader checks again, and the work item, kicked with a
 * delay, receives the payload if the reader does not come. Any context.
 */
static bool hvpipe_wake_reader(struct hvpipe_dev *dev, u32 srcid)
{
	struct hvpipe_source *src;
	bool woken = false;

	rcu_read_lock();
	src = hvpipe_source_find(dev, srcid);
	/* Racy on purpose: nmsgs is dev->lock's, and the reader looks again. */
	if (src && !data_race(src->nmsgs) && wq_has_sleeper(&src->wait)) {
		wake_up_interruptible_poll(&src->wait, EPOLLIN | EPOLLRDNORM);
		woken = true;
	}
	rcu_read_unlock();
	return woken;
}

/**
 * hvpipe_handle_event() - Fetch, check and note one hvpipe event.
 * @dev:   The instance.
 * @hwirq: Hardware number of the event interrupt.
 *
 * Nothing in a log that cannot be read is used: it is counted and
 * reported. As it may stand for a waiting payload, which would block the
 * pipe for good, a receive is noted for it (%HVPIPE_EVENT_PROBE); so is
 * one for a check-exception that failed, since the log it could not
 * return may be such an event.
 *
 * Context: Any, including hard interrupt.
 */
VISIBLE_IF_KUNIT void hvpipe_handle_event(struct hvpipe_dev *dev,
					  unsigned long hwirq)
{
	struct hvpipe_event ev = {};
	size_t len = min_t(size_t, rtas_get_error_log_max(),
			   sizeof(hvpipe_log_buf));
	bool kick = false, lost_dropped = false, direct;
	unsigned long flags;
	s32 fwrc;
	int ret;

	spin_lock_irqsave(&hvpipe_log_lock, flags);
	fwrc = hvpipe_call_check_exception(hwirq, hvpipe_log_buf, len);
	if (fwrc == RTAS_CE_NO_EVENT)
		ret = -ENODATA;
	else if (fwrc)
		ret = -EIO;
	else
		ret = hvpipe_parse_event(hvpipe_log_buf, len, &ev);
	spin_unlock_irqrestore(&hvpipe_log_lock, flags);

	if (!ret && !(ev.type & HVPIPE_EVENT_TYPES))
		ret = -EINVAL;

	spin_lock_irqsave(&dev->event_lock, flags);
	dev->event_stats.interrupts++;
	switch (ret) {
	case 0:
		/* A payload sent before the loss comes before the notice. */
		if (ev.type & HVPIPE_MSG_AVAILABLE) {
			dev->event_stats.payload++;
			hvpipe_ring_push_rx(dev, ev.srcid, HVPIPE_MSG_AVAILABLE);
			kick = true;
		}
		if (ev.type & HVPIPE_LOST_CONNECTION) {
			dev->event_stats.lost++;
			if (hvpipe_ring_push(dev, ev.srcid,
					     HVPIPE_LOST_CONNECTION))
				kick = true;
			else
				lost_dropped = true;
		}
		break;
	case -ENODATA:
		dev->event_stats.no_event++;
		break;
	case -EIO:
		dev->event_stats.ce_failed++;
		break;
	case -EPROTO:
		dev->event_stats.bad_log_type++;
		break;
	case -EMSGSIZE:
		dev->event_stats.short_section++;
		break;
	case -EINVAL:
		dev->event_stats.unknown_type++;
		break;
	default:
		dev->event_stats.no_section++;
		break;
	}
	if (ret && ret != -ENODATA) {
		hvpipe_ring_push_rx(dev, 0, HVPIPE_EVENT_PROBE);
		kick = true;
	}
	/*
	 * A payload, and nothing before it to handle but an event being
	 * received (firmware offers the next payload once the last one is
	 * received, often before the receive path has removed its event):
	 * its reader may take it. Offered before the wake-up, so that the
	 * reader finds it so; withdrawn below if no reader was woken.
	 */
	direct = !ret && ev.type == HVPIPE_MSG_AVAILABLE &&
		 !dev->payload_deferred &&
		 (dev->ring_count == 1 ||
		  (dev->ring_count == 2 && READ_ONCE(dev->receiving)));
	if (direct) {
		dev->offered = true;
		dev->offer_pos = (dev->ring_head + dev->ring_count - 1) %
				 HVPIPE_EVENT_RING;
		dev->offer_end = jiffies + HVPIPE_DIRECT_GRACE;
	}
	spin_unlock_irqrestore(&dev->event_lock, flags);

	if (ret == -ENODATA)
		pr_debug_ratelimited("check-exception found no event\n");
	else if (ret == -EIO)
		pr_warn_ratelimited("check-exception failed (%d), receiving once\n",
				    fwrc);
	else if (ret)
		pr_warn_ratelimited("malformed hvpipe event (%d), receiving once\n",
				    ret);
	else if (lost_dropped)
		pr_err_ratelimited("event ring full, lost-connection event from 0x%08x dropped\n",
				   ev.srcid);

	if (!ret)
		trace_papr_hvpipe_event(ev.srcid, ev.type);
	if (kick && direct && hvpipe_wake_reader(dev, ev.srcid)) {
		hvpipe_kick(dev, HVPIPE_DIRECT_GRACE);
	} else if (kick) {
		if (direct) {
			spin_lock_irqsave(&dev->event_lock, flags);
			dev->offered = false;
			spin_unlock_irqrestore(&dev->event_lock, flags);
		}
		hvpipe_kick(dev, 0);
	}
}
EXPORT_SYMBOL_IF_KUNIT(hvpipe_handle_event);

static irqreturn_t hvpipe_event_interrupt(int irq, void *data)
{
	hvpipe_handle_event(data, virq_to_hw(irq));
	return IRQ_HANDLED;
}

/* Remove the oldest event, with its offer. Under event_lock. */
static void hvpipe_ring_drop(struct hvpipe_dev *dev)
{
	lockdep_assert_held(&dev->event_lock);

	if (dev->offer_pos == dev->ring_head)
		dev->offered = false;
	dev->ring_head = (dev->ring_head + 1) % HVPIPE_EVENT_RING;
	WRITE_ONCE(dev->ring_count, dev->ring_count - 1);
	dev->rx_tries = 0;
	WRITE_ONCE(dev->receiving, false);
}

/*
 * Is there a receive event newer than the one @nth from the oldest (0: the
 * oldest)? Under event_lock.
 */
static bool hvpipe_ring_newer_rx(struct hvpipe_dev *dev, unsigned int nth)
{
	unsigned int i;

	lockdep_assert_held(&dev->event_lock);

	if (dev->payload_deferred)
		return true;
	for (i = nth + 1; i < dev->ring_count; i++)
		if (dev->ring[(dev->ring_head + i) % HVPIPE_EVENT_RING].type !=
		    HVPIPE_LOST_CONNECTION)
			return true;
	return false;
}

/*
 * The oldest event still to handle, the deferred one once the ring is
 * empty. Firmware offers one payload at a time and raises the next event
 * only once it is received, so a receive event with a newer one behind it
 * is stale: firmware no longer holds what it stood for (it withdrew it, a
 * source was lost). Waiting for room in its source's queue would hold up
 * every other source, and receiving for it could only return the newer
 * event's payload: it is dropped and counted. @grace gets what is left of
 * its offer to a reader, in jiffies: 0 if none.
 */
static bool hvpipe_ring_peek(struct hvpipe_dev *dev, struct hvpipe_event *ev,
			     unsigned long *grace)
{
	unsigned long flags;
	bool found;

	spin_lock_irqsave(&dev->event_lock, flags);
	for (;;) {
		if (!dev->ring_count && dev->payload_deferred) {
			dev->payload_deferred = false;
			hvpipe_ring_push(dev, dev->deferred.srcid,
					 dev->deferred.type);
		}
		if (!dev->ring_count ||
		    dev->ring[dev->ring_head].type == HVPIPE_LOST_CONNECTION ||
		    !hvpipe_ring_newer_rx(dev, 0))
			break;
		dev->event_stats.stale++;
		hvpipe_ring_drop(dev);
	}
	found = dev->ring_count;
	if (found)
		*ev = dev->ring[dev->ring_head];
	*grace = 0;
	if (found && dev->offered && dev->offer_pos == dev->ring_head &&
	    time_before(jiffies, dev->offer_end))
		*grace = dev->offer_end - jiffies;
	spin_unlock_irqrestore(&dev->event_lock, flags);
	return found;
}

/*
 * Only the receive path removes events, and only once handled. True if the
 * work item has one to handle next: one not offered to a reader, or the
 * deferred one.
 */
static bool hvpipe_ring_pop(struct hvpipe_dev *dev)
{
	unsigned long flags;
	bool left;

	spin_lock_irqsave(&dev->event_lock, flags);
	hvpipe_ring_drop(dev);
	if (dev->ring_count)
		left = !dev->offered || dev->offer_pos != dev->ring_head;
	else
		left = dev->payload_deferred;
	spin_unlock_irqrestore(&dev->event_lock, flags);
	return left;
}

/* Queue (or move to the tail) the lost-connection notice. */
static void hvpipe_source_lost(struct hvpipe_source *src)
{
	lockdep_assert_held(&src->dev->lock);

	src->lost_count++;
	list_move_tail(&src->lost.node, &src->queue);
	wake_up_interruptible_poll(&src->wait, EPOLLIN | EPOLLRDNORM | EPOLLHUP);
}

/*
 * Copy a payload from the work area straight to the reader it is for, with
 * page faults disabled: the work area and the function's lock are held, and
 * a fault could sleep for as long as user space likes. The header goes in
 * the work area just in front of the payload, so that both are one copy. A
 * payload that does not fit, or a buffer not resident, goes the queue's way
 * instead.
 */
static bool hvpipe_copy_to_reader(struct hvpipe_reader *rd, u32 srcid,
				  void *payload, u32 bytes)
{
	struct papr_hvpipe_hdr *hdr = payload - sizeof(*hdr);

	if (!rd || srcid != rd->src->srcid || !bytes ||
	    rd->count < sizeof(*hdr) + bytes)
		return false;
	memset(hdr, 0, sizeof(*hdr));
	hdr->flags = HVPIPE_MSG_AVAILABLE;
	if (copy_to_user_nofault(rd->buf, hdr, sizeof(*hdr) + bytes))
		return false;
	rd->done = sizeof(*hdr) + bytes;
	return true;
}

/**
 * hvpipe_receive() - Receive the waiting payload.
 * @dev:   The instance.
 * @msg:   Message with room for %HVPIPE_MAX_PAYLOAD bytes of data.
 * @evsrc: Source named by the event, for the trace.
 * @srcid: Out: source the payload came from.
 * @rd:    A reader receiving for itself, or NULL.
 *
 * The payload goes to @rd's buffer if it is @rd's and fits (then
 * @rd->done is set), else into @msg.
 *
 * Context: May sleep.
 * Return: 0 on success, -errno of rtas_ibm_receive_hvpipe_msg() otherwise.
 */
static int hvpipe_receive(struct hvpipe_dev *dev, struct hvpipe_msg *msg,
			  u32 evsrc, u32 *srcid, struct hvpipe_reader *rd)
{
	struct rtas_work_area *area;
	enum hvpipe_fw class;
	u32 bytes = 0;
	void *payload;
	s32 fwrc;
	int ret;

	*srcid = 0;
	/* Allocate under the lock: only one receive can use it anyway. */
	mutex_lock(&rtas_ibm_receive_hvpipe_msg_lock);
	area = rtas_work_area_alloc(HVPIPE_RECV_AREA_SIZE);
	payload = rtas_work_area_raw_buf(area) + HVPIPE_RECV_PAYLOAD;
	ret = rtas_ibm_receive_hvpipe_msg(area, srcid, &bytes, &fwrc, &class);
	if (!ret && !hvpipe_copy_to_reader(rd, *srcid, payload, bytes))
		memcpy(msg->data, payload, bytes);
	if (!ret)
		msg->item.len = bytes;
	rtas_work_area_free(area);
	mutex_unlock(&rtas_ibm_receive_hvpipe_msg_lock);

	trace_papr_hvpipe_receive(evsrc, *srcid, ret ? 0 : bytes, fwrc);
	if (ret == -EBADMSG) {
		spin_lock(&dev->lock);
		dev->stats.dropped_oversize++;
		spin_unlock(&dev->lock);
		pr_err_ratelimited("%u-byte payload from 0x%08x dropped: more than %u\n",
				   bytes, *srcid, HVPIPE_MAX_PAYLOAD);
	} else if (ret) {
		spin_lock(&dev->lock);
		dev->stats.recv_fw[class]++;
		spin_unlock(&dev->lock);
	}
	return ret;
}

/* Queue a received message on its source. Under dev->lock. */
static void hvpipe_source_push(struct hvpipe_source *src, struct hvpipe_msg *msg)
{
	struct hvpipe_dev *dev = src->dev;

	lockdep_assert_held(&dev->lock);

	list_add_tail(&msg->item.node, &src->queue);
	src->nmsgs++;
	src->hwm = max(src->hwm, src->nmsgs);
	dev->stats.queue_hwm = max_t(u64, dev->stats.queue_hwm, src->nmsgs);
	src->received++;
	dev->stats.received++;
	wake_up_interruptible_poll(&src->wait, EPOLLIN | EPOLLRDNORM);
}

/*
 * A receive for the oldest event failed with @ret. Firmware may still hold
 * the payload, raises no new event for it, and every payload behind it
 * waits: so the receive is tried again, after a delay that doubles up to
 * HVPIPE_RX_RETRY_MAX, for as long as it fails, whatever the status. Only
 * -EOPNOTSUPP ends it (firmware cannot receive at all): the event is then
 * dropped and counted. Returns true if there may be more to do now.
 */
static bool hvpipe_rx_failed(struct hvpipe_dev *dev,
			     const struct hvpipe_event *ev, int ret)
{
	unsigned long delay, flags;

	if (ret == -EOPNOTSUPP) {
		/*
		 * Popped in the section that counts it: poll() reports the
		 * payload readable while its event is the oldest, and must
		 * not once the drop can be seen.
		 */
		spin_lock(&dev->lock);
		dev->stats.dropped_rx_failed++;
		hvpipe_ring_pop(dev);
		spin_unlock(&dev->lock);
		pr_err_ratelimited("payload event from 0x%08x dropped: receiving is not supported\n",
				   ev->srcid);
		return true;
	}

	/* It stays the oldest: no later event is a reader's to take. */
	spin_lock_irqsave(&dev->event_lock, flags);
	WRITE_ONCE(dev->receiving, false);
	if (dev->offer_pos != dev->ring_head)
		dev->offered = false;
	spin_unlock_irqrestore(&dev->event_lock, flags);

	dev->rx_tries++;
	delay = min_t(unsigned long,
		      HVPIPE_RX_RETRY_DELAY << min(dev->rx_tries - 1, 16U),
		      HVPIPE_RX_RETRY_MAX);
	spin_lock(&dev->lock);
	dev->stats.rx_retries++;
	spin_unlock(&dev->lock);
	if (dev->rx_tries == 1)
		pr_warn("receive for event from 0x%08x failed (%d), retrying\n",
			ev->srcid, ret);
	else if (__ratelimit(&hvpipe_rx_ratelimit))
		pr_warn("receive for event from 0x%08x still failing (%d) after %u tries\n",
			ev->srcid, ret, dev->rx_tries);
	hvpipe_kick(dev, delay);
	return false;
}

/*
 * Handle the oldest event; with @rd, only a payload event for @rd's source,
 * and the payload goes to @rd if it can. Returns true if there may be more
 * to do now. Under dev->rx_mutex.
 */
static bool hvpipe_rx_one(struct hvpipe_dev *dev, struct hvpipe_reader *rd)
{
	struct hvpipe_source *src;
	struct hvpipe_event ev;
	struct hvpipe_msg *msg;
	unsigned long grace;
	u32 srcid, len;
	int ret;

	lockdep_assert_held(&dev->rx_mutex);

	spin_lock(&dev->lock);
	/*
	 * A reader takes only its own source's payload, and only while
	 * nothing is queued for it: the work item may have queued an older
	 * one since the reader looked, which must be read first. A failed
	 * receive is the work item's to retry, at its pace.
	 */
	if (dev->suspended || !hvpipe_ring_peek(dev, &ev, &grace) ||
	    (rd && (ev.type != HVPIPE_MSG_AVAILABLE ||
		    ev.srcid != rd->src->srcid ||
		    !list_empty(&rd->src->queue) || dev->rx_tries))) {
		spin_unlock(&dev->lock);
		return false;
	}

	/*
	 * Offered to the reader the interrupt woke for it: the work item,
	 * even one already running for an earlier event, leaves the payload
	 * to it for the rest of the grace and looks again then.
	 */
	if (!rd && grace && !dev->rx_tries) {
		spin_unlock(&dev->lock);
		hvpipe_kick(dev, grace);
		return false;
	}

	/*
	 * A probe names no source: its payload's source is known only after.
	 * A reader's event is for its own source, which its open fd keeps
	 * published: no look-up.
	 */
	if (rd)
		src = rd->src;
	else if (ev.type == HVPIPE_EVENT_PROBE)
		src = NULL;
	else
		src = hvpipe_source_find(dev, ev.srcid);
	if (ev.type == HVPIPE_LOST_CONNECTION) {
		if (src)
			hvpipe_source_lost(src);
		hvpipe_ring_pop(dev);
		spin_unlock(&dev->lock);
		return true;
	}

	/*
	 * Back-pressure: leave the payload with firmware until the reader
	 * makes room. Reading or closing kicks us again, and so does a newer
	 * event, which makes this one stale.
	 */
	if (src && src->nmsgs >= src->depth) {
		if (!dev->rx_blocked)
			dev->stats.backpressure++;
		dev->rx_blocked = true;
		spin_unlock(&dev->lock);
		return false;
	}
	dev->rx_blocked = false;
	spin_unlock(&dev->lock);

	/*
	 * Have room for the largest payload before the receive: after it,
	 * the payload is ACKed and must not be lost.
	 */
	if (!dev->rx_msg)
		dev->rx_msg = kmalloc(struct_size(dev->rx_msg, data,
						  HVPIPE_MAX_PAYLOAD),
				      GFP_KERNEL);
	if (!dev->rx_msg) {
		spin_lock(&dev->lock);
		dev->stats.nomem++;
		spin_unlock(&dev->lock);
		hvpipe_kick(dev, HVPIPE_NOMEM_DELAY);
		return false;
	}

	/* Before the call: firmware may raise the next event during it. */
	WRITE_ONCE(dev->receiving, true);
	ret = hvpipe_receive(dev, dev->rx_msg, ev.srcid, &srcid, rd);
	if (ret && ret != -EBADMSG)
		return hvpipe_rx_failed(dev, &ev, ret);
	if (ret) {	/* ACKed, unusable: counted by hvpipe_receive(). */
		hvpipe_ring_pop(dev);
		return true;
	}

	/*
	 * Delivered to the reader that received it. An event that came
	 * behind it (a lost-connection notice, say) is the work item's now:
	 * the work item may have found this payload offered and be waiting
	 * for its grace to end.
	 */
	if (rd && rd->done) {
		bool left = hvpipe_ring_pop(dev);

		spin_lock(&dev->lock);
		rd->src->received++;
		dev->stats.received++;
		dev->stats.received_direct++;
		spin_unlock(&dev->lock);
		if (left)
			hvpipe_kick(dev, 0);
		return false;
	}

	/* Nothing was pending: no message, nothing to route or drop. */
	len = dev->rx_msg->item.len;
	if (!len) {
		unsigned long flags;

		hvpipe_ring_pop(dev);
		spin_lock_irqsave(&dev->event_lock, flags);
		dev->event_stats.spurious++;
		spin_unlock_irqrestore(&dev->event_lock, flags);
		return true;
	}

	/*
	 * Queue a copy of the payload's own size. If there is no memory for
	 * it, queue the full-size buffer itself: the next receive then waits
	 * until a new one can be allocated.
	 */
	msg = kmalloc(struct_size(msg, data, len), GFP_KERNEL);
	if (msg) {
		memcpy(msg->data, dev->rx_msg->data, len);
	} else {
		msg = dev->rx_msg;
		dev->rx_msg = NULL;
	}
	msg->item.flags = HVPIPE_MSG_AVAILABLE;
	msg->item.len = len;

	spin_lock(&dev->lock);
	if (ev.type != HVPIPE_EVENT_PROBE && srcid != ev.srcid) {
		dev->stats.misrouted++;
		pr_warn_ratelimited("event named 0x%08x, payload came from 0x%08x\n",
				    ev.srcid, srcid);
	}
	/*
	 * Routed by the source firmware returned, never the event's. The
	 * payload is ACKed: if that source's queue is full (the event named
	 * another source, or none), it goes one over the depth, not lost.
	 */
	src = hvpipe_source_find(dev, srcid);
	if (src)
		hvpipe_source_push(src, msg);
	else
		dev->stats.dropped_no_handle++;
	/*
	 * In the same critical section: while the event is the oldest, poll()
	 * reports the payload readable (a reader may receive it itself);
	 * popping it before the push would hide the payload from poll() and
	 * read() in between, a POLLIN gone before anything was read.
	 */
	hvpipe_ring_pop(dev);
	spin_unlock(&dev->lock);

	if (!src)
		kfree(msg);
	return true;
}

/**
 * hvpipe_rx_run() - The receive path: handle noted events in order.
 * @dev: The instance.
 *
 * Context: Process context, one at a time: the ordered workqueue's work
 * item, or the KUnit suite.
 */
VISIBLE_IF_KUNIT void hvpipe_rx_run(struct hvpipe_dev *dev)
{
	mutex_lock(&dev->rx_mutex);
	while (hvpipe_rx_one(dev, NULL))
		cond_resched();
	mutex_unlock(&dev->rx_mutex);
}
EXPORT_SYMBOL_IF_KUNIT(hvpipe_rx_run);

static void hvpipe_rx_work(struct work_struct *work)
{
	hvpipe_rx_run(container_of(to_delayed_work(work), struct hvpipe_dev,
				   rx_work));
}

static bool hvpipe_suspended(struct hvpipe_dev *dev)
{
	bool ret;

	spin_lock(&dev->lock);
	ret = dev->suspended;
	spin_unlock(&dev->lock);
	return ret;
}

/**
 * hvpipe_send() - Send one payload to a source.
 * @src:     The source.
 * @payload: Payload bytes, or NULL to take them from @ubuf.
 * @ubuf:    The write() buffer, header and payload, read only if @payload
 *           is NULL, and then with page faults disabled.
 * @len:     Bytes of payload, 1 to %HVPIPE_MAX_PAYLOAD.
 * @gen:     &hvpipe_dev.migrations when the caller started.
 *
 * Context: May sleep.
 * Return: 0 when the message reached the source, -EAGAIN during partition
 * migration, -EPIPE if a migration completed since @gen (the source ID may
 * name another source now), -ERESTARTSYS if interrupted, -EFAULT if @ubuf
 * could not be read without a page fault (nothing was sent), the errno of
 * rtas_ibm_send_hvpipe_msg() otherwise.
 */
static int hvpipe_send(struct hvpipe_source *src, const void *payload,
		       const char __user *ubuf, size_t len, u32 gen)
{
	struct hvpipe_dev *dev = src->dev;
	struct rtas_work_area *area;
	enum hvpipe_fw class;
	s32 fwrc;
	int ret;

	if (mutex_lock_interruptible(&rtas_ibm_send_hvpipe_msg_lock))
		return -ERESTARTSYS;
	/* Migration takes the lock to change these: no send slips past it. */
	if (dev->suspended)
		ret = -EAGAIN;
	else if (dev->migrations != gen)
		ret = -EPIPE;
	else
		ret = 0;
	if (ret) {
		mutex_unlock(&rtas_ibm_send_hvpipe_msg_lock);
		return ret;
	}
	/*
	 * Allocate under the lock: senders waiting for the lock would only
	 * hold work areas that others need.
	 */
	area = rtas_work_area_alloc(HVPIPE_SEND_AREA_SIZE);
	ret = hvpipe_fill_send_area(rtas_work_area_raw_buf(area),
				    rtas_work_area_phys(area), payload, ubuf,
				    len);
	if (!ret)
		ret = rtas_ibm_send_hvpipe_msg(area, src->srcid, &fwrc,
					       &class);
	rtas_work_area_free(area);
	mutex_unlock(&rtas_ibm_send_hvpipe_msg_lock);
	if (ret == -EFAULT)	/* Not from firmware: nothing was sent. */
		return ret;

	trace_papr_hvpipe_send(src->srcid, len, fwrc);

	spin_lock(&dev->lock);
	if (ret) {
		dev->stats.send_fw[class]++;
	} else {
		dev->stats.sent++;
		src->sent++;
	}
	spin_unlock(&dev->lock);
	return ret;
}

/**
 * hvpipe_source_claim() - Create the state of a source and claim its ID.
 * @dev:   The instance.
 * @srcid: Source ID, already checked.
 *
 * Claiming is one xa_insert() of a reserved entry, so of two racing
 * callers exactly one wins and the loser's state was never visible to
 * anyone. The receive path sees no source until hvpipe_source_publish():
 * meanwhile payloads for @srcid count as having no open fd.
 *
 * Context: May sleep.
 * Return: The source, or ERR_PTR(-EALREADY) if it is already open,
 * ERR_PTR(-ENOMEM).
 */
static struct hvpipe_source *hvpipe_source_claim(struct hvpipe_dev *dev,
						 u32 srcid)
{
	struct hvpipe_source *src;
	int ret;

	src = kzalloc_obj(*src, GFP_KERNEL_ACCOUNT);
	if (!src)
		return ERR_PTR(-ENOMEM);

	src->dev = dev;
	src->srcid = srcid;
	src->depth = dev->queue_depth ?: READ_ONCE(hvpipe_queue_depth);
	INIT_LIST_HEAD(&src->queue);
	INIT_LIST_HEAD(&src->lost.node);
	src->lost.flags = HVPIPE_LOST_CONNECTION;
	init_waitqueue_head(&src->wait);

	/* A NULL entry reserves the index: xa_load() still gives NULL. */
	ret = xa_insert(&dev->sources, hvpipe_srcid_index(srcid), NULL,
			GFP_KERNEL_ACCOUNT);
	if (ret) {
		kfree(src);
		return ERR_PTR(ret == -EBUSY ? -EALREADY : ret);
	}
	return src;
}

/*
 * Let the receive path queue to a claimed source. The entry is reserved,
 * so storing it allocates nothing and cannot fail.
 */
static void hvpipe_source_publish(struct hvpipe_source *src)
{
	struct hvpipe_dev *dev = src->dev;

	spin_lock(&dev->lock);
	xa_store(&dev->sources, hvpipe_srcid_index(src->srcid), src,
		 GFP_NOWAIT);
	spin_unlock(&dev->lock);
}

/**
 * hvpipe_source_release() - Unpublish and free the state of a source.
 * @src: The source, published or not.
 *
 * Messages still queued are dropped and counted. If the receive path was
 * waiting for room in this queue, it runs again.
 *
 * Context: May sleep.
 */
static void hvpipe_source_release(struct hvpipe_source *src)
{
	struct hvpipe_dev *dev = src->dev;
	struct hvpipe_item *item, *next;
	LIST_HEAD(drop);
	bool kick;

	spin_lock(&dev->lock);
	xa_erase(&dev->sources, hvpipe_srcid_index(src->srcid));
	list_del_init(&src->lost.node);
	list_splice_init(&src->queue, &drop);
	dev->stats.dropped_closed += src->nmsgs;
	kick = dev->rx_blocked;
	spin_unlock(&dev->lock);

	list_for_each_entry_safe(item, next, &drop, node)
		kfree(container_of(item, struct hvpipe_msg, item));
	/* The interrupt handler may still be looking at it. */
	kfree_rcu(src, rcu);

	if (kick)
		hvpipe_kick(dev, 0);
}

/*
 * Is the oldest event a payload from @srcid, not stale, and not one whose
 * receive failed (the work item retries those)? Or is it being received,
 * and the one after it offered to @srcid's reader and not stale: it is the
 * oldest once that receive ends, which a reader waits for on rx_mutex.
 * Lost-connection events behind the offered one do not hold it up. Takes
 * event_lock.
 */
static bool hvpipe_ring_offers(struct hvpipe_dev *dev, u32 srcid)
{
	const struct hvpipe_event *head;
	unsigned long flags;
	bool ret;

	spin_lock_irqsave(&dev->event_lock, flags);
	head = &dev->ring[dev->ring_head];
	ret = dev->ring_count && head->type == HVPIPE_MSG_AVAILABLE &&
	      head->srcid == srcid && !hvpipe_ring_newer_rx(dev, 0) &&
	      /* rx_mutex's: a stale value costs one receive at most. */
	      !data_race(dev->rx_tries);
	if (!ret && READ_ONCE(dev->receiving) && dev->offered &&
	    dev->offer_pos == (dev->ring_head + 1) % HVPIPE_EVENT_RING)
		ret = dev->ring[dev->offer_pos].srcid == srcid &&
		      !hvpipe_ring_newer_rx(dev, 1);
	spin_unlock_irqrestore(&dev->event_lock, flags);
	return ret;
}

/*
 * Is the oldest event a payload from @src's source that its reader may
 * receive itself: nothing queued for it, nothing older to handle, not
 * stale, and no failed receive being retried (the work item retries)?
 * Under dev->lock.
 */
static bool hvpipe_source_offered(struct hvpipe_source *src)
{
	struct hvpipe_dev *dev = src->dev;

	lockdep_assert_held(&dev->lock);

	return !dev->suspended && list_empty(&src->queue) &&
	       hvpipe_ring_offers(dev, src->srcid);
}

/*
 * Something to read, or to receive for reading: what poll() reports as
 * POLLIN. An offered payload counts even while the work item holds the
 * receive path: read() then waits for it, and it either queues the payload
 * here or gives the event up in the section that pops it.
 */
static bool hvpipe_source_readable(struct hvpipe_source *src)
{
	bool ret;

	spin_lock(&src->dev->lock);
	ret = !list_empty(&src->queue) || hvpipe_source_offered(src);
	spin_unlock(&src->dev->lock);
	return ret;
}

/*
 * The reader of @src receives the payload firmware offers for it, straight
 * into its buffer. Returns the bytes read, 0 if there was nothing for it
 * (the payload was another source's and is queued there, or did not fit and
 * is queued here, or nothing was pending, or the work item queued a message
 * for it meanwhile), or -ERESTARTSYS.
 */
VISIBLE_IF_KUNIT ssize_t hvpipe_read_direct(struct hvpipe_source *src,
					    char __user *buf, size_t count)
{
	struct hvpipe_reader rd = { .src = src, .buf = buf, .count = count };
	struct hvpipe_dev *dev = src->dev;

	if (mutex_lock_interruptible(&dev->rx_mutex))
		return -ERESTARTSYS;
	hvpipe_rx_one(dev, &rd);
	mutex_unlock(&dev->rx_mutex);
	return rd.done;
}
EXPORT_SYMBOL_IF_KUNIT(hvpipe_read_direct);

/*
 * A read() that finds the receive path free tries the direct receive
 * first: hvpipe_rx_one() takes the payload only if firmware offers it to
 * this source, which spares the common case the separate look of
 * hvpipe_source_offered() and its two locks. Returns the bytes read, or 0
 * (nothing offered, the path busy, or the payload went elsewhere).
 */
static ssize_t hvpipe_try_read_direct(struct hvpipe_source *src,
				      char __user *buf, size_t count)
{
	struct hvpipe_reader rd = { .src = src, .buf = buf, .count = count };
	struct hvpipe_dev *dev = src->dev;

	/* A hint only: hvpipe_rx_one() looks again under the lock. */
	if (!data_race(list_empty(&src->queue)) ||
	    !mutex_trylock(&dev->rx_mutex))
		return 0;
	hvpipe_rx_one(dev, &rd);
	mutex_unlock(&dev->rx_mutex);
	return rd.done;
}

/**
 * papr_hvpipe_handle_read() - Read the oldest message or notice.
 * @file:  A source fd.
 * @buf:   User buffer.
 * @count: Size of @buf.
 * @ppos:  Unused.
 *
 * Blocks until something is queued unless the fd is O_NONBLOCK. The
 * message is taken off the queue in the same critical section that checks
 * its size, and put back at the head if it cannot be copied out, so
 * concurrent readers never see the same message.
 *
 * Context: Process context, may sleep.
 * Return: 48 plus the payload length, or -EINVAL if @count < 48,
 * -EAGAIN, -ERESTARTSYS, -EMSGSIZE if @buf cannot hold the message (which
 * stays queued), -EFAULT (the message stays queued).
 */
static ssize_t papr_hvpipe_handle_read(struct file *file, char __user *buf,
				       size_t count, loff_t *ppos)
{
	struct hvpipe_source *src = file->private_data;
	struct hvpipe_dev *dev = src->dev;
	struct papr_hvpipe_hdr hdr;
	struct hvpipe_item *item;
	const u8 *data = NULL;
	bool kick = false, claim;
	ssize_t ret;

	if (count < HVPIPE_HDR_LEN)
		return -EINVAL;

	ret = hvpipe_try_read_direct(src, buf, count);
	if (ret)
		return ret;

	for (;;) {
		spin_lock(&dev->lock);
		item = list_first_entry_or_null(&src->queue, struct hvpipe_item,
						node);
		if (item && count < HVPIPE_HDR_LEN + item->len) {
			spin_unlock(&dev->lock);
			return -EMSGSIZE;
		}
		/* Still counted in nmsgs: no room is made before the copy. */
		if (item)
			list_del_init(&item->node);
		/*
		 * Offered is enough: if the work item holds the receive path,
		 * waiting for it ends with the payload queued here, or given
		 * up. Returning -EAGAIN meanwhile would contradict the POLLIN
		 * that poll() may have just reported.
		 */
		claim = !item && hvpipe_source_offered(src);
		spin_unlock(&dev->lock);
		if (item)
			break;
		if (claim) {
			ret = hvpipe_read_direct(src, buf, count);
			if (ret)
				return ret;
			continue;
		}
		if (file->f_flags & O_NONBLOCK)
			return -EAGAIN;
		ret = wait_event_interruptible(src->wait,
					       hvpipe_source_readable(src));
		if (ret)
			return ret;
	}

	if (item != &src->lost)
		data = container_of(item, struct hvpipe_msg, item)->data;
	memset(&hdr, 0, sizeof(hdr));
	hdr.flags = item->flags;
	if (copy_to_user(buf, &hdr, sizeof(hdr)) ||
	    copy_to_user(buf + sizeof(hdr), data, item->len)) {
		spin_lock(&dev->lock);
		/* A newer notice queued meanwhile takes the old one's place. */
		if (item != &src->lost || list_empty(&src->lost.node))
			list_add(&item->node, &src->queue);
		spin_unlock(&dev->lock);
		/*
		 * Another reader or a poller may have found the queue empty
		 * while the item was off it, and gone back to sleep.
		 */
		wake_up_interruptible_poll(&src->wait, EPOLLIN | EPOLLRDNORM);
		return -EFAULT;
	}
	ret = sizeof(hdr) + item->len;

	if (data) {
		spin_lock(&dev->lock);
		src->nmsgs--;
		kick = dev->rx_blocked;
		spin_unlock(&dev->lock);
		kfree(container_of(item, struct hvpipe_msg, item));
	}
	if (kick)
		hvpipe_kick(dev, 0);
	return ret;
}

/**
 * papr_hvpipe_handle_write() - Send a header and payload to the source.
 * @file:  A source fd.
 * @buf:   User buffer: &struct papr_hvpipe_hdr (ignored), then the payload.
 * @count: 49 to 4096.
 * @ppos:  Unused.
 *
 * During partition migration, blocks until it ends unless the fd is
 * O_NONBLOCK. If the partition moved meanwhile, the source ID may name
 * another source on the destination: the write fails with -EPIPE rather
 * than send there.
 *
 * Context: Process context, may sleep.
 * Return: @count, or -EINVAL for a bad @count, -EFAULT, -EAGAIN, -EPIPE,
 * -ERESTARTSYS, or the errno of the firmware call.
 */
static ssize_t papr_hvpipe_handle_write(struct file *file,
					const char __user *buf, size_t count,
					loff_t *ppos)
{
	struct hvpipe_source *src = file->private_data;
	struct hvpipe_dev *dev = src->dev;
	void *kbuf = NULL;
	u32 gen;
	int ret;

	if (count <= HVPIPE_HDR_LEN || count > HVPIPE_MAX_WRITE)
		return -EINVAL;

	/*
	 * Only a starting point: hvpipe_send() compares it under
	 * rtas_ibm_send_hvpipe_msg_lock, where a migration that completes
	 * after this read shows.
	 */
	gen = READ_ONCE(dev->migrations);

	for (;;) {
		ret = hvpipe_send(src, kbuf ? kbuf + HVPIPE_HDR_LEN : NULL, buf,
				  count - HVPIPE_HDR_LEN, gen);
		if (ret == -EFAULT && !kbuf) {
			/*
			 * The buffer goes straight to the work area when it is
			 * resident; else fetch it, page faults allowed, without
			 * the lock, and send from the copy.
			 */
			kbuf = memdup_user(buf, count);
			if (IS_ERR(kbuf))
				return PTR_ERR(kbuf);
			continue;
		}
		if (ret != -EAGAIN || (file->f_flags & O_NONBLOCK))
			break;
		ret = wait_event_interruptible(src->wait,
					       !hvpipe_suspended(dev));
		if (ret)
			break;
	}

	kfree(kbuf);
	return ret ? ret : count;
}

static __poll_t papr_hvpipe_handle_poll(struct file *file,
					struct poll_table_struct *wait)
{
	struct hvpipe_source *src = file->private_data;
	struct hvpipe_dev *dev = src->dev;
	bool suspended, readable;
	__poll_t mask;

	poll_wait(file, &src->wait, wait);

	/*
	 * What poll() reports is a snapshot, taken without dev->lock. The
	 * barrier orders the wait queue entry before the looks below, as
	 * wq_has_sleeper() orders a noted event before hvpipe_wake_reader()'s
	 * look for sleepers: either this sees the event or that sees this
	 * waiter. Messages and notices are queued before a wake-up under the
	 * wait queue's lock, which orders them.
	 */
	smp_mb();
	suspended = READ_ONCE(dev->suspended);
	mask = suspended ? 0 : EPOLLOUT | EPOLLWRNORM;
	/*
	 * Only while the notice is unread: reading it ends the hang-up. The
	 * notice is queued, so readable.
	 */
	readable = !list_empty(&src->lost.node);
	if (readable)
		mask |= EPOLLHUP;
	else
		readable = !list_empty(&src->queue);
	/*
	 * The work item queues an offered payload before it pops the event,
	 * both under dev->lock: if the event is gone when the ring is looked
	 * at, a second look at the queue finds the payload.
	 */
	if (!readable && !suspended && READ_ONCE(dev->ring_count))
		readable = hvpipe_ring_offers(dev, src->srcid) ||
			   !list_empty(&src->queue);
	if (readable)
		mask |= EPOLLIN | EPOLLRDNORM;

	return mask;
}

static int papr_hvpipe_handle_release(struct inode *inode, struct file *file)
{
	hvpipe_source_release(file->private_data);
	return 0;
}

static const struct file_operations papr_hvpipe_handle_ops = {
	.read = papr_hvpipe_handle_read,
	.write = papr_hvpipe_handle_write,
	.poll = papr_hvpipe_handle_poll,
	.release = papr_hvpipe_handle_release,
};

/**
 * hvpipe_source_file() - Claim a source and wrap it in a file.
 * @dev:   The instance.
 * @srcid: Source ID, already checked.
 *
 * The source is published only once its file exists, so no message is
 * ever queued to, and dropped with, a file that could not be created.
 *
 * Context: May sleep.
 * Return: An O_RDWR file whose release frees the source, or ERR_PTR.
 */
VISIBLE_IF_KUNIT struct file *hvpipe_source_file(struct hvpipe_dev *dev,
						 u32 srcid)
{
	struct hvpipe_source *src;
	struct file *file;

	src = hvpipe_source_claim(dev, srcid);
	if (IS_ERR(src))
		return ERR_CAST(src);

	file = anon_inode_getfile("[papr-hvpipe]", &papr_hvpipe_handle_ops, src,
				  O_RDWR);
	if (IS_ERR(file)) {
		hvpipe_source_release(src);
		return file;
	}
	hvpipe_source_publish(src);
	return file;
}
EXPORT_SYMBOL_IF_KUNIT(hvpipe_source_file);

/**
 * papr_hvpipe_create_handle() - PAPR_HVPIPE_IOC_CREATE_HANDLE.
 * @dev:  The instance.
 * @argp: User pointer to the __u32 source ID.
 *
 * Context: Process context, may sleep.
 * Return: The new fd, or -EFAULT, -EINVAL for a source that is not an
 * HMC or has a non-zero reserved byte, -EALREADY if it is already open,
 * another -errno if no fd or memory is available.
 */
static long papr_hvpipe_create_handle(struct hvpipe_dev *dev,
				      u32 __user *argp)
{
	u32 srcid;

	if (get_user(srcid, argp))
		return -EFAULT;
	if (!hvpipe_srcid_valid(srcid))
		return -EINVAL;

	/* The file, and so the source, is made only once the fd exists. */
	return FD_ADD(O_RDWR | O_CLOEXEC, hvpipe_source_file(dev, srcid));
}

/**
 * hvpipe_ioctl() - The ioctl commands of an instance.
 * @dev: The instance.
 * @cmd: Command, checked before @arg is touched.
 * @arg: Command argument.
 *
 * Context: Process context, may sleep.
 * Return: See papr_hvpipe_create_handle(); -ENOIOCTLCMD (ENOTTY) for an
 * unknown command.
 */
VISIBLE_IF_KUNIT long hvpipe_ioctl(struct hvpipe_dev *dev, unsigned int cmd,
				   unsigned long arg)
{
	switch (cmd) {
	case PAPR_HVPIPE_IOC_CREATE_HANDLE:
		return papr_hvpipe_create_handle(dev, (u32 __user *)arg);
	default:
		return -ENOIOCTLCMD;
	}
}
EXPORT_SYMBOL_IF_KUNIT(hvpipe_ioctl);

static long papr_hvpipe_dev_ioctl(struct file *file, unsigned int cmd,
				  unsigned long arg)
{
	return hvpipe_ioctl(container_of(file->private_data, struct hvpipe_dev,
					 miscdev), cmd, arg);
}

static const struct file_operations papr_hvpipe_dev_ops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = papr_hvpipe_dev_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
};

static const char * const hvpipe_fw_names[HVPIPE_FW_NR] = {
	[HVPIPE_FW_HW_ERROR] = "hw_error",
	[HVPIPE_FW_INVALID] = "invalid",
	[HVPIPE_FW_CLOSED] = "closed",
	[HVPIPE_FW_NOT_SUPPORTED] = "not_supported",
	[HVPIPE_FW_UNEXPECTED] = "unexpected",
};

/**
 * hvpipe_stats_show() - debugfs "stats": one "name value" line per counter.
 * @m: The seq_file; m->private is the instance.
 * @v: Unused.
 *
 * Return: 0.
 */
VISIBLE_IF_KUNIT int hvpipe_stats_show(struct seq_file *m, void *v)
{
	struct hvpipe_dev *dev = m->private;
	struct hvpipe_event_stats ev;
	struct hvpipe_source *src;
	struct hvpipe_stats st;
	unsigned int pending;
	unsigned long flags;
	unsigned long idx;
	bool blocked, suspended;
	u32 migrations;
	u64 open = 0;
	int i;

	spin_lock_irqsave(&dev->event_lock, flags);
	ev = dev->event_stats;
	pending = dev->ring_count + dev->payload_deferred;
	spin_unlock_irqrestore(&dev->event_lock, flags);

	spin_lock(&dev->lock);
	st = dev->stats;
	blocked = dev->rx_blocked;
	suspended = dev->suspended;
	migrations = dev->migrations;
	xa_for_each(&dev->sources, idx, src)
		open++;
	spin_unlock(&dev->lock);

	seq_printf(m, "open_sources %llu\n", open);
	seq_printf(m, "pending_events %u\n", pending);
	seq_printf(m, "rx_blocked %d\n", blocked);
	seq_printf(m, "suspended %d\n", suspended);
	seq_printf(m, "migrations %u\n", migrations);
	seq_printf(m, "events_interrupts %llu\n", ev.interrupts);
	seq_printf(m, "events_no_event %llu\n", ev.no_event);
	seq_printf(m, "events_ce_failed %llu\n", ev.ce_failed);
	seq_printf(m, "events_bad_log_type %llu\n", ev.bad_log_type);
	seq_printf(m, "events_no_section %llu\n", ev.no_section);
	seq_printf(m, "events_short_section %llu\n", ev.short_section);
	seq_printf(m, "events_unknown_type %llu\n", ev.unknown_type);
	seq_printf(m, "events_payload %llu\n", ev.payload);
	seq_printf(m, "events_lost %llu\n", ev.lost);
	seq_printf(m, "events_overflow %llu\n", ev.overflow);
	seq_printf(m, "events_deferred %llu\n", ev.deferred);
	seq_printf(m, "events_stale %llu\n", ev.stale);
	seq_printf(m, "events_spurious %llu\n", ev.spurious);
	seq_printf(m, "sent %llu\n", st.sent);
	seq_printf(m, "received %llu\n", st.received);
	seq_printf(m, "received_direct %llu\n", st.received_direct);
	seq_printf(m, "dropped_no_handle %llu\n", st.dropped_no_handle);
	seq_printf(m, "dropped_closed %llu\n", st.dropped_closed);
	seq_printf(m, "dropped_oversize %llu\n", st.dropped_oversize);
	seq_printf(m, "dropped_rx_failed %llu\n", st.dropped_rx_failed);
	seq_printf(m, "misrouted %llu\n", st.misrouted);
	seq_printf(m, "backpressure %llu\n", st.backpressure);
	seq_printf(m, "rx_retries %llu\n", st.rx_retries);
	seq_printf(m, "nomem %llu\n", st.nomem);
	seq_printf(m, "queue_hwm %llu\n", st.queue_hwm);
	for (i = 0; i < HVPIPE_FW_NR; i++)
		seq_printf(m, "send_fw_%s %llu\n", hvpipe_fw_names[i],
			   st.send_fw[i]);
	for (i = 0; i < HVPIPE_FW_NR; i++)
		seq_printf(m, "recv_fw_%s %llu\n", hvpipe_fw_names[i],
			   st.recv_fw[i]);
	return 0;
}
EXPORT_SYMBOL_IF_KUNIT(hvpipe_stats_show);
DEFINE_SHOW_ATTRIBUTE(hvpipe_stats);

/**
 * hvpipe_sources_show() - debugfs "sources": one line per open source.
 * @m: The seq_file; m->private is the instance.
 * @v: Unused.
 *
 * Return: 0.
 */
VISIBLE_IF_KUNIT int hvpipe_sources_show(struct seq_file *m, void *v)
{
	struct hvpipe_dev *dev = m->private;
	struct hvpipe_source *src;
	unsigned long idx;

	spin_lock(&dev->lock);
	xa_for_each(&dev->sources, idx, src)
		seq_printf(m, "0x%08x queued=%u depth=%u hwm=%u sent=%llu received=%llu lost=%llu hup=%d\n",
			   src->srcid, src->nmsgs, src->depth, src->hwm,
			   src->sent, src->received, src->lost_count,
			   !list_empty(&src->lost.node));
	spin_unlock(&dev->lock);
	return 0;
}
EXPORT_SYMBOL_IF_KUNIT(hvpipe_sources_show);
DEFINE_SHOW_ATTRIBUTE(hvpipe_sources);

static void hvpipe_free_irqs(struct hvpipe_dev *dev)
{
	while (dev->nr_irqs)
		free_irq(dev->irqs[--dev->nr_irqs], dev);
}

/**
 * hvpipe_dev_create() - Create an instance and enable hvpipe.
 * @cfg: Interrupts and queue depth.
 *
 * The workqueue exists before any interrupt is requested, and hvpipe is
 * enabled only once the handlers are in place. On failure everything
 * done is undone in reverse, interrupts first.
 *
 * Context: May sleep.
 * Return: The instance, or ERR_PTR.
 */
VISIBLE_IF_KUNIT struct hvpipe_dev *hvpipe_dev_create(const struct hvpipe_config *cfg)
{
	struct hvpipe_dev *dev;
	unsigned int i;
	int ret;

	if (cfg->nr_irqs > HVPIPE_MAX_IRQS || cfg->queue_depth > HVPIPE_MAX_DEPTH)
		return ERR_PTR(-EINVAL);

	dev = kzalloc_obj(*dev, GFP_KERNEL);
	if (!dev)
		return ERR_PTR(-ENOMEM);

	spin_lock_init(&dev->lock);
	spin_lock_init(&dev->event_lock);
	mutex_init(&dev->rx_mutex);
	xa_init(&dev->sources);
	INIT_DELAYED_WORK(&dev->rx_work, hvpipe_rx_work);
	dev->queue_depth = cfg->queue_depth;
	dev->miscdev.minor = MISC_DYNAMIC_MINOR;
	dev->miscdev.name = "papr-hvpipe";
	dev->miscdev.fops = &papr_hvpipe_dev_ops;

	dev->rx_msg = kmalloc(struct_size(dev->rx_msg, data, HVPIPE_MAX_PAYLOAD),
			      GFP_KERNEL);
	if (!dev->rx_msg) {
		ret = -ENOMEM;
		goto free_dev;
	}

	dev->wq = alloc_ordered_workqueue("papr-hvpipe", 0);
	if (!dev->wq) {
		ret = -ENOMEM;
		goto free_dev;
	}

	for (i = 0; i < cfg->nr_irqs; i++) {
		ret = request_irq(cfg->irqs[i], hvpipe_event_interrupt, 0,
				  "papr-hvpipe", dev);
		if (ret) {
			pr_err("cannot request interrupt %u: %d\n",
			       cfg->irqs[i], ret);
			goto free_irqs;
		}
		dev->irqs[dev->nr_irqs++] = cfg->irqs[i];
	}

	ret = hvpipe_call_set_enable(true);
	if (ret) {
		pr_err("cannot enable hvpipe (system parameter 64): %d\n", ret);
		goto free_irqs;
	}

	return dev;

free_irqs:
	hvpipe_free_irqs(dev);
	/* No handler is left to queue it again. */
	cancel_delayed_work_sync(&dev->rx_work);
	destroy_workqueue(dev->wq);
free_dev:
	kfree(dev->rx_msg);
	kfree(dev);
	return ERR_PTR(ret);
}
EXPORT_SYMBOL_IF_KUNIT(hvpipe_dev_create);

/**
 * hvpipe_dev_destroy() - Disable hvpipe and free an instance.
 * @dev: An instance with no open source.
 *
 * Context: May sleep.
 */
VISIBLE_IF_KUNIT void hvpipe_dev_destroy(struct hvpipe_dev *dev)
{
	hvpipe_call_set_enable(false);
	hvpipe_free_irqs(dev);
	cancel_delayed_work_sync(&dev->rx_work);
	destroy_workqueue(dev->wq);
	xa_destroy(&dev->sources);
	kfree(dev->rx_msg);
	kfree(dev);
}
EXPORT_SYMBOL_IF_KUNIT(hvpipe_dev_destroy);

/**
 * hvpipe_dev_probe() - Create an instance and register /dev/papr-hvpipe.
 * @cfg: Interrupts and queue depth.
 *
 * Context: May sleep.
 * Return: The instance, or ERR_PTR; on failure nothing is left behind.
 */
VISIBLE_IF_KUNIT struct hvpipe_dev *hvpipe_dev_probe(const struct hvpipe_config *cfg)
{
	struct hvpipe_dev *dev;
	int ret;

	dev = hvpipe_dev_create(cfg);
	if (IS_ERR(dev))
		return dev;

	ret = misc_register(&dev->miscdev);
	if (ret) {
		pr_err("cannot register the misc device: %d\n", ret);
		hvpipe_dev_destroy(dev);
		return ERR_PTR(ret);
	}
	return dev;
}
EXPORT_SYMBOL_IF_KUNIT(hvpipe_dev_probe);

/**
 * hvpipe_dev_remove() - Undo hvpipe_dev_probe().
 * @dev: An instance from hvpipe_dev_probe() with no open source.
 *
 * The driver is built in and never removes its instance: only the KUnit
 * suite does.
 *
 * Context: May sleep.
 */
VISIBLE_IF_KUNIT void __maybe_unused hvpipe_dev_remove(struct hvpipe_dev *dev)
{
	misc_deregister(&dev->miscdev);
	hvpipe_dev_destroy(dev);
}
EXPORT_SYMBOL_IF_KUNIT(hvpipe_dev_remove);

static void hvpipe_wake_all(struct hvpipe_dev *dev)
{
	struct hvpipe_source *src;
	unsigned long idx;

	lockdep_assert_held(&dev->lock);

	xa_for_each(&dev->sources, idx, src)
		wake_up_interruptible_all(&src->wait);
}

/**
 * hvpipe_migrate() - Follow a partition migration.
 * @dev:  The instance.
 * @step: Where the migration is.
 *
 * Before suspend no send or receive is in flight and hvpipe is disabled;
 * writers wait. After resume hvpipe is enabled again; if the partition
 * moved, source IDs may name other sources: every open source gets a
 * lost-connection notice, and writers that waited fail.
 *
 * Context: May sleep.
 */
VISIBLE_IF_KUNIT void hvpipe_migrate(struct hvpipe_dev *dev,
				     enum hvpipe_migrate_action step)
{
	struct hvpipe_source *src;
	unsigned long idx;
	int ret;

	switch (step) {
	case HVPIPE_SUSPEND:
		mutex_lock(&rtas_ibm_send_hvpipe_msg_lock);
		spin_lock(&dev->lock);
		WRITE_ONCE(dev->suspended, true);
		spin_unlock(&dev->lock);
		mutex_unlock(&rtas_ibm_send_hvpipe_msg_lock);
		/*
		 * A receive in flight, by a reader or the work item, finishes;
		 * the next one sees suspended.
		 */
		mutex_lock(&dev->rx_mutex);
		mutex_unlock(&dev->rx_mutex);
		flush_delayed_work(&dev->rx_work);
		ret = hvpipe_call_set_enable(false);
		if (ret)
			pr_warn("cannot disable hvpipe before migration: %d\n",
				ret);
		break;
	case HVPIPE_MIGRATED:
		mutex_lock(&rtas_ibm_send_hvpipe_msg_lock);
		spin_lock(&dev->lock);
		WRITE_ONCE(dev->migrations, dev->migrations + 1);
		xa_for_each(&dev->sources, idx, src)
			hvpipe_source_lost(src);
		spin_unlock(&dev->lock);
		mutex_unlock(&rtas_ibm_send_hvpipe_msg_lock);
		fallthrough;
	case HVPIPE_RESUME:
		ret = hvpipe_call_set_enable(true);
		if (ret)
			pr_err("cannot enable hvpipe after migration: %d\n", ret);
		mutex_lock(&rtas_ibm_send_hvpipe_msg_lock);
		spin_lock(&dev->lock);
		WRITE_ONCE(dev->suspended, false);
		hvpipe_wake_all(dev);
		spin_unlock(&dev->lock);
		mutex_unlock(&rtas_ibm_send_hvpipe_msg_lock);
		hvpipe_kick(dev, 0);
		break;
	}
}
EXPORT_SYMBOL_IF_KUNIT(hvpipe_migrate);

/**
 * hvpipe_migration_handler() - Partition migration hook.
 * @action: Where the migration is.
 *
 * Context: Process context, may sleep.
 */
void hvpipe_migration_handler(enum hvpipe_migrate_action action)
{
	/* Pairs with the release in papr_hvpipe_init(). */
	struct hvpipe_dev *dev = smp_load_acquire(&hvpipe_main);

	if (dev)
		hvpipe_migrate(dev, action);
}

#if IS_ENABLED(CONFIG_PAPR_HVPIPE_KUNIT_TEST)
/*
 * debugfs "migrate", with the test option only: writing "suspend", then
 * "migrated" or "resume", makes the calls pseries_migrate_partition() makes
 * around a partition migration (after a completed one, and after a failed
 * or cancelled one), so that a test in the guest can take the driver
 * through one with traffic flowing. Nothing else of a migration happens.
 */
static ssize_t hvpipe_migrate_write(struct file *file, const char __user *ubuf,
				    size_t count, loff_t *ppos)
{
	static const char * const steps[] = {
		[HVPIPE_SUSPEND] = "suspend",
		[HVPIPE_RESUME] = "resume",
		[HVPIPE_MIGRATED] = "migrated",
	};
	char buf[16];
	int step;

	if (count >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, count))
		return -EFAULT;
	buf[count] = '\0';
	step = sysfs_match_string(steps, buf);
	if (step < 0)
		return step;
	hvpipe_migration_handler(step);
	return count;
}

static const struct file_operations hvpipe_migrate_fops = {
	.open = simple_open,
	.write = hvpipe_migrate_write,
};
#endif

static void __init hvpipe_debugfs_init(struct hvpipe_dev *dev)
{
	struct dentry *dir = debugfs_create_dir("papr-hvpipe", NULL);

	debugfs_create_file("stats", 0400, dir, dev, &hvpipe_stats_fops);
	debugfs_create_file("sources", 0400, dir, dev, &hvpipe_sources_fops);
#if IS_ENABLED(CONFIG_PAPR_HVPIPE_KUNIT_TEST)
	debugfs_create_file("migrate", 0200, dir, dev, &hvpipe_migrate_fops);
#endif
}

static int __init papr_hvpipe_init(void)
{
	struct hvpipe_config cfg = {};
	struct device_node *np;
	struct hvpipe_dev *dev;
	int virq;

	if (!of_property_present(rtas.dev, "ibm,hypervisor-pipe-capable") ||
	    !rtas_function_implemented(RTAS_FN_IBM_SEND_HVPIPE_MSG) ||
	    !rtas_function_implemented(RTAS_FN_IBM_RECEIVE_HVPIPE_MSG))
		return -ENODEV;

	np = of_find_node_by_path("/event-sources/ibm,hvpipe-msg-events");
	if (!np)
		return -ENODEV;
	while (cfg.nr_irqs < HVPIPE_MAX_IRQS) {
		virq = of_irq_get(np, cfg.nr_irqs);
		if (virq <= 0)
			break;
		cfg.irqs[cfg.nr_irqs++] = virq;
	}
	of_node_put(np);
	if (!cfg.nr_irqs) {
		pr_err("no event interrupt\n");
		return -ENODEV;
	}

	dev = hvpipe_dev_probe(&cfg);
	if (IS_ERR(dev)) {
		/* of_irq_get() mapped them for us alone. */
		while (cfg.nr_irqs)
			irq_dispose_mapping(cfg.irqs[--cfg.nr_irqs]);
		return PTR_ERR(dev);
	}

	hvpipe_debugfs_init(dev);
	/* The instance is whole before the migration hook can see it. */
	smp_store_release(&hvpipe_main, dev);
	pr_info("hypervisor pipe ready, %u event interrupt(s)\n", cfg.nr_irqs);
	return 0;
}
machine_device_initcall(pseries, papr_hvpipe_init);
