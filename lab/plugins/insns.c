// SPDX-License-Identifier: GPL-2.0
/*
 * insns: a QEMU TCG plugin that counts the guest instructions executed,
 * by the address of the translation block that executed them.
 *
 * Usage: qemu-system-ppc64 -plugin lab-insns.so,out=FILE ...
 *
 * At exit, FILE gets one line per translation that ran: its start address
 * (hex), its instruction count and how many times it ran. An address
 * translated more than once has a line per translation. lab/bench --insns
 * boots each kernel twice, with different numbers of messages, and takes
 * the difference per message: exact counts, where timings on an emulated
 * CPU vary by more than the drivers differ.
 */
#include <glib.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

struct block {
	uint64_t vaddr;
	uint64_t insns;
	uint64_t runs;
};

static GPtrArray *blocks;
static GMutex lock;
static char *out;

static void block_ran(unsigned int vcpu, void *udata)
{
	struct block *b = udata;

	/* The counts are read at exit only: a torn add is one run off. */
	__atomic_fetch_add(&b->runs, 1, __ATOMIC_RELAXED);
}

static void translated(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	struct block *b = g_new0(struct block, 1);

	b->vaddr = qemu_plugin_tb_vaddr(tb);
	b->insns = qemu_plugin_tb_n_insns(tb);
	g_mutex_lock(&lock);
	g_ptr_array_add(blocks, b);
	g_mutex_unlock(&lock);
	qemu_plugin_register_vcpu_tb_exec_cb(tb, block_ran,
					     QEMU_PLUGIN_CB_NO_REGS, b);
}

static void write_counts(qemu_plugin_id_t id, void *unused)
{
	FILE *f = fopen(out, "w");
	guint i;

	if (!f) {
		g_autofree char *msg = g_strdup_printf("insns: %s: cannot write\n",
						       out);

		qemu_plugin_outs(msg);
		return;
	}
	g_mutex_lock(&lock);
	for (i = 0; i < blocks->len; i++) {
		struct block *b = g_ptr_array_index(blocks, i);

		if (b->runs)
			fprintf(f, "%" PRIx64 " %" PRIu64 " %" PRIu64 "\n",
				b->vaddr, b->insns, b->runs);
	}
	g_mutex_unlock(&lock);
	fclose(f);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id,
					   const qemu_info_t *info,
					   int argc, char **argv)
{
	int i;

	for (i = 0; i < argc; i++)
		if (!strncmp(argv[i], "out=", 4) && argv[i][4])
			out = g_strdup(argv[i] + 4);
	if (!out) {
		fprintf(stderr, "insns: needs out=FILE\n");
		return -1;
	}
	blocks = g_ptr_array_new_with_free_func(g_free);
	qemu_plugin_register_vcpu_tb_trans_cb(id, translated);
	qemu_plugin_register_atexit_cb(id, write_counts, NULL);
	return 0;
}
