/* SPDX-License-Identifier: GPL-2.0-only */
#ifndef _PSERIES_PAPR_HVPIPE_H
#define _PSERIES_PAPR_HVPIPE_H

#include <linux/kconfig.h>
#include <linux/types.h>

#define HVPIPE_MAX_PAYLOAD	4048	/* Largest payload firmware accepts. */
#define HVPIPE_MAX_IRQS		16
#define HVPIPE_DEFAULT_DEPTH	16
#define HVPIPE_MAX_DEPTH	1024

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

struct hvpipe_dev;

/**
 * enum hvpipe_migrate_action - Partition migration steps, from mobility.c.
 * @HVPIPE_SUSPEND:  A migration is about to suspend the partition.
 * @HVPIPE_RESUME:   The migration failed or was cancelled: the partition
 *                   did not move.
 * @HVPIPE_MIGRATED: The partition resumed on the destination.
 */
enum hvpipe_migrate_action {
	HVPIPE_SUSPEND,
	HVPIPE_RESUME,
	HVPIPE_MIGRATED,
};

#ifdef CONFIG_PAPR_HVPIPE
void hvpipe_migration_handler(enum hvpipe_migrate_action action);
#else
static inline void hvpipe_migration_handler(enum hvpipe_migrate_action action) { }
#endif

#if IS_ENABLED(CONFIG_KUNIT)
/*
 * The KUnit suite's seam, static without CONFIG_KUNIT. It stands in for
 * firmware at the four one-call wrappers, runs the receive path itself
 * (the stubs only catch calls from its own thread, so it also stubs the
 * kick and calls the interrupt and work functions), makes instances
 * without a device tree, and reads state only as user space does: through
 * files and the debugfs text.
 */
struct file;
struct hvpipe_source;
struct seq_file;
struct work_struct;

s32 hvpipe_call_send(u32 srcid, phys_addr_t list);
s32 hvpipe_call_receive(phys_addr_t buf, u32 size, u32 *srcid, u32 *bytes);
s32 hvpipe_call_check_exception(unsigned long hwirq, void *log, size_t len);
int hvpipe_call_set_enable(bool enable);
void hvpipe_kick(struct hvpipe_dev *dev, unsigned long delay);
void hvpipe_handle_event(struct hvpipe_dev *dev, unsigned long hwirq);
void hvpipe_rx_run(struct hvpipe_dev *dev);
struct file *hvpipe_source_file(struct hvpipe_dev *dev, u32 srcid);
ssize_t hvpipe_read_direct(struct hvpipe_source *src, char __user *buf,
			   size_t count);
long hvpipe_ioctl(struct hvpipe_dev *dev, unsigned int cmd, unsigned long arg);
struct hvpipe_dev *hvpipe_dev_create(const struct hvpipe_config *cfg);
void hvpipe_dev_destroy(struct hvpipe_dev *dev);
struct hvpipe_dev *hvpipe_dev_probe(const struct hvpipe_config *cfg);
void hvpipe_dev_remove(struct hvpipe_dev *dev);
void hvpipe_migrate(struct hvpipe_dev *dev, enum hvpipe_migrate_action step);
int hvpipe_stats_show(struct seq_file *m, void *v);
int hvpipe_sources_show(struct seq_file *m, void *v);
#endif

#endif /* _PSERIES_PAPR_HVPIPE_H */
