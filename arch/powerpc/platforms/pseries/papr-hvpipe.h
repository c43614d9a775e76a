/* SPDX-License-Identifier: GPL-2.0-only */
#ifndef _PSERIES_PAPR_HVPIPE_H
#define _PSERIES_PAPR_HVPIPE_H

#include <linux/irqreturn.h>
#include <linux/kconfig.h>
#include <linux/list.h>
#include <linux/miscdevice.h>
#include <linux/sizes.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>
#include <asm/papr-hvpipe.h>

#include "pseries.h"	/* enum papr_hvpipe_migration */

/* Source ID 0xCCRRQQQQ: CC type, RR reserved, QQQQ index. */
#define HVPIPE_HMC_ID_MASK	0x02000000
#define HVPIPE_SRC_TYPE_MASK	0xff000000
#define HVPIPE_SRC_RSVD_MASK	0x00ff0000

#define HVPIPE_HDR_LEN		sizeof(struct papr_hvpipe_hdr)
#define HVPIPE_MAX_PAYLOAD	4048	/* Largest payload firmware accepts. */
#define HVPIPE_MAX_WRITE	(HVPIPE_HDR_LEN + HVPIPE_MAX_PAYLOAD)
#define HVPIPE_AREA_SIZE	SZ_4K	/* One RTAS work area per call. */
#define HVPIPE_EVENT_RING	16	/* Events noted, not yet handled. */
#define HVPIPE_MAX_IRQS		16
#define HVPIPE_DEFAULT_DEPTH	16
#define HVPIPE_MAX_DEPTH	1024
#define HVPIPE_RX_TRIES		5	/* Receives before a payload is dropped. */

/*
 * Not a firmware event type: an hvpipe event was malformed, so whether a
 * payload waits, and from which source, is unknown. The receive path
 * receives once; firmware names the source, or returns 0 bytes.
 */
#define HVPIPE_EVENT_PROBE	0x100

/**
 * enum hvpipe_fw - Classes of RTAS status counted per function.
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
 * @no_event:       check-exception found no event (non-zero status).
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
 * @spurious:       Receives after an event that found nothing pending
 *                  (0 bytes): not a message, nothing dropped.
 */
struct hvpipe_event_stats {
	u64 interrupts;
	u64 no_event;
	u64 bad_log_type;
	u64 no_section;
	u64 short_section;
	u64 unknown_type;
	u64 payload;
	u64 lost;
	u64 overflow;
	u64 deferred;
	u64 spurious;
};

/**
 * struct hvpipe_stats - Message counters, under &hvpipe_dev.lock.
 * @sent:              Messages sent.
 * @received:          Messages received and queued to a source fd.
 * @dropped_no_handle: Messages received for a source with no open fd.
 * @dropped_closed:    Messages still queued when their fd was closed.
 * @dropped_oversize:  Payloads firmware reported larger than
 *                     %HVPIPE_MAX_PAYLOAD: received (ACKed) and dropped.
 * @dropped_rx_failed: Payload events given up after %HVPIPE_RX_TRIES
 *                     failed receives.
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
 * struct hvpipe_msg - A queued message or lost-connection notice.
 * @node:  Entry in &hvpipe_source.queue.
 * @flags: %HVPIPE_MSG_AVAILABLE or %HVPIPE_LOST_CONNECTION.
 * @len:   Bytes in @data.
 * @data:  The payload.
 */
struct hvpipe_msg {
	struct list_head node;
	u32 flags;
	u32 len;
	u8 data[];
};

struct hvpipe_dev;

/**
 * struct hvpipe_source - State of one open source fd.
 * @dev:       The instance this source belongs to.
 * @srcid:     Source ID.
 * @depth:     Most messages queued before receiving stops.
 * @nmsgs:     Messages on @queue, and any a reader took off it and is
 *             copying out; @lost is not counted.
 * @hwm:       Most messages @queue ever held.
 * @hup:       The connection was lost; cleared by a send or a message.
 * @queue:     Messages and the lost-connection notice, oldest first.
 * @lost:      The lost-connection notice, queued at most once.
 * @wait:      Readers, writers and pollers.
 * @sent:      Messages sent to the source.
 * @received:  Messages received from the source.
 * @lost_count: Lost-connection notices queued.
 *
 * All but @dev, @srcid, @depth and @wait are under &hvpipe_dev.lock.
 */
struct hvpipe_source {
	struct hvpipe_dev *dev;
	u32 srcid;
	u32 depth;
	u32 nmsgs;
	u32 hwm;
	bool hup;
	struct list_head queue;
	struct hvpipe_msg lost;
	wait_queue_head_t wait;
	u64 sent;
	u64 received;
	u64 lost_count;
};

/**
 * struct hvpipe_config - What an instance is created from.
 * @irqs:        Event interrupts (Linux numbers) to request.
 * @nr_irqs:     Entries in @irqs.
 * @queue_depth: Per-source queue depth; 0 follows the module parameter.
 */
struct hvpipe_config {
	unsigned int irqs[HVPIPE_MAX_IRQS];
	unsigned int nr_irqs;
	unsigned int queue_depth;
};

/**
 * struct hvpipe_dev - One hvpipe instance.
 * @lock:        Process context only: @sources updates, source queues,
 *               @rx_blocked, @suspended, @stats.
 * @event_lock:  Shared with the interrupt handler, taken irqsave:
 *               @ring, @ring_head, @ring_count, @payload_deferred,
 *               @deferred, @event_stats.
 * @sources:     Open sources by source ID.
 * @ring:        Events noted by the interrupt handler, oldest at
 *               @ring_head. The receive work removes an event only
 *               after handling it.
 * @ring_head:   Index of the oldest event.
 * @ring_count:  Events in @ring.
 * @payload_deferred: A payload (or probe) event found @ring full; it is
 *               moved to @ring once @ring is empty. Firmware raises no
 *               event while a payload is unreceived, so one is enough.
 * @deferred:    The deferred event.
 * @rx_blocked:  The oldest event waits for room in a source queue.
 * @rx_tries:    Failed receives for the oldest event so far.
 * @rx_msg:      Message of %HVPIPE_MAX_PAYLOAD bytes the next payload is
 *               received into, allocated before the receive; only the
 *               receive work uses it.
 * @suspended:   Partition migration in progress: no send, no receive.
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
	bool rx_blocked;
	unsigned int rx_tries;
	struct hvpipe_msg *rx_msg;
	bool suspended;
	unsigned int queue_depth;
	struct workqueue_struct *wq;
	struct delayed_work rx_work;
	unsigned int irqs[HVPIPE_MAX_IRQS];
	unsigned int nr_irqs;
	struct hvpipe_stats stats;
	struct hvpipe_event_stats event_stats;
	struct miscdevice miscdev;
};

#if IS_ENABLED(CONFIG_KUNIT)
/* Internals the KUnit suite drives; static without CONFIG_KUNIT. */
struct rtas_work_area;
struct seq_file;

s32 hvpipe_call_send(u32 srcid, phys_addr_t list);
s32 hvpipe_call_receive(phys_addr_t buf, u32 size, u32 *srcid, u32 *bytes);
s32 hvpipe_call_check_exception(unsigned long hwirq, void *log, size_t len);
int hvpipe_call_set_enable(bool enable);
void hvpipe_kick(struct hvpipe_dev *dev, unsigned long delay);
void hvpipe_fill_send_area(void *area, phys_addr_t phys, const void *payload,
			   size_t len);
int hvpipe_parse_event(const void *log, size_t len, struct hvpipe_event *ev);
irqreturn_t hvpipe_event_interrupt(int irq, void *data);
void hvpipe_handle_event(struct hvpipe_dev *dev, unsigned long hwirq);
void hvpipe_rx_work(struct work_struct *work);
int hvpipe_receive(struct hvpipe_dev *dev, struct hvpipe_msg *msg, u32 evsrc,
		   u32 *srcid);
int hvpipe_send(struct hvpipe_source *src, const void *payload, size_t len);
struct hvpipe_source *hvpipe_source_open(struct hvpipe_dev *dev, u32 srcid);
void hvpipe_source_publish(struct hvpipe_source *src);
void hvpipe_source_close(struct hvpipe_source *src);
struct file *hvpipe_open_handle(struct hvpipe_dev *dev, u32 srcid);
long papr_hvpipe_dev_ioctl(struct file *file, unsigned int cmd,
			   unsigned long arg);
struct hvpipe_dev *hvpipe_dev_create(const struct hvpipe_config *cfg);
void hvpipe_dev_destroy(struct hvpipe_dev *dev);
struct hvpipe_dev *hvpipe_dev_probe(const struct hvpipe_config *cfg);
void hvpipe_migrate(struct hvpipe_dev *dev, enum papr_hvpipe_migration step);
int hvpipe_stats_show(struct seq_file *m, void *v);
int hvpipe_sources_show(struct seq_file *m, void *v);
extern const struct file_operations papr_hvpipe_handle_ops;
#endif

#endif /* _PSERIES_PAPR_HVPIPE_H */
